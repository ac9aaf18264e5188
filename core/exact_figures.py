"""Exact stage figures: every row of the window, in SQL (the reports' path, and the
controller's when the rollups cannot be brought up to date; core.analysis chooses).

Per arm (champion, candidate) of one rollout over a time window (normally: since the
current stage started) the database returns: the number of served requests, errors, the
p95 latency, how many requests were slower than the hard p95 limit and than the champion's
p95 x (1 + margin), and how many got negative thumbs feedback.

Whose rows count. A rollout is judged on the traffic rows of its lead model
(`model_name = rollout.model_name`, with its rollout id): every stage statement filters on
both. A /answer request writes one row per model it used (classifier, retriever), each
with its own rollout id, version, role and state key; for a bundle all of them carry the
bundle's rollout id, so counting every row would count a request once per model. The
lead's row speaks for the request: its latency is the endpoint's (request parsed ->
response ready, the same clock for every arm), and when any candidate member fails the
lead's row is the `candidate` row with the error (naming the failing model), so a bundle
is judged on its endpoint. Migration 0006's covering index includes model_name, so the
filter keeps the scans index-only.

Which rows count for which arm. The router writes, per request and model, the row of the
version that was asked first; a candidate that fails writes a `candidate` row with `error`
set, then a `fallback` row answered by the champion. So:
- candidate arm = rows with role `candidate` (its failures are counted there, with the
  latency up to the failure);
- champion arm = rows with role `champion`;
- `fallback` rows are NOT counted for the champion (those users are in the candidate's
  bucket; counting them would double-count the request and flatter the candidate),
  and `shadow` rows (off the hot path) are not part of a canary at all.
Feedback joins through request_id, so feedback on a fallback answer lands on the candidate
row of the same request: the user's arm.

p95 uses linear interpolation between order statistics (`percentile_cont`) on both
backends: Postgres has percentile_cont; on SQLite the same formula is written with window
functions. bench/analysis.py times this path as the baseline of the rollups'.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.db.models import UTCDateTime
from core.figures import ArmFigures
from core.rollups import NEGATIVE_THUMBS

# and indexes failed rows apart). One row, one column per arm: ordered-set aggregates with FILTER
# sort each arm's latencies once, with no sort of the whole window by role.
_POSTGRES_SQL = """
SELECT
    count(*) FILTER (WHERE role = 'champion') AS champion_n,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
        FILTER (WHERE role = 'champion') AS champion_p95_ms,
    count(*) FILTER (WHERE role = 'champion' AND latency_ms > :limit_ms) AS champion_over_limit,
    count(*) FILTER (WHERE role = 'candidate') AS candidate_n,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY latency_ms)
        FILTER (WHERE role = 'candidate') AS candidate_p95_ms,
    count(*) FILTER (WHERE role = 'candidate' AND latency_ms > :limit_ms) AS candidate_over_limit
FROM traffic
WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
  AND role IN ('champion', 'candidate')
"""

_POSTGRES_ERRORS_SQL = """
SELECT role, count(*) AS errors
FROM traffic
WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
  AND error IS NOT NULL AND role IN ('champion', 'candidate')
GROUP BY role
"""

_POSTGRES_NEGATIVE_SQL = """
SELECT t.role AS role, count(DISTINCT t.request_id) AS negative_feedback
FROM traffic t
JOIN feedback f ON f.request_id = t.request_id
WHERE t.rollout_id = :rollout_id AND t.model_name = :model_name
  AND t.ts >= :since AND t.ts < :until
  AND t.role IN ('champion', 'candidate')
  AND f.kind = 'thumbs' AND f.value IN :negative AND f.ts >= :since
GROUP BY t.role
"""

# SQLite has no percentile_cont: the same linear interpolation between order statistics,
# written with window functions (row k+1 and k+2 of the sorted arm, k = floor(0.95 (n-1))).
_SQLITE_SQL = """
WITH
t AS (
    SELECT role, latency_ms, error, request_id
    FROM traffic
    WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
      AND role IN ('champion', 'candidate')
),
neg AS (
    SELECT DISTINCT request_id
    FROM feedback
    WHERE kind = 'thumbs' AND value IN :negative AND ts >= :since
),
ranked AS (
    SELECT role, latency_ms,
           ROW_NUMBER() OVER (PARTITION BY role ORDER BY latency_ms) AS rn,
           COUNT(*) OVER (PARTITION BY role) AS cnt
    FROM t
),
pos AS (
    SELECT role, cnt, 0.95 * (cnt - 1) AS h, CAST(0.95 * (cnt - 1) AS INTEGER) AS k
    FROM ranked GROUP BY role
),
pct AS (
    SELECT r.role AS role,
           MAX(CASE WHEN r.rn = p.k + 1 THEN r.latency_ms END) AS lo,
           MAX(CASE WHEN r.rn = MIN(p.k + 2, p.cnt) THEN r.latency_ms END) AS hi,
           MAX(p.h - p.k) AS frac
    FROM ranked r JOIN pos p ON p.role = r.role
    WHERE r.rn IN (p.k + 1, MIN(p.k + 2, p.cnt))
    GROUP BY r.role
),
p95 AS (SELECT role, lo + frac * (hi - lo) AS p95 FROM pct)
SELECT t.role AS role,
       COUNT(*) AS n,
       SUM(CASE WHEN t.error IS NOT NULL THEN 1 ELSE 0 END) AS errors,
       (SELECT p95 FROM p95 WHERE p95.role = t.role) AS p95_ms,
       SUM(CASE WHEN t.latency_ms > :limit_ms THEN 1 ELSE 0 END) AS over_limit,
       SUM(CASE WHEN neg.request_id IS NOT NULL THEN 1 ELSE 0 END) AS negative_feedback
