"""Write transactions of the ledger: one writer at a time per environment.

Every ledger write reads some state (is the rollout still active? what is the current
release?) and then writes based on it. Two writers that both read before either writes
would both act (two promotions of one rollout). So writers are serialised up front:

- Postgres: a transaction-scoped advisory lock per environment
  (`pg_advisory_xact_lock`), taken before anything is read, plus `SELECT ... FOR UPDATE`
  on the rollout row the operation changes. The second writer waits, then reads the state
  the first one committed and refuses with a clear reason.
- SQLite: `BEGIN IMMEDIATE` as the first statement, which takes the database write lock
  at once (pysqlite would otherwise begin lazily, at the first INSERT/UPDATE, after the
  reads). The engine's busy timeout makes the second writer wait for the first.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Engine, text
from sqlalchemy.orm import Session


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Session]:
    """A session in one write transaction: commit on success, roll back on any error.

    On SQLite the write lock is taken before the first read (BEGIN IMMEDIATE); on
    Postgres call `lock_env` before reading what the write depends on.
    """
    with Session(engine, expire_on_commit=False) as session, session.begin():
        if engine.dialect.name == "sqlite":
            # The first statement of the transaction: pysqlite has not begun one yet
            # (it begins implicitly only before DML), so this one takes the write lock now.
            session.connection().exec_driver_sql("BEGIN IMMEDIATE")
        yield session


def env_lock_key(env: str) -> int:
    """A stable signed 64-bit advisory-lock key for ledger writes in `env`."""
    digest = hashlib.blake2b(f"sml-ledger:{env}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def lock_env(session: Session, env: str) -> None:
    """Serialise ledger writers of `env` until the transaction ends (Postgres).

    On SQLite the whole database is already write-locked by `write_transaction`.
    """
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": env_lock_key(env)})
