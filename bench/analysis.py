"""Benchmark: a controller tick's stage figures from the rollups vs the exact path, on
Postgres, over a 1M-row and a 10M-row stage window of one 10.5M-row traffic table.

Creates a dedicated database (dropped at the end), migrates it, fills `traffic` with
BENCH_ROWS x 1.05 rows in SQL (INSERT ... SELECT generate_series, indexes built after the
load) over 7 days: the measured rollout gets BENCH_ROWS of them (~16.5 req/s), 39 other
rollouts the rest, interleaved; thumbs feedback on 5% of requests (20% negative). Then
the rollups catch up once (timed: the one-time cost after migration 0007).

A tick = what `core.tick.plan_rollout` asks for: `core.analysis.stage_figures` with the
users' behaviour windows (rollups: refresh the rows logged since the last tick and the
rollout's behaviour rollups, then read the stage; behaviour counts asserted equal to the
exact path's). Before every timed
tick one more minute of traffic (~1,000 rows at the table's rate) is logged, untimed, so
each tick has a minute to roll up, as in production. Median of 7 ticks per window.
Baseline, same run: `stage_figures(..., exact=True)` over the same windows (every row,
p95 by `percentile_cont`), median of 3. Targets (issue 13): the 1M-row window <= 100 ms,
the 10M-row window <= 2x the 1M-row one. Prints the exact p95s beside the rollups' too.

    flock /work/wt/bench.lock uv run python bench/analysis.py
    BENCH_ROWS=1000000 uv run python bench/analysis.py   # a quicker, smaller run
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from collections.abc import Callable
from dataclasses import fields
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from core.analysis import StageFigures, stage_figures
from core.behaviour import BehaviourCounts, BehaviourWindows
from core.behaviour_rollups import refresh_behaviour
from core.db import make_engine, upgrade
from core.rollups import refresh_rollups, safe_bounds

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
ROLLOUTS = 40
TARGET_MS = 100.0
BASE = datetime(2026, 11, 1, tzinfo=UTC)
SPAN_SECONDS = 7 * 24 * 3600
LIMIT_MS = 250.0
MARGIN = 0.5
# The shipped defaults (CANARY_FOLLOWUP_SECONDS, CANARY_ABANDONMENT_SECONDS) and the
# classifier's hand-off label; users draw from 2,000 ids, so a user's next request comes
# ~2 minutes later on average: every behaviour count is non-zero.
WINDOWS = BehaviourWindows(followup_seconds=60, abandonment_seconds=300,
                           handoff_labels=("talk_to_agent",))  # fmt: skip
BEHAVIOUR = tuple(f.name for f in fields(BehaviourCounts))

# Every 21st row belongs to one of the 39 other rollouts; the other 20 of 21 to rollout 1,
# so rollout 1 holds ROWS rows. Latency: log-normal around 30 ms (sigma 0.5), candidate
# 10% slower; 1% errors. `:first` numbers the rows (request ids), `:t0` is their start.
LOAD_SQL = """
INSERT INTO traffic (request_id, ts, env, user_id, rollout_id, model_name, model_version,
                     role, input_text, output, latency_ms, error)
SELECT 'r' || i,
       :t0 + ((i - :first)::float8 / :rows * :span) * interval '1 second',
       'prd',
       'u' || floor(random() * 2000)::int,
       CASE WHEN i % 21 = 0 THEN 2 + (i % (:rollouts - 1)) ELSE 1 END,
       'intent-classifier',
       CASE WHEN (i * 7919) % 100 < 50 THEN '2' ELSE '1' END,
       CASE WHEN (i * 7919) % 100 < 50 THEN 'candidate' ELSE 'champion' END,
       'what is my balance',
       CASE WHEN random() < 0.03 THEN 'talk_to_agent' ELSE 'balance' END,
       exp(ln(30) + 0.5 * sqrt(-2 * ln(1 - random())) * cos(2 * pi() * random()))
         * CASE WHEN (i * 7919) % 100 < 50 THEN 1.1 ELSE 1.0 END,
       CASE WHEN random() < 0.01 THEN 'ValueError: boom' END
FROM generate_series(CAST(:first AS bigint), CAST(:first AS bigint) + :rows - 1) AS s(i)
"""

FEEDBACK_SQL = """
INSERT INTO feedback (request_id, ts, kind, value)
SELECT request_id, ts + interval '5 seconds', 'thumbs',
       CASE WHEN random() < 0.2 THEN 'down' ELSE 'up' END
