"""Release state: derived tables built once per set of model versions, switched by pointer.

Some state is derived from a model version (here: every source query scored by the
release's models, the table analytics and support tools join on). Rebuilding it on a
rollback would make the rollback slow and fallible, so it is built once per *state key*
(a digest of the release's {model: version}) into its own place:

- Postgres: a schema `release_state_<key>` in the state database;
- SQLite: a database file `<LOCAL_DIR>/release_state/release_state_<key>.db`.

A release row names its model versions, so the release in force *is* the pointer: a
rollback appends a release with the old versions, whose key already has a built state,
and readers follow it at once. Building writes into a staging name first and publishes
with one rename plus one `release_states` row, so a crash never leaves a half-built state
that readers could see. Schema names cannot be bound as SQL parameters: every one is
validated against a strict pattern before it is formatted into SQL.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import pandas as pd
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    func,
    insert,
    select,
    text,
)

from core.db import ReleaseStateRow, session_scope, utcnow
from core.errors import DataError, NotFoundError, StateNotReadyError
from core.ledger import current_release, release_at

SCHEMA_PREFIX = "release_state_"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
SCORED_TABLE = "scored_queries"

Predict = Callable[[str, str, Sequence[str]], list[str]]
"""predict(model_name, version, texts) -> predictions (e.g. via ModelRegistry.load)."""


@dataclass(frozen=True, slots=True)
class ReleaseState:
    """Where the derived state of one set of model versions lives."""

    key: str
    backend: str
    location: str
    model_versions: dict[str, str]
    rows: int
    built_at: datetime
    build_seconds: float


def validate_identifier(name: str) -> str:
    """Return `name` if it is a safe unquoted SQL identifier (lowercase, <= 63 chars).

    Raises:
        DataError: naming the identifier and the pattern it must match.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise DataError(
            f"refusing SQL identifier {name!r}: expected lowercase letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters"
        )
    return name


def state_key(model_versions: Mapping[str, str]) -> str:
    """A short stable digest of {model: version}: equal versions share one built state."""
    canonical = json.dumps({k: str(v) for k, v in sorted(model_versions.items())})
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def model_state_key(model_name: str, version: str) -> str:
    """The state key of one model version (its answer index, for example)."""
    return state_key({model_name: str(version)})


def require_ready(
    engine: Engine, model_versions: Mapping[str, str], stateful: Collection[str]
) -> dict[str, str]:
    """{model: state key} of the models in `model_versions` that read state (`stateful`),
    when every one of those states is built and published.

    Raises:
        StateNotReadyError: naming each version whose state is not ready, and the fix.
    """
    keys = {
        name: model_state_key(name, version)
        for name, version in sorted(model_versions.items())
        if name in stateful
    }
    missing = [
        f"{name} v{model_versions[name]} (state {key})"
        for name, key in keys.items()
        if find_state(engine, key) is None
    ]
    if missing:
        raise StateNotReadyError(
            f"release state not ready for {', '.join(missing)}: a version takes no traffic "
            "before its state is built; run the build_release_state flow or "
            "`sml state build --model NAME --version N`"
        )
    return keys


def schema_for(key: str) -> str:
    """The Postgres schema name of a state key (validated)."""
    return validate_identifier(f"{SCHEMA_PREFIX}{key}")


def _scored_table(metadata: MetaData, schema: str | None) -> Table:
    return Table(
        SCORED_TABLE,
        metadata,
        Column("query_id", String(64), primary_key=True),
        Column("model_name", String(128), primary_key=True),
        Column("model_version", String(32), nullable=False),
        Column("intent", Text, nullable=False),
        schema=schema,
    )


def find_state(engine: Engine, key: str) -> ReleaseState | None:
    """The published state of `key`, or None if it was never built."""
    with session_scope(engine) as session:
        row = session.get(ReleaseStateRow, key)
        if row is None:
            return None
        return ReleaseState(
            key=row.key,
            backend=row.backend,
            location=row.location,
            model_versions=dict(row.model_versions),
            rows=row.rows,
            built_at=row.built_at,
            build_seconds=row.build_seconds,
        )


def _score(
    queries: pd.DataFrame, model_versions: Mapping[str, str], predict: Predict
) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    ids = queries["query_id"].astype(str).tolist()
    texts = queries["text"].astype(str).tolist()
    for name, version in sorted(model_versions.items()):
        intents = predict(name, str(version), texts)
        if len(intents) != len(texts):
            raise DataError(
                f"{name} v{version} returned {len(intents)} predictions for {len(texts)} inputs"
            )
        rows += [
            {"query_id": q, "model_name": name, "model_version": str(version), "intent": i}
            for q, i in zip(ids, intents, strict=True)
        ]
    return rows


