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

The candidate's latency shares also get cluster-robust variances (slow requests come in
bursts): on the rollups path from clusters of seconds, minutes or hours by the window's
length, read from O(clusters) rows (core.cluster_figures); on the exact path from every
row, per second. The users' behaviour counts (core.behaviour) come on the rollups path from
per-minute and per-hour behaviour rollups and the window's edges (core.behaviour_rollups:
O(hours + 120) rows and a few windows of rows), on the exact path from every row of it.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, text

from core.behaviour import BehaviourCounts, BehaviourWindows, behaviour_counts
from core.behaviour_rollups import refresh_behaviour, stage_behaviour
from core.cluster_figures import per_second_sums, rollup_cluster_sums
from core.exact_figures import exact_arms
from core.figures import ArmFigures, StageFigures
from core.latency_histogram import count_at_least, quantile, quantile_upper_bound
from core.rollup_figures import ArmTotals, rollup_totals
from core.rollups import (
    NEGATIVE_THUMBS,
    RollupsBehindError,
    ensure_ln,
    refresh_rollups,
    safe_bounds,
)

__all__ = ["NEGATIVE_THUMBS", "ArmFigures", "StageFigures", "stage_figures"]

log = logging.getLogger(__name__)

# No JIT compile on these short statements (it costs more than it saves); Postgres only.
_POSTGRES_SETTINGS = ("SET LOCAL jit = off",)


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
    rollup_limit, horizon = (None, None) if exact else _refresh(engine, params, behaviour)
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            for setting in _POSTGRES_SETTINGS:
                conn.execute(text(setting))
        if rollup_limit is None:
            champion, candidate, threshold = exact_arms(conn, params, p95_margin)
        else:
            champion, candidate, threshold = _rollup_arms(conn, params, p95_margin, rollup_limit)
        if threshold is not None and candidate.n:
            candidate = _with_clusters(conn, params, threshold, candidate, rollup_limit)
        if behaviour is not None:
            counts = _behaviour(conn, params, behaviour, rolled_up=rollup_limit is not None,
                                horizon=horizon)  # fmt: skip
            champion, candidate = (
                arm if c is None else replace(arm, **asdict(c))
                for arm, c in ((champion, counts.get("champion")),
                               (candidate, counts.get("candidate")))
            )  # fmt: skip
    return StageFigures(
        rollout_id=rollout_id,
        since=since,
        until=until,
        champion=champion,
        candidate=candidate,
        latency_limit_ms=latency_limit_ms,
        relative_threshold_ms=threshold,
    )


def _refresh(
    engine: Engine, params: dict[str, Any], behaviour: BehaviourWindows | None
) -> tuple[float | None, int | None]:
    """Bring the rollups (and the rollout's behaviour rollups, given windows) up to date:
    (the rollups' latency limit, the behaviour horizon); (None, None) when Postgres
    writers held the tables past the lock timeout: this tick computes exactly."""
    try:
        bounds = safe_bounds(engine)
        limit = refresh_rollups(engine, latency_limit_ms=params["limit_ms"], bounds=bounds)
        horizon = None
        if behaviour is not None:
            horizon = refresh_behaviour(
                engine, rollout_id=params["rollout_id"], model_name=params["model_name"],
                windows=behaviour, now=params["until"], bounds=bounds,
            )  # fmt: skip
    except RollupsBehindError as exc:
        log.warning("%s: computing rollout %s exactly this time", exc, params["rollout_id"])
        return None, None
    return limit.limit_ms, horizon


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
    conn: Connection,
    params: dict[str, Any],
    threshold: float,
    candidate: ArmFigures,
    rollup_limit_ms: float | None,
) -> ArmFigures:
    """`candidate` with the cluster-robust variances of its shares of requests slower than
    `threshold` and than the latency limit (core.cluster_figures): clusters of seconds,
    minutes or hours by the window's length, from the rollups (`rollup_limit_ms`: the
    limit they were kept with); per second from every row on the exact path (None)."""
    if rollup_limit_ms is None:
        sums = per_second_sums(conn, params, threshold_ms=threshold)
    else:
        sums = rollup_cluster_sums(
            conn, params, threshold_ms=threshold, rollup_limit_ms=rollup_limit_ms
        )
    over_relative_var, over_limit_var = sums.variances()
    return replace(candidate, over_relative_var=over_relative_var, over_limit_var=over_limit_var)


def _behaviour(
    conn: Connection,
    params: dict[str, Any],
    windows: BehaviourWindows,
    *,
    rolled_up: bool,
    horizon: int | None,
) -> dict[str, BehaviourCounts]:
    """Per role the users' behaviour counts over the window: from the behaviour rollups
    and the window's edges (core.behaviour_rollups), or from every row (core.behaviour)."""
    window = {
        "rollout_id": params["rollout_id"], "model_name": params["model_name"],
        "since": params["since"], "until": params["until"], "windows": windows,
    }  # fmt: skip
    if rolled_up:
        return stage_behaviour(conn, **window, horizon=horizon)
    return behaviour_counts(conn, **window)
