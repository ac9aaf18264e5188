"""The batched traffic writer: routers log every prediction without touching the database.

`TrafficWriter.enqueue(record)` is O(1) (a deque append) and never does I/O in the common
case. A background thread flushes the buffer every TRAFFIC_FLUSH_SECONDS, or as soon as
TRAFFIC_BATCH_SIZE rows are waiting, in batches: one multi-row INSERT on SQLite, one
`COPY ... FROM STDIN` per table on Postgres (psycopg 3).

When the database is unreachable, rows spill to a local append-only JSON-lines file under
TRAFFIC_SPILL_DIR (fsynced per batch) and the writer retries every `retry_seconds`; when
the database answers again the spill files are replayed in batches and deleted. Memory is
bounded: the buffer never holds more than TRAFFIC_BUFFER_MAX rows; past that, `enqueue`
itself moves the oldest batch to the spill file (a rare path that does local disk I/O).
`close()` flushes everything: to the database if it answers, else to the spill file.

Guarantees and limits:
- No row is dropped. A row the database refuses for a reason that is not an outage (a
  constraint or data error) is isolated row by row and written to a `rejected-*.jsonl`
  file next to the spill files, logged and counted, so one bad row cannot block the rest.
- Replay is at-least-once across a crash: replay progress is stored after each committed
  batch, so a process killed between a commit and that note replays one batch twice.
- Several routers may share a spill dir: each holds an exclusive `flock` on the file it
  appends to, and a replayer only takes files it can lock (left by stopped processes or
  rotated away by their writer).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, NamedTuple

from sqlalchemy import Engine
from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)

SPILL_PREFIX = "spill-"
REJECTED_PREFIX = "rejected-"
_PROGRESS_SUFFIX = ".done"


class TrafficRecord(NamedTuple):
    """One row of the `traffic` table (field order = column order of COPY)."""

    request_id: str
    ts: datetime
    env: str
    user_id: str | None
    rollout_id: int | None
    model_name: str
    model_version: str
    role: str
    input_text: str
    output: str | None
    latency_ms: float
    error: str | None


class FeedbackRecord(NamedTuple):
    """One row of the `feedback` table."""

    request_id: str
    ts: datetime
    kind: str
    value: str


Record = TrafficRecord | FeedbackRecord

_TRAFFIC_COLUMNS = TrafficRecord._fields
_FEEDBACK_COLUMNS = FeedbackRecord._fields
_COPY_TRAFFIC = f"COPY traffic ({', '.join(_TRAFFIC_COLUMNS)}) FROM STDIN"
_COPY_FEEDBACK = f"COPY feedback ({', '.join(_FEEDBACK_COLUMNS)}) FROM STDIN"
# column names are the record fields above (constants), never user input
_INSERT_TRAFFIC = (
    f"INSERT INTO traffic ({', '.join(_TRAFFIC_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_TRAFFIC_COLUMNS))})"
)
_INSERT_FEEDBACK = (
    f"INSERT INTO feedback ({', '.join(_FEEDBACK_COLUMNS)}) "  # noqa: S608
    f"VALUES ({', '.join('?' * len(_FEEDBACK_COLUMNS))})"
)


def _sqlite_ts(ts: datetime) -> str:
    """A timestamp as core.db's UTCDateTime stores it on SQLite: naive UTC text."""
    return ts.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


@dataclass(frozen=True, slots=True)
class WriterStats:
    """Counters of a writer since it started (for metrics and tests)."""

    enqueued: int
    written: int
    spilled: int
    replayed: int
    rejected: int
    buffered: int
    spill_pending: int
    database_up: bool


def _is_outage(exc: BaseException) -> bool:
    """True for errors that mean "the database is not answering right now"."""
    import psycopg

    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(
        exc,
        sa_exc.OperationalError
        | sa_exc.InterfaceError
        | sa_exc.DisconnectionError
        | sa_exc.TimeoutError
        | psycopg.OperationalError
        | psycopg.InterfaceError
        | sqlite3.OperationalError
        | OSError,
    ):
        return True
    # SQLAlchemy wraps driver errors; look at the cause as well
    cause = exc.__cause__ or exc.__context__
    return cause is not None and cause is not exc and _is_outage_leaf(cause)


def _is_outage_leaf(exc: BaseException) -> bool:
    import psycopg

    return isinstance(
        exc, psycopg.OperationalError | psycopg.InterfaceError | sqlite3.OperationalError | OSError
    )


def _encode(record: Record) -> str:
    """One spill line: `["t" | "f", ...values]`, timestamps in ISO 8601."""
    if type(record) is TrafficRecord:
        return json.dumps(["t", *record[:1], record.ts.isoformat(), *record[2:]])
    return json.dumps(["f", record[0], record.ts.isoformat(), *record[2:]])