FROM t LEFT JOIN neg ON neg.request_id = t.request_id
GROUP BY t.role
"""

# The second statement, once the champion's p95 is known: candidate requests slower than
# champion p95 x (1 + margin).
_OVER_RELATIVE_SQL = """
SELECT count(*) FROM traffic
WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
  AND role = 'candidate' AND latency_ms > :threshold
"""

# Sorting a stage's latencies in memory rather than in temp files, and no JIT compile
# (it costs more than it saves on these short scans). Postgres only, this transaction only.
_POSTGRES_SETTINGS = ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")


def _bind(sql: str) -> Any:
    """`sql` with typed bind parameters (the negative thumbs values as an expanding list)."""
    negative: list[Any] = (
        [bindparam("negative", value=list(NEGATIVE_THUMBS), expanding=True)]
        if ":negative" in sql
        else []
    )
    limit = [bindparam("limit_ms", type_=Float())] if ":limit_ms" in sql else []
    return text(sql).bindparams(
        *negative,
        *limit,
        bindparam("rollout_id", type_=Integer()),
        bindparam("model_name", type_=String()),
        bindparam("since", type_=UTCDateTime()),
        bindparam("until", type_=UTCDateTime()),
    )


def _arm(row: Any, prefix: str = "", **counts: int) -> ArmFigures:
    """One arm's figures from a result row (its columns named `prefix` + field); errors and
    negative_feedback given in `counts` (separate statements on Postgres) win."""
    p95 = row[f"{prefix}p95_ms"]
    return ArmFigures(
        n=int(row[f"{prefix}n"] or 0),
        errors=int(counts.get("errors", row.get(f"{prefix}errors") or 0)),
        p95_ms=None if p95 is None else float(p95),
        over_limit=int(row[f"{prefix}over_limit"] or 0),
        negative_feedback=int(
            counts.get("negative_feedback", row.get(f"{prefix}negative_feedback") or 0)
        ),
    )


def exact_arms(
    conn: Connection, params: dict[str, Any], p95_margin: float
) -> tuple[ArmFigures, ArmFigures, float | None]:
    """(champion, candidate, relative threshold) over the window of `params` from every
    row: the arms, then the candidate requests slower than the champion's p95 x (1 +
    p95_margin)."""
    if conn.dialect.name == "postgresql":
        champion, candidate = _postgres_arms(conn, params)
    else:
        champion, candidate = _sqlite_arms(conn, params)
    threshold = None
    if champion.p95_ms is not None:
        threshold = champion.p95_ms * (1.0 + p95_margin)
        if candidate.n:
            over = _count_over_relative(conn, params, threshold)
            candidate = replace(candidate, over_relative=over)
    return champion, candidate, threshold


def _postgres_arms(conn: Connection, params: dict[str, Any]) -> tuple[ArmFigures, ArmFigures]:
    """(champion, candidate) on Postgres: latency, errors and negative feedback as three
    statements, each an index-only scan of the window."""
    for setting in _POSTGRES_SETTINGS:
        conn.execute(text(setting))
    row = conn.execute(_bind(_POSTGRES_SQL), params).mappings().one()
    errors = dict(conn.execute(_bind(_POSTGRES_ERRORS_SQL), params).tuples().all())
    negative = dict(conn.execute(_bind(_POSTGRES_NEGATIVE_SQL), params).tuples().all())
    champion, candidate = (
        _arm(row, f"{role}_", errors=errors.get(role, 0), negative_feedback=negative.get(role, 0))
        for role in ("champion", "candidate")
    )
    return champion, candidate


def _sqlite_arms(conn: Connection, params: dict[str, Any]) -> tuple[ArmFigures, ArmFigures]:
    """(champion, candidate) on SQLite: one statement, one row per arm that served."""
    arms = {r["role"]: _arm(r) for r in conn.execute(_bind(_SQLITE_SQL), params).mappings()}
    return arms.get("champion", ArmFigures()), arms.get("candidate", ArmFigures())


def _count_over_relative(conn: Connection, params: dict[str, Any], threshold: float) -> int:
    """Candidate requests of the window slower than `threshold` ms."""
    over = conn.execute(
        text(_OVER_RELATIVE_SQL).bindparams(
            bindparam("rollout_id", type_=Integer()),
            bindparam("model_name", type_=String()),
            bindparam("since", type_=UTCDateTime()),
            bindparam("until", type_=UTCDateTime()),
            bindparam("threshold", type_=Float()),
        ),
        {
            "rollout_id": params["rollout_id"],
            "model_name": params["model_name"],
            "since": params["since"],
            "until": params["until"],
            "threshold": threshold,
        },
    ).scalar_one()
    return int(over)
