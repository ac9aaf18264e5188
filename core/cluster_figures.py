"""The candidate's cluster sums for the latency tests' cluster-robust variances, read from
O(clusters) rows whatever the stage's length (core.analysis).

Slow requests come in bursts (a GC pause or a busy core slows every request of that
moment), so the latency tests use `core.sequential.clustered_variance` over clusters of
requests, not the binomial variance of independent requests (docs/statistics.md, "Slow
requests come in bursts"). A cluster is the window's part of one calendar second, minute
or hour of `traffic.ts`; every cluster holds whole seconds (but the window's two edge
seconds), so a coarser cluster still holds the requests a burst correlates, and its
sandwich variance captures that correlation as the per-second one does. Which span, from
the window's length, so that there are ~30 clusters or more and the read stays bounded:

- under `MINUTE_CLUSTERS_FROM` (30 minutes): per second, from the window's raw rows
  (at most 30 minutes of rows);
- under `HOUR_CLUSTERS_FROM` (30 hours): per minute, from the candidate's minute rollup
  rows (at most 1,800), plus the raw rows of the two partial minutes at the edges, each
  its own cluster;
- from 30 hours: per hour, from the hour rollup rows, the minute rollup rows of the two
  partial hours at the edges (at most 59 each) and the raw rows of the two partial
  minutes, each partial hour one cluster.

Per cluster: n_c requests, over_limit_c slower than the latency limit (the rollups'
count when they were kept with that limit, else the histogram's lower bound, as
core.rollup_figures does), over_relative_c in histogram bins wholly above the tick's
relative threshold (what `count_at_least` counts for the totals, so the sums add up to
the stage's over_relative; raw rows are binned with the rollups' own `bin_sql`).

The exact path (core.exact_figures, and the controller's fallback when the rollups are
behind) keeps per-second clusters from every row of the window: `per_second_sums`.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import numpy.typing as npt
from sqlalchemy import Connection, bindparam, text
from sqlalchemy.types import Float, Integer, String

from core.db.models import UTCDateTime
from core.latency_histogram import BINS, bin_of, bin_sql, lower_edge
from core.rollup_figures import plan_window
from core.sequential import clustered_variance

MINUTE_CLUSTERS_FROM = timedelta(minutes=30)
HOUR_CLUSTERS_FROM = timedelta(hours=30)

# The candidate's slow requests per second of [since, until), summed in the database.
# {over_relative} is a condition on the row: `latency_ms > :threshold` on the exact path,
# the row's histogram bin at or above :first_bin on the rollups' path.
_PER_SECOND_SQL = """
SELECT count(*) AS clusters, sum(n) AS n, sum(n * n) AS n_sq,
       sum(o_rel) AS o_rel, sum(o_rel * o_rel) AS o_rel_sq, sum(o_rel * n) AS o_rel_n,
       sum(o_lim) AS o_lim, sum(o_lim * o_lim) AS o_lim_sq, sum(o_lim * n) AS o_lim_n
FROM (
  SELECT count(*) AS n,
         sum(CASE WHEN {over_relative} THEN 1 ELSE 0 END) AS o_rel,
         sum(CASE WHEN latency_ms > :limit_ms THEN 1 ELSE 0 END) AS o_lim
  FROM traffic
  WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
    AND role = 'candidate'
  GROUP BY {second}
) per_second
"""
_SECOND = {"sqlite": "substr(ts, 1, 19)", "postgresql": "date_trunc('second', ts)"}

# One range of the rollups' primary key: an index range scan.
_ROLLUP_ROWS_SQL = """
SELECT bucket, n, over_limit, latency_bins
FROM traffic_rollups
WHERE rollout_id = :rollout_id AND model_name = :model_name AND role = 'candidate'
  AND span_minutes = :span AND bucket >= :lo AND bucket < :hi
"""

# The candidate's raw rows of one partial minute, as one cluster.
_EDGE_SQL = f"""
SELECT count(*) AS n,
       sum(CASE WHEN {bin_sql("latency_ms")} >= :first_bin THEN 1 ELSE 0 END) AS o_rel,
       sum(CASE WHEN latency_ms > :limit_ms THEN 1 ELSE 0 END) AS o_lim
FROM traffic
WHERE rollout_id = :rollout_id AND model_name = :model_name AND ts >= :since AND ts < :until
  AND role = 'candidate'
