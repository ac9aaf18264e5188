"""One writer per model: retrain and train of one model serialize on a lock.

A retrain plans from what the registry and the ledger hold, then trains, registers and
gives the version its role. Two runs on one model at once would both plan "train" (two
versions for one image), or one would adopt the version the other is still finishing.
So each run holds the model's lock around "plan + train + register + role", and a run
that waited re-plans after it gets the lock: a version with no role found while holding
the lock was left by a run that is no longer alive, and only then is it resumed.

- Postgres: a session-level `pg_advisory_lock` on a dedicated connection, held until the
  block ends (the key is a blake2b of the model name: stable across processes, unlike
  `hash()`). A dead run's connection closes, so its lock goes with it.
- SQLite: an exclusive `fcntl.flock` on a file next to the database file; the kernel
  drops it when the process dies. No migration either way.

The lock is re-entrant within one thread: the `train` flow, run as a subflow of a retrain
that already holds the model's lock, does not wait for itself.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import Connection, Engine, text

from core.errors import SmlError

DEFAULT_TIMEOUT_SECONDS = 1800.0
"""How long a run waits for another run of the same model (a training takes minutes)."""
POLL_SECONDS = 0.2
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")

# lock identity -> (thread id, depth): the locks this process holds, for re-entrance
_held: dict[str, tuple[int, int]] = {}
_held_guard = threading.Lock()


class ModelLockTimeout(SmlError):
    """Another run kept the model's lock for longer than we were willing to wait."""


def model_lock_key(model: str) -> int:
    """A stable signed 64-bit advisory-lock key for `model` (not the ledger's env keys)."""
    digest = hashlib.blake2b(f"sml-model:{model}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_file(engine: Engine, model: str) -> Path:
    """The SQLite lock file of `model`: next to the database file.

    Raises:
        SmlError: the SQLite database is in memory (no file to put the lock next to).
    """
    database = engine.url.database
    if not database or database == ":memory:":
        raise SmlError("a model lock needs a SQLite database file, not an in-memory one")
    path = Path(database)
    return path.with_name(f"{path.name}.model-{_UNSAFE.sub('_', model)}.lock")


def _identity(engine: Engine, model: str) -> str:
    if engine.dialect.name == "sqlite":
        return str(lock_file(engine, model).resolve())
    url = engine.url
    return f"{url.host}:{url.port}/{url.database}#{model_lock_key(model)}"


@contextmanager
def model_lock(
    engine: Engine,
    model: str,
    *,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    on_wait: Callable[[], None] | None = None,
) -> Iterator[None]:
    """Hold the lock of `model` in the state database of `engine` for the block.

    `on_wait` is called once when another run holds the lock (to say so in a log).

    Raises:
        ModelLockTimeout: another run held it for longer than `timeout` seconds.
        OperationalError: the database did not answer (Postgres).
    """
    identity, me = _identity(engine, model), threading.get_ident()
    with _held_guard:
        owner, depth = _held.get(identity, (None, 0))
        if owner == me:
            _held[identity] = (me, depth + 1)
    if owner == me:
        try:
            yield
        finally:
            _release_reentry(identity, me)
        return
    acquire = _sqlite_lock if engine.dialect.name == "sqlite" else _postgres_lock
    with acquire(engine, model, timeout, on_wait or _quiet):
        with _held_guard:
            _held[identity] = (me, 1)
        try:
            yield
        finally:
            with _held_guard:
                _held.pop(identity, None)


def _quiet() -> None:
    """The default `on_wait`: nothing to say."""


def _release_reentry(identity: str, me: int) -> None:
    with _held_guard:
        _, depth = _held[identity]
        _held[identity] = (me, depth - 1)


def _timed_out(model: str, timeout: float) -> ModelLockTimeout:
    return ModelLockTimeout(
        f"another run of {model!r} (retrain or train) held its lock for more than "
        f"{timeout:.0f} s: wait for it to finish, then run again"
    )


@contextmanager
def _sqlite_lock(
    engine: Engine, model: str, timeout: float, on_wait: Callable[[], None]
) -> Iterator[None]:
    path = lock_file(engine, model)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        _wait_for(lambda: _try_flock(fd), model, timeout, on_wait)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _wait_for(
    try_lock: Callable[[], bool], model: str, timeout: float, on_wait: Callable[[], None]
) -> None:
    """Poll `try_lock` until it succeeds; call `on_wait` once when it first fails.

    Raises:
        ModelLockTimeout: still not acquired after `timeout` seconds.
    """
    deadline, waited = time.monotonic() + timeout, False
    while not try_lock():
        if time.monotonic() >= deadline:
            raise _timed_out(model, timeout)
        if not waited:
            waited = True
            on_wait()
        time.sleep(POLL_SECONDS)


def _try_flock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _try_pg_lock(conn: Connection, key: int) -> bool:
    return bool(conn.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())


@contextmanager
def _postgres_lock(
    engine: Engine, model: str, timeout: float, on_wait: Callable[[], None]
) -> Iterator[None]:
    key = model_lock_key(model)
    # a dedicated connection, outside any transaction: the lock lives as long as it does
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        _wait_for(lambda: _try_pg_lock(conn, key), model, timeout, on_wait)
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})
