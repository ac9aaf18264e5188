"""Per-minute rollups of the users' behaviour counts (core.behaviour): a stage's
reformulation, hand-off and abandonment counts read from O(minutes) rollup rows and the
rows of its edges, not from every row of the stage (issue 13).

Why per minute works. An answer's outcome depends only on its user's next request of the
same rollout and lead model (and on feedback and hand-off rows of that request), not on
the stage window: users' rows are followed forward, and once an answer's windows have
passed its outcome is final (core.behaviour's censoring). So the counts of a minute whose
answers all had their windows pass are a sum that later ticks can reuse.

`behaviour_rollups` holds, per (rollout, lead model, arm, minute of the answer), the five
counts of core.behaviour.BehaviourCounts, and per hour their sums (recomputed with any of
its minutes), for the minutes before the rollout's *horizon*:
the first minute not rolled up, kept at the last refresh's `now` minus the longer window.
`behaviour_marks` holds per (rollout, lead model) the horizon, the traffic and feedback ids
read (by id, as core.rollups: a replayed row of an old minute still gets a new id) and the
windows and hand-off labels the counts were made with.

A refresh, one transaction with the mark row locked (two controllers queue on it):
1. *Late rows*: traffic and feedback rows past the marked ids (up to core.rollups' safe
   bound) that change answers of rolled-up minutes mark those minutes dirty: a row of
   the rollout (it is an answer, and the next request of the answers up to the longer
   window before it), a hand-off row of any model (the next request of the answers up to
   the follow-up window before its lead-model row), feedback (its answer).
2. The dirty minutes and the minutes from the old to the new horizon are counted again
   from the rows (each answer followed over the rows up to the longer window after its
   minute) and replace what the rollups held for them.
3. The mark moves to the new ids and horizon.
A crash leaves rollups and mark as they were; windows or labels other than the marked ones
start the rollout's rollups again.

A stage [since, until) then reads: the rollups of its whole minutes from since's next
minute up to min(horizon, until minus the longer window) (whole hours from hour rows: O(hours
+ 120) rows), and exactly (core.behaviour)
the answers before and after those: the head's partial minute and the tail, a few
windows long whatever the stage's length.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import (
    Connection,
    Engine,
    and_,
    bindparam,
    delete,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    update,
)
from sqlalchemy.types import Integer, String

from core.behaviour import AnswerSpan, BehaviourCounts, BehaviourWindows, answer_counts
from core.db.models import BehaviourMark, BehaviourRollup, Traffic, UTCDateTime, utcnow
from core.rollup_figures import minute_of, minute_start, whole_hours
from core.rollups import insert_for, mark_transaction, minute_sql

# Minutes counted in one statement when the horizon moves far (a rollout's first refresh).
CHUNK_MINUTES = 720
_ROLES_SQL = "('champion', 'candidate')"
_COUNTS = ("followup_n", "reformulations", "handoffs", "abandonment_n", "abandonments")


@dataclass(frozen=True, slots=True)
class BehaviourMarkRow:
    """One rollout's behaviour mark as read (horizon None: nothing rolled up yet)."""

    traffic_id: int
    feedback_id: int
    horizon: int | None


def window_seconds(windows: BehaviourWindows) -> float:
    """The longer of the two windows: how far after an answer its outcome can change."""
    return max(windows.followup_seconds, windows.abandonment_seconds)


def _labels(windows: BehaviourWindows) -> str:
    return json.dumps(sorted(windows.handoff_labels))