def _decode(line: str) -> Record:
    """Inverse of `_encode`.

    Raises:
        ValueError: the line is not a spill record.
    """
    item = json.loads(line)
    kind, request_id, ts, *rest = item
    when = datetime.fromisoformat(ts)
    if kind == "t" and len(rest) == len(_TRAFFIC_COLUMNS) - 2:
        return TrafficRecord(request_id, when, *rest)
    if kind == "f" and len(rest) == len(_FEEDBACK_COLUMNS) - 2:
        return FeedbackRecord(request_id, when, *rest)
    raise ValueError(f"not a spill record: {line[:80]!r}")


class _SpillFile:
    """The append-only file this process spills to, held under an exclusive flock."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._fh: IO[str] | None = None
        self.path: Path | None = None

    def append(self, records: Iterable[Record]) -> int:
        """Append records durably (flush + fsync); return how many were written."""
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{SPILL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
            self.path = self.directory / name
            fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fh = fh
        lines = [_encode(r) for r in records]
        if lines:
            self._fh.write("\n".join(lines) + "\n")
            self._fh.flush()
            os.fsync(self._fh.fileno())
        return len(lines)

    def rotate(self) -> None:
        """Close the file (releasing its lock) so it can be replayed; the next append opens
        a new one."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None
            self.path = None


