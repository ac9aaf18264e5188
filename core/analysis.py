"""Stage figures of a rollout, computed as SQL in the state database (never rows in Python).

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

What users did next (reformulation, hand-off, abandonment: core.behaviour) is one more
statement over the same window when `stage_figures` is given the behaviour windows.

p95 uses linear interpolation between order statistics (`percentile_cont`) on both
backends: Postgres has percentile_cont; on SQLite the same formula is written with window
functions. bench/analysis.py times this over 10,000,000 rows on Postgres.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.behaviour import BehaviourWindows, behaviour_counts
from core.db.models import UTCDateTime
from core.sequential import clustered_variance

# Values of a `thumbs` feedback row that count as negative (the router accepts these).
NEGATIVE_THUMBS: tuple[str, ...] = ("down", "-1", "0", "negative", "bad")


# Postgres: three small statements, each an index-only scan of the stage window
# (migration 0006 covers (rollout_id, ts) with role, latency_ms, request_id, model_name,
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
# The candidate's slow requests per second of the window: their total, and the sums a
# cluster-robust variance needs (latency comes in bursts: a GC pause or a busy core slows
# every request of that moment, so requests of one second are not independent draws).
_OVER_CLUSTERS_SQL = """
SELECT count(*) AS clusters, sum(n) AS n, sum(o_rel) AS o_rel, sum(o_rel * o_rel) AS o_rel_sq,
       sum(o_rel * n) AS o_rel_n, sum(o_lim * o_lim) AS o_lim_sq, sum(o_lim * n) AS o_lim_n,
       sum(n * n) AS n_sq, sum(o_lim) AS o_lim
