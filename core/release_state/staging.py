"""Where a state build writes, and how it is published or dropped, on both backends.

- Postgres: the build writes the schema `release_state_<key>_staging`; publishing is one
  transaction that checks the row count, renames the schema to `release_state_<key>` and
  inserts the `release_states` row, so readers see all of it or nothing.
- SQLite: the build writes `<state_dir>/release_state_<key>_staging.db`; publishing checks
  the row count, flushes the file to disk, renames it over `release_state_<key>.db` (atomic
  on one filesystem), then inserts the row. A crash between the two leaves a final file
  with no row: no reader looks at it (readers start from the row), the next build
  replaces it and garbage collection removes it.

Rows are written pre-encoded: one binary `COPY ... FROM STDIN` per chunk on Postgres
(psycopg 3; the chunk sent as one payload), one prepared executemany on SQLite. Every
chunk first deletes its own position range, so writing a chunk twice (a retried task)
leaves it once.
"""

from __future__ import annotations

import os
import sqlite3
import struct
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, MetaData, create_engine, delete, func, insert, select, text

from core.answer_index import TABLE, answer_index_table
from core.db import ReleaseStateRow, utcnow
from core.errors import DataError
from core.model_lock import model_lock
from core.release_state.keys import (
    ReleaseState,
    file_for,
    find_state,
    schema_for,
    staging_file_for,
    staging_schema_for,
    validate_identifier,
)

POSTGRES = "postgresql"
SQLITE = "sqlite"
_COLUMNS = "position, answer_id, intent, text, vector"
# COPY's binary format: signature, flags, header extension length; -1 field count ends it
_COPY_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)
_COPY_TRAILER = struct.pack("!h", -1)
Row = tuple[int, str, str, str, bytes]


@dataclass(frozen=True, slots=True)
class StagingArea:
    """Where a build of state `key` writes before it publishes: a Postgres schema or a
    SQLite file (`location`); `state_dir` is where a SQLite state is published."""

    key: str
    backend: str
    location: str
    state_dir: str
    prepared_at: float = 0.0
    """time.time() when the area was prepared: the build's start, for its duration."""


def backend_of(engine: Engine) -> str:
    """`postgresql` (states in schemas of the state database) or `sqlite` (in files)."""
    return POSTGRES if engine.dialect.name == "postgresql" else SQLITE


@contextmanager
def build_lock(engine: Engine, key: str, *, timeout: float) -> Iterator[None]:
    """Hold the build lock of state `key` (core.model_lock on `release-state-<key>`): one
    builder per key, and garbage collection never drops a staging area whose builder is
    alive (a killed builder's lock dies with its process or connection).

    Raises:
        ModelLockTimeout: another process held it for longer than `timeout` seconds.
    """
    with model_lock(engine, f"release-state-{key}", timeout=timeout):
        yield


def prepare_staging(engine: Engine, key: str, *, state_dir: Path) -> StagingArea:
    """Drop whatever a previous (killed) build of `key` left and create an empty
    `answer_index` where this build writes. Call it under `build_lock`."""
    if backend_of(engine) == POSTGRES:
        schema = staging_schema_for(key)
        with engine.begin() as conn:
            conn.execute(text(f"DROP SCHEMA IF EXISTS {schema} CASCADE"))
            conn.execute(text(f"CREATE SCHEMA {schema}"))
            answer_index_table(MetaData(), schema).create(conn)
        return StagingArea(key, POSTGRES, schema, str(state_dir), time.time())
    state_dir.mkdir(parents=True, exist_ok=True)
    path = staging_file_for(state_dir, key)
    _unlink_database_file(path)
    staging = create_engine(f"sqlite:///{path}")
    try:
        with staging.begin() as conn:
            answer_index_table(MetaData(), None).create(conn)
    finally:
        staging.dispose()
    return StagingArea(key, SQLITE, str(path), str(state_dir), time.time())