def _lock_mark(
    conn: Connection, rollout_id: int, model_name: str, windows: BehaviourWindows,
    bounds: tuple[int, int],
) -> BehaviourMarkRow:  # fmt: skip
    """The rollout's mark, locked until the transaction ends. Created the first time; when
    it was made with other windows or labels, its rollups are dropped and it starts again
    (at `bounds`: every row up to them is counted by the minutes rolled up next)."""
    key = {"rollout_id": rollout_id, "model_name": model_name}
    made_with = {
        "followup_seconds": windows.followup_seconds,
        "abandonment_seconds": windows.abandonment_seconds,
        "handoff_labels": _labels(windows),
    }
    fresh = {"traffic_id": bounds[0], "feedback_id": bounds[1], "horizon": None}
    conn.execute(
        insert_for(conn)(BehaviourMark)
        .values(**key, **fresh, **made_with, updated_at=utcnow())
        .on_conflict_do_nothing(index_elements=["rollout_id", "model_name"])
    )
    where = (BehaviourMark.rollout_id == rollout_id, BehaviourMark.model_name == model_name)
    row = conn.execute(select(BehaviourMark).where(*where).with_for_update()).one()
    if (row.followup_seconds, row.abandonment_seconds, row.handoff_labels) != tuple(
        made_with.values()
    ):
        conn.execute(delete(BehaviourRollup).where(
            BehaviourRollup.rollout_id == rollout_id, BehaviourRollup.model_name == model_name
        ))  # fmt: skip
        conn.execute(update(BehaviourMark).where(*where).values(**fresh, **made_with))
        return BehaviourMarkRow(bounds[0], bounds[1], None)
    return BehaviourMarkRow(int(row.traffic_id), int(row.feedback_id), row.horizon)


def _late_sql(dialect: str) -> str:
    """Per late row, the first and last minute of the rolled-up answers it can change."""
    minute = minute_sql(dialect, "t.ts")
    return f"""
SELECT {minute} - :window_minutes AS lo, {minute} AS hi
FROM traffic t
WHERE t.id > :t_old AND t.id <= :t_new AND t.rollout_id = :rollout_id
  AND t.model_name = :model_name AND t.role IN {_ROLES_SQL} AND t.user_id IS NOT NULL
  AND t.ts < :reach
UNION
SELECT {minute} - :followup_minutes, {minute}
FROM traffic h JOIN traffic t ON t.request_id = h.request_id
WHERE h.id > :t_old AND h.id <= :t_new AND h.output IN :handoff
  AND t.rollout_id = :rollout_id AND t.model_name = :model_name
  AND t.role IN {_ROLES_SQL} AND t.user_id IS NOT NULL AND t.ts < :reach
UNION
SELECT {minute}, {minute}
FROM feedback f JOIN traffic t ON t.request_id = f.request_id
WHERE f.id > :f_old AND f.id <= :f_new AND t.rollout_id = :rollout_id
  AND t.model_name = :model_name AND t.role IN {_ROLES_SQL} AND t.user_id IS NOT NULL
  AND t.ts < :reach
"""  # noqa: S608 (our constants; values are bound)


