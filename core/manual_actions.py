"""What an operator asks of the ledger by hand, and carrying it out.

`RolloutActionRequest` (start, pause, resume, abort, set the stage of, promote or roll
back a rollout) and `RollbackRequest` (point an environment back at an earlier release)
are typed, validated requests: the Prefect UI builds its forms from them (the
`rollout-action` and `rollback` flows), and `apply_rollout_action` / `rollback_env`
carry them out through core.ledger. No Prefect here.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TYPE_CHECKING, Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy import Engine

from core import ledger
from core.ledger import AliasRegistry, ReleaseRecord, RolloutRecord
from core.ledger.verdicts import compat_verdict_fn

if TYPE_CHECKING:
    from core.registry import ModelRegistry

Action = Literal["start", "pause", "resume", "abort", "set_stage", "promote", "rollback"]


class RolloutActionRequest(BaseModel):
    """One manual action on a rollout; `start` names env, model and version, the others a
    rollout id (see `sml status`)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Action = Field(description="what to do")
    actor: str = Field(min_length=1, max_length=128, description="who does it")
    reason: str = Field(min_length=1, description="why (kept in the ledger)")
    rollout_id: int | None = Field(None, ge=1, description="the rollout (all but start)")
    env: Literal["dev", "stg", "prd"] | None = Field(None, description="start: environment")
    model_name: str | None = Field(None, min_length=1, description="start: registered model")
    candidate_version: str | None = Field(
        None, pattern=r"^\d+$", description="start: registered version to roll out"
    )
    mode: Literal["shadow", "canary"] = Field("canary", description="start: first phase")
    bundle: dict[str, Annotated[str, Field(pattern=r"^\d+$")]] | None = Field(
        None,
        description="start: other models rolled out with it, {model: candidate version}",
    )
    stage_index: int | None = Field(None, ge=0, description="set_stage: 0 = first stage")

    @model_validator(mode="after")
    def _needs(self) -> RolloutActionRequest:
        if self.action == "start":
            missing = [
                name
                for name, value in (
                    ("env", self.env),
                    ("model_name", self.model_name),
                    ("candidate_version", self.candidate_version),
                )
                if value is None
            ]
            if missing:
                raise ValueError(f"start needs {', '.join(missing)}")
        elif self.rollout_id is None:
            raise ValueError(f"{self.action} needs rollout_id")
        if self.action == "set_stage" and self.stage_index is None:
            raise ValueError("set_stage needs stage_index")
        return self


class RollbackRequest(BaseModel):
    """Which env to roll back, to what, by whom and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    env: Literal["dev", "stg", "prd"] = Field(description="environment to roll back")
    actor: str = Field(min_length=1, max_length=128, description="who does it")
    reason: str = Field(min_length=1, description="why (kept in the ledger and MLflow)")
    to_tag: str | None = Field(
        None, min_length=1, description="release tag to return to (default: the previous one)"
    )
    force: bool = Field(
        False, description="proceed even if a target version is judged broken (recorded)"
    )


def apply_rollout_action(
    engine: Engine,
    request: RolloutActionRequest,
    *,
    registry: AliasRegistry | None,
    stages: Sequence[float],
    code_version: str,
    image_version: str,
    stateful: Collection[str] = (),
) -> tuple[RolloutRecord, ReleaseRecord | None]:
    """Carry out one manual action through the ledger; return the rollout after it and,
    for `promote`, the new release.

    `stages` are the canary stages a `start` gets (Settings CANARY_STAGES); the registry
    is used by start (artifact digests), promote, rollback and abort (MLflow aliases and
    tags). Start and promote refuse a candidate of a model in `stateful` (the models that
    read release state) whose state is not published.

    Raises:
        StateNotReadyError: (start, promote) a stateful candidate's state is not published.
        ConflictError: the ledger refuses the move (the rollout ended, a stale stage).
        NotFoundError: no such rollout, or (start) no such registered version.
    """
    rid, actor, reason = request.rollout_id or 0, request.actor, request.reason
    match request.action:
        case "start":
            started = _start(engine, request, registry=registry, stages=stages, stateful=stateful)
            return started, None
        case "pause":
            return ledger.pause(engine, rid, actor=actor, reason=reason), None
        case "resume":
            return ledger.resume(engine, rid, actor=actor, reason=reason), None
        case "abort":
            return ledger.abort(engine, rid, actor=actor, reason=reason, registry=registry), None
        case "set_stage":
            stage = request.stage_index or 0
            return ledger.set_stage(
                engine, rid, stage_index=stage, actor=actor, reason=reason
            ), None
        case "rollback":
            return ledger.rollback(engine, rid, actor=actor, reason=reason, registry=registry), None
        case "promote":
            return ledger.promote(
                engine, rid, actor=actor, reason=reason, registry=registry,
                code_version=code_version, image_version=image_version, stateful=stateful,
            )  # fmt: skip


def _start(
    engine: Engine,
    request: RolloutActionRequest,
    *,
    registry: AliasRegistry | None,
    stages: Sequence[float],
    stateful: Collection[str],
) -> RolloutRecord:
    """`core.ledger.start_rollout` of a `start` request (a bundle's members with it).

    Raises:
        ValueError: env, model or version missing (the request's validator refuses that).
    """
    if request.env is None or request.model_name is None or request.candidate_version is None:
        raise ValueError("start needs env, model_name and candidate_version")
    return ledger.start_rollout(
        engine,
        env=request.env,
        model_name=request.model_name,
        candidate_version=request.candidate_version,
        stages=stages,
        mode=request.mode,
        actor=request.actor,
        reason=request.reason,
        registry=registry,
        bundle=request.bundle,
        stateful=stateful,
    )


def rollback_env(
    engine: Engine,
    request: RollbackRequest,
    *,
    registry: ModelRegistry,
    image_version: str,
    stateful: Collection[str] = (),
) -> ReleaseRecord:
    """Roll an env back in one state change (core.ledger.rollback_env).

    Every version to be served again is judged under `image_version` (core.compat);
    a `broken` one refuses the rollback unless `request.force`, which is recorded. A
    version of a model in `stateful` must still have its release state published.

    Raises:
        StateNotReadyError: a stateful version to serve again has no published state.
        ConflictError: a target version is judged broken (and not forced).
        NotFoundError: no release to return to, or no release with `to_tag`.
    """
    return ledger.rollback_env(
        engine,
        request.env,
        to_tag=request.to_tag,
        actor=request.actor,
        reason=request.reason,
        force=request.force,
        registry=registry,
        verdict_fn=compat_verdict_fn(registry, image_version),
        image_version=image_version,
        stateful=stateful,
    )
