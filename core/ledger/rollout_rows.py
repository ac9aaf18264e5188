"""Rollout rows inside a write transaction: lock one, refuse a stale change, append an event.

Every rollout write (`core.ledger.rollouts`, `core.ledger.env_rollback`) goes through
these three steps, so the locking order (env writer lock, then `FOR UPDATE` on the row)
and the event numbering (`seq` from the locked row's counter) live in one place.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from core.db import ACTIVE_STATUSES, Rollout, RolloutEvent
from core.errors import ConflictError, DataError, NotFoundError
from core.ledger.records import clean_figures
from core.ledger.transactions import lock_env

MAX_KIND_CHARS = 32


def locked_rollout(session: Session, rollout_id: int) -> Rollout:
    """The rollout row, locked for this transaction (env writer lock, then FOR UPDATE).

    Raises:
        NotFoundError: no such rollout.
    """
    env = session.scalar(select(Rollout.env).where(Rollout.id == rollout_id))
    if env is None:
        raise NotFoundError(f"rollout #{rollout_id} not found")
    lock_env(session, env)
    return session.scalars(
        select(Rollout)
        .where(Rollout.id == rollout_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).one()


def refuse_unless(row: Rollout, allowed: Sequence[str], action: str) -> None:
    """Let `action` go on only if the rollout is in one of the `allowed` statuses.

    Raises:
        ConflictError: naming the status it is in (and since when, if it has ended).
    """
    if row.status in allowed:
        return
    if row.status in ACTIVE_STATUSES:
        raise ConflictError(
            f"cannot {action} rollout #{row.id} ({row.model_name} v{row.candidate_version} "
            f"in {row.env}): it is {row.status}, {action} needs {' or '.join(allowed)}"
        )
    ended = f" since {row.ended_at:%Y-%m-%d %H:%M:%S} UTC" if row.ended_at else ""
    raise ConflictError(
        f"cannot {action} rollout #{row.id} ({row.model_name} v{row.candidate_version} "
        f"in {row.env}): it is already {row.status}{ended}"
    )


def append_event(
    session: Session,
    row: Rollout,
    *,
    kind: str,
    actor: str,
    reason: str | None,
    from_status: str | None,
    figures: Mapping[str, Any] | None,
    ts: datetime,
) -> RolloutEvent:
    """Append the next event of `row` (its seq taken from the locked row's counter).

    The event records the row's status, stage and percent as they are now, so change the
    row first.

    Raises:
        DataError: an empty or too long kind, or no actor.
    """
    if not kind or len(kind) > MAX_KIND_CHARS:
        raise DataError(f"event kind must be 1-{MAX_KIND_CHARS} characters, got {kind!r}")
    if not actor:
        raise DataError("actor must be named (who does this?)")
    row.event_seq = (row.event_seq or 0) + 1
    event = RolloutEvent(
        rollout_id=row.id,
        seq=row.event_seq,
        ts=ts,
        kind=kind,
        actor=actor,
        reason=reason,
        from_status=from_status,
        to_status=row.status,
        stage_index=row.stage_index,
        percent=row.percent,
        figures=clean_figures(figures),
    )
    session.add(event)
    session.flush()
    return event


def started_stages(session: Session, row: Rollout) -> list[float]:
    """The stage percents `row` was started with (recorded in its `start` event).

    Raises:
        DataError: the start event holds no stages.
    """
    figures = session.scalar(
        select(RolloutEvent.figures).where(
            RolloutEvent.rollout_id == row.id, RolloutEvent.kind == "start"
        )
    )
    if not figures or "stages" not in figures:
        raise DataError(f"rollout #{row.id} has no recorded stages: name them")
    return [float(p) for p in figures["stages"]]