def _dirty_minutes(
    conn: Connection,
    params: dict[str, Any],
    windows: BehaviourWindows,
    horizon: int,
) -> set[int]:
    """The rolled-up minutes (< horizon) whose answers late rows can have changed."""
    width = window_seconds(windows)
    statement = text(_late_sql(conn.dialect.name)).bindparams(
        bindparam("handoff", expanding=True, type_=String()),
        bindparam("reach", type_=UTCDateTime()),
        bindparam("rollout_id", type_=Integer()),
    )
    late = {
        **params,
        "handoff": list(windows.handoff_labels),
        "reach": minute_start(horizon) + timedelta(seconds=width),
        "window_minutes": int(width // 60) + 1,
        "followup_minutes": int(windows.followup_seconds // 60) + 1,
    }
    dirty: set[int] = set()
    for lo, hi in conn.execute(statement, late):
        dirty.update(range(int(lo), min(int(hi), horizon - 1) + 1))
    return dirty


def _ranges(minutes: set[int]) -> list[tuple[int, int]]:
    """[first, end) runs of consecutive minutes, in order."""
    runs: list[tuple[int, int]] = []
    for minute in sorted(minutes):
        if runs and runs[-1][1] == minute:
            runs[-1] = (runs[-1][0], minute + 1)
        else:
            runs.append((minute, minute + 1))
    return runs


def _recount(
    conn: Connection,
    rollout_id: int,
    model_name: str,
    windows: BehaviourWindows,
    first: int,
    end: int,
) -> None:
    """Count the answers of minutes [first, end) again from the rows; replace their rollups."""
    width = timedelta(seconds=window_seconds(windows))
    key = (BehaviourRollup.rollout_id == rollout_id, BehaviourRollup.model_name == model_name)
    for lo in range(first, end, CHUNK_MINUTES):
        hi = min(end, lo + CHUNK_MINUTES)
        start, stop = minute_start(lo), minute_start(hi)
        span = AnswerSpan(start, stop + width, start, stop, censor_at=stop + width)
        counts = answer_counts(
            conn, rollout_id=rollout_id, model_name=model_name, span=span,
            windows=windows, per_minute=True,
        )  # fmt: skip
        minutes = (BehaviourRollup.span_minutes == 1, BehaviourRollup.minute >= lo,
                   BehaviourRollup.minute < hi)  # fmt: skip
        conn.execute(delete(BehaviourRollup).where(*key, *minutes))
        if counts:
            conn.execute(insert_for(conn)(BehaviourRollup), [
                {"rollout_id": rollout_id, "model_name": model_name, "role": role,
                 "span_minutes": 1, "minute": minute,
                 **{name: getattr(c, name) for name in _COUNTS}}
                for (role, minute), c in counts.items()
            ])  # fmt: skip
        _sum_hours(conn, rollout_id, model_name, lo // 60 * 60, -(-hi // 60) * 60)


def _sum_hours(conn: Connection, rollout_id: int, model_name: str, first: int, end: int) -> None:
    """Replace the hour rows of minutes [first, end) (whole hours) by their minutes' sums."""
    r = BehaviourRollup
    key = (r.rollout_id == rollout_id, r.model_name == model_name, r.minute >= first,
           r.minute < end)  # fmt: skip
    conn.execute(delete(r).where(*key, r.span_minutes == 60))
    hour = (r.minute // 60 * 60).label("hour")  # SQLAlchemy's floor division: an integer
    counts = (func.sum(getattr(r, name)) for name in _COUNTS)
    sums = (
        select(r.rollout_id, r.model_name, r.role, literal(60), hour, *counts)
        .where(*key, r.span_minutes == 1)
        .group_by(r.rollout_id, r.model_name, r.role, hour)
    )
    columns = ["rollout_id", "model_name", "role", "span_minutes", "minute", *_COUNTS]
    conn.execute(insert(r).from_select(columns, sums))


def _first_minute(conn: Connection, rollout_id: int, model_name: str) -> int | None:
    """The minute of the rollout's first row of `model_name` (None: no row yet)."""
    first = conn.execute(
        select(func.min(Traffic.ts)).where(
            Traffic.rollout_id == rollout_id, Traffic.model_name == model_name
        )
    ).scalar_one()
    return None if first is None else minute_of(first)


def refresh_behaviour(
    engine: Engine,
    *,
    rollout_id: int,
    model_name: str,
    windows: BehaviourWindows,
    now: datetime,
    bounds: tuple[int, int],
) -> int | None:
    """Bring one rollout's behaviour rollups up to `now` (see the module's docstring);
    `bounds` are core.rollups.safe_bounds' ids. Returns the horizon: the minutes before
    it are rolled up (None: nothing is yet).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    target = minute_of(now - timedelta(seconds=window_seconds(windows)))
    with mark_transaction(engine) as conn:
        mark = _lock_mark(conn, rollout_id, model_name, windows, bounds)
        t_new, f_new = max(mark.traffic_id, bounds[0]), max(mark.feedback_id, bounds[1])
        minutes: set[int] = set()
        if mark.horizon is not None:
            params = {"rollout_id": rollout_id, "model_name": model_name,
                      "t_old": mark.traffic_id, "t_new": t_new,
                      "f_old": mark.feedback_id, "f_new": f_new}  # fmt: skip
            minutes = _dirty_minutes(conn, params, windows, mark.horizon)
        start = mark.horizon if mark.horizon is not None else _first_minute(
            conn, rollout_id, model_name
        )  # fmt: skip
        horizon = mark.horizon
        if start is not None and target > start:
            minutes.update(range(start, target))
            horizon = target
        for first, end in _ranges(minutes):
            _recount(conn, rollout_id, model_name, windows, first, end)
        conn.execute(
            update(BehaviourMark)
            .where(BehaviourMark.rollout_id == rollout_id, BehaviourMark.model_name == model_name)
            .values(traffic_id=t_new, feedback_id=f_new, horizon=horizon, updated_at=utcnow())
        )
    return horizon


def rolled_up_counts(
    conn: Connection, rollout_id: int, model_name: str, first: int, end: int
) -> dict[str, BehaviourCounts]:
    """Per role the behaviour rollups of minutes [first, end), summed: the whole hours from
    their hour rows, the minutes around them from minute rows (O(hours + 120) rows)."""
    r = BehaviourRollup
    h0, h1 = whole_hours(first, end)
    if h0 < h1:
        spans = or_(
            and_(r.span_minutes == 60, r.minute >= h0, r.minute < h1),
            and_(r.span_minutes == 1, r.minute >= first, r.minute < h0),
            and_(r.span_minutes == 1, r.minute >= h1, r.minute < end),
        )
    else:
        spans = and_(r.span_minutes == 1, r.minute >= first, r.minute < end)
    rows = conn.execute(
        select(r.role, *(func.sum(getattr(r, name)) for name in _COUNTS))
        .where(r.rollout_id == rollout_id, r.model_name == model_name, spans)
        .group_by(r.role)
    )
    return {row[0]: BehaviourCounts(*(int(v or 0) for v in row[1:])) for row in rows}


def stage_behaviour(
    conn: Connection,
    *,
    rollout_id: int,
    model_name: str,
    since: datetime,
    until: datetime,
    windows: BehaviourWindows,
    horizon: int | None,
) -> dict[str, BehaviourCounts]:
    """Per role the behaviour counts of the stage [since, until), as core.behaviour counts
    them from every row: the rolled-up whole minutes (before `horizon`, as the refresh
    returned it) plus the answers of the edges counted from their rows.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    width = timedelta(seconds=window_seconds(windows))
    first = minute_of(since - timedelta(microseconds=1)) + 1  # since's next whole minute
    end = min(horizon if horizon is not None else first, minute_of(until - width))
    parts: list[dict[str, BehaviourCounts]] = []
    if end > first:
        parts.append(rolled_up_counts(conn, rollout_id, model_name, first, end))
        edges = [(since, minute_start(first)), (minute_start(end), until)]
    else:
        edges = [(since, until)]
    for answers_since, answers_until in edges:
        if answers_since >= answers_until:
            continue
        span = AnswerSpan(
            answers_since,
            min(until, answers_until + width),
            answers_since,
            answers_until,
            censor_at=until,
        )
        edge = answer_counts(
            conn, rollout_id=rollout_id, model_name=model_name, span=span, windows=windows
        )
        parts.append({role: c for (role, _), c in edge.items()})
    total: dict[str, BehaviourCounts] = {}
    for part in parts:
        for role, counts in part.items():
            total[role] = total.get(role, BehaviourCounts()) + counts
    return total


def reset_behaviour(engine: Engine) -> None:
    """Drop every behaviour rollup and mark: each rollout's next tick counts again."""
    with mark_transaction(engine) as conn:
        conn.execute(delete(BehaviourRollup))
        conn.execute(delete(BehaviourMark))