class TrafficWriter:
    """Buffers traffic and feedback rows and writes them in batches from a background thread.

    Use `start()` once, `enqueue()` from any thread, `close()` on shutdown (flushes).
    """

    def __init__(
        self,
        engine: Engine,
        *,
        spill_dir: Path,
        batch_size: int = 500,
        flush_seconds: float = 0.5,
        buffer_max: int = 50_000,
        retry_seconds: float = 1.0,
    ) -> None:
        self._engine = engine
        self._postgres = engine.dialect.name == "postgresql"
        self._spill_dir = Path(spill_dir)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._buffer_max = max(buffer_max, batch_size)
        self._retry_seconds = retry_seconds
        self._buffer: deque[Record] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._spill_lock = threading.Lock()  # the spill file: writer thread + overflow path
        self._spill = _SpillFile(self._spill_dir)
        self._thread: threading.Thread | None = None
        self._database_up = True
        self._next_attempt = 0.0
        self._enqueued = 0
        self._written = 0
        self._spilled = 0
        self._replayed = 0
        self._rejected = 0
        self._spill_pending = 0
        self._next_overflow_log = 0.0
        self.on_flush: Callable[[int, float], None] | None = None

    # --- public API --------------------------------------------------------------------
    def start(self) -> None:
        """Start the background flush thread (idempotent). Spill files left by a previous
        process are replayed by it as soon as the database answers."""
        if self._thread is not None:
            return
        self._spill_pending = self._count_pending_on_disk()
        self._thread = threading.Thread(target=self._run, name="traffic-writer", daemon=True)
        self._thread.start()

    def enqueue(self, record: Record) -> None:
        """Buffer one row for writing: O(1), no I/O unless the buffer is full (then the
        oldest batch moves to the spill file so memory stays bounded)."""
        buffer = self._buffer
        buffer.append(record)
        self._enqueued += 1
        n = len(buffer)
        if n >= self._batch_size and not self._wake.is_set():
            self._wake.set()
        if n > self._buffer_max:
            self._spill_overflow()

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until the buffer is empty (written or spilled); True if it emptied in time.

        Only waits: the background thread does the writing.
        """
        deadline = time.monotonic() + timeout
        while self._buffer or self._busy:
            if time.monotonic() > deadline:
                return False
            self._wake.set()
            time.sleep(0.01)
        return True

    def close(self, timeout: float = 60.0) -> None:
        """Stop the thread after a last flush: to the database if it answers, else to the
        spill file. Nothing buffered is lost."""
        self._stopping.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("traffic writer did not stop within %.0f s; spilling buffer", timeout)
        # whatever is still buffered (thread never started, or stuck): spill it
        self._spill_buffer()
        with self._spill_lock:
            self._spill.rotate()

    def stats(self) -> WriterStats:
        """A snapshot of the counters."""
        return WriterStats(
            enqueued=self._enqueued,
            written=self._written,
            spilled=self._spilled,
            replayed=self._replayed,
            rejected=self._rejected,
            buffered=len(self._buffer),
            spill_pending=self._spill_pending,
            database_up=self._database_up,
        )

    @property
    def buffered(self) -> int:
        """Rows waiting in memory."""
        return len(self._buffer)

    @property
    def spill_pending(self) -> int:
        """Rows in spill files not yet replayed (known to this process)."""
        return self._spill_pending

    def spill_bytes(self) -> int:
        """Bytes in spill files in the spill dir (all processes)."""
        try:
            return sum(
                e.stat().st_size
                for e in os.scandir(self._spill_dir)
                if e.name.startswith(SPILL_PREFIX) and e.name.endswith(".jsonl")
            )
        except FileNotFoundError:
            return 0

    # --- the background thread ---------------------------------------------------------
    _busy = False

    def _run(self) -> None:
        while True:
            self._wake.wait(self._flush_seconds)
            self._wake.clear()
            stopping = self._stopping.is_set()
            self._busy = True
            try:
                self._cycle(final=stopping)
            except Exception:  # the writer must survive anything; rows stay buffered
                log.exception("traffic writer cycle failed; will retry")
            finally:
                self._busy = False
            if stopping:
                return

    def _cycle(self, *, final: bool) -> None:
        """One flush: live rows first, then (if the database answers) spill replay."""
        if not self._database_up:
            if time.monotonic() < self._next_attempt and not final:
                self._spill_buffer()
                return
            if not self._probe():
                self._spill_buffer()
                return
        while self._buffer:
            batch = self._take(self._batch_size)
            if not self._write_or_spill(batch):
                self._spill_buffer()
                return
        if self._spill_pending or self._has_spill_files():
            self._replay(max_batches=None if final else 20)

    def _probe(self) -> bool:
        """One cheap round trip; marks the database up (or down again) accordingly."""
        try:
            with self._engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
        except Exception as exc:
            self._mark_down(exc)
            return False
        self._mark_up()
        return True

    def _take(self, n: int) -> list[Record]:
        buffer = self._buffer
        batch: list[Record] = []
        try:
            for _ in range(n):
                batch.append(buffer.popleft())
        except IndexError:  # emptied (possibly by the overflow path on another thread)
            pass
        return batch

    def _write_or_spill(self, batch: list[Record]) -> bool:
        """Write a batch; on an outage spill it and return False."""
        try:
            self._write(batch)
        except Exception as exc:
            if _is_outage(exc):
                self._mark_down(exc)
                self._spill_records(batch)
                return False
            self._isolate_rejects(batch, exc)
            return True
        self._written += len(batch)
        self._mark_up()
        return True

    def _mark_down(self, exc: BaseException) -> None:
        if self._database_up:
            log.warning(
                "state database unreachable (%s); spilling traffic to %s",
                type(exc).__name__,
                self._spill_dir,
            )
        self._database_up = False
        self._next_attempt = time.monotonic() + self._retry_seconds

    def _mark_up(self) -> None:
        if not self._database_up:
            log.warning("state database reachable again; replaying spilled traffic")
            with self._spill_lock:
                self._spill.rotate()  # so this process's own spill file can be replayed
        self._database_up = True

    def _write(self, batch: list[Record]) -> None:
        """One transaction: multi-row INSERT (SQLite) or COPY (Postgres) per table."""
        traffic = [r for r in batch if type(r) is TrafficRecord]
        feedback = [r for r in batch if type(r) is FeedbackRecord]
        started = time.perf_counter()
        with self._engine.begin() as conn:
            if self._postgres:
                raw = conn.connection.driver_connection
                with raw.cursor() as cur:  # type: ignore[union-attr]
                    if traffic:
                        with cur.copy(_COPY_TRAFFIC) as copy:
                            for row in traffic:
                                copy.write_row(row)
                    if feedback:
                        with cur.copy(_COPY_FEEDBACK) as copy:
                            for fb in feedback:
                                copy.write_row(fb)
            else:
                # one prepared multi-row executemany; timestamps pre-formatted exactly as
                # SQLAlchemy stores UTCDateTime on SQLite (naive UTC), cheaper per row
                # than binding through the ORM types
                if traffic:
                    conn.exec_driver_sql(
                        _INSERT_TRAFFIC, [(*r[:1], _sqlite_ts(r[1]), *r[2:]) for r in traffic]
                    )
                if feedback:
                    conn.exec_driver_sql(
                        _INSERT_FEEDBACK, [(r[0], _sqlite_ts(r[1]), *r[2:]) for r in feedback]
                    )
        if self.on_flush is not None:
            self.on_flush(len(batch), time.perf_counter() - started)

    def _isolate_rejects(self, batch: list[Record], exc: BaseException) -> None:
        """The database refused the batch for a non-outage reason: write row by row and
        keep the refused rows in a rejected file."""
        log.error("traffic batch refused (%s); isolating bad rows", type(exc).__name__)
        rejected = []
        for record in batch:
            try:
                self._write([record])
                self._written += 1
            except Exception as row_exc:
                if _is_outage(row_exc):
                    self._mark_down(row_exc)
                    self._spill_records([record])
                    continue
                rejected.append(record)
        if rejected:
            self._spill_dir.mkdir(parents=True, exist_ok=True)
            path = self._spill_dir / f"{REJECTED_PREFIX}{os.getpid()}.jsonl"
            with open(path, "a", encoding="utf-8") as fh:
                fh.write("".join(_encode(r) + "\n" for r in rejected))
            self._rejected += len(rejected)
            log.error("%d traffic rows refused by the database, kept in %s", len(rejected), path)

    # --- spilling ------------------------------------------------------------------------
    def _spill_records(self, records: list[Record]) -> None:
        if not records:
            return
        with self._spill_lock:
            n = self._spill.append(records)
        self._spilled += n
        self._spill_pending += n

    def _spill_buffer(self) -> None:
        while self._buffer:
            self._spill_records(self._take(self._batch_size))

    def _spill_overflow(self) -> None:
        """Called by `enqueue` when the buffer is over its bound: move the oldest rows out."""
        batch = self._take(self._batch_size)
        self._spill_records(batch)
        now = time.monotonic()
        if now >= self._next_overflow_log:
            self._next_overflow_log = now + 10.0
            log.warning(
                "traffic buffer over %d rows: spilling the oldest to disk (%d spilled so far)",
                self._buffer_max,
                self._spilled,
            )

    # --- replay --------------------------------------------------------------------------
    def _has_spill_files(self) -> bool:
        try:
            return any(
                e.name.startswith(SPILL_PREFIX) and e.name.endswith(".jsonl")
                for e in os.scandir(self._spill_dir)
            )
        except FileNotFoundError:
            return False

    def _count_pending_on_disk(self) -> int:
        total = 0
        for path in self._spill_paths():
            try:
                with open(path, "rb") as fh:
                    fh.seek(_read_progress(path))
                    total += sum(1 for _ in fh)
            except FileNotFoundError:
                continue
        return total

    def _spill_paths(self) -> list[Path]:
        try:
            return sorted(
                Path(e.path)
                for e in os.scandir(self._spill_dir)
                if e.name.startswith(SPILL_PREFIX) and e.name.endswith(".jsonl")
            )
        except FileNotFoundError:
            return []

    def _replay(self, max_batches: int | None) -> None:
        """Replay spill files that no live writer holds, `max_batches` at most per call
        (live rows keep priority)."""
        batches = 0
        own = self._spill.path
        for path in self._spill_paths():
            if path == own:
                continue
            for done in self._replay_file(path):
                if not done:
                    return  # outage again
                batches += 1
                if max_batches is not None and batches >= max_batches:
                    return

    def _replay_file(self, path: Path) -> Iterator[bool]:
        """Replay one file under its lock, yielding True per committed batch (False on an
        outage). Progress is noted after each batch; the file is deleted when done."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed in finally
        except FileNotFoundError:
            return
        try:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return  # a live writer still appends to it
            try:
                if os.stat(path).st_ino != os.fstat(fh.fileno()).st_ino:
                    return  # replayed and deleted by someone else meanwhile
            except FileNotFoundError:
                return
            offset = _read_progress(path)
            fh.seek(offset)
            while True:
                records: list[Record] = []
                consumed = 0
                for raw in fh:
                    if not raw.endswith(b"\n"):
                        log.error("dropping a truncated last line in %s (crash mid-write)", path)
                        consumed += len(raw)
                        break
                    consumed += len(raw)
                    try:
                        records.append(_decode(raw.decode("utf-8")))
                    except (ValueError, UnicodeDecodeError):
                        log.error("skipping an unreadable line in %s", path)
                    if len(records) >= self._batch_size:
                        break
                if not consumed:
                    break
                if records:
                    try:
                        self._write(records)
                    except Exception as exc:
                        if _is_outage(exc):
                            self._mark_down(exc)
                            yield False
                            return
                        self._isolate_rejects(records, exc)
                    else:
                        self._written += len(records)
                    self._replayed += len(records)
                    self._spill_pending = max(0, self._spill_pending - len(records))
                offset += consumed
                _write_progress(path, offset)
                yield True
            path.unlink(missing_ok=True)
            _progress_path(path).unlink(missing_ok=True)
            log.info("replayed spill file %s", path.name)
        finally:
            fh.close()


def _progress_path(path: Path) -> Path:
    return path.with_name(path.name + _PROGRESS_SUFFIX)


def _read_progress(path: Path) -> int:
    try:
        return int(_progress_path(path).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def _write_progress(path: Path, offset: int) -> None:
    tmp = _progress_path(path).with_suffix(".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, _progress_path(path))
