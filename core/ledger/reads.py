"""Reads of rollouts and their events (status displays, the controller's tick, the CLI).

Each read runs in its own short transaction and returns detached records.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import Engine, select

from core.db import ACTIVE_STATUSES, Release, Rollout, RolloutEvent, session_scope
from core.errors import NotFoundError
from core.ledger.records import EventRecord, RolloutRecord
from core.ledger.releases import check_env
from core.ledger.rollout_rows import started_stages


def get_rollout(engine: Engine, rollout_id: int) -> RolloutRecord:
    """A rollout by id.

    Raises:
        NotFoundError: no such rollout.
    """
    with session_scope(engine) as session:
        row = session.get(Rollout, rollout_id)
        if row is None:
            raise NotFoundError(f"rollout #{rollout_id} not found")
        return RolloutRecord.from_row(row)


def rollout_stages(engine: Engine, rollout_id: int) -> list[float]:
    """The stage percents a rollout was started with.

    Raises:
        NotFoundError: no such rollout.
        DataError: its start event holds no stages.
    """
    with session_scope(engine) as session:
        row = session.get(Rollout, rollout_id)
        if row is None:
            raise NotFoundError(f"rollout #{rollout_id} not found")
        return started_stages(session, row)


def active_rollouts(engine: Engine, env: str | None = None) -> list[RolloutRecord]:
    """Active (shadow, canary, paused) rollouts, of one env or all, by env and model.

    Raises:
        NotFoundError: for an unknown env.
    """
    query = select(Rollout).where(Rollout.status.in_(ACTIVE_STATUSES))
    if env is not None:
        query = query.where(Rollout.env == check_env(env))
    with session_scope(engine) as session:
        rows = session.scalars(query.order_by(Rollout.env, Rollout.model_name, Rollout.id))
        return [RolloutRecord.from_row(row) for row in rows]


def list_rollouts(engine: Engine, env: str | None = None, limit: int = 20) -> list[RolloutRecord]:
    """The newest rollouts, active or ended, of one env or all.

    Raises:
        NotFoundError: for an unknown env.
    """
    query = select(Rollout)
    if env is not None:
        query = query.where(Rollout.env == check_env(env))
    with session_scope(engine) as session:
        rows = session.scalars(query.order_by(Rollout.id.desc()).limit(limit))
        return [RolloutRecord.from_row(row) for row in rows]


def rollout_events(engine: Engine, rollout_id: int) -> list[EventRecord]:
    """Every event of a rollout, in order.

    Raises:
        NotFoundError: no such rollout.
    """
    with session_scope(engine) as session:
        if session.get(Rollout, rollout_id) is None:
            raise NotFoundError(f"rollout #{rollout_id} not found")
        rows = session.scalars(
            select(RolloutEvent)
            .where(RolloutEvent.rollout_id == rollout_id)
            .order_by(RolloutEvent.seq)
        )
        return [EventRecord.from_row(row) for row in rows]


def last_figures(engine: Engine, rollout_ids: Sequence[int]) -> dict[int, EventRecord]:
    """Per rollout, its newest event that carries figures (for status displays).

    The `start` event (stages and mode) is not a figure worth showing and is skipped.
    """
    if not rollout_ids:
        return {}
    found: dict[int, EventRecord] = {}
    with session_scope(engine) as session:
        rows = session.scalars(
            select(RolloutEvent)
            .where(
                RolloutEvent.rollout_id.in_(list(rollout_ids)),
                RolloutEvent.figures.is_not(None),
            )
            .order_by(RolloutEvent.rollout_id, RolloutEvent.seq.desc())
        )
        for row in rows:
            if row.figures and row.kind != "start":
                found.setdefault(row.rollout_id, EventRecord.from_row(row))
    return found


def completed_versions(engine: Engine, env: str) -> dict[str, frozenset[str]]:
    """Per model, the versions that completed a rollout in `env`: the candidates of its
    promoted rollouts (a bundle's members too: they rolled out with it), and the versions
    of its first release (nothing to roll out against).

    What a promotion from `env` to the next environment may take without `force`
    (`core.promotion`).

    Raises:
        NotFoundError: unknown env.
    """
    check_env(env)
    found: dict[str, set[str]] = {}
    with session_scope(engine) as session:
        promoted = [
            pair
            for row in session.scalars(
                select(Rollout).where(Rollout.env == env, Rollout.status == "promoted")
            )
            for pair in RolloutRecord.from_row(row).candidate_versions.items()
        ]
        first = session.scalars(
            select(Release)
            .where(Release.env == env)
            .order_by(Release.created_at, Release.id)
            .limit(1)
        ).first()
        first_versions = dict(first.model_versions) if first is not None else {}
    for name, version in [*promoted, *first_versions.items()]:
        found.setdefault(str(name), set()).add(str(version))
    return {name: frozenset(versions) for name, versions in found.items()}
