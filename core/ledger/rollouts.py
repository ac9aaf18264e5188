"""Rollout transitions: advance, set the stage, pause, resume, abort, roll back, promote.

This module (with `core.ledger.env_rollback`) is the only writer of `rollouts` and
`rollout_events`. Every operation runs in one write transaction (see
`core.ledger.transactions`): it takes the env's writer lock, re-reads the rollout row under
`FOR UPDATE`, checks the operation is still valid, changes the row, and appends one event
with the next `seq` of that rollout. So two promotions of one rollout at the same moment
leave one promotion and one refusal, and a repeated controller tick cannot advance a stage
twice.

Stage numbering: a canary rollout is at stage 0..len(stages)-1 serving `stages[i]`
percent; a shadow rollout is at stage -1 (0 percent) and advances into canary stage 0.

Opening a rollout lives in `core.ledger.rollout_start` (re-exported here). MLflow is
touched only after the database committed (`core.ledger.registry_sync`): the database is
the source of truth routers read, MLflow follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from core.db import ACTIVE_STATUSES, Rollout, session_scope, utcnow
from core.errors import ConflictError, DataError, NotFoundError
from core.ledger.records import AliasRegistry, EventRecord, RolloutRecord
from core.ledger.registry_sync import follow_promotion, tag_rolled_back
from core.ledger.releases import ReleaseRecord, record_release_in
from core.ledger.rollout_rows import append_event, locked_rollout, refuse_unless, started_stages
from core.ledger.rollout_start import check_stages, start_rollout
from core.ledger.transactions import write_transaction

__all__ = [
    "abort",
    "advance_stage",
    "check_stages",
    "pause",
    "promote",
    "record_event",
    "resume",
    "rollback",
    "set_stage",
    "start_rollout",
]


def _transition(
    engine: Engine,
    rollout_id: int,
    *,
    action: str,
    allowed: Sequence[str],
    to_status: str | Callable[[Rollout], str],
    actor: str,
    reason: str | None,
    figures: Mapping[str, Any] | None = None,
) -> RolloutRecord:
    """Move a rollout from one of `allowed` to `to_status`, with one event."""
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        refuse_unless(row, allowed, action)
        now = utcnow()
        from_status = row.status
        row.status = to_status(row) if callable(to_status) else to_status
        row.updated_at = now
        if row.status not in ACTIVE_STATUSES:
            row.ended_at = now
        append_event(
            session,
            row,
            kind=action,
            actor=actor,
            reason=reason,
            from_status=from_status,
            figures=figures,
            ts=now,
        )
        return RolloutRecord.from_row(row)


# --- stages ------------------------------------------------------------------------------


def _move_to_stage(row: Rollout, stage_index: int, percents: list[float], now: datetime) -> None:
    row.status = "canary"
    row.stage_index = stage_index
    row.percent = percents[stage_index]
    row.stage_started_at = now
    row.updated_at = now


def advance_stage(
    engine: Engine,
    rollout_id: int,
    *,
    expected_stage_index: int,
    stages: Sequence[float],
    actor: str,
    reason: str,
    figures: Mapping[str, Any] | None = None,
) -> RolloutRecord:
    """Advance a shadow or canary rollout by one stage, if it is still at the expected one.

    A compare-and-set on the stage index: a repeated or duplicated controller tick that
    read the same state finds the stage already moved and is refused. A shadow rollout
    (stage -1) advances into canary stage 0.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: not shadow/canary, not at `expected_stage_index`, or at the last
            stage (promote it instead).
    """
    percents = check_stages(stages)
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        refuse_unless(row, ("shadow", "canary"), "advance")
        if row.stage_index != expected_stage_index:
            raise ConflictError(
                f"rollout #{row.id} is at stage {row.stage_index}, not {expected_stage_index}: "
                "it was already moved (a repeated tick?)"
            )
        nxt = row.stage_index + 1
        if nxt >= len(percents):
            raise ConflictError(
                f"rollout #{row.id} is at its last stage ({row.percent:g}%): promote it instead"
            )
        from_status, now = row.status, utcnow()
        _move_to_stage(row, nxt, percents, now)
        append_event(
            session,
            row,
            kind="advance",
            actor=actor,
            reason=reason,
            from_status=from_status,
            figures=figures,
            ts=now,
        )
        return RolloutRecord.from_row(row)


def set_stage(
    engine: Engine,
    rollout_id: int,
    *,
    stage_index: int,
    stages: Sequence[float] | None = None,
    actor: str,
    reason: str,
) -> RolloutRecord:
    """Manually put an active rollout at any canary stage (up or down); it stays paused if paused.

    `stages` default to the ones the rollout was started with.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: the rollout has ended.
        DataError: a stage index outside the stages.
    """
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        refuse_unless(row, ACTIVE_STATUSES, "set the stage of")
        percents = check_stages(stages if stages is not None else started_stages(session, row))
        if not 0 <= stage_index < len(percents):
            raise DataError(f"stage: expected 0..{len(percents) - 1}, got {stage_index}")
        from_status, now = row.status, utcnow()
        _move_to_stage(row, stage_index, percents, now)
        if from_status == "paused":
            row.status = "paused"
        append_event(
            session,
            row,
            kind="set_stage",
            actor=actor,
            reason=reason,
            from_status=from_status,
            figures={"stages": percents},
            ts=now,
        )
        return RolloutRecord.from_row(row)


# --- hold, stop, roll back ---------------------------------------------------------------


def pause(engine: Engine, rollout_id: int, *, actor: str, reason: str) -> RolloutRecord:
    """Hold a shadow or canary rollout where it is: it keeps serving, nothing advances.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it is not shadow or canary.
    """
    return _transition(
        engine,
        rollout_id,
        action="pause",
        allowed=("shadow", "canary"),
        to_status="paused",
        actor=actor,
        reason=reason,
    )


def resume(engine: Engine, rollout_id: int, *, actor: str, reason: str) -> RolloutRecord:
    """Let a paused rollout continue (back to shadow at stage -1, canary otherwise).

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it is not paused.
    """
    return _transition(
        engine,
        rollout_id,
        action="resume",
        allowed=("paused",),
        to_status=lambda row: "shadow" if row.stage_index < 0 else "canary",
        actor=actor,
        reason=reason,
    )


def abort(
    engine: Engine,
    rollout_id: int,
    *,
    actor: str,
    reason: str,
    figures: Mapping[str, Any] | None = None,
) -> RolloutRecord:
    """Stop an active rollout without judging the candidate; the champion serves everyone.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it has already ended.
    """
    return _transition(
        engine,
        rollout_id,
        action="abort",
        allowed=ACTIVE_STATUSES,
        to_status="aborted",
        actor=actor,
        reason=reason,
        figures=figures,
    )


def rollback(
    engine: Engine,
    rollout_id: int,
    *,
    actor: str,
    reason: str,
    figures: Mapping[str, Any] | None = None,
    registry: AliasRegistry | None = None,
) -> RolloutRecord:
    """Roll an active rollout back: the champion keeps serving everyone.

    One row update; routers pick it up on their next poll. With `registry`, the candidate
    version is tagged with why (after the commit).

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it has already ended.
    """
    record = _transition(
        engine,
        rollout_id,
        action="rollback",
        allowed=ACTIVE_STATUSES,
        to_status="rolled_back",
        actor=actor,
        reason=reason,
        figures=figures,
    )
    if registry is not None:
        tag_rolled_back(
            registry,
            record.model_name,
            record.candidate_version,
            env=record.env,
            actor=actor,
            reason=reason,
        )
    return record


# --- promote -----------------------------------------------------------------------------


def _candidate_digest(
    engine: Engine, rollout_id: int, registry: AliasRegistry | None
) -> str | None:
    """The candidate's artifact digest from the registry (None without one: unknown).

    Read before any lock is taken: it is registry I/O.

    Raises:
        NotFoundError: no such rollout, or its candidate is not registered.
    """
    with session_scope(engine) as session:
        row = session.get(Rollout, rollout_id)
        if row is None:
            raise NotFoundError(f"rollout #{rollout_id} not found")
        name, candidate = row.model_name, row.candidate_version
    if registry is None:
        return None
    return registry.get_version(name, candidate).artifact_sha256


def promote(
    engine: Engine,
    rollout_id: int,
    *,
    actor: str,
    reason: str,
    figures: Mapping[str, Any] | None = None,
    registry: AliasRegistry | None = None,
    code_version: str,
    image_version: str,
) -> tuple[RolloutRecord, ReleaseRecord]:
    """Make the candidate the champion: rollout promoted and a new release, one transaction.

    The release sets the model to the candidate version (other models carry over) with the
    candidate's artifact digest from the registry when given (unknown otherwise), `forced`
    when the rollout was. After the commit, the env's MLflow aliases follow: `<env>-champion`
    -> candidate, `<env>-previous` -> old champion, `<env>-candidate` removed if still there.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it has already ended (for example, another promotion won).
    """
    digest = _candidate_digest(engine, rollout_id, registry)
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        refuse_unless(row, ACTIVE_STATUSES, "promote")
        now = utcnow()
        release = record_release_in(
            session,
            env=row.env,
            code_version=code_version,
            image_version=image_version,
            model_versions={row.model_name: row.candidate_version},
            artifact_digests={row.model_name: digest},
            reason=f"promote {row.model_name} v{row.candidate_version} "
            f"(rollout #{row.id}): {reason}",
            actor=actor,
            at=now,
            forced=row.forced,
        )
        from_status = row.status
        row.status, row.percent, row.updated_at, row.ended_at = "promoted", 100.0, now, now
        acted_on = dict(figures or {}) | {"release": {"id": release.id, "tag": release.tag}}
        append_event(
            session,
            row,
            kind="promote",
            actor=actor,
            reason=reason,
            from_status=from_status,
            figures=acted_on,
            ts=now,
        )
        record = RolloutRecord.from_row(row)
    if registry is not None:
        follow_promotion(registry, record)
    return record, release


def record_event(
    engine: Engine,
    rollout_id: int,
    *,
    kind: str,
    actor: str,
    reason: str | None = None,
    figures: Mapping[str, Any] | None = None,
) -> EventRecord:
    """Append an event without changing state (a gate result with its figures, a note).

    Raises:
        NotFoundError: no such rollout.
        DataError: an empty or too long kind, or no actor.
    """
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        event = append_event(
            session,
            row,
            kind=kind,
            actor=actor,
            reason=reason,
            from_status=row.status,
            figures=figures,
            ts=utcnow(),
        )
        return EventRecord.from_row(event)
