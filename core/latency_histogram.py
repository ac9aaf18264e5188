"""A fixed, log-spaced latency histogram: the stage rollups' quantiles (core.rollups).

Every bin is 1% wide (edges 0.01 ms x 1.01^k), the same bins for every rollout, arm and
minute, so histograms add by adding counts. Bin 0 holds latencies below 0.01 ms (zero
included); bin k >= 1 holds [0.01 x 1.01^(k-1), 0.01 x 1.01^k); the last bin holds
everything from ~3.3 hours up.

How exact the figures from it are (docs/statistics.md, "Figures from rollups"):
- a quantile: the order statistics it interpolates lie in known bins; each is placed at
  its rank's share of the bin on a log scale, so the estimate is within one bin (1%) of
  the exact `percentile_cont` value, whatever the distribution;
- `count_at_least(t)`: requests in bins whose lower edge is above t, so never more than the
  exact count of requests slower than t (it misses at most the bin that holds t);
- `quantile_upper_bound`: the upper edge of the bin of the upper order statistic, never
  below the exact quantile and at most ~2 bins above it. The candidate's over-relative
  count uses both bounds, so it never exceeds the exact count (see core.rollup_figures).

Histograms are stored sparse (bin, count pairs of little-endian uint32), ~8 bytes per
non-empty bin: a minute of traffic fills a few hundred bins at most.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

MIN_MS = 0.01
RATIO = 1.01
BINS = 2100
LN_MIN = math.log(MIN_MS)
LN_RATIO = math.log(RATIO)

Counts = npt.NDArray[np.int64]


def bin_of(latency_ms: float) -> int:
    """The bin a latency falls in (the same formula as the rollups' SQL: `bin_sql`)."""
    if latency_ms < MIN_MS:
        return 0
    return min(BINS - 1, 1 + math.floor((math.log(latency_ms) - LN_MIN) / LN_RATIO))


def bin_sql(column: str) -> str:
    """SQL for the bin of `column` (milliseconds): `ln` on Postgres and on SQLite (whose
    `ln` the rollups register on the connection when the build lacks math functions)."""
    return (
        f"CASE WHEN {column} < {MIN_MS!r} THEN 0 "
        f"WHEN {column} >= {lower_edge(BINS - 1)!r} THEN {BINS - 1} "
        f"ELSE 1 + CAST(floor((ln({column}) - ({LN_MIN!r})) / {LN_RATIO!r}) AS INTEGER) END"
    )


def lower_edge(b: int) -> float:
    """The smallest latency (ms) of bin `b` (0 for bin 0)."""
    return 0.0 if b <= 0 else MIN_MS * RATIO ** (b - 1)


def upper_edge(b: int) -> float:
    """The first latency (ms) past bin `b` (infinite for the last bin)."""
    return math.inf if b >= BINS - 1 else MIN_MS * RATIO**b


def empty() -> Counts:
    """A histogram with no requests."""
    return np.zeros(BINS, dtype=np.int64)


def from_latencies(latencies: npt.ArrayLike) -> Counts:
    """The histogram of some latencies (ms): what the rollups store for those rows."""
    values = np.asarray(latencies, dtype=np.float64)
    bins = np.zeros(values.shape, dtype=np.int64)
    positive = values >= MIN_MS
    raw = np.floor((np.log(values[positive]) - LN_MIN) / LN_RATIO).astype(np.int64) + 1
    bins[positive] = np.minimum(raw, BINS - 1)
    return np.bincount(bins, minlength=BINS).astype(np.int64)


def encode(counts: Counts) -> bytes:
    """The sparse bytes stored in a rollup row."""
    nonzero = np.flatnonzero(counts)
    pairs = np.empty((nonzero.size, 2), dtype="<u4")
    pairs[:, 0] = nonzero
    pairs[:, 1] = counts[nonzero]
    return pairs.tobytes()


def merge_encoded(data: bytes | None, add: dict[int, int]) -> bytes:
    """Stored bytes (or none) plus `add` {bin: count}, stored again: no dense array, so a
    refresh touching many sparse rows stays cheap.

    Raises:
        ValueError: as `add_encoded`, or for a bin of `add` outside the fixed range.
    """
    merged = dict(add)
    if data:
        dense = empty()
        add_encoded(dense, data)  # validates
        for b in np.flatnonzero(dense).tolist():
            merged[b] = merged.get(b, 0) + int(dense[b])
    if merged and not 0 <= min(merged) <= max(merged) < BINS:
        raise ValueError("a latency bin outside the fixed range")
    keys = sorted(merged)
    return np.array([(b, merged[b]) for b in keys], dtype="<u4").reshape(-1, 2).tobytes()


def add_encoded(into: Counts, data: bytes) -> None:
    """Add a stored histogram to `into` in place.

    Raises:
        ValueError: if `data` is not a whole number of (bin, count) pairs or names a bin
            outside the fixed range (a row not written by `encode`).
    """
    if len(data) % 8:
        raise ValueError(f"a stored latency histogram has {len(data)} bytes, not pairs of 8")
    pairs = np.frombuffer(data, dtype="<u4").reshape(-1, 2).astype(np.int64)
    if pairs.size and int(pairs[:, 0].max()) >= BINS:
        raise ValueError("a stored latency histogram names a bin outside the fixed range")
    np.add.at(into, pairs[:, 0], pairs[:, 1])


def _order_statistic(counts: Counts, cumulative: Counts, j: int) -> float:
    """The j-th smallest latency (0-based), placed at its rank's share of its bin on a
    log scale."""
    b = int(np.searchsorted(cumulative, j, side="right"))
    before = int(cumulative[b - 1]) if b else 0
    share = (j - before + 0.5) / int(counts[b])
    if b == 0:
        return MIN_MS * share
    if b == BINS - 1:
        return lower_edge(b)
    return lower_edge(b) * RATIO**share


def quantile(counts: Counts, q: float) -> float | None:
    """The q-quantile as `percentile_cont` defines it (linear between the order statistics
    around q x (n - 1)), each order statistic estimated within its bin; None when empty."""
    n = int(counts.sum())
    if n == 0:
        return None
    cumulative = np.cumsum(counts)
    h = q * (n - 1)
    k = math.floor(h)
    low = _order_statistic(counts, cumulative, k)
    if k + 1 >= n:
        return low
    high = _order_statistic(counts, cumulative, k + 1)
    return low + (h - k) * (high - low)


def quantile_upper_bound(counts: Counts, q: float) -> float | None:
    """A value never below the exact q-quantile: the upper edge of the bin holding the
    upper order statistic it interpolates (None when empty; infinite in the last bin)."""
    n = int(counts.sum())
    if n == 0:
        return None
    j = min(n - 1, math.floor(q * (n - 1)) + 1)
    b = int(np.searchsorted(np.cumsum(counts), j, side="right"))
    return upper_edge(b)


def count_at_least(counts: Counts, threshold_ms: float) -> int:
    """Requests in bins whose lower edge lies above `threshold_ms`: never more than the
    exact count of requests slower than it."""
    if math.isinf(threshold_ms):
        return 0
    first = 0 if threshold_ms < 0 else bin_of(threshold_ms) + 1
    while first < BINS and lower_edge(first) <= threshold_ms:
        first += 1  # float rounding at an edge: the bin must lie wholly above
    return int(counts[first:].sum())
