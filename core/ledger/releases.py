"""Releases: the append-only record of what ran in each environment, and when.

The current release of an env is its newest row; the release in force at time T is the
newest row at or before T. This module is the only writer of the `releases` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import Release, session_scope, utcnow
from core.ledger.transactions import lock_env, write_transaction

ENVIRONMENTS = ("dev", "stg", "prd")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9._+-]")


@dataclass(frozen=True, slots=True)
class ReleaseRecord:
    """A release row as plain data."""

    id: int
    env: str
    created_at: datetime
    code_version: str
    image_version: str
    model_versions: dict[str, str]
    artifact_digests: dict[str, str]
    tag: str
    reason: str | None
    actor: str
    parent_id: int | None = None
    extra: dict[str, str] = field(default_factory=dict)
    forced: bool = False
    """True for a release that went past a refusal (a rollback forced past a broken verdict)."""

    @classmethod
    def from_row(cls, row: Release) -> ReleaseRecord:
        """Copy a table row into a detached record."""
        return cls(
            id=row.id,
            env=row.env,
            created_at=row.created_at,
            code_version=row.code_version,
            image_version=row.image_version,
            model_versions={k: str(v) for k, v in row.model_versions.items()},
            artifact_digests={k: str(v) for k, v in row.artifact_digests.items()},
            tag=row.tag,
            reason=row.reason,
            actor=row.actor,
            parent_id=row.parent_id,
            forced=row.forced,
        )


def check_env(env: str) -> str:
    """Return `env` if it is a known environment.

    Raises:
        NotFoundError: naming the known environments.
    """
    from core.errors import NotFoundError

    if env not in ENVIRONMENTS:
        raise NotFoundError(f"unknown env {env!r}: expected one of {', '.join(ENVIRONMENTS)}")
    return env


def release_tag(env: str, code_version: str, model_versions: Mapping[str, str]) -> str:
    """`v<code>-<model>v<N>[-<model>v<M>]`, models sorted by name, `-rc` appended in stg."""
    parts = [f"v{_TAG_UNSAFE.sub('_', code_version)}"]
    parts += [
        f"{_TAG_UNSAFE.sub('_', name)}v{version}"
        for name, version in sorted(model_versions.items())
    ]
    tag = "-".join(parts)
    return f"{tag}-rc" if env == "stg" else tag


def _current_row(session: Session, env: str) -> Release | None:
    return session.scalars(
        select(Release)
        .where(Release.env == env)
        .order_by(Release.created_at.desc(), Release.id.desc())
        .limit(1)
    ).first()


def record_release_in(  # noqa: PLR0913 (keyword-only: each names a fact the ledger records)
    session: Session,
    *,
    env: str,
    code_version: str,
    image_version: str,
    model_versions: Mapping[str, str],
    artifact_digests: Mapping[str, str | None],
    reason: str,
    actor: str = "system",
    at: datetime | None = None,
    replace_models: bool = False,
    forced: bool = False,
) -> ReleaseRecord:
    """Append a release inside an open transaction (so callers can pair it with other writes).

    Models not named in `model_versions` keep the versions of the current release, so a
    release always describes everything that runs in the env; with `replace_models` the
    release holds exactly `model_versions` (a rollback to an earlier state). A digest of
    None means "unknown": the model's old digest is dropped rather than carried over.
    `forced` marks a release that went past a refusal (stored as a column, not prose).

    Raises:
        NotFoundError: for an unknown env.
    """
    check_env(env)
    lock_env(session, env)
    parent = _current_row(session, env)
    versions = dict(parent.model_versions) if parent and not replace_models else {}
    digests = dict(parent.artifact_digests) if parent and not replace_models else {}
    versions.update({k: str(v) for k, v in model_versions.items()})
    for name, digest in artifact_digests.items():
        if digest is None:
            digests.pop(name, None)
        else:
            digests[name] = str(digest)
    digests = {name: d for name, d in digests.items() if name in versions}
    row = Release(
        env=env,
        created_at=at or utcnow(),
        code_version=code_version,
        image_version=image_version,
        model_versions=versions,
        artifact_digests=digests,
        tag=release_tag(env, code_version, versions),
        reason=reason,
        actor=actor,
        parent_id=parent.id if parent else None,
        forced=forced,
    )
    session.add(row)
    session.flush()
    return ReleaseRecord.from_row(row)


def record_release(engine: Engine, **kwargs: object) -> ReleaseRecord:
    """Append a release in its own transaction; see `record_release_in` for the arguments."""
    with write_transaction(engine) as session:
        return record_release_in(session, **kwargs)  # type: ignore[arg-type]


def current_release(engine: Engine, env: str) -> ReleaseRecord | None:
    """The newest release of `env`, or None if nothing was ever released there."""
    check_env(env)
    with session_scope(engine) as session:
        row = _current_row(session, env)
        return ReleaseRecord.from_row(row) if row else None
