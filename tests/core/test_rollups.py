"""Rollups kept from an id high-water mark: exact counts whatever order rows and feedback
arrive in, no double count under a crash or two refreshers, and a stage read from them
that matches the exact figures (p95 within 2%), on SQLite and Postgres."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, func, insert, select, text

from core import rollups
from core.analysis import stage_figures
from core.db import Feedback, Traffic, make_engine, upgrade, utcnow
from core.db.models import TrafficRollup
from core.rollup_figures import plan_window
from core.rollups import RollupsBehindError, read_mark, refresh_rollups, reset_rollups

MODEL = "intent-classifier"
LIMIT = 60.0


def _row(i: int, role: str, ts: datetime, latency: float, *, rollout: int = 1, **kw):
    return {
        "request_id": f"q{i}", "ts": ts, "env": "dev", "user_id": f"u{i % 50}",
        "rollout_id": rollout, "model_name": kw.get("model_name", MODEL),
        "model_version": "2" if role == "candidate" else "1", "role": role,
        "input_text": "hello", "output": "greet", "latency_ms": latency,
        "error": kw.get("error"),
    }  # fmt: skip


def _traffic(n: int, start: datetime, span: timedelta, seed: int = 1, first: int = 0):
    """n realistic rows over [start, start + span): two arms, log-normal latencies, 2%
    errors, a few shadow/fallback rows and another rollout's rows that never count."""
    rng = np.random.default_rng(seed)
    offsets = np.sort(rng.uniform(0, span.total_seconds(), n))
    roles = np.where(rng.random(n) < 0.3, "candidate", "champion")
    lat = rng.lognormal(np.log(30), 0.5, n) * np.where(roles == "candidate", 1.15, 1.0)
    rows = []
    for k in range(n):
        i = first + k
        role = str(roles[k]) if k % 97 else "shadow"
        rows.append(
            _row(i, role, start + timedelta(seconds=float(offsets[k])), float(lat[k]),
                 rollout=1 if k % 89 else 2, error="boom" if rng.random() < 0.02 else None)
        )  # fmt: skip
    return rows


def _negative(request_ids, ts: datetime, value: str = "down"):
    return [{"request_id": r, "ts": ts, "kind": "thumbs", "value": value} for r in request_ids]


def _figures(engine: Engine, since: datetime, until: datetime, *, exact: bool, limit=LIMIT):
    return stage_figures(
        engine, 1, model_name=MODEL, since=since, until=until, latency_limit_ms=limit,
        p95_margin=0.2, exact=exact,
    )  # fmt: skip


def _assert_same_counts(engine: Engine, since: datetime, until: datetime) -> None:
    rolled, exact = (_figures(engine, since, until, exact=e) for e in (False, True))
    for arm in ("champion", "candidate"):
        a, b = getattr(rolled, arm), getattr(exact, arm)
        assert (a.n, a.errors, a.over_limit, a.negative_feedback) == (
            b.n, b.errors, b.over_limit, b.negative_feedback,
        ), arm  # fmt: skip
        if b.p95_ms is not None:
            assert a.p95_ms is not None
            assert abs(a.p95_ms - b.p95_ms) <= 0.02 * b.p95_ms
        assert a.over_relative <= b.over_relative


def test_stage_from_rollups_matches_exact_over_hours_minutes_and_edges(engine: Engine) -> None:
    """Three hours of traffic with feedback; windows that start and end mid-minute,
    mid-hour, on a boundary, inside one minute."""
    start = datetime(2026, 11, 30, 8, 0, 0, tzinfo=UTC)
    rows = _traffic(6_000, start, timedelta(hours=3))
    with engine.begin() as conn:
        conn.execute(insert(Traffic), rows)
        conn.execute(insert(Feedback), _negative([r["request_id"] for r in rows[::37]],
                                                 start + timedelta(hours=4)))  # fmt: skip
        conn.execute(insert(Feedback), _negative(["q74"], start, value="up"))
    windows = [
        (start, start + timedelta(hours=3)),
        (start + timedelta(minutes=7, seconds=13.5),
         start + timedelta(hours=2, minutes=41, seconds=2)),
        (start + timedelta(minutes=59, seconds=59), start + timedelta(hours=1, minutes=1)),
        (start + timedelta(minutes=5, seconds=1), start + timedelta(minutes=5, seconds=40)),
        (start + timedelta(minutes=30), start + timedelta(minutes=30)),
    ]  # fmt: skip
    for since, until in windows:
        _assert_same_counts(engine, since, until)
    p95 = _figures(engine, *windows[0], exact=False).candidate.p95_ms
    assert p95 == pytest.approx(
        _figures(engine, *windows[0], exact=True).candidate.p95_ms, rel=0.01
    )


