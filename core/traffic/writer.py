"""The batched traffic writer: routers log every prediction without touching the database.

`TrafficWriter.enqueue(record)` is O(1) (a deque append) and never does I/O in the common
case. A background thread flushes the buffer every TRAFFIC_FLUSH_SECONDS, or as soon as
TRAFFIC_BATCH_SIZE rows are waiting, in batches: one multi-row INSERT on SQLite, one
`COPY ... FROM STDIN` per table on Postgres (psycopg 3).

When the database is unreachable, rows spill to a local append-only JSON-lines file under
TRAFFIC_SPILL_DIR (fsynced per batch, core/traffic/spill.py) and the writer retries every
`retry_seconds`; when the database answers again the spill files are replayed in batches
and deleted. Memory is bounded: the buffer never holds more than TRAFFIC_BUFFER_MAX rows;
past that, `enqueue` itself moves the oldest batch to the spill file (a rare path that
does local disk I/O). `close()` flushes everything: to the database if it answers, else
to the spill file.

Guarantees and limits:
- No row is dropped. A row the database refuses for a reason that is not an outage (a
  constraint or data error) is isolated by halving the batch and written to a `rejected-*.jsonl`
  file next to the spill files, logged and counted, so one bad row cannot block the rest.
- Replay is at-least-once across a crash: replay progress is stored after each committed
  batch, so a process killed between a commit and that note replays one batch twice.
- Several routers may share a spill dir: each holds an exclusive `flock` on the file it
  appends to, and a replayer only takes files it can lock (left by stopped processes or
  rotated away by their writer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine

from core.traffic import spill
from core.traffic.batch_write import is_outage, write_rows
from core.traffic.records import FeedbackRecord, Record, TrafficRecord

log = logging.getLogger(__name__)


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
        """Nothing starts here: `start()` starts the thread. `buffer_max` is raised to
        `batch_size` if below it; `retry_seconds` is the wait between outage probes."""
        self._engine = engine
        self._spill_dir = Path(spill_dir)
        self._batch_size = batch_size
        self._flush_seconds = flush_seconds
        self._buffer_max = max(buffer_max, batch_size)
        self._retry_seconds = retry_seconds
        self._buffer: deque[Record] = deque()
        self._wake = threading.Event()
        self._stopping = threading.Event()
        self._spill_lock = threading.Lock()  # the spill file: writer thread + overflow path
        self._spill_file = spill.SpillFile(self._spill_dir)
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
        self._spill_pending = spill.pending_rows(self._spill_dir)
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
            self._spill_file.rotate()

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
        return spill.spill_bytes(self._spill_dir)

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
        if self._spill_pending or spill.has_spill_files(self._spill_dir):
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
            if is_outage(exc):
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
                self._spill_file.rotate()  # so this process's own spill file can be replayed
        self._database_up = True

    def _write(self, batch: list[Record]) -> None:
        """One transaction for the batch; `on_flush` hears its size and duration."""
        traffic = [r for r in batch if type(r) is TrafficRecord]
        feedback = [r for r in batch if type(r) is FeedbackRecord]
        started = time.perf_counter()
        write_rows(self._engine, traffic, feedback)
        if self.on_flush is not None:
            self.on_flush(len(batch), time.perf_counter() - started)

    def _isolate_rejects(self, batch: list[Record], exc: BaseException) -> None:
        """The database refused the batch for a non-outage reason: split it in halves until
        each refused row stands alone (one bad row in n costs about 2 log2(n) writes, not n)
        and keep the refused rows in a rejected file."""
        log.error("traffic batch refused (%s); isolating bad rows", type(exc).__name__)
        rejected: list[Record] = []
        self._bisect(batch, rejected)
        if rejected:
            path = spill.append_rejected(self._spill_dir, rejected)
            self._rejected += len(rejected)
            log.error("%d traffic rows refused by the database, kept in %s", len(rejected), path)

    def _bisect(self, batch: list[Record], rejected: list[Record]) -> None:
        """Write both halves of a refused `batch`; a refused half is split again, a refused
        single row goes to `rejected`; a half that meets an outage is spilled."""
        if len(batch) == 1:
            rejected.append(batch[0])
            return
        middle = len(batch) // 2
        for half in (batch[:middle], batch[middle:]):
            try:
                self._write(half)
            except Exception as exc:
                if is_outage(exc):
                    self._mark_down(exc)
                    self._spill_records(half)
                else:
                    self._bisect(half, rejected)
            else:
                self._written += len(half)

    # --- spilling ------------------------------------------------------------------------
    def _spill_records(self, records: list[Record]) -> None:
        if not records:
            return
        with self._spill_lock:
            n = self._spill_file.append(records)
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
    def _replay(self, max_batches: int | None) -> None:
        """Replay spill files that no live writer holds, `max_batches` at most per call
        (live rows keep priority)."""
        batches = 0
        own = self._spill_file.path
        for path in spill.spill_paths(self._spill_dir):
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
        with spill.claimed(path) as fh:
            if fh is None:
                return
            offset = spill.read_progress(path)
            fh.seek(offset)
            for records, consumed in spill.read_batches(fh, path, self._batch_size):
                if records and not self._replay_batch(records):
                    yield False
                    return
                offset += consumed
                spill.write_progress(path, offset)
                yield True
            spill.finish(path)

    def _replay_batch(self, records: list[Record]) -> bool:
        """Write one batch read back from a spill file; False on an outage (the batch stays
        in the file). Rows refused for another reason go to the rejected file."""
        try:
            self._write(records)
        except Exception as exc:
            if is_outage(exc):
                self._mark_down(exc)
                return False
            self._isolate_rejects(records, exc)
        else:
            self._written += len(records)
        self._replayed += len(records)
        self._spill_pending = max(0, self._spill_pending - len(records))
        return True