"""  # noqa: S608 (our constants; values are bound)

_TYPES = (
    bindparam("rollout_id", type_=Integer()),
    bindparam("model_name", type_=String()),
)
_WINDOW_TYPES = (
    bindparam("since", type_=UTCDateTime()),
    bindparam("until", type_=UTCDateTime()),
    bindparam("limit_ms", type_=Float()),
)


@dataclass(frozen=True, slots=True)
class ClusterSums:
    """Per-cluster counts summed as `clustered_variance` takes them: G clusters, sum n_c,
    sum n_c^2, and per share (over_relative, over_limit) sum x_c, sum x_c^2, sum x_c n_c."""

    clusters: int
    n: int
    n_sq: int
    over_relative: tuple[int, int, int]
    over_limit: tuple[int, int, int]

    @classmethod
    def of(cls, n_c: Iterable[int], rel_c: Iterable[int], lim_c: Iterable[int]) -> ClusterSums:
        """The sums of per-cluster counts (clusters with no request left out)."""
        n, rel, lim = (np.fromiter(v, dtype=np.int64) for v in (n_c, rel_c, lim_c))
        kept = n > 0
        n, rel, lim = n[kept], rel[kept], lim[kept]
        return cls(
            clusters=int(n.size),
            n=int(n.sum()),
            n_sq=int((n * n).sum()),
            over_relative=(int(rel.sum()), int((rel * rel).sum()), int((rel * n).sum())),
            over_limit=(int(lim.sum()), int((lim * lim).sum()), int((lim * n).sum())),
        )

    def variances(self) -> tuple[float | None, float | None]:
        """(over_relative, over_limit) cluster-robust variances of the shares."""
        return (
            clustered_variance(self.clusters, self.n, self.n_sq, *self.over_relative),
            clustered_variance(self.clusters, self.n, self.n_sq, *self.over_limit),
        )


def cluster_seconds(since: datetime, until: datetime) -> int:
    """The clusters' span in seconds for the window [since, until): 1, 60 or 3600."""
    length = until - since
    if length < MINUTE_CLUSTERS_FROM:
        return 1
    return 60 if length < HOUR_CLUSTERS_FROM else 3600


def first_bin_above(threshold_ms: float) -> int:
    """The first histogram bin whose lower edge lies above `threshold_ms` (BINS when
    none): bins from it on are what `count_at_least` counts."""
    if math.isinf(threshold_ms):
        return BINS
    first = 0 if threshold_ms < 0 else bin_of(threshold_ms) + 1
    while first < BINS and lower_edge(first) <= threshold_ms:
        first += 1  # float rounding at an edge: the bin must lie wholly above
    return first


def per_second_sums(
    conn: Connection, params: dict[str, Any], *, threshold_ms: float, binned: bool = False
) -> ClusterSums:
    """Sums over the seconds of [since, until) from every candidate row of the window:
    over_relative is `latency_ms > threshold_ms`, or with `binned` (the rollups' path;
    needs `ensure_ln` on SQLite) the row's bin at or above `first_bin_above(threshold)`."""
    over_relative = "latency_ms > :threshold"
    if binned:
        over_relative = f"{bin_sql('latency_ms')} >= :first_bin"
    sql = _PER_SECOND_SQL.format(
        over_relative=over_relative, second=_SECOND.get(conn.dialect.name, _SECOND["sqlite"])
    )
    stmt = text(sql).bindparams(*_TYPES, *_WINDOW_TYPES)
    values = params | {"threshold": threshold_ms, "first_bin": first_bin_above(threshold_ms)}
    row = conn.execute(stmt, values).mappings().one()
    sums = {key: int(value or 0) for key, value in row.items()}
    return ClusterSums(
        clusters=sums["clusters"], n=sums["n"], n_sq=sums["n_sq"],
        over_relative=(sums["o_rel"], sums["o_rel_sq"], sums["o_rel_n"]),
        over_limit=(sums["o_lim"], sums["o_lim_sq"], sums["o_lim_n"]),
    )  # fmt: skip