def test_window_plan_reads_hours_whole_minutes_and_two_partial_edges() -> None:
    since = datetime(2026, 11, 30, 8, 7, 13, tzinfo=UTC)
    until = datetime(2026, 11, 30, 11, 41, 2, tzinfo=UTC)
    plan = plan_window(since, until)
    minute = int(datetime(2026, 11, 30, 8, 0, tzinfo=UTC).timestamp()) // 60
    assert (plan.m0, plan.m1) == (minute + 8, minute + 60)
    assert (plan.h0, plan.h1) == (minute + 60, minute + 180)
    assert (plan.m2, plan.m3) == (minute + 180, minute + 221)
    assert [e[0] for e in plan.edges] == [since, datetime(2026, 11, 30, 11, 41, tzinfo=UTC)]
    inside = plan_window(since, since + timedelta(seconds=20))
    assert inside.edges == ((since, since + timedelta(seconds=20)),)
    assert (inside.h1, inside.m1, inside.m3) == (0, 0, 0)


def test_late_rows_and_feedback_in_any_order_are_counted_once(engine: Engine) -> None:
    """The writer batches and replays spills: a row stamped an hour ago arrives after the
    mark passed its minute; feedback arrives before its row, twice, or after it."""
    start = utcnow().replace(second=0, microsecond=0) - timedelta(hours=2)
    with engine.begin() as conn:
        conn.execute(insert(Traffic), _traffic(500, start, timedelta(minutes=30)))
        conn.execute(insert(Feedback), _negative(["late1", "q3"], start))  # before its row
    refresh_rollups(engine, latency_limit_ms=LIMIT)
    with engine.begin() as conn:
        conn.execute(insert(Traffic), [
            _row(10_001, "candidate", start + timedelta(minutes=3, seconds=5), 900.0,
                 error="late boom") | {"request_id": "late1"},
            _row(10_002, "champion", start + timedelta(minutes=4), 5.0) | {"request_id": "late2"},
        ])  # fmt: skip
        conn.execute(insert(Feedback), _negative(["q3", "q5", "q5", "late2"], start))
    refresh_rollups(engine, latency_limit_ms=LIMIT)
    with engine.begin() as conn:
        conn.execute(insert(Feedback), _negative(["q5", "q8", "late1"], start))
    _assert_same_counts(engine, start, start + timedelta(hours=1))
    rolled = _figures(engine, start, start + timedelta(hours=1), exact=False)
    exact = _figures(engine, start, start + timedelta(hours=1), exact=True)
    assert rolled.candidate.errors == exact.candidate.errors >= 1


def test_chunked_catch_up_gives_the_same_rollups(db_url: str, tmp_path) -> None:
    start = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    rows = _traffic(700, start, timedelta(minutes=90))
    totals = []
    for chunk in (7, 100_000):
        eng = make_engine(db_url if chunk == 7 else f"sqlite:///{tmp_path}/other.db")
        upgrade(eng)
        with eng.begin() as conn:
            conn.execute(insert(Traffic), rows)
            conn.execute(insert(Feedback), _negative([r["request_id"] for r in rows[::9]], start))
        mark = refresh_rollups(eng, latency_limit_ms=LIMIT, chunk_rows=chunk)
        assert mark.traffic_id == len(rows)
        with eng.connect() as conn:
            totals.append(conn.execute(
                select(TrafficRollup.span_minutes, func.sum(TrafficRollup.n),
                       func.sum(TrafficRollup.negative_feedback), func.sum(TrafficRollup.errors))
                .group_by(TrafficRollup.span_minutes).order_by(TrafficRollup.span_minutes)
            ).all())  # fmt: skip
        eng.dispose()
    assert [tuple(r) for r in totals[0]] == [tuple(r) for r in totals[1]]
    with pytest.raises(ValueError, match="chunk_rows"):
        refresh_rollups(make_engine(db_url), latency_limit_ms=LIMIT, chunk_rows=0)


