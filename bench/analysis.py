"""Benchmark: the controller's stage query over 10,000,000 traffic rows on Postgres.

Creates a dedicated database (dropped at the end), migrates it, fills `traffic` with
10M rows (INSERT ... SELECT generate_series, indexes built after the load) spread over
40 rollouts and 7 days, plus feedback on 5% of requests. The measured rollout holds
2,000,000 rows; its current stage (the window since the stage started) holds 1,000,000.

Prints the stage query time (median of 5 warm runs of `core.analysis.stage_figures`) for a
1,000,000-row stage window (a stage of ~3 h at 100 req/s) and a 100,000-row one (~17 min),
as a ratio to the 1 s target and to a baseline measured in the same run: a full-scan
`count(*)` of the traffic table. Target: <= 1 s. The load average is printed too: the
machine is shared, and the figures scale with it.

    uv run python bench/analysis.py            # TEST_POSTGRES_URL or postgres@127.0.0.1
    BENCH_ROWS=1000000 uv run python bench/analysis.py   # a quicker, smaller run
"""

from __future__ import annotations

import os
import statistics
import time
import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from core.analysis import stage_figures
from core.db import make_engine, upgrade

ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
ROWS = int(os.environ.get("BENCH_ROWS", "10000000"))
ROLLOUTS = 40
TARGET_SECONDS = 1.0
BASE = datetime(2026, 11, 1, tzinfo=UTC)
SPAN_SECONDS = 7 * 24 * 3600

# Rollout 1 gets 20% of all rows (spread over the 7 days); its current stage started
# half-way, so the stage window holds half of them.
LOAD_SQL = """
INSERT INTO traffic (request_id, ts, env, user_id, rollout_id, model_name, model_version,
                     role, input_text, output, latency_ms, error)
SELECT 'r' || i,
       :base + (i::float8 / :rows * :span) * interval '1 second',
       'prd',
       'u' || (i % 100000),
       CASE WHEN i % 5 = 0 THEN 1 ELSE 2 + (i % (:rollouts - 1)) END,
       'intent-classifier',
       CASE WHEN (i * 7919) % 100 < 50 THEN '2' ELSE '1' END,
       CASE WHEN (i * 7919) % 100 < 50 THEN 'candidate' ELSE 'champion' END,
       'what is my balance',
       'balance',
       10 + 30 * (-ln(1 - random())),
       CASE WHEN random() < 0.01 THEN 'ValueError: boom' END
FROM generate_series(1::bigint, :rows) AS s(i)
"""

FEEDBACK_SQL = """
INSERT INTO feedback (request_id, ts, kind, value)
SELECT request_id, ts + interval '5 seconds', 'thumbs',
       CASE WHEN random() < 0.2 THEN 'down' ELSE 'up' END
FROM traffic TABLESAMPLE BERNOULLI (5)
"""


def _admin():
    url = make_url(ADMIN_URL).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT")


def _timed(fn, repeat: int = 5) -> float:
    fn()  # warm
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    """Load, measure, print the ratios, drop the database."""
    name = f"sml_bench_{uuid.uuid4().hex[:8]}"
    admin = _admin()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(ADMIN_URL).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        started = time.perf_counter()
        with engine.begin() as conn:
            indexes = conn.execute(
                text("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'traffic' "
                     "AND indexname NOT LIKE 'pk_%'")
            ).all()  # fmt: skip
            for index_name, _ in indexes:
                conn.execute(text(f'DROP INDEX "{index_name}"'))
            conn.execute(
                text(LOAD_SQL),
                {"base": BASE, "rows": ROWS, "span": SPAN_SECONDS, "rollouts": ROLLOUTS},
            )
            for _, definition in indexes:
                conn.execute(text(definition))
            conn.execute(text(FEEDBACK_SQL))
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            conn.execute(text("VACUUM ANALYZE traffic"))
            conn.execute(text("VACUUM ANALYZE feedback"))
        load_seconds = time.perf_counter() - started

        stage_end = BASE + timedelta(seconds=SPAN_SECONDS)

        def full_scan():
            with engine.connect() as conn:
                return conn.execute(text("SELECT count(*) FROM traffic")).scalar_one()

        total = full_scan()
        scan_seconds = _timed(full_scan)
        print(f"traffic rows: {total:,} (loaded + indexed in {load_seconds:.0f} s)")
        print(f"baseline full-scan count(*): {scan_seconds * 1000:.0f} ms")
        for share in (0.5, 0.05):
            stage_start = stage_end - timedelta(seconds=SPAN_SECONDS * share)

            def stage_query(since=stage_start):
                return stage_figures(
                    engine, 1, model_name="intent-classifier", since=since,
                    until=stage_end, latency_limit_ms=250.0, p95_margin=0.5,
                )  # fmt: skip

            figures = stage_query()
            window_rows = figures.champion.n + figures.candidate.n
            stage_seconds = _timed(stage_query)
            verdict = "meets" if stage_seconds <= TARGET_SECONDS else "MISSES"
            print(
                f"stage window {window_rows:,} rows: {stage_seconds * 1000:.0f} ms "
                f"(median of 5 warm runs) = {stage_seconds / TARGET_SECONDS:.2f}x the "
                f"{TARGET_SECONDS:g} s target ({verdict}), "
                f"{stage_seconds / scan_seconds:.2f}x the full-scan count(*)"
            )
            print(
                f"  figures: champion n={figures.champion.n:,} "
                f"p95={figures.champion.p95_ms:.1f} ms errors={figures.champion.errors:,}; "
                f"candidate n={figures.candidate.n:,} p95={figures.candidate.p95_ms:.1f} ms "
                f"negative feedback={figures.candidate.negative_feedback:,}"
            )
        print(f"load average (1, 5, 15 min): {os.getloadavg()} on {os.cpu_count()} cores")
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


if __name__ == "__main__":
    main()
