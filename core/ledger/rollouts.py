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

Opening a rollout lives in `core.ledger.rollout_start`, promoting one in
`core.ledger.rollout_promote` (both re-exported here). A rollout of a bundle moves as one:
every transition here is one row, so all its models move together. MLflow is
touched only after the database committed (`core.ledger.registry_sync`): the database is
the source of truth routers read, MLflow follows it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from core.db import ACTIVE_STATUSES, Rollout, utcnow
from core.errors import ConflictError, DataError
from core.ledger.records import AliasRegistry, EventRecord, RolloutRecord
from core.ledger.registry_sync import follow_rollback
from core.ledger.rollout_promote import promote
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
    registry: AliasRegistry | None = None,
) -> RolloutRecord:
    """Stop an active rollout without judging the candidate; the champion serves everyone.

    With `registry`, after the commit the `<env>-candidate` alias of every model of the
    rollout that still points at its candidate is removed.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it has already ended.
    """
    record = _transition(
        engine,
        rollout_id,
        action="abort",
        allowed=ACTIVE_STATUSES,
        to_status="aborted",
        actor=actor,
        reason=reason,
        figures=figures,
    )
    if registry is not None:
        follow_rollback(registry, record, actor=actor, reason=None)
    return record


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

    One row update (every model of a bundle with it); routers pick it up on their next
    poll. With `registry`, after the commit every candidate version of the rollout is
    tagged with why and its `<env>-candidate` alias removed if it still points at it.

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
        follow_rollback(registry, record, actor=actor, reason=reason)
    return record


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