def test_a_crash_between_rollups_and_mark_counts_nothing_twice(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    start = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(insert(Traffic), _traffic(300, start, timedelta(minutes=20)))
    refresh_rollups(engine, latency_limit_ms=LIMIT)
    before = read_mark(engine)
    with engine.begin() as conn:
        conn.execute(
            insert(Traffic), _traffic(200, start, timedelta(minutes=20), seed=2, first=300)
        )

    def crash(*_args, **_kwargs) -> None:
        raise RuntimeError("killed between the rollup rows and the mark")

    monkeypatch.setattr(rollups, "advance_mark", crash)
    with pytest.raises(RuntimeError, match="killed"):
        refresh_rollups(engine, latency_limit_ms=LIMIT)
    assert read_mark(engine) == before
    monkeypatch.undo()
    _assert_same_counts(engine, start, start + timedelta(minutes=30))


def test_a_changed_latency_limit_is_estimated_low_until_reset(engine: Engine) -> None:
    start = utcnow() - timedelta(hours=1)
    with engine.begin() as conn:
        conn.execute(insert(Traffic), _traffic(2_000, start, timedelta(minutes=30)))
    since, until = start, start + timedelta(minutes=40)
    refresh_rollups(engine, latency_limit_ms=LIMIT)
    estimated = _figures(engine, since, until, exact=False, limit=45.0)
    exact = _figures(engine, since, until, exact=True, limit=45.0)
    assert 0.97 * exact.candidate.over_limit <= estimated.candidate.over_limit
    assert estimated.candidate.over_limit <= exact.candidate.over_limit
    reset_rollups(engine)
    assert read_mark(engine) is None
    again = _figures(engine, since, until, exact=False, limit=45.0)
    assert again.candidate.over_limit == exact.candidate.over_limit
    mark = read_mark(engine)
    assert mark is not None
    assert mark.limit_ms == 45.0


@pytest.mark.postgres
def test_two_refreshers_and_writers_at_once_count_every_row_once(postgres_url: str) -> None:
    """Four writer threads commit batches while two controllers refresh in a loop: the
    rollups end equal to the rows (no row twice, none lost to an id committed late)."""
    eng = make_engine(postgres_url, pool_size=10)
    upgrade(eng)
    start = utcnow() - timedelta(hours=1)
    stop = threading.Event()
    failures: list[BaseException] = []
    written: list[int] = []

    def write(w: int) -> None:
        for b in range(15):
            rows = _traffic(200, start, timedelta(minutes=50), seed=w * 100 + b,
                            first=(w * 100 + b) * 1000)  # fmt: skip
            with eng.begin() as conn:
                conn.execute(insert(Traffic), rows)
                negative = _negative([r["request_id"] for r in rows[::11]], start)
                conn.execute(insert(Feedback), negative)
            written.append(sum(r["role"] != "shadow" for r in rows))

    def refresh() -> None:
        try:
            while not stop.is_set():
                refresh_rollups(eng, latency_limit_ms=LIMIT, chunk_rows=500)
        except BaseException as exc:  # reported by the assertion below
            failures.append(exc)

    writers = [threading.Thread(target=write, args=(w,)) for w in range(4)]
    refreshers = [threading.Thread(target=refresh) for _ in range(2)]
    for t in refreshers + writers:
        t.start()
    for t in writers:
        t.join()
    stop.set()
    for t in refreshers:
        t.join()
    assert failures == []
    _assert_same_counts(eng, start, start + timedelta(hours=1))
    with eng.connect() as conn:
        rolled = conn.execute(
            select(func.sum(TrafficRollup.n)).where(TrafficRollup.span_minutes == 1)
        ).scalar_one()
        rows = conn.execute(text(
            "SELECT count(*) FROM traffic WHERE rollout_id IS NOT NULL "
            "AND role IN ('champion', 'candidate')"
        )).scalar_one()  # fmt: skip
    assert rolled == rows == sum(written)
    eng.dispose()


@pytest.mark.postgres
def test_a_write_in_flight_is_waited_for_and_counted(postgres_url: str) -> None:
    """Postgres hands out ids before commit: a row with a lower id can commit after a
    higher one. The refresh waits for the writer in flight, then counts both; a writer
    holding on past the lock timeout makes the tick compute exactly instead."""
    eng = make_engine(postgres_url)
    upgrade(eng)
    start = utcnow() - timedelta(minutes=30)
    slow = eng.connect()
    slow_tx = slow.begin()
    slow.execute(insert(Traffic), [_row(1, "champion", start, 10.0)])
    with eng.begin() as conn:
        conn.execute(insert(Traffic), [_row(2, "champion", start, 20.0)])
    with pytest.raises(RollupsBehindError, match="held the traffic table"):
        refresh_rollups(eng, latency_limit_ms=LIMIT, lock_timeout_s=0.2)
    fallback = _figures(eng, start, start + timedelta(minutes=1), exact=False)
    assert fallback.champion.n == 1  # the committed row, counted exactly, no rollup moved
    done = threading.Event()
    worker = threading.Thread(
        target=lambda: (refresh_rollups(eng, latency_limit_ms=LIMIT), done.set())
    )
    worker.start()
    assert not done.wait(0.5)  # waiting for the writer in flight
    slow_tx.commit()
    slow.close()
    worker.join(10)
    assert done.is_set()
    assert read_mark(eng).traffic_id == 2
    assert _figures(eng, start, start + timedelta(minutes=1), exact=False).champion.n == 2
    eng.dispose()
