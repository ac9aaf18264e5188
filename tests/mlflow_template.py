"""MLflow's SQLite tracking stores for tests: migrated once per worker, then copied.

Every test gets its own MLflow store (`isolated_settings`, `factories.make_registry`), and
MLflow creates one by running its Alembic migrations (`mlflow.store.db.utils.
_initialize_tables`). Here the first store a worker process creates is made by MLflow
itself and kept as the template; every later one is a copy of it, written by SQLite's
online backup API into the database MLflow just opened (~15 ms). MLflow then checks the
schema as it always does (`_verify_schema`): a copy holds what the same MLflow's
migrations produce. Other databases (Postgres, in-memory) are created by MLflow as usual.
Measured: `pytest -n 2 tests/core` 281 -> 272 s (docs/benchmarks.md).
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

_LOCK = threading.Lock()


@contextmanager
def _engine_connection(engine: Any) -> Iterator[sqlite3.Connection]:
    """The engine's sqlite3 connection, returned to its pool afterwards."""
    pooled = engine.raw_connection()
    try:
        yield pooled.driver_connection
    finally:
        pooled.close()


def _is_sqlite_file(engine: Any) -> bool:
    return engine.dialect.name == "sqlite" and engine.url.database not in (None, "", ":memory:")


def store_initializer(template: Path, migrate: Callable[[Any], None]) -> Callable[[Any], None]:
    """An `_initialize_tables(engine)` that copies `template` into a new SQLite store,
    after making the template with `migrate` (MLflow's own) the first time."""

    def initialize(engine: Any) -> None:
        if not _is_sqlite_file(engine):
            migrate(engine)
            return
        with _LOCK:
            if not template.is_file():
                migrate(engine)
                partial = template.with_suffix(".partial")
                target = sqlite3.connect(partial)
                try:
                    with _engine_connection(engine) as connection:
                        connection.backup(target)
                finally:
                    target.close()
                partial.replace(template)
                return
        source = sqlite3.connect(f"file:{template}?mode=ro", uri=True)
        try:
            with _engine_connection(engine) as connection:
                source.backup(connection)
        finally:
            source.close()

    return initialize


def install(folder: Path) -> None:
    """Make every new SQLite MLflow store of this process a copy of one template kept in
    `folder` (a per-worker temp dir)."""
    import mlflow.store.db.utils as db_utils
    import mlflow.store.model_registry.sqlalchemy_store as registry_store

    initialize = store_initializer(folder / "mlflow-template.db", db_utils._initialize_tables)
    # the tracking store calls it through the module, the registry store by its own name
    db_utils._initialize_tables = initialize
    registry_store._initialize_tables = initialize  # type: ignore[attr-defined]
