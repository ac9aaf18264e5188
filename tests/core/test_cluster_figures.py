"""The latency cluster sums from O(clusters) rows (core.cluster_figures): per-minute and
per-hour clusters read from the rollups (and the partial minutes at the edges) equal the
same clusters counted from every raw row, on SQLite and Postgres; the rows inside whole
minutes are not read at all; short windows keep per-second clusters; with minute clusters
an A/A's busy slow minute is not a slower candidate and a slow tail is still caught."""

from __future__ import annotations

import math
from collections import defaultdict
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, and_, delete, insert, select

from core.analysis import stage_figures
from core.cluster_figures import (
    ClusterSums,
    cluster_seconds,
    first_bin_above,
    rollup_cluster_sums,
    tail_counts,
)
from core.db import Traffic
from core.latency_histogram import bin_of, count_at_least, encode, from_latencies
from core.rollups import ensure_ln, refresh_rollups

MODEL = "intent-classifier"
LIMIT = 60.0
START = datetime(2026, 11, 28, 0, 0, 0, tzinfo=UTC)


def _rows(n: int, span: timedelta, seed: int = 3) -> list[dict]:
    """n rows over [START, START + span): both arms, log-normal latencies, and every
    ~50th second a burst (the second's requests 3x slower), another rollout's rows."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, span.total_seconds(), n))
    roles = np.where(rng.random(n) < 0.4, "candidate", "champion")
    lat = rng.lognormal(np.log(30), 0.4, n) * np.where(offsets.astype(int) % 50 == 7, 3, 1)
    return [
        {
            "request_id": f"q{k}", "ts": START + timedelta(seconds=float(offsets[k])),
            "env": "dev", "user_id": f"u{k % 40}", "rollout_id": 1 if k % 53 else 2,
            "model_name": MODEL, "model_version": "2" if roles[k] == "candidate" else "1",
            "role": str(roles[k]), "input_text": "hi", "output": "greet",
            "latency_ms": float(lat[k]), "error": None,
        }
        for k in range(n)
    ]  # fmt: skip


def _params(since: datetime, until: datetime, limit: float = LIMIT) -> dict:
    return {"rollout_id": 1, "model_name": MODEL, "since": since, "until": until,
            "limit_ms": limit}  # fmt: skip


def _brute_force(
    engine: Engine,
    since: datetime,
    until: datetime,
    span: int,
    threshold: float,
    limit_bin: int | None = None,
) -> ClusterSums:
    """The same clusters from every raw candidate row of the window, in Python."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Traffic.ts, Traffic.latency_ms).where(
                Traffic.rollout_id == 1, Traffic.model_name == MODEL,
                Traffic.role == "candidate", Traffic.ts >= since, Traffic.ts < until,
            )
        ).all()  # fmt: skip
    first = first_bin_above(threshold)
    clusters: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for ts, latency in rows:
        cluster = clusters[math.floor(ts.timestamp()) // span]
        cluster[0] += 1
        cluster[1] += bin_of(latency) >= first
        cluster[2] += (latency > LIMIT) if limit_bin is None else bin_of(latency) >= limit_bin
    counts = list(clusters.values())
    return ClusterSums.of((c[0] for c in counts), (c[1] for c in counts), (c[2] for c in counts))


def _rolled(engine: Engine, since: datetime, until: datetime, threshold: float, *,
            limit: float = LIMIT) -> ClusterSums:  # fmt: skip
    refresh_rollups(engine, latency_limit_ms=LIMIT)
    with engine.connect() as conn:
        ensure_ln(conn)
        return rollup_cluster_sums(
            conn, _params(since, until, limit), threshold_ms=threshold, rollup_limit_ms=LIMIT
        )


def test_the_cluster_span_follows_the_window_length() -> None:
    assert cluster_seconds(START, START + timedelta(minutes=29, seconds=59)) == 1
    assert cluster_seconds(START, START + timedelta(minutes=30)) == 60
    assert cluster_seconds(START, START + timedelta(hours=29, minutes=59)) == 60
    assert cluster_seconds(START, START + timedelta(hours=30)) == 3600


def test_tail_counts_of_stored_histograms_are_count_at_least() -> None:
    rng = np.random.default_rng(7)
    histograms = [from_latencies(rng.lognormal(np.log(30), 0.6, k)) for k in (0, 1, 50, 900)]
    for threshold in (-1.0, 0.0, 0.005, 12.3, 30.0, 45.678, 80.0, 1e9, math.inf):
        counts = tail_counts([encode(h) for h in histograms], first_bin_above(threshold))
        assert counts.tolist() == [count_at_least(h, threshold) for h in histograms]
    with pytest.raises(ValueError, match="8-byte"):
        tail_counts([b"\x00" * 12], 3)


@pytest.fixture
def traffic(engine: Engine) -> Engine:
    """32 hours of traffic: ~5 rows a minute, ~2 of them the measured candidate's."""
    with engine.begin() as conn:
        conn.execute(insert(Traffic), _rows(9_000, timedelta(hours=32)))
    return engine


WINDOWS = [  # (since, until, span): mid-minute and mid-hour edges, and whole minutes
    (START + timedelta(minutes=7, seconds=13.5),
     START + timedelta(hours=31, minutes=41, seconds=2.25), 3600),
    (START + timedelta(minutes=30), START + timedelta(hours=31, minutes=59, seconds=59), 3600),
    (START + timedelta(hours=2, minutes=59, seconds=30.5),
     START + timedelta(hours=9, minutes=3, seconds=7), 60),
    (START + timedelta(hours=5), START + timedelta(hours=5, minutes=45), 60),
    (START + timedelta(hours=1, minutes=3, seconds=4), START + timedelta(hours=1, minutes=29), 1),
]  # fmt: skip


def test_rollup_clusters_equal_the_same_clusters_from_raw_rows(traffic: Engine) -> None:
    """Hour, minute and second clusters, windows starting and ending mid-minute, at
    several thresholds (one below most latencies, one in the tail, one above all)."""
    for since, until, span in WINDOWS:
        assert cluster_seconds(since, until) == span
        for threshold in (20.0, 47.5, 1e6):
            rolled = _rolled(traffic, since, until, threshold)
            assert rolled == _brute_force(traffic, since, until, span, threshold)
            assert rolled.clusters >= 30 or span == 1


def test_another_latency_limit_counts_over_limit_from_the_histograms(traffic: Engine) -> None:
    """Rollups kept with LIMIT, a stage asking 45 ms: over_limit per cluster is the bins
    wholly above 45 ms (windows on whole minutes, so every row comes from the rollups)."""
    for since, until in ((START, START + timedelta(hours=31)), (START, START + timedelta(hours=3))):
        rolled = _rolled(traffic, since, until, 50.0, limit=45.0)
        span = cluster_seconds(since, until)
        brute = _brute_force(traffic, since, until, span, 50.0, limit_bin=first_bin_above(45.0))
        assert rolled == brute


def _delete_inside_whole_minutes(engine: Engine, since: datetime, until: datetime) -> int:
    first = START + timedelta(minutes=math.ceil((since - START).total_seconds() / 60))
    last = START + timedelta(minutes=math.floor((until - START).total_seconds() / 60))
    with engine.begin() as conn:
        gone = conn.execute(
            delete(Traffic).where(and_(Traffic.ts >= first, Traffic.ts < last))
        ).rowcount
    return int(gone)


@pytest.mark.parametrize("window", [0, 2], ids=["hours", "minutes"])
def test_a_long_window_reads_no_raw_row_inside_its_whole_minutes(
    traffic: Engine, window: int
) -> None:
    """The tick's figures and variances are the same after the raw rows inside the
    window's whole minutes are deleted (after the rollups were refreshed): they were not
    read. The exact path, which reads them, changes."""
    since, until, _ = WINDOWS[window]

    def figures(exact: bool = False):
        return stage_figures(
            traffic, 1, model_name=MODEL, since=since, until=until, latency_limit_ms=LIMIT,
            p95_margin=0.2, exact=exact,
        )  # fmt: skip

    before, exact_before = figures(), figures(exact=True)
    assert before.candidate.over_relative_var is not None
    assert before.candidate.over_limit_var is not None
    assert _delete_inside_whole_minutes(traffic, since, until) > 1000
    after = figures()
    assert after.candidate == before.candidate
    assert after.relative_threshold_ms == before.relative_threshold_ms
    assert figures(exact=True).candidate.n < exact_before.candidate.n


def test_the_tick_variances_are_the_sandwich_over_the_clusters(traffic: Engine) -> None:
    """stage_figures on the rollups path: the variances are `clustered_variance` of the
    brute-force clusters at the tick's threshold (minute clusters here)."""
    since, until, span = WINDOWS[2]
    figures = stage_figures(
        traffic, 1, model_name=MODEL, since=since, until=until, latency_limit_ms=LIMIT,
        p95_margin=0.2,
    )  # fmt: skip
    threshold = figures.relative_threshold_ms
    assert threshold is not None
    brute = _brute_force(traffic, since, until, span, threshold)
    assert brute.over_relative[0] == figures.candidate.over_relative
    assert brute.over_limit[0] == figures.candidate.over_limit
    assert brute.n == figures.candidate.n
    variances = brute.variances()
    assert figures.candidate.over_relative_var == pytest.approx(variances[0], rel=1e-12)
    assert figures.candidate.over_limit_var == pytest.approx(variances[1], rel=1e-12)


def _minute_rows(minute: int, role: str, latencies: np.ndarray) -> list[dict]:
    """Rows spread over one minute (from START + 17 s: windows start mid-minute)."""
    at = START + timedelta(minutes=minute, seconds=17)
    return [
        {
            "request_id": f"{role[:2]}-{minute}-{i}", "env": "dev", "user_id": f"u{i}",
            "ts": at + timedelta(seconds=i * 59.0 / len(latencies)), "rollout_id": 1,
            "model_name": MODEL, "model_version": "2" if role == "candidate" else "1",
            "role": role, "input_text": "hi", "output": "greet",
            "latency_ms": float(v), "error": None,
        }
        for i, v in enumerate(latencies)
    ]  # fmt: skip


@pytest.mark.parametrize("burst", [True, False], ids=["aa-burst", "slow-candidate"])
def test_minute_clusters_keep_an_aa_burst_and_still_catch_a_slow_tail(
    engine: Engine, burst: bool
) -> None:
    """Two hours, minute clusters. A/A with one busy minute in which everything waited
    50 ms and the candidate happened to get 80 requests: not read as a slower candidate
    (the binomial variance says it is). A candidate 3x slower on 15% of its requests in
    every minute is still caught."""
    from core.canary import P95_TAIL, TAU_TAIL
    from core.sequential import bonferroni_alpha, proportion_above

    rng = np.random.default_rng(9)
    rows = []
    for minute in range(120):
        busy = burst and minute == 40
        champion = 50.0 + rng.uniform(0, 1, 20) if busy else rng.uniform(4, 6, 20)
        candidate = 50.0 + rng.uniform(0, 1, 80) if busy else rng.uniform(4, 6, 5 if burst else 20)
        if not burst:
            candidate = np.where(rng.uniform(0, 1, candidate.size) < 0.15, 15.0, candidate)
        rows += _minute_rows(minute, "champion", champion) + _minute_rows(
            minute, "candidate", candidate
        )
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
    since, until = START + timedelta(seconds=30), START + timedelta(hours=2)
    assert cluster_seconds(since, until) == 60
    cand = stage_figures(
        engine, 1, model_name=MODEL, since=since, until=until, latency_limit_ms=100.0,
        p95_margin=0.5,
    ).candidate  # fmt: skip
    alpha = bonferroni_alpha(0.05, 35)
    clustered = proportion_above(
        cand.over_relative, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL,
        cluster_variance=cand.over_relative_var,
    )  # fmt: skip
    assert clustered.reject is not burst, (cand.over_relative, cand.n, cand.over_relative_var)
    if burst:
        binomial = proportion_above(
            cand.over_relative, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL
        )
        assert binomial.reject  # the false rollback per-request independence would make