def write_rows(engine: Engine, area: StagingArea, start: int, stop: int, rows: list[Row]) -> int:
    """Replace positions [start, stop) of the staging index with `rows`; return how many.

    Raises:
        sqlalchemy.exc.SQLAlchemyError, psycopg.Error, sqlite3.Error: nothing committed.
    """
    if area.backend == POSTGRES:
        return write_copy(engine, area, start, stop, copy_payload(rows))
    con = sqlite3.connect(area.location, timeout=60)
    try:
        # the staging file is thrown away on a crash: no need to sync every commit
        con.execute("PRAGMA synchronous=OFF")
        with con:
            con.execute(f"DELETE FROM {TABLE} WHERE position >= ? AND position < ?", (start, stop))  # noqa: S608 (constant table)
            con.executemany(f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES (?, ?, ?, ?, ?)", rows)  # noqa: S608 (constant table)
    finally:
        con.close()
    return len(rows)


def write_copy(engine: Engine, area: StagingArea, start: int, stop: int, payload: bytes) -> int:
    """Postgres: replace positions [start, stop) with a `copy_payload`, in one transaction;
    return the rows written (stop - start). Mostly waiting on the server (GIL released).

    Raises:
        sqlalchemy.exc.SQLAlchemyError, psycopg.Error: nothing committed.
    """
    schema = validate_identifier(area.location)
    with engine.begin() as conn:
        raw = conn.connection.driver_connection
        with raw.cursor() as cur:  # type: ignore[union-attr]
            # a staging chunk need not wait for its WAL flush: a chunk lost to a server
            # crash fails publish's row count, it never publishes a hole
            cur.execute("SET LOCAL synchronous_commit = off")
            cur.execute(
                f"DELETE FROM {schema}.{TABLE} WHERE position >= %s AND position < %s",  # noqa: S608 (validated schema)
                (start, stop),
            )
            copy_sql = f"COPY {schema}.{TABLE} ({_COLUMNS}) FROM STDIN (FORMAT BINARY)"
            with cur.copy(copy_sql) as copy:
                copy.write(payload)
    return stop - start


def copy_payload(rows: list[Row]) -> bytes:
    """The rows as one COPY binary-format payload (header, one tuple per row, trailer):
    one struct.pack per row instead of psycopg's Python call per row and field, and no
    hex parsing of the vectors on the server."""
    out = [_COPY_HEADER]
    for position, answer_id, intent, body, vector in rows:
        a, i, t = answer_id.encode(), intent.encode(), body.encode()
        layout = f"!hii i{len(a)}s i{len(i)}s i{len(t)}s i"
        out.append(
            struct.pack(layout, 5, 4, position, len(a), a, len(i), i, len(t), t, len(vector))
        )
        out.append(vector)
    out.append(_COPY_TRAILER)
    return b"".join(out)


def publish(
    engine: Engine,
    area: StagingArea,
    *,
    model_versions: Mapping[str, str],
    expected_rows: int,
    build_seconds: float | None = None,
) -> ReleaseState:
    """Check that the staging index holds `expected_rows` rows, move it to its final name
    and insert its `release_states` row (one transaction on Postgres). Call it under
    `build_lock`. `build_seconds` defaults to the time since `prepare_staging`.

    Raises:
        DataError: the staging index holds another number of rows (a chunk is missing).
    """
    row = {
        "key": area.key,
        "backend": area.backend,
        "model_versions": {k: str(v) for k, v in model_versions.items()},
        "rows": expected_rows,
        "built_at": utcnow(),
        "build_seconds": build_seconds
        if build_seconds is not None
        else max(0.0, time.time() - area.prepared_at),
    }
    if area.backend == POSTGRES:
        final = schema_for(area.key)
        with engine.begin() as conn:
            table = answer_index_table(MetaData(), validate_identifier(area.location))
            found = conn.execute(select(func.count()).select_from(table)).scalar_one()
            _check_rows(area, found, expected_rows)
            conn.execute(text(f"ALTER SCHEMA {area.location} RENAME TO {final}"))
            conn.execute(insert(ReleaseStateRow).values(location=final, **row))
    else:
        final_path = file_for(Path(area.state_dir), area.key)
        _check_rows(area, _count_file(area.location), expected_rows)
        _flush_file(area.location)
        os.replace(area.location, final_path)  # atomic on one filesystem
        with engine.begin() as conn:
            conn.execute(insert(ReleaseStateRow).values(location=str(final_path), **row))
    state = find_state(engine, area.key)
    if state is None:  # pragma: no cover (the row was just committed)
        raise DataError(f"state {area.key} vanished right after it was published")
    return state


def _check_rows(area: StagingArea, found: int, expected: int) -> None:
    if found != expected:
        raise DataError(
            f"refusing to publish state {area.key}: the staging index holds {found} rows, "
            f"the corpus {expected} (a chunk was not written): run the build again"
        )


def _count_file(path: str) -> int:
    con = sqlite3.connect(path)
    try:
        return int(con.execute(f"SELECT count(*) FROM {TABLE}").fetchone()[0])  # noqa: S608 (constant table)
    finally:
        con.close()


def _flush_file(path: str) -> None:
    """fsync the staging file: its chunks were committed without syncing."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _unlink_database_file(path: Path) -> None:
    for leftover in (path, path.with_name(f"{path.name}-journal")):
        leftover.unlink(missing_ok=True)


def drop_schema(engine: Engine, schema: str) -> None:
    """Drop a (validated) state schema and everything in it."""
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {validate_identifier(schema)} CASCADE"))


def drop_published(engine: Engine, state: ReleaseState) -> None:
    """Remove a published state: its row first (readers stop finding it), then its data
    (same transaction on Postgres)."""
    with engine.begin() as conn:
        conn.execute(delete(ReleaseStateRow).where(ReleaseStateRow.key == state.key))
        if state.backend == POSTGRES:
            conn.execute(
                text(f"DROP SCHEMA IF EXISTS {validate_identifier(state.location)} CASCADE")
            )
    if state.backend == SQLITE:
        _unlink_database_file(Path(state.location))


def drop_file(path: Path) -> None:
    """Remove a state file (and a journal a killed writer left)."""
    _unlink_database_file(path)
