"""Engines and migrations for the state database (SQLite or Postgres)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, create_engine, event, inspect
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"


def normalize_url(url: str | URL) -> URL:
    """Pick the psycopg 3 driver for plain postgresql:// URLs; leave others as given."""
    parsed = make_url(url)
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cursor = dbapi_conn.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """Create an engine; for SQLite create the parent folder and turn on WAL + busy timeout.

    Nothing connects until the engine is first used.
    """
    parsed = normalize_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        kwargs.setdefault("connect_args", {"timeout": 30, "check_same_thread": False})
        engine = create_engine(parsed, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(parsed, **kwargs)


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    """A session factory whose objects stay readable after commit."""
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A transaction: commit on success, roll back on any error."""
    with make_session_factory(engine)() as session, session.begin():
        yield session


def alembic_config(engine: Engine) -> Config:
    """An Alembic config that runs our migrations against `engine`."""
    from alembic.config import Config  # alembic is imported only when migrating

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def upgrade(engine: Engine, revision: str = "head") -> str | None:
    """Apply migrations up to `revision` (safe to re-run); return the resulting revision."""
    from alembic import command

    command.upgrade(alembic_config(engine), revision)
    return current_revision(engine)


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None if never migrated."""
    from alembic.runtime.migration import MigrationContext

    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def wait_for_database(engine: Engine, timeout: float = 30.0, interval: float = 1.0) -> None:
    """Block until the database answers, retrying connection errors.

    Raises:
        OperationalError: if it still does not answer after `timeout` seconds.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            with engine.connect() as conn:
                conn.exec_driver_sql("SELECT 1")
            return
        except OperationalError:
            if time.monotonic() >= deadline:
                raise
            time.sleep(interval)


def table_names(engine: Engine) -> set[str]:
    """Names of the tables present (for checks and tests)."""
    return set(inspect(engine).get_table_names())


LEDGER_TABLES = frozenset({"releases", "rollouts", "rollout_events"})


def check_ledger_tables(engine: Engine) -> None:
    """Refuse a state database that was never migrated (the one ledger-ready check).

    Raises:
        SmlError: when any ledger table is missing (run `sml db upgrade`).
    """
    from core.errors import SmlError

    if not table_names(engine) >= LEDGER_TABLES:
        raise SmlError("the state database has no ledger tables yet: run `sml db upgrade`")


@contextmanager
def state_database(
    url: str | URL, *, wait_seconds: float | None = None, ledger: bool = True
) -> Iterator[Engine]:
    """An engine on the state database, disposed of when the block ends (even on error).

    Args:
        url: the database URL (`Settings.database_url`).
        wait_seconds: wait up to this long for the database to answer first.
        ledger: refuse a database without the ledger tables (`check_ledger_tables`).

    Raises:
        OperationalError: the database did not answer within `wait_seconds`.
        SmlError: `ledger` and the ledger tables are missing.
    """
    engine = make_engine(url)
    try:
        if wait_seconds is not None:
            wait_for_database(engine, timeout=wait_seconds)
        if ledger:
            check_ledger_tables(engine)
        yield engine
    finally:
        engine.dispose()
