"""The fixed log histogram: p95 within 2% of the exact one on realistic latencies, and an
over-relative count that never exceeds the exact one (so A/A rollbacks cannot rise)."""

from __future__ import annotations

import numpy as np
import pytest

from core import latency_histogram as hist
from core.canary import P95_TAIL, TAU_TAIL
from core.sequential import bonferroni_alpha, proportion_above


def _realistic(kind: str, rng: np.random.Generator, n: int) -> np.ndarray:
    """Latency shapes seen from a router: log-normal, a fast path plus a slow cache-miss
    mode, a fixed cost plus an exponential queue, a Pareto tail, millisecond rounding."""
    if kind == "lognormal":
        return rng.lognormal(np.log(30.0), 0.5, n)
    if kind == "bimodal":
        slow = rng.random(n) < 0.08
        return np.where(slow, rng.lognormal(np.log(400), 0.3, n), rng.lognormal(np.log(8), 0.2, n))
    if kind == "queue":
        return 10.0 + rng.exponential(30.0, n)
    if kind == "pareto":
        return 5.0 * (1.0 + rng.pareto(2.5, n))
    if kind == "rounded":
        return np.round(rng.lognormal(np.log(3.0), 0.6, n))
    raise ValueError(kind)


KINDS = ["lognormal", "bimodal", "queue", "pareto", "rounded"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("n", [20, 1_000, 200_000])
def test_p95_from_histogram_is_within_two_percent_of_exact(kind: str, n: int) -> None:
    rng = np.random.default_rng(11)
    for _ in range(20):
        latencies = _realistic(kind, rng, n)
        exact = float(np.percentile(latencies, 95))
        estimate = hist.quantile(hist.from_latencies(latencies), 0.95)
        assert estimate is not None
        assert abs(estimate - exact) <= 0.02 * exact
        # the bound the design promises: one 1% bin
        assert abs(estimate - exact) <= 0.0101 * exact + 1e-9


def test_bins_match_the_sql_formula_and_edges() -> None:
    values = [0.0, 0.005, 0.01, 0.0101, 1.0, 35.7, 1e4, 1e9]
    counts = hist.from_latencies(values)
    assert [hist.bin_of(v) for v in values] == [
        int(b) for b in np.repeat(np.arange(hist.BINS), counts)
    ]
    for v in values[2:-1]:
        b = hist.bin_of(v)
        assert hist.lower_edge(b) <= v * (1 + 1e-12)
        assert v < hist.upper_edge(b) * (1 + 1e-12)
    assert hist.bin_of(1e9) == hist.BINS - 1


def test_encode_round_trips_and_refuses_foreign_bytes() -> None:
    counts = hist.from_latencies([1.0, 1.0, 50.0, 3000.0])
    again = hist.empty()
    hist.add_encoded(again, hist.encode(counts))
    assert np.array_equal(again, counts)
    with pytest.raises(ValueError, match="pairs of 8"):
        hist.add_encoded(hist.empty(), b"123")
    with pytest.raises(ValueError, match="outside"):
        hist.add_encoded(hist.empty(), np.array([5000, 1], dtype="<u4").tobytes())


def test_empty_histogram_has_no_quantile() -> None:
    assert hist.quantile(hist.empty(), 0.95) is None
    assert hist.quantile_upper_bound(hist.empty(), 0.95) is None
    assert hist.count_at_least(hist.empty(), 10.0) == 0


@pytest.mark.parametrize("kind", KINDS)
def test_over_relative_is_never_above_exact_and_misses_only_the_threshold_band(
    kind: str,
) -> None:
    """The count the always-valid test reads: requests in bins wholly above an upper bound
    of champion p95 x 1.5. Never above the exact count; everything slower than the exact
    threshold x 1.021 (two bins more) is counted."""
    rng = np.random.default_rng(5)
    for _ in range(50):
        champion = _realistic(kind, rng, 3_000)
        candidate = _realistic(kind, rng, 3_000) * rng.uniform(0.9, 1.6)
        threshold = float(np.percentile(champion, 95)) * 1.5
        bound = hist.quantile_upper_bound(hist.from_latencies(champion), 0.95)
        assert bound is not None
        estimate = hist.count_at_least(hist.from_latencies(candidate), bound * 1.5)
        assert estimate <= int((candidate > threshold).sum())
        assert estimate >= int((candidate > threshold * 1.021 * 1.0101).sum())


@pytest.mark.parametrize("kind", ["lognormal", "bimodal", "queue"])
def test_a_a_rollbacks_on_histogram_figures_are_no_more_than_on_exact_ones(kind: str) -> None:
    """A/A: the candidate is the champion. The p95-vs-champion test rolls back on the
    histogram's count no more often than on the exact count (the count is never higher
    and the test is monotone in it), looking after every 500 requests."""
    rng = np.random.default_rng(2026)
    alpha = bonferroni_alpha(0.05, 5 * 7)
    rollbacks = {"exact": 0, "histogram": 0}
    trials = 200
    for _ in range(trials):
        champion = _realistic(kind, rng, 4_000)
        candidate = _realistic(kind, rng, 4_000)
        fired = dict.fromkeys(rollbacks, False)
        for n in range(500, 4_001, 500):
            champ, cand = champion[:n], candidate[:n]
            threshold = float(np.percentile(champ, 95)) * 1.05
            bound = hist.quantile_upper_bound(hist.from_latencies(champ), 0.95)
            assert bound is not None
            counts = {
                "exact": int((cand > threshold).sum()),
                "histogram": hist.count_at_least(hist.from_latencies(cand), bound * 1.05),
            }
            for name, x in counts.items():
                result = proportion_above(x, n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL)
                fired[name] = fired[name] or result.reject
        for name, hit in fired.items():
            rollbacks[name] += hit
        assert fired["histogram"] <= fired["exact"]
    assert rollbacks["histogram"] <= rollbacks["exact"] <= 0.05 * trials


def test_merge_encoded_adds_sparse_counts_to_stored_ones() -> None:
    stored = hist.encode(hist.from_latencies([1.0, 50.0]))
    merged = hist.empty()
    hist.add_encoded(merged, hist.merge_encoded(stored, {hist.bin_of(50.0): 2, 7: 1}))
    expected = hist.from_latencies([1.0, 50.0, 50.0, 50.0])
    expected[7] += 1
    assert np.array_equal(merged, expected)
    assert hist.merge_encoded(None, {}) == b""
    with pytest.raises(ValueError, match="outside"):
        hist.merge_encoded(None, {hist.BINS: 1})