def _build_postgres(engine: Engine, key: str, rows: list[dict[str, str]]) -> str:
    final = schema_for(key)
    staging = validate_identifier(f"{final[:55]}_staging")
    with engine.begin() as conn:
        conn.execute(text(f"DROP SCHEMA IF EXISTS {staging} CASCADE"))
        conn.execute(text(f"CREATE SCHEMA {staging}"))
        table = _scored_table(MetaData(), staging)
        table.create(conn)
        if rows:
            conn.execute(insert(table), rows)
        # publish: one rename inside the same transaction as the load
        conn.execute(text(f"DROP SCHEMA IF EXISTS {final} CASCADE"))
        conn.execute(text(f"ALTER SCHEMA {staging} RENAME TO {final}"))
    return final


def _build_sqlite(state_dir: Path, key: str, rows: list[dict[str, str]]) -> str:
    state_dir.mkdir(parents=True, exist_ok=True)
    final = state_dir / f"{schema_for(key)}.db"
    staging = state_dir / f"{schema_for(key)}.staging.db"
    staging.unlink(missing_ok=True)
    eng = create_engine(f"sqlite:///{staging}")
    try:
        table = _scored_table(MetaData(), None)
        with eng.begin() as conn:
            table.create(conn)
            if rows:
                conn.execute(insert(table), rows)
    finally:
        eng.dispose()
    staging.replace(final)  # atomic publish on one filesystem
    return str(final)


def build_release_state(
    engine: Engine,
    model_versions: Mapping[str, str],
    queries: pd.DataFrame,
    predict: Predict,
    *,
    state_dir: Path,
) -> tuple[ReleaseState, bool]:
    """Build the derived state of `model_versions` unless it exists; return (state, built).

    `queries` needs columns query_id and text (core.source.read_queries gives them).

    Raises:
        DataError: missing columns, or a model returning the wrong number of predictions.
    """
    key = state_key(model_versions)
    existing = find_state(engine, key)
    if existing is not None:
        return existing, False
    missing = {"query_id", "text"} - set(queries.columns)
    if missing:
        raise DataError(f"cannot build release state: queries lack columns {sorted(missing)}")
    started = time.perf_counter()
    rows = _score(queries, model_versions, predict)
    if engine.dialect.name == "postgresql":
        backend, location = "postgresql", _build_postgres(engine, key, rows)
    else:
        backend, location = "sqlite", _build_sqlite(state_dir, key, rows)
    seconds = time.perf_counter() - started
    with session_scope(engine) as session:
        if session.get(ReleaseStateRow, key) is None:  # a concurrent builder may have won
            session.add(
                ReleaseStateRow(
                    key=key,
                    backend=backend,
                    location=location,
                    model_versions={k: str(v) for k, v in model_versions.items()},
                    rows=len(rows),
                    built_at=utcnow(),
                    build_seconds=seconds,
                )
            )
    state = find_state(engine, key)
    assert state is not None
    return state, True


def state_for_release(engine: Engine, env: str, at: datetime | None = None) -> ReleaseState:
    """The derived state of the release in force in `env` now (or at time `at`).

    Raises:
        NotFoundError: nothing released, or its state was never built.
    """
    release = release_at(engine, env, at) if at else current_release(engine, env)
    if release is None:
        raise NotFoundError(
            f"nothing was released in {env}" + (f" at {at.isoformat()}" if at else "")
        )
    key = state_key(release.model_versions)
    state = find_state(engine, key)
    if state is None:
        raise NotFoundError(
            f"release {release.tag} in {env} has no built state (key {key}): "
            f"run `sml state build --env {env}`"
        )
    return state


@contextmanager
def _open_scored(engine: Engine, state: ReleaseState) -> Iterator[tuple[Connection, Table]]:
    """A connection to where `state` lives, and its scored table."""
    if state.backend == "postgresql":
        with engine.connect() as conn:
            yield conn, _scored_table(MetaData(), validate_identifier(state.location))
        return
    source = create_engine(f"sqlite:///{state.location}")
    try:
        with source.connect() as conn:
            yield conn, _scored_table(MetaData(), None)
    finally:
        source.dispose()


def read_scored(
    engine: Engine, state: ReleaseState, query_ids: Sequence[str]
) -> dict[tuple[str, str], str]:
    """{(query_id, model_name): intent} from a built state (for consumers and checks)."""
    with _open_scored(engine, state) as (conn, table):
        result = conn.execute(
            select(table.c.query_id, table.c.model_name, table.c.intent).where(
                table.c.query_id.in_(list(query_ids))
            )
        )
        return {(q, m): i for q, m, i in result}


def count_scored(engine: Engine, state: ReleaseState) -> int:
    """Rows in a built state's scored table."""
    with _open_scored(engine, state) as (conn, table):
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
