"""Names, keys and reads of release states: what a reader needs, nothing that builds.

A state key is a short digest of {model: version}: one model version that reads state
(the FAQ retriever's answer index) has one key (`model_state_key`), so every release that
names the version shares its state. A state is published when its `release_states` row
exists (the row is written in the same step that moves the built data to its final name),
so "row present" means complete and readable. Schema names cannot be bound as SQL
parameters: every one is validated against a strict pattern before it is formatted in.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import Engine, select

from core.db import ReleaseStateRow, session_scope
from core.errors import DataError, NotFoundError, StateNotReadyError
from core.ledger import current_release, release_at

if TYPE_CHECKING:
    from config import Settings

SCHEMA_PREFIX = "release_state_"
STAGING_SUFFIX = "_staging"
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
_KEY = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True, slots=True)
class ReleaseState:
    """Where the published state of one model version (or set of versions) lives."""

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


def validate_key(key: str) -> str:
    """Return `key` if it is a state key (16 lowercase hex digits, as `state_key` makes).

    Raises:
        DataError: anything else (it would end up in a schema or file name).
    """
    if not _KEY.fullmatch(key):
        raise DataError(f"refusing state key {key!r}: expected 16 lowercase hex digits")
    return key


def state_key(model_versions: Mapping[str, str]) -> str:
    """A short stable digest of {model: version}: equal versions share one built state."""
    canonical = json.dumps({k: str(v) for k, v in sorted(model_versions.items())})
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def model_state_key(model_name: str, version: str) -> str:
    """The state key of one model version (its answer index, for example)."""
    return state_key({model_name: str(version)})


def schema_for(key: str) -> str:
    """The Postgres schema name of a published state (validated)."""
    return validate_identifier(f"{SCHEMA_PREFIX}{validate_key(key)}")


def staging_schema_for(key: str) -> str:
    """The Postgres schema a build of `key` writes before it publishes (validated)."""
    return validate_identifier(f"{schema_for(key)}{STAGING_SUFFIX}")


def state_dir_of(settings: Settings) -> Path:
    """Where SQLite release states live: `<LOCAL_DIR>/release_state`."""
    return settings.LOCAL_DIR / "release_state"


def file_for(state_dir: Path, key: str) -> Path:
    """The SQLite file of a published state."""
    return state_dir / f"{schema_for(key)}.db"


def staging_file_for(state_dir: Path, key: str) -> Path:
    """The SQLite file a build of `key` writes before it publishes."""
    return state_dir / f"{schema_for(key)}{STAGING_SUFFIX}.db"


def _record(row: ReleaseStateRow) -> ReleaseState:
    return ReleaseState(
        key=row.key,
        backend=row.backend,
        location=row.location,
        model_versions=dict(row.model_versions),
        rows=row.rows,
        built_at=row.built_at,
        build_seconds=row.build_seconds,
    )


def find_state(engine: Engine, key: str) -> ReleaseState | None:
    """The published state of `key`, or None if it was never published."""
    with session_scope(engine) as session:
        row = session.get(ReleaseStateRow, key)
        return None if row is None else _record(row)


def list_states(engine: Engine) -> list[ReleaseState]:
    """Every published state, oldest first."""
    with session_scope(engine) as session:
        rows = session.scalars(select(ReleaseStateRow).order_by(ReleaseStateRow.built_at))
        return [_record(row) for row in rows]


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


def state_for_release(
    engine: Engine, env: str, at: datetime | None = None, *, stateful: Collection[str]
) -> dict[str, ReleaseState]:
    """{model: published state} of the stateful models of the release in force in `env`
    now (or at time `at`); empty when the release names no stateful model.

    Raises:
        NotFoundError: nothing released, or a stateful model's state was never built
            (naming the command that builds it).
    """
    release = release_at(engine, env, at) if at else current_release(engine, env)
    if release is None:
        raise NotFoundError(
            f"nothing was released in {env}" + (f" at {at.isoformat()}" if at else "")
        )
    states: dict[str, ReleaseState] = {}
    for name, version in sorted(release.model_versions.items()):
        if name not in stateful:
            continue
        key = model_state_key(name, version)
        state = find_state(engine, key)
        if state is None:
            raise NotFoundError(
                f"release {release.tag} in {env}: {name} v{version} has no built state "
                f"(key {key}): run `sml state build --model {name} --version {version}`"
            )
        states[name] = state
    return states