FROM (
  SELECT count(*) AS n,
         sum(CASE WHEN latency_ms > :threshold THEN 1 ELSE 0 END) AS o_rel,
         sum(CASE WHEN latency_ms > :limit_ms THEN 1 ELSE 0 END) AS o_lim
  FROM traffic
  WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
    AND role = 'candidate'
  GROUP BY {second}
) per_second
"""
_SECOND = {"sqlite": "substr(ts, 1, 19)", "postgresql": "date_trunc('second', ts)"}

# Sorting a stage's latencies in memory rather than in temp files, and no JIT compile
# (it costs more than it saves on these short scans). Postgres only, this transaction only.
_POSTGRES_SETTINGS = ("SET LOCAL work_mem = '64MB'", "SET LOCAL jit = off")


@dataclass(frozen=True, slots=True)
class ArmFigures:
    """What one arm of a rollout did over a window.

    over_limit: requests slower than the hard p95 limit; over_relative: requests slower
    than the champion's p95 x (1 + p95 margin) over the same window; *_var: the
    cluster-robust variance of those proportions, the requests of one second being a
    cluster (None: fewer than two seconds served, or not computed).
    """

    n: int = 0
    errors: int = 0
    p95_ms: float | None = None
    over_limit: int = 0
    over_relative: int = 0
    over_limit_var: float | None = None
    over_relative_var: float | None = None
    negative_feedback: int = 0
    followup_n: int = 0
    reformulations: int = 0
    handoffs: int = 0
    abandonment_n: int = 0
    abandonments: int = 0

    @property
    def error_rate(self) -> float:
        """errors / n (0 when nothing was served)."""
        return self.errors / self.n if self.n else 0.0

    @property
    def negative_feedback_rate(self) -> float:
        """Requests with negative thumbs feedback / requests served (0 when none)."""
        return self.negative_feedback / self.n if self.n else 0.0

    @property
    def reformulation_rate(self) -> float | None:
        """Answers followed by the user's next query within the follow-up window / answers
        whose window has passed (None when none has)."""
        return self.reformulations / self.followup_n if self.followup_n else None

    @property
    def handoff_rate(self) -> float | None:
        """Answers whose quick next query asked for a person / answers whose follow-up
        window has passed (None when none has)."""
        return self.handoffs / self.followup_n if self.followup_n else None

    @property
    def abandonment_rate(self) -> float | None:
        """Answers followed by nothing (no request, no feedback) within the abandonment
        window / answers whose window has passed (None when none has)."""
        return self.abandonments / self.abandonment_n if self.abandonment_n else None


@dataclass(frozen=True, slots=True)
class StageFigures:
    """Both arms of one rollout over [since, until), plus the latency thresholds used."""

    rollout_id: int
    since: datetime
    until: datetime
    champion: ArmFigures
    candidate: ArmFigures
    latency_limit_ms: float
    relative_threshold_ms: float | None

    @property
    def elapsed_seconds(self) -> float:
        """Length of the window in seconds."""
        return (self.until - self.since).total_seconds()

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view (rates included) for rollout events and reports."""
        arms = {}
        for name, arm in (("champion", self.champion), ("candidate", self.candidate)):
            arms[name] = asdict(arm) | {
                "error_rate": round(arm.error_rate, 6),
                "negative_feedback_rate": round(arm.negative_feedback_rate, 6),
                **{
                    name: None if rate is None else round(rate, 6)
                    for name, rate in (
                        ("reformulation_rate", arm.reformulation_rate),
                        ("handoff_rate", arm.handoff_rate),
                        ("abandonment_rate", arm.abandonment_rate),
                    )
                },
            }
        return {
            "rollout_id": self.rollout_id,
            "since": self.since.isoformat(),
            "until": self.until.isoformat(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "latency_limit_ms": self.latency_limit_ms,
            "relative_threshold_ms": self.relative_threshold_ms,
            **arms,
        }


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


def stage_figures(
    engine: Engine,
    rollout_id: int,
    *,
    model_name: str,
    since: datetime,
    until: datetime,
    latency_limit_ms: float,
    p95_margin: float,
    behaviour: BehaviourWindows | None = None,
) -> StageFigures:
    """Compute both arms' figures of `rollout_id` over [since, until) in SQL, on the rows
    of `model_name` (the rollout's lead: one row per request).

    A few statements in one transaction: the per-arm aggregates (on Postgres split in
    latency, errors, and negative feedback, each an index-only scan), then the count of
    candidate requests slower than the champion's p95 x (1 + p95_margin); with `behaviour`,
    the users' behaviour counts (core.behaviour) too.

    Raises:
        ValueError: if since/until are naive or since > until.
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be timezone-aware")
    if since > until:
        raise ValueError("since must not be after until")
    params = {
        "rollout_id": rollout_id,
        "model_name": model_name,
        "since": since,
        "until": until,
        "limit_ms": latency_limit_ms,
    }
    with engine.begin() as conn:
        if engine.dialect.name == "postgresql":
            champion, candidate = _postgres_arms(conn, params)
        else:
            champion, candidate = _sqlite_arms(conn, params)
        threshold = None
        if champion.p95_ms is not None:
            threshold = champion.p95_ms * (1.0 + p95_margin)
            if candidate.n:
                candidate = _over_relative(conn, params, threshold, candidate)
        if behaviour is not None:
            champion, candidate = _with_behaviour(conn, params, behaviour, champion, candidate)
    return StageFigures(
        rollout_id=rollout_id,
        since=since,
        until=until,
        champion=champion,
        candidate=candidate,
        latency_limit_ms=latency_limit_ms,
        relative_threshold_ms=threshold,
    )


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


def _over_relative(
    conn: Connection, params: dict[str, Any], threshold: float, candidate: ArmFigures
) -> ArmFigures:
    """`candidate` with its requests slower than `threshold` ms counted, and the
    cluster-robust variances (clusters: seconds) of both slow proportions."""
    sql = _OVER_CLUSTERS_SQL.format(second=_SECOND.get(conn.dialect.name, _SECOND["sqlite"]))
    row = (
        conn.execute(
            text(sql).bindparams(
                bindparam("rollout_id", type_=Integer()),
                bindparam("model_name", type_=String()),
                bindparam("since", type_=UTCDateTime()),
                bindparam("until", type_=UTCDateTime()),
                bindparam("threshold", type_=Float()),
                bindparam("limit_ms", type_=Float()),
            ),
            params | {"threshold": threshold},
        )
        .mappings()
        .one()
    )
    clusters, n, n_sq = int(row["clusters"] or 0), int(row["n"] or 0), int(row["n_sq"] or 0)
    return replace(
        candidate,
        over_relative=int(row["o_rel"] or 0),
        over_relative_var=clustered_variance(
            clusters, n, n_sq, int(row["o_rel"] or 0), int(row["o_rel_sq"] or 0),
            int(row["o_rel_n"] or 0),
        ),
        over_limit_var=clustered_variance(
            clusters, n, n_sq, int(row["o_lim"] or 0), int(row["o_lim_sq"] or 0),
            int(row["o_lim_n"] or 0),
        ),
    )  # fmt: skip


def _with_behaviour(
    conn: Connection,
    params: dict[str, Any],
    windows: BehaviourWindows,
    champion: ArmFigures,
    candidate: ArmFigures,
) -> tuple[ArmFigures, ArmFigures]:
    """Both arms with their users' behaviour counts (core.behaviour) over the window; an
    arm with no followed answers is unchanged."""
    counts = behaviour_counts(
        conn, rollout_id=params["rollout_id"], model_name=params["model_name"],
        since=params["since"], until=params["until"], windows=windows,
    )  # fmt: skip
    found = [counts.get(role) for role in ("champion", "candidate")]
    champion, candidate = (
        arm if c is None else replace(arm, **asdict(c))
        for arm, c in zip((champion, candidate), found, strict=True)
    )
    return champion, candidate
