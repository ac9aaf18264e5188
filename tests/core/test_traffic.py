"""The batched traffic writer: batches, COPY on Postgres, spill and replay, bounded memory."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import psycopg
import pytest
from sqlalchemy import Engine, create_engine, func, select

from core.db import Feedback, Traffic, make_engine, session_scope, upgrade
from core.traffic import (
    REJECTED_PREFIX,
    SPILL_PREFIX,
    FeedbackRecord,
    TrafficRecord,
    TrafficWriter,
)
from core.traffic.records import decode_record, encode_record
from core.traffic.spill import write_progress


def _row(i: int, *, version: str = "1", role: str = "champion") -> TrafficRecord:
    return TrafficRecord(
        request_id=f"r{i}",
        ts=datetime(2026, 11, 22, 12, 0, i % 60, tzinfo=UTC),
        env="dev",
        user_id=None if i % 3 == 0 else f"user-{i}",
        rollout_id=None if i % 2 else 4,
        model_name="intent-classifier",
        model_version=version,
        role=role,
        input_text=f"text number {i} with a comma, a tab\t and a 'quote'",
        output=None if i % 5 == 0 else "billing",
        latency_ms=0.25 * i,
        error="ValueError: boom\nsecond line" if i % 5 == 0 else None,
    )


def _count(engine: Engine, table: type[Traffic] | type[Feedback] = Traffic) -> int:
    with session_scope(engine) as session:
        return int(session.scalar(select(func.count()).select_from(table)) or 0)


def _wait(predicate: object, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def _spill_files(directory: Path) -> list[Path]:
    return sorted(directory.glob(f"{SPILL_PREFIX}*.jsonl")) if directory.exists() else []


def test_encode_decode_record_roundtrip() -> None:
    for record in (_row(5), _row(7), FeedbackRecord("r1", datetime.now(UTC), "thumbs", "down")):
        assert decode_record(encode_record(record)) == record
    with pytest.raises(ValueError, match="not a spill record"):
        decode_record(json.dumps(["x", "r", "2026-11-22T00:00:00+00:00"]))


def test_write_traffic_and_feedback_in_batches(engine: Engine, tmp_path: Path) -> None:
    writer = TrafficWriter(engine, spill_dir=tmp_path / "spill", batch_size=100)
    writer.start()
    for i in range(1_234):
        writer.enqueue(_row(i))
    writer.enqueue(FeedbackRecord("r1", datetime.now(UTC), "thumbs", "down"))
    writer.close()

    assert _count(engine) == 1_234
    assert _count(engine, Feedback) == 1
    assert writer.stats().spilled == 0
    with session_scope(engine) as session:
        got = session.scalars(select(Traffic).where(Traffic.request_id == "r5")).one()
    want = _row(5)
    assert (got.ts, got.user_id, got.rollout_id, got.output, got.error, got.input_text) == (
        want.ts,
        want.user_id,
        want.rollout_id,
        want.output,
        want.error,
        want.input_text,
    )
    assert got.latency_ms == pytest.approx(want.latency_ms)


@pytest.mark.postgres
def test_write_uses_copy_on_postgres(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    statements: list[str] = []
    real_copy = psycopg.Cursor.copy

    def spy(self: psycopg.Cursor, statement: str, *args: object, **kwargs: object) -> object:
        statements.append(str(statement))
        return real_copy(self, statement, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    writer = TrafficWriter(engine, spill_dir=tmp_path / "spill", batch_size=500)
    writer.start()
    for i in range(1_000):
        writer.enqueue(_row(i))
    writer.close()
    assert _count(engine) == 1_000
    assert statements
    assert all(s.startswith("COPY traffic (") for s in statements)
    assert len(statements) <= 4  # batches, not rows
    engine.dispose()


@pytest.fixture
def locked_sqlite(sqlite_url: str) -> Iterator[tuple[Engine, sqlite3.Connection]]:
    """A migrated SQLite state db, an engine that gives up on locks after 0.2 s, and a
    second connection that can hold an exclusive lock (the database "down" for writes)."""
    upgrade(make_engine(sqlite_url))
    path = sqlite_url.removeprefix("sqlite:///")
    engine = create_engine(sqlite_url, connect_args={"timeout": 0.2})
    blocker = sqlite3.connect(path, isolation_level=None, timeout=5)
    yield engine, blocker
    blocker.close()
    engine.dispose()


def test_spill_when_database_unavailable_then_replay(
    locked_sqlite: tuple[Engine, sqlite3.Connection], tmp_path: Path
) -> None:
    engine, blocker = locked_sqlite
    spill = tmp_path / "spill"
    writer = TrafficWriter(
        engine, spill_dir=spill, batch_size=50, flush_seconds=0.05, retry_seconds=0.2
    )
    writer.start()
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(300):
        writer.enqueue(_row(i))
    _wait(lambda: writer.stats().spilled >= 300)
    assert not writer.stats().database_up
    assert _spill_files(spill)
    blocker.execute("COMMIT")

    _wait(lambda: _count(engine) == 300)
    _wait(lambda: not _spill_files(spill))
    writer.close()
    assert _count(engine) == 300
    assert writer.stats().replayed == 300
    assert writer.stats().database_up


def test_buffer_stays_bounded_when_writer_cannot_keep_up(
    locked_sqlite: tuple[Engine, sqlite3.Connection], tmp_path: Path
) -> None:
    engine, blocker = locked_sqlite
    writer = TrafficWriter(
        engine, spill_dir=tmp_path / "spill", batch_size=20, flush_seconds=30, buffer_max=100
    )
    writer.start()
    blocker.execute("BEGIN EXCLUSIVE")
    peak = 0
    for i in range(2_000):
        writer.enqueue(_row(i))
        peak = max(peak, writer.buffered)
    assert peak <= 100
    assert writer.stats().spilled >= 2_000 - 100 - 20  # buffer + one batch in flight
    blocker.execute("COMMIT")
    writer.close()
    assert _count(engine) + writer.spill_pending == 2_000
    # a later writer (say, after a restart) replays what is left
    later = TrafficWriter(engine, spill_dir=tmp_path / "spill", flush_seconds=0.05)
    later.start()
    _wait(lambda: _count(engine) == 2_000)
    later.close()
    assert not _spill_files(tmp_path / "spill")


def test_close_flushes_buffer_without_waiting_for_timer(engine: Engine, tmp_path: Path) -> None:
    writer = TrafficWriter(engine, spill_dir=tmp_path / "spill", flush_seconds=3600)
    writer.start()
    for i in range(10):
        writer.enqueue(_row(i))
    writer.close()
    assert _count(engine) == 10


def test_close_spills_when_database_down(
    locked_sqlite: tuple[Engine, sqlite3.Connection], tmp_path: Path
) -> None:
    engine, blocker = locked_sqlite
    spill = tmp_path / "spill"
    writer = TrafficWriter(engine, spill_dir=spill, flush_seconds=3600)
    writer.start()
    blocker.execute("BEGIN EXCLUSIVE")
    for i in range(25):
        writer.enqueue(_row(i))
    writer.close()
    blocker.execute("COMMIT")
    assert _count(engine) == 0
    lines = [ln for f in _spill_files(spill) for ln in f.read_text().splitlines()]
    assert sorted(decode_record(ln).request_id for ln in lines) == sorted(
        f"r{i}" for i in range(25)
    )


def test_replay_skips_file_locked_by_live_writer(
    locked_sqlite: tuple[Engine, sqlite3.Connection], tmp_path: Path
) -> None:
    engine, blocker = locked_sqlite
    spill = tmp_path / "spill"
    live = TrafficWriter(engine, spill_dir=spill, flush_seconds=3600, retry_seconds=3600)
    blocker.execute("BEGIN EXCLUSIVE")
    live.start()
    for i in range(5):
        live.enqueue(_row(i))
    assert live.flush()
    blocker.execute("COMMIT")
    other = TrafficWriter(engine, spill_dir=spill, flush_seconds=0.05)
    other.start()
    time.sleep(0.5)
    assert _count(engine) == 0  # the live writer still holds its file
    other.close()
    live.close()  # the live writer: database up again, its close writes... nothing buffered
    other2 = TrafficWriter(engine, spill_dir=spill, flush_seconds=0.05)
    other2.start()
    _wait(lambda: _count(engine) == 5)
    other2.close()


@pytest.mark.postgres
def test_refused_rows_are_kept_aside_and_others_written(postgres_url: str, tmp_path: Path) -> None:
    engine = make_engine(postgres_url)
    upgrade(engine)
    spill = tmp_path / "spill"
    writer = TrafficWriter(engine, spill_dir=spill, batch_size=100)
    writer.start()
    for i in range(50):
        writer.enqueue(_row(i, version="x" * 40 if i == 17 else "1"))  # column is 32 wide
    writer.close()
    assert _count(engine) == 49
    assert writer.stats().rejected == 1
    rejected = list(spill.glob(f"{REJECTED_PREFIX}*.jsonl"))
    assert [decode_record(ln).request_id for ln in rejected[0].read_text().splitlines()] == ["r17"]
    engine.dispose()


@pytest.mark.postgres
def test_bad_rows_are_isolated_by_halving_not_row_by_row(postgres_url: str, tmp_path: Path) -> None:
    """3 refused rows in a batch of 500: every other row written, in a few dozen writes
    (row by row would be 497); the batch after it is one write again."""
    engine = make_engine(postgres_url)
    upgrade(engine)
    writer = TrafficWriter(engine, spill_dir=tmp_path / "spill", batch_size=500)
    writes: list[int] = []
    writer.on_flush = lambda rows, _seconds: writes.append(rows)
    writer.start()
    bad = {3, 250, 499}
    for i in range(500):
        writer.enqueue(_row(i, version="x" * 40 if i in bad else "1"))
    assert writer.flush()
    print(f"\n3 bad rows in 500: {len(writes)} successful writes")
    assert sum(writes) == 497
    assert len(writes) <= 3 * 2 * 9  # about 2 log2(500) per bad row
    for i in range(500, 600):
        writer.enqueue(_row(i))
    writer.close()
    assert writes[-1] == 100
    assert _count(engine) == 597
    assert writer.stats().rejected == 3
    engine.dispose()


def test_replay_resumes_at_noted_progress_and_skips_bad_lines(
    engine: Engine, tmp_path: Path
) -> None:
    # given: a spill file left by a crashed process, 2 rows already replayed (noted), then an
    # unreadable line, a good row, and a last line cut off mid-write
    spill_dir = tmp_path / "spill"
    spill_dir.mkdir()
    path = spill_dir / f"{SPILL_PREFIX}1-crashed.jsonl"
    done = [encode_record(_row(i)) + "\n" for i in range(2)]
    rest = [encode_record(_row(i)) + "\n" for i in range(2, 5)]
    cut_off = '["t", "r9'
    path.write_text("".join([*done, *rest, "not json\n", encode_record(_row(5)) + "\n", cut_off]))
    write_progress(path, len("".join(done).encode()))
    # when: a writer starts on that directory
    writer = TrafficWriter(engine, spill_dir=spill_dir, batch_size=2, flush_seconds=0.05)
    writer.start()
    _wait(lambda: not _spill_files(spill_dir))
    writer.close()
    # then: only the rows after the noted progress are written, the file and its note gone
    with session_scope(engine) as session:
        ids = session.scalars(select(Traffic.request_id)).all()
    assert sorted(ids) == ["r2", "r3", "r4", "r5"]
    assert writer.stats().replayed == 4
    assert list(spill_dir.iterdir()) == []