def rollup_cluster_sums(
    conn: Connection, params: dict[str, Any], *, threshold_ms: float, rollup_limit_ms: float
) -> ClusterSums:
    """Sums over the clusters `cluster_seconds` picks for [since, until) (params: rollout_id,
    model_name, since, until, limit_ms), from the rollups (refreshed by the caller, whose
    over_limit counts use `rollup_limit_ms`) and the raw rows of the partial minutes at
    the edges; per second from raw rows when the window is short. Needs `ensure_ln` on
    SQLite."""
    span = cluster_seconds(params["since"], params["until"])
    if span == 1:
        return per_second_sums(conn, params, threshold_ms=threshold_ms, binned=True)
    first_bin = first_bin_above(threshold_ms)
    limit_bin = None if rollup_limit_ms == params["limit_ms"] else first_bin_above(
        params["limit_ms"]
    )  # fmt: skip
    plan = plan_window(params["since"], params["until"])
    if span == 60:  # every whole minute from minute rows; hours are not read
        ranges = [(1, plan.m0, plan.m3 if plan.h0 < plan.h1 else plan.m1)]
    else:
        ranges = [(60, plan.h0, plan.h1), (1, plan.m0, plan.m1), (1, plan.m2, plan.m3)]
    clusters: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for span_minutes, lo, hi in ranges:
        if lo < hi:
            _add_rollup_rows(conn, params, clusters, (span_minutes, lo, hi, span),
                             first_bin, limit_bin)  # fmt: skip
    edge_stmt = text(_EDGE_SQL).bindparams(*_TYPES, *_WINDOW_TYPES)
    for since, until in plan.edges:
        values = params | {"since": since, "until": until, "first_bin": first_bin}
        row = conn.execute(edge_stmt, values).one()
        cluster = clusters[math.floor(since.timestamp()) // span]
        for k, value in enumerate(row):
            cluster[k] += int(value or 0)
    counts = list(clusters.values())
    return ClusterSums.of((c[0] for c in counts), (c[1] for c in counts), (c[2] for c in counts))


def _add_rollup_rows(
    conn: Connection,
    params: dict[str, Any],
    clusters: dict[int, list[int]],
    rows_range: tuple[int, int, int, int],
    first_bin: int,
    limit_bin: int | None,
) -> None:
    """Add the candidate's rollup rows of span `span_minutes`, buckets [lo, hi), to the
    clusters of `span_seconds` (`rows_range`); over_limit from the histogram when
    `limit_bin` is given (the rollups were kept with another limit)."""
    span_minutes, lo, hi, span_seconds = rows_range
    stmt = text(_ROLLUP_ROWS_SQL).bindparams(
        *_TYPES, bindparam("span", type_=Integer()), bindparam("lo", type_=Integer()),
        bindparam("hi", type_=Integer()),
    )  # fmt: skip
    values = {"rollout_id": params["rollout_id"], "model_name": params["model_name"],
              "span": span_minutes, "lo": lo, "hi": hi}  # fmt: skip
    rows = conn.execute(stmt, values).all()
    if not rows:
        return
    blobs = [bytes(row.latency_bins) for row in rows]
    over_relative = tail_counts(blobs, first_bin)
    over_limit = (
        tail_counts(blobs, limit_bin) if limit_bin is not None
        else np.array([int(row.over_limit) for row in rows], dtype=np.int64)
    )  # fmt: skip
    for row, rel, lim in zip(rows, over_relative.tolist(), over_limit.tolist(), strict=True):
        cluster = clusters[int(row.bucket) * 60 // span_seconds]
        cluster[0] += int(row.n)
        cluster[1] += rel
        cluster[2] += lim


def tail_counts(blobs: list[bytes], first_bin: int) -> npt.NDArray[np.int64]:
    """Per stored histogram (core.latency_histogram's sparse pairs), the requests in bins
    `first_bin` and up: one pass over all of them, no dense array per row.

    Raises:
        ValueError: if a histogram is not a whole number of (bin, count) pairs.
    """
    if any(len(blob) % 8 for blob in blobs):
        raise ValueError("a stored latency histogram is not a whole number of 8-byte pairs")
    pairs = np.frombuffer(b"".join(blobs), dtype="<u4").reshape(-1, 2).astype(np.int64)
    owner = np.repeat(np.arange(len(blobs)), [len(blob) // 8 for blob in blobs])
    tail = pairs[:, 0] >= first_bin
    counts = np.zeros(len(blobs), dtype=np.int64)
    np.add.at(counts, owner[tail], pairs[tail, 1])
    return counts
