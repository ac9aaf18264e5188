"""A stage's per-arm totals read from the rollups (core.rollups), not from every row.

The window [since, until) is cut into: whole hours (hour rollup rows), whole minutes
around them (minute rollup rows, at most 59 on each side) and the partial minutes at its
two ends, read from `traffic` itself through the (rollout_id, ts) index. So a tick reads
O(hours + 120) rollup rows plus at most two minutes of rows, whatever the stage's length:
counts are exact (up to the rollups' mark, plus the edge rows as they are now), the
latency figures come from the summed histogram (core.latency_histogram).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.db.models import UTCDateTime
from core.latency_histogram import Counts, add_encoded, bin_sql, count_at_least, empty
from core.rollups import STAGE_ROLES, negative_exists_sql

# Three ranges of the primary key (rollout, model, role, span, bucket), each an index range
# scan with every condition in the index: an OR of them would be a filter applied after
# fetching every rollup row of the rollout, which grows with the rollout's age.
_RANGE = """
SELECT role, n, errors, over_limit, negative_feedback, latency_bins
FROM traffic_rollups
WHERE rollout_id = :rollout_id AND model_name = :model_name
  AND role IN ('champion', 'candidate') AND span_minutes = {span}
  AND bucket >= :{lo} AND bucket < :{hi}
"""
_ROLLUP_SQL = " UNION ALL ".join(
    _RANGE.format(span=span, lo=lo, hi=hi)
    for span, lo, hi in ((60, "h0", "h1"), (1, "m0", "m1"), (1, "m2", "m3"))
)


def _edge_sql() -> str:
    """The raw rows of a partial minute, per arm and latency bin."""
    return f"""
WITH t AS (
    SELECT t.role, {bin_sql("t.latency_ms")} AS bin,
           CASE WHEN t.error IS NOT NULL THEN 1 ELSE 0 END AS failed,
           CASE WHEN t.latency_ms > :limit_ms THEN 1 ELSE 0 END AS slow,
           CASE WHEN {negative_exists_sql("t.request_id")} THEN 1 ELSE 0 END AS negative
    FROM traffic t
    WHERE t.rollout_id = :rollout_id AND t.model_name = :model_name
      AND t.ts >= :since AND t.ts < :until AND t.role IN ('champion', 'candidate')
)
SELECT role, bin, count(*) AS n, sum(failed) AS errors, sum(slow) AS over_limit,
       sum(negative) AS negative_feedback
FROM t GROUP BY role, bin
"""  # noqa: S608 (our constants; values are bound)


@dataclass(slots=True)
class ArmTotals:
    """One arm's counts over a window and its latency histogram."""

    n: int = 0
    errors: int = 0
    over_limit: int = 0
    negative_feedback: int = 0
    histogram: Counts = field(default_factory=empty)


@dataclass(frozen=True, slots=True)
class WindowPlan:
    """[since, until) as hour buckets [h0, h1), minute buckets [m0, m1) and [m2, m3)
    (minutes since the epoch) and the partial-minute spans read from raw rows."""

    h0: int
    h1: int
    m0: int
    m1: int
    m2: int
    m3: int
    edges: tuple[tuple[datetime, datetime], ...]


def _minute(t: datetime) -> float:
    return t.timestamp() / 60.0


def minute_start(minute: int) -> datetime:
    """The first instant of `minute` (since the epoch)."""
    return datetime.fromtimestamp(minute * 60, tz=UTC)


def minute_of(moment: datetime) -> int:
    """The minute (since the epoch) `moment` falls in."""
    return int(moment.timestamp() // 60)


def whole_hours(first: int, end: int) -> tuple[int, int]:
    """The whole hours inside minutes [first, end), as minutes [h0, h1) (h0 >= h1: none)."""
    return -(-first // 60) * 60, end // 60 * 60


def plan_window(since: datetime, until: datetime) -> WindowPlan:
    """Cut [since, until) into whole hours, whole minutes and partial-minute edges."""
    first = math.ceil(_minute(since))
    last = math.floor(_minute(until))
    if first >= last:  # no whole minute inside: read the window's rows
        return WindowPlan(0, 0, 0, 0, 0, 0, ((since, until),) if since < until else ())
    edges = tuple(
        (a, b) for a, b in ((since, minute_start(first)), (minute_start(last), until)) if a < b
    )
    h0, h1 = whole_hours(first, last)
    if h0 >= h1:
        return WindowPlan(0, 0, first, last, 0, 0, edges)
    return WindowPlan(h0, h1, first, h0, h1, last, edges)


def _bind(sql: str) -> Any:
    return text(sql).bindparams(
        bindparam("rollout_id", type_=Integer()),
        bindparam("model_name", type_=String()),
    )


def rollup_totals(
    conn: Connection,
    *,
    rollout_id: int,
    model_name: str,
    since: datetime,
    until: datetime,
    latency_limit_ms: float,
    rollup_limit_ms: float,
) -> dict[str, ArmTotals]:
    """Both arms' totals over [since, until) from the rollups (refreshed by the caller)
    and the raw rows of the partial minutes at the edges.

    over_limit: exact where the rollups were counted with `latency_limit_ms` (their
    `rollup_limit_ms`); otherwise the histogram's lower bound (core.latency_histogram).
    """
    plan = plan_window(since, until)
    totals = {role: ArmTotals() for role in STAGE_ROLES}
    rolled = {role: empty() for role in STAGE_ROLES}
    same_limit = rollup_limit_ms == latency_limit_ms
    params = {
        "rollout_id": rollout_id, "model_name": model_name, "h0": plan.h0, "h1": plan.h1,
        "m0": plan.m0, "m1": plan.m1, "m2": plan.m2, "m3": plan.m3,
    }  # fmt: skip
    for row in conn.execute(_bind(_ROLLUP_SQL), params).mappings():
        arm = totals[row["role"]]
        arm.n += int(row["n"])
        arm.errors += int(row["errors"])
        arm.negative_feedback += int(row["negative_feedback"])
        arm.over_limit += int(row["over_limit"]) if same_limit else 0
        add_encoded(rolled[row["role"]], row["latency_bins"])
    for role, arm in totals.items():
        if not same_limit:
            arm.over_limit += count_at_least(rolled[role], latency_limit_ms)
        arm.histogram += rolled[role]
    for edge_since, edge_until in plan.edges:
        _add_edge(conn, totals, params, edge_since, edge_until, latency_limit_ms)
    return totals


def _add_edge(
    conn: Connection,
    totals: dict[str, ArmTotals],
    params: dict[str, Any],
    since: datetime,
    until: datetime,
    limit_ms: float,
) -> None:
    """Add the raw rows of [since, until) (a partial minute) to `totals`."""
    stmt = _bind(_edge_sql()).bindparams(
        bindparam("since", type_=UTCDateTime()),
        bindparam("until", type_=UTCDateTime()),
        bindparam("limit_ms", type_=Float()),
    )
    edge = params | {"since": since, "until": until, "limit_ms": limit_ms}
    for row in conn.execute(stmt, edge).mappings():
        arm = totals[row["role"]]
        arm.n += int(row["n"])
        arm.errors += int(row["errors"])
        arm.over_limit += int(row["over_limit"])
        arm.negative_feedback += int(row["negative_feedback"])
        arm.histogram[int(row["bin"])] += int(row["n"])
