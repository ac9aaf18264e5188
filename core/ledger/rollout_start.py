"""Opening a rollout: check the stages, find the champions, insert the row and its first event.

A rollout carries one model (its lead, `model_name`) or a bundle: the lead plus other
models (`bundle`: {model: {"champion": v, "candidate": v}}) that roll out together under
one salt, so a user gets the candidate set or none of it. Every model is in at most one
active rollout of an env, as lead or as member: the check here runs under the env's writer
lock and gives a readable refusal; the database's partial unique index (leads only) also
settles two starters of one lead racing.
"""

from __future__ import annotations

import secrets
from collections.abc import Collection, Mapping, Sequence
from itertools import pairwise

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core.db import ACTIVE_STATUSES, Rollout, utcnow
from core.errors import ConflictError, DataError, NotFoundError
from core.ledger.readiness import require_state_ready
from core.ledger.records import SHADOW_STAGE, AliasRegistry, RolloutMode, RolloutRecord
from core.ledger.releases import _current_row, check_env
from core.ledger.rollout_rows import append_event
from core.ledger.transactions import lock_env, write_transaction


def check_stages(stages: Sequence[float]) -> list[float]:
    """Return the stage percents if they increase strictly within (0, 100].

    Raises:
        DataError: naming what is wrong with them.
    """
    percents = [float(p) for p in stages]
    if not percents:
        raise DataError("stages: expected at least one percent, like 1,10,25,50,100")
    if percents[0] <= 0 or percents[-1] > 100:
        raise DataError(f"stages: expected percents in (0, 100], got {percents}")
    if any(b <= a for a, b in pairwise(percents)):
        raise DataError(f"stages: expected strictly increasing percents, got {percents}")
    return percents


def _champion_against(
    session: Session, env: str, model_name: str, candidate: str, named: str | None
) -> str:
    """The champion `candidate` is compared with: `named`, else the model's current version.

    Raises:
        NotFoundError: none named and the model is in no release of `env`.
        ConflictError: the candidate is the champion.
    """
    found = named
    if found is None:
        release = _current_row(session, env)
        found = release.model_versions.get(model_name) if release else None
    if found is None:
        raise NotFoundError(
            f"no champion of {model_name!r} in {env}: it is in no release there yet "
            "(record a release first, or name the champion version)"
        )
    if str(found) == candidate:
        raise ConflictError(f"{model_name} v{candidate} is already the champion in {env}")
    return str(found)


def rollout_models(row: Rollout) -> tuple[str, ...]:
    """Every model a rollout row carries: its lead, then the members of its bundle."""
    return (row.model_name, *(row.bundle or {}))


def _refuse_second_active(session: Session, env: str, models: Collection[str]) -> None:
    """Raises ConflictError if one of `models` is already in an active rollout of `env`, as
    its lead or as a member of its bundle (the unique index only knows leads)."""
    active = session.scalars(
        select(Rollout).where(Rollout.env == env, Rollout.status.in_(ACTIVE_STATUSES))
    ).all()
    for row in active:
        taken = [m for m in rollout_models(row) if m in models]
        if taken:
            carries = "" if taken == [row.model_name] else f" (with {', '.join(taken)})"
            raise ConflictError(
                f"rollout #{row.id} of {row.model_name}{carries} (v{row.candidate_version}, "
                f"{row.status} at {row.percent:g}%) is already active in {env}: "
                "promote, roll back or abort it first"
            )


def check_bundle(model_name: str, bundle: Mapping[str, str] | None) -> dict[str, str]:
    """{member: candidate version} of a bundle, as strings, after checking its shape.

    Raises:
        DataError: an empty model name or version, or the lead named as a member.
    """
    members = {str(m).strip(): str(v).strip() for m, v in (bundle or {}).items()}
    for member, version in members.items():
        if not member or not version:
            raise DataError(f"bundle: expected MODEL=VERSION pairs, got {member!r}={version!r}")
        if member == model_name:
            raise DataError(
                f"bundle: {model_name} is the rollout's lead; name it once, not again in the bundle"
            )
    return members


def _bundle_champions(
    session: Session, env: str, members: Mapping[str, str]
) -> dict[str, dict[str, str]]:
    """{member: {"champion": v, "candidate": v}}: each member against its version in the
    env's current release.

    Raises:
        NotFoundError: a member is in no release of `env`.
        ConflictError: a member's candidate is its champion.
    """
    return {
        member: {
            "champion": _champion_against(session, env, member, candidate, None),
            "candidate": candidate,
        }
        for member, candidate in sorted(members.items())
    }


