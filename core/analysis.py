"""Stage figures of a rollout: what the controller's tick judges, read from the rollups.

Per arm (champion, candidate) of one rollout over a window (normally: since the current
stage started), on the rows of the rollout's lead model: requests served, errors, p95
latency, requests slower than the hard p95 limit and than the champion's p95 x (1 +
margin), requests with negative thumbs feedback, and (given the behaviour windows) what
users did next (core.behaviour). Which rows count for which arm: core.exact_figures.

Two paths, the same figures:
- **rollups** (the default, the controller's): bring the per-minute/per-hour rollups up to
  date (core.rollups: O(rows since the last tick)), then read the stage from them
  (core.rollup_figures: O(hours + minutes at the edges), whatever the stage's length).
  Counts are exact; p95 comes from a fixed 1% log histogram, within 1% of the exact one;
  over_relative counts candidate requests in the histogram's bins wholly above an upper
  bound of the champion's p95 x (1 + margin), so it is never above the exact count and
  the always-valid tests roll back no more often than on exact figures
  (docs/statistics.md, "Figures from rollups"). If Postgres writers hold the traffic
  table past the lock timeout, this tick falls back to the exact path.
- **exact** (`exact=True`, for reports): every row of the window, in SQL
  (core.exact_figures), p95 as `percentile_cont`.

The users' behaviour counts (core.behaviour) still read the window's rows on both paths.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.behaviour import BehaviourWindows, behaviour_counts
from core.db.models import UTCDateTime
from core.exact_figures import exact_arms
from core.figures import ArmFigures, StageFigures
from core.latency_histogram import count_at_least, quantile, quantile_upper_bound
from core.rollup_figures import ArmTotals, rollup_totals
from core.rollups import NEGATIVE_THUMBS, RollupsBehindError, ensure_ln, refresh_rollups
from core.sequential import clustered_variance

__all__ = ["NEGATIVE_THUMBS", "ArmFigures", "StageFigures", "stage_figures"]

log = logging.getLogger(__name__)

# No JIT compile on these short statements (it costs more than it saves); Postgres only.
_POSTGRES_SETTINGS = ("SET LOCAL jit = off",)

# The candidate's slow requests per second of the window: the sums a cluster-robust
# variance needs (latency comes in bursts: a GC pause or a busy core slows every request
# of that moment, so requests of one second are not independent draws). It reads the
# candidate's rows of the window, as the behaviour counts read both arms' rows.
_CLUSTERS_SQL = """
SELECT count(*) AS clusters, sum(n) AS n, sum(n * n) AS n_sq,
       sum(o_rel) AS o_rel, sum(o_rel * o_rel) AS o_rel_sq, sum(o_rel * n) AS o_rel_n,
       sum(o_lim) AS o_lim, sum(o_lim * o_lim) AS o_lim_sq, sum(o_lim * n) AS o_lim_n
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


def stage_figures(  # noqa: PLR0913 (keyword-only: the window, the thresholds, the path)
    engine: Engine,
    rollout_id: int,
    *,
    model_name: str,
    since: datetime,
    until: datetime,
    latency_limit_ms: float,
    p95_margin: float,
    behaviour: BehaviourWindows | None = None,
    exact: bool = False,
) -> StageFigures:
    """Both arms' figures of `rollout_id` over [since, until), on the rows of
    `model_name` (the rollout's lead: one row per request): from the rollups, refreshed
    first, or with `exact=True` from every row of the window.

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
    rollup_limit = None
    if not exact:
        try:
            rollup_limit = refresh_rollups(engine, latency_limit_ms=latency_limit_ms).limit_ms
        except RollupsBehindError as exc:
            log.warning("%s: computing rollout %s exactly this time", exc, rollout_id)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for setting in _POSTGRES_SETTINGS:
                conn.execute(text(setting))
        if rollup_limit is None:
            champion, candidate, threshold = exact_arms(conn, params, p95_margin)
        else:
            champion, candidate, threshold = _rollup_arms(conn, params, p95_margin, rollup_limit)
        if threshold is not None and candidate.n:
            candidate = _with_clusters(conn, params, threshold, candidate)
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


def _rollup_arms(
    conn: Connection, params: dict[str, Any], p95_margin: float, rollup_limit_ms: float
) -> tuple[ArmFigures, ArmFigures, float | None]:
    """(champion, candidate, relative threshold) from the rollups: counts as summed,
    p95 from the histogram; over_relative counts the candidate's bins wholly above the
    champion's p95 upper bound x (1 + p95_margin), the threshold returned."""
    ensure_ln(conn)
    totals = rollup_totals(
        conn, rollout_id=params["rollout_id"], model_name=params["model_name"],
        since=params["since"], until=params["until"],
        latency_limit_ms=params["limit_ms"], rollup_limit_ms=rollup_limit_ms,
    )  # fmt: skip
    champion, candidate = _arm(totals["champion"]), _arm(totals["candidate"])
    bound = quantile_upper_bound(totals["champion"].histogram, 0.95)
    threshold = None if bound is None else bound * (1.0 + p95_margin)
    if threshold is not None and candidate.n:
        over = count_at_least(totals["candidate"].histogram, threshold)
        candidate = replace(candidate, over_relative=over)
    return champion, candidate, threshold


def _arm(totals: ArmTotals) -> ArmFigures:
    """One arm's figures from its rollup totals."""
    return ArmFigures(
        n=totals.n,
        errors=totals.errors,
        p95_ms=quantile(totals.histogram, 0.95),
        over_limit=totals.over_limit,
        negative_feedback=totals.negative_feedback,
    )


def _with_clusters(
    conn: Connection, params: dict[str, Any], threshold: float, candidate: ArmFigures
) -> ArmFigures:
    """`candidate` with the cluster-robust variances (clusters: seconds) of its shares of
    requests slower than `threshold` and than the latency limit."""
    sql = _CLUSTERS_SQL.format(second=_SECOND.get(conn.dialect.name, _SECOND["sqlite"]))
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
    sums = {key: int(value or 0) for key, value in row.items()}
    clusters, n, n_sq = sums["clusters"], sums["n"], sums["n_sq"]
    return replace(
        candidate,
        over_relative_var=clustered_variance(
            clusters, n, n_sq, sums["o_rel"], sums["o_rel_sq"], sums["o_rel_n"]
        ),
        over_limit_var=clustered_variance(
            clusters, n, n_sq, sums["o_lim"], sums["o_lim_sq"], sums["o_lim_n"]
        ),
    )


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
