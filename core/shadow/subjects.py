"""Shadow evaluation, what it is about and what follows: the subjects and the verdict.

`resolve_subjects` finds the champion (the env's current release) and the candidate
(given, the active rollout's, or the env's `<env>-candidate` alias); `act_on_report` records the
evaluation in the ledger and moves the rollout on its verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine

from core import ledger
from core.aliases import env_alias
from core.errors import ConflictError, NotFoundError
from core.ledger import AliasRegistry, RolloutRecord
from core.shadow.statistics import ShadowReport


@dataclass(frozen=True, slots=True)
class ShadowSubjects:
    """Which versions a shadow evaluation compares, and the rollout it belongs to (if any)."""

    env: str
    model_name: str
    champion_version: str
    candidate_version: str
    rollout: RolloutRecord | None


def resolve_subjects(
    engine: Engine,
    registry: AliasRegistry,
    *,
    env: str,
    model_name: str,
    candidate_version: str | None,
    stateful: Collection[str] = (),
) -> ShadowSubjects:
    """Find the champion (current release) and candidate (given, else the active
    rollout's, else the registry's `<env>-candidate` alias) of `model_name` in `env`.

    The active rollout is the one carrying the model, as its lead or as a member of a
    bundle. A candidate of a model in `stateful` (the models that read release state)
    takes no shadow traffic before its state is published: refused here, before any replay.

    Raises:
        NotFoundError: no release holds the model in `env`, or no candidate can be found.
        ConflictError: the candidate is the champion, or differs from the active rollout's.
        StateNotReadyError: the candidate's release state is not published.
    """
    release = ledger.current_release(engine, env)
    champion = (release.model_versions if release else {}).get(model_name)
    if champion is None:
        raise NotFoundError(f"no champion of {model_name!r} in {env}: nothing released yet")
    active = [r for r in ledger.active_rollouts(engine, env) if model_name in r.candidate_versions]
    rollout = active[0] if active else None
    if candidate_version is None:
        candidate_version = _default_candidate(registry, env, model_name, rollout)
    candidate_version = str(candidate_version)
    if candidate_version == str(champion):
        raise ConflictError(f"{model_name} v{candidate_version} is already the champion in {env}")
    if rollout is not None and rollout.candidate_versions[model_name] != candidate_version:
        raise ConflictError(
            f"rollout #{rollout.id} carries {model_name} v{rollout.candidate_versions[model_name]} "
            f"in {env}, not v{candidate_version}: end it first"
        )
    ledger.require_state_ready(engine, {model_name: candidate_version}, stateful)
    return ShadowSubjects(env, model_name, str(champion), candidate_version, rollout)


def _default_candidate(
    registry: AliasRegistry, env: str, model_name: str, rollout: RolloutRecord | None
) -> str:
    """The active rollout's candidate, else the version `<env>-candidate` points at.

    Raises:
        NotFoundError: no rollout and no `<env>-candidate` alias.
    """
    if rollout is not None:
        return rollout.candidate_versions[model_name]
    alias = env_alias(env, "candidate")
    found = registry.version_by_alias(model_name, alias)
    if found is None:
        raise NotFoundError(
            f"no candidate of {model_name!r} in {env}: name a version, or set the `{alias}` alias"
        )
    return found.version


ShadowAction = Literal["advanced_to_canary", "started_canary", "rolled_back", "reported"]


def act_on_report(
    engine: Engine,
    subjects: ShadowSubjects,
    report: ShadowReport,
    *,
    stages: Sequence[float],
    actor: str,
    registry: AliasRegistry | None = None,
    start_canary: bool = True,
) -> tuple[ShadowAction, int | None]:
    """Record the evaluation in the ledger and move the rollout on its verdict.

    A shadow-mode rollout advances into canary stage 0 on a pass and is rolled back on a
    fail. Without a rollout, a pass starts a canary rollout (when `start_canary`); a fail
    only reports. A canary or paused rollout only gets the event. Returns what was done
    and the rollout id.

    Raises:
        ConflictError: the rollout changed meanwhile (the ledger refuses stale moves).
    """
    summary = report.gate.summary()
    rollout = subjects.rollout
    if rollout is None:
        if not (report.passed and start_canary):
            return "reported", None
        return "started_canary", _start_canary(engine, subjects, report, stages, actor)
    ledger.record_event(
        engine, rollout.id, kind="shadow_evaluation", actor=actor, reason=summary,
        figures=report.as_dict(),
    )  # fmt: skip
    if rollout.status != "shadow":
        return "reported", rollout.id
    if report.passed:
        ledger.advance_stage(
            engine, rollout.id, expected_stage_index=rollout.stage_index,
            stages=ledger.rollout_stages(engine, rollout.id), actor=actor, reason=summary,
            figures={"gate": report.gate.as_dict()},
        )  # fmt: skip
        return "advanced_to_canary", rollout.id
    ledger.rollback(
        engine, rollout.id, actor=actor, reason=summary,
        figures={"gate": report.gate.as_dict()}, registry=registry,
    )  # fmt: skip
    return "rolled_back", rollout.id


def _start_canary(
    engine: Engine,
    subjects: ShadowSubjects,
    report: ShadowReport,
    stages: Sequence[float],
    actor: str,
) -> int:
    """Start a canary rollout on a passed evaluation and record the evaluation in it;
    return the rollout id."""
    summary = report.gate.summary()
    rollout = ledger.start_rollout(
        engine,
        env=subjects.env,
        model_name=subjects.model_name,
        candidate_version=subjects.candidate_version,
        champion_version=subjects.champion_version,
        stages=stages,
        mode="canary",
        actor=actor,
        reason=f"shadow evaluation passed: {summary}",
    )
    ledger.record_event(
        engine, rollout.id, kind="shadow_evaluation", actor=actor, reason=summary,
        figures=report.as_dict(),
    )  # fmt: skip
    return rollout.id