def _insert_rollout(
    session: Session,
    *,
    env: str,
    model_name: str,
    champion: str,
    candidate: str,
    mode: RolloutMode,
    first_percent: float,
    bundle: dict[str, dict[str, str]] | None = None,
) -> Rollout:
    """Insert a new rollout row with a fresh salt, so it buckets a fresh set of users.

    A canary starts at stage 0 (`first_percent`), a shadow rollout at stage -1 (0 percent).

    Raises:
        ConflictError: another rollout of the model became active at the same moment (the
            database's partial unique index settles the race between two starters).
    """
    canary, now = mode == "canary", utcnow()
    row = Rollout(
        env=env,
        model_name=model_name,
        champion_version=champion,
        candidate_version=candidate,
        salt=secrets.token_hex(8),
        stage_index=0 if canary else SHADOW_STAGE,
        percent=first_percent if canary else 0.0,
        status=mode,
        stage_started_at=now,
        created_at=now,
        updated_at=now,
        event_seq=0,
        bundle=bundle or None,
    )
    session.add(row)
    try:
        session.flush()
    except IntegrityError as exc:
        raise ConflictError(
            f"another rollout of {row.model_name} became active in {row.env} at the same moment"
        ) from exc
    return row


def _checked(
    env: str,
    stages: Sequence[float],
    mode: str,
    model_name: str,
    candidate_version: str,
    bundle: Mapping[str, str] | None,
) -> tuple[list[float], dict[str, str]]:
    """The stage percents and {model: candidate version} (lead first) of a start request.

    Raises:
        NotFoundError: unknown env.
        DataError: malformed stages, mode or bundle.
    """
    check_env(env)
    percents = check_stages(stages)
    if mode not in ("shadow", "canary"):
        raise DataError(f"mode: expected shadow or canary, got {mode!r}")
    return percents, {model_name: str(candidate_version)} | check_bundle(model_name, bundle)


def start_rollout(  # noqa: PLR0913 (keyword-only: each names a fact the ledger records)
    engine: Engine,
    *,
    env: str,
    model_name: str,
    candidate_version: str,
    champion_version: str | None = None,
    stages: Sequence[float],
    mode: RolloutMode = "canary",
    actor: str,
    reason: str,
    registry: AliasRegistry | None = None,
    forced: bool = False,
    bundle: Mapping[str, str] | None = None,
    stateful: Collection[str] = (),
) -> RolloutRecord:
    """Open a rollout of `candidate_version` (and of a bundle's members) in `env`.

    The lead's champion defaults to its version in the env's current release; each member
    of `bundle` ({model: candidate version}) is compared with its version there. A canary
    starts at stage 0 (`stages[0]` percent); a shadow rollout at stage -1 (0 percent). Each
    rollout draws a fresh random salt, so it buckets a fresh set of users (every member of
    a bundle with the same one). With `registry`, every candidate version must exist there.
    Every candidate of a model in `stateful` (the models that read release state) must have
    its state published. `forced` records that the rollout was opened past a refusal
    (`core.promotion`); the release its promotion records is forced too.

    Raises:
        NotFoundError: unknown env, no champion to compare against (lead or member), or
            (with a registry) a candidate version that is not registered.
        ConflictError: a model of the rollout is already in an active rollout of the env
            (as lead or member), or a candidate is its champion.
        StateNotReadyError: a stateful candidate's release state is not published.
        DataError: malformed stages, mode or bundle.
    """
    percents, candidates = _checked(env, stages, mode, model_name, candidate_version, bundle)
    members = {m: v for m, v in candidates.items() if m != model_name}
    if registry is not None:
        for name, version in candidates.items():
            registry.get_version(name, version)
    require_state_ready(engine, candidates, stateful)
    with write_transaction(engine) as session:
        lock_env(session, env)
        champion = _champion_against(
            session, env, model_name, candidates[model_name], champion_version
        )
        pairs = _bundle_champions(session, env, members)
        _refuse_second_active(session, env, candidates)
        row = _insert_rollout(
            session, env=env, model_name=model_name, champion=champion,
            candidate=candidates[model_name], mode=mode, first_percent=percents[0], bundle=pairs,
        )  # fmt: skip
        row.forced = forced
        start = {"stages": percents, "mode": mode} | ({"forced": True} if forced else {})
        append_event(
            session, row, kind="start", actor=actor, reason=reason, from_status=None,
            figures=start | ({"bundle": pairs} if pairs else {}), ts=row.created_at,
        )  # fmt: skip
        return RolloutRecord.from_row(row)