FROM traffic TABLESAMPLE BERNOULLI (5)
"""


def _admin() -> Engine:
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT")


def _load(engine: Engine) -> float:
    """The table, its indexes and feedback; returns the seconds it took."""
    started = time.perf_counter()
    total = ROWS + ROWS // 20
    with engine.begin() as conn:
        indexes = conn.execute(
            text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'traffic' "
                 "AND indexname NOT LIKE 'pk_%'")
        ).all()  # fmt: skip
        for index_name, _ in indexes:
            conn.execute(text(f'DROP INDEX "{index_name}"'))
        conn.execute(
            text(LOAD_SQL),
            {"t0": BASE, "first": 1, "rows": total, "span": SPAN_SECONDS, "rollouts": ROLLOUTS},
        )
        for _, definition in indexes:
            conn.execute(text(definition))
        conn.execute(text(FEEDBACK_SQL))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE traffic"))
        conn.execute(text("VACUUM ANALYZE feedback"))
    return time.perf_counter() - started


class Clock:
    """The bench's `now`: each tick logs one more minute of traffic at the table's rate."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.now = BASE + timedelta(seconds=SPAN_SECONDS)
        self.next_id = ROWS + ROWS // 20 + 1
        self.per_minute = max(1, round((ROWS + ROWS // 20) / (SPAN_SECONDS / 60)))

    def log_a_minute(self) -> None:
        with self.engine.begin() as conn:
            conn.execute(text(LOAD_SQL), {
                "t0": self.now, "first": self.next_id, "rows": self.per_minute,
                "span": 60, "rollouts": ROLLOUTS,
            })  # fmt: skip
        self.next_id += self.per_minute
        self.now += timedelta(minutes=1)


def _median_ms(fn: Callable[[], object], before: Callable[[], None], repeat: int) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeat):
        before()
        started = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - started)
    return statistics.median(samples) * 1000


def _figures(engine: Engine, since: datetime, until: datetime, *, exact: bool) -> StageFigures:
    return stage_figures(
        engine, 1, model_name="intent-classifier", since=since, until=until,
        latency_limit_ms=LIMIT_MS, p95_margin=MARGIN, behaviour=WINDOWS, exact=exact,
    )  # fmt: skip


def _measure(engine: Engine, clock: Clock, share: float) -> dict[str, float]:
    """Rollups and exact ticks over a stage holding `share` of rollout 1's rows."""
    since = clock.now - timedelta(seconds=SPAN_SECONDS * share) + timedelta(seconds=17.3)

    def rolled() -> StageFigures:
        return _figures(engine, since, clock.now, exact=False)

    def exact() -> StageFigures:
        return _figures(engine, since, clock.now, exact=True)

    rollup_ms = _median_ms(rolled, clock.log_a_minute, 7)
    exact_ms = _median_ms(exact, lambda: None, 3)
    r, e = rolled(), exact()
    assert (r.champion.n, r.candidate.n, r.candidate.errors, r.candidate.negative_feedback) == (
        e.champion.n, e.candidate.n, e.candidate.errors, e.candidate.negative_feedback,
    )  # fmt: skip
    for arm in ("champion", "candidate"):  # the users' behaviour: the same counts
        rolled_arm, exact_arm = getattr(r, arm), getattr(e, arm)
        assert [getattr(rolled_arm, f) for f in BEHAVIOUR] == [
            getattr(exact_arm, f) for f in BEHAVIOUR
        ], arm
        assert min(rolled_arm.reformulations, rolled_arm.handoffs, rolled_arm.abandonments) > 0
    p95 = [(x.p95_ms or 0.0, y.p95_ms or 0.0) for x, y in ((r.champion, e.champion),
                                                           (r.candidate, e.candidate))]  # fmt: skip
    return {
        "rows": e.champion.n + e.candidate.n, "rollup_ms": rollup_ms, "exact_ms": exact_ms,
        "p95_error": max(abs(a - b) / b for a, b in p95),
        "over_relative": r.candidate.over_relative,
        "over_relative_exact": e.candidate.over_relative,
        "minutes": (clock.now - since).total_seconds() / 60,
    }  # fmt: skip


def _report(results: list[dict[str, float]]) -> None:
    for res in results:
        verdict = "meets" if res["rollup_ms"] <= TARGET_MS else "MISSES"
        print(
            f"stage window {res['rows']:,.0f} rows ({res['minutes']:,.0f} min): rollups "
            f"{res['rollup_ms']:.1f} ms = {res['rollup_ms'] / TARGET_MS:.2f}x the "
            f"{TARGET_MS:g} ms target ({verdict}); exact {res['exact_ms']:,.0f} ms "
            f"(rollups {res['exact_ms'] / res['rollup_ms']:.0f}x faster); p95 off by "
            f"{res['p95_error']:.3%}; over_relative {res['over_relative']:,.0f} vs exact "
            f"{res['over_relative_exact']:,.0f}"
        )
    growth = results[1]["rollup_ms"] / results[0]["rollup_ms"]
    verdict = "meets" if growth <= 2.0 else "MISSES"
    print(f"10x the window: rollups tick {growth:.2f}x ({verdict} <= 2x); "
          f"exact {results[1]['exact_ms'] / results[0]['exact_ms']:.2f}x")  # fmt: skip


def main() -> None:
    """Load, catch up, measure, print the ratios, drop the database."""
    name = f"sml_bench_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        load_seconds = _load(engine)
        with engine.connect() as conn:
            total = conn.execute(text("SELECT count(*) FROM traffic")).scalar_one()
        print(f"traffic rows: {total:,} (loaded + indexed in {load_seconds:.0f} s)")
        started = time.perf_counter()
        refresh_rollups(engine, latency_limit_ms=LIMIT_MS)
        print(f"first rollup of the whole table: {time.perf_counter() - started:.0f} s (once)")
        clock = Clock(engine)
        started = time.perf_counter()
        refresh_behaviour(
            engine, rollout_id=1, model_name="intent-classifier", windows=WINDOWS,
            now=clock.now, bounds=safe_bounds(engine),
        )  # fmt: skip
        print(f"first behaviour rollup of rollout 1: {time.perf_counter() - started:.0f} s (once)")
        results = [_measure(engine, clock, share) for share in (0.1, 1.0)]
        _report(results)
        print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
