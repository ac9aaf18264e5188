"""The spill directory: where traffic rows wait on local disk while the database is down.

Layout of TRAFFIC_SPILL_DIR:
- `spill-<pid>-<random>.jsonl`: append-only JSON lines (`core.traffic.records`), one file
  per writer at a time, held under an exclusive `flock` while that writer appends to it;
- `spill-....jsonl.done`: replay progress of that file (a byte offset), replaced
  atomically after each committed batch;
- `rejected-<pid>.jsonl`: rows the database refused for a reason that is not an outage.

A replayer only takes files it can lock (left by stopped processes or rotated away by
their writer), so several routers may share one directory. The database side of replay
(writing a batch, counting) is the writer's (core/traffic/writer.py).
"""

from __future__ import annotations

import fcntl
import logging
import os
import uuid
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from core.traffic.records import Record, decode_record, encode_record

log = logging.getLogger(__name__)

SPILL_PREFIX = "spill-"
REJECTED_PREFIX = "rejected-"
_SPILL_SUFFIX = ".jsonl"
_PROGRESS_SUFFIX = ".done"


class SpillFile:
    """The append-only file this process spills to, held under an exclusive flock."""

    def __init__(self, directory: Path) -> None:
        """Nothing is opened until the first `append`."""
        self.directory = directory
        self._fh: IO[str] | None = None
        self.path: Path | None = None

    def append(self, records: Iterable[Record]) -> int:
        """Append records durably (flush + fsync); return how many were written.

        Raises:
            OSError: the directory or file cannot be created or written.
        """
        if self._fh is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            name = f"{SPILL_PREFIX}{os.getpid()}-{uuid.uuid4().hex[:12]}{_SPILL_SUFFIX}"
            self.path = self.directory / name
            fh = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 - kept open on purpose
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            self._fh = fh
        lines = [encode_record(r) for r in records]
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


def _is_spill_name(name: str) -> bool:
    return name.startswith(SPILL_PREFIX) and name.endswith(_SPILL_SUFFIX)


def spill_paths(directory: Path) -> list[Path]:
    """Spill files in `directory` (all processes), oldest name first; [] if it is absent."""
    try:
        return sorted(Path(e.path) for e in os.scandir(directory) if _is_spill_name(e.name))
    except FileNotFoundError:
        return []


def has_spill_files(directory: Path) -> bool:
    """True if any spill file is in `directory` (cheaper than listing them)."""
    try:
        return any(_is_spill_name(e.name) for e in os.scandir(directory))
    except FileNotFoundError:
        return False


def spill_bytes(directory: Path) -> int:
    """Bytes in spill files in `directory` (all processes)."""
    try:
        return sum(e.stat().st_size for e in os.scandir(directory) if _is_spill_name(e.name))
    except FileNotFoundError:
        return 0


def pending_rows(directory: Path) -> int:
    """Rows in spill files not yet replayed (lines past each file's noted progress)."""
    total = 0
    for path in spill_paths(directory):
        try:
            with open(path, "rb") as fh:
                fh.seek(read_progress(path))
                total += sum(1 for _ in fh)
        except FileNotFoundError:
            continue
    return total


def append_rejected(directory: Path, records: list[Record]) -> Path:
    """Keep rows the database refused in this process's rejected file; return its path.

    Raises:
        OSError: the directory or file cannot be created or written.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{REJECTED_PREFIX}{os.getpid()}{_SPILL_SUFFIX}"
    with open(path, "a", encoding="utf-8") as fh:
        fh.write("".join(encode_record(r) + "\n" for r in records))
    return path


@contextmanager
def claimed(path: Path) -> Iterator[IO[bytes] | None]:
    """Open a spill file for replay under its exclusive lock; yields None when it is gone,
    still held by a live writer, or was replayed and deleted by another process meanwhile.
    The file is closed (its lock released) on exit."""
    try:
        fh = open(path, "rb")  # noqa: SIM115 - closed in finally
    except FileNotFoundError:
        fh = None
    if fh is None:
        yield None
        return
    try:
        yield fh if _lock_same_file(path, fh) else None
    finally:
        fh.close()


def _lock_same_file(path: Path, fh: IO[bytes]) -> bool:
    """Take the lock without waiting, then check `path` still names the file we hold."""
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False  # a live writer still appends to it
    try:
        # another inode: replayed and deleted by someone else meanwhile
        return os.stat(path).st_ino == os.fstat(fh.fileno()).st_ino
    except FileNotFoundError:
        return False


def read_batches(fh: IO[bytes], path: Path, batch_size: int) -> Iterator[tuple[list[Record], int]]:
    """From the current position on: (records, bytes consumed) per batch of at most
    `batch_size` records. An unreadable line is skipped and a truncated last line (a crash
    mid-write) dropped, both logged; their bytes count as consumed. A batch may be empty
    when all its lines were skipped."""
    while True:
        records: list[Record] = []
        consumed = 0
        for raw in fh:
            consumed += len(raw)
            if not raw.endswith(b"\n"):
                log.error("dropping a truncated last line in %s (crash mid-write)", path)
                break
            try:
                records.append(decode_record(raw.decode("utf-8")))
            except (ValueError, UnicodeDecodeError):
                log.error("skipping an unreadable line in %s", path)
            if len(records) >= batch_size:
                break
        if not consumed:
            return
        yield records, consumed


def finish(path: Path) -> None:
    """Delete a fully replayed spill file and its progress note."""
    path.unlink(missing_ok=True)
    _progress_path(path).unlink(missing_ok=True)
    log.info("replayed spill file %s", path.name)


def _progress_path(path: Path) -> Path:
    return path.with_name(path.name + _PROGRESS_SUFFIX)


def read_progress(path: Path) -> int:
    """Bytes of `path` already replayed (0 when no progress is noted or it is unreadable)."""
    try:
        return int(_progress_path(path).read_text().strip() or 0)
    except (FileNotFoundError, ValueError):
        return 0


def write_progress(path: Path, offset: int) -> None:
    """Note that the first `offset` bytes of `path` are replayed (atomic replace)."""
    tmp = _progress_path(path).with_suffix(".tmp")
    tmp.write_text(str(offset))
    os.replace(tmp, _progress_path(path))
