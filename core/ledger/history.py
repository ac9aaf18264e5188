"""Questions about the past: full history, the release in force at a time, by tag, diffs.

Releases are append-only, so any past state of an env is one indexed query away: the
release in force at time T is the newest row of that env created at or before T.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import Engine, Select, select
from sqlalchemy.orm import Session

from core.db import Release, session_scope
from core.errors import NotFoundError
from core.ledger.releases import ReleaseRecord, check_env


def _newest_first(env: str) -> Select[Release]:
    return (
        select(Release)
        .where(Release.env == env)
        .order_by(Release.created_at.desc(), Release.id.desc())
    )


def releases_history(engine: Engine, env: str, limit: int | None = None) -> list[ReleaseRecord]:
    """Every release of `env`, newest first (at most `limit` when given).

    Raises:
        NotFoundError: for an unknown env.
    """
    check_env(env)
    query = _newest_first(env)
    if limit is not None:
        query = query.limit(limit)
    with session_scope(engine) as session:
        return [ReleaseRecord.from_row(row) for row in session.scalars(query)]


def release_at(engine: Engine, env: str, at: datetime) -> ReleaseRecord | None:
    """The release in force in `env` at `at` (newest at or before it), None before the first.

    Raises:
        NotFoundError: for an unknown env.
        ValueError: for a naive datetime (times are compared in UTC).
    """
    check_env(env)
    if at.tzinfo is None:
        raise ValueError("release_at needs a timezone-aware time")
    with session_scope(engine) as session:
        row = session.scalars(_newest_first(env).where(Release.created_at <= at).limit(1)).first()
        return ReleaseRecord.from_row(row) if row else None


def get_release(engine: Engine, release_id: int) -> ReleaseRecord:
    """A release by id.

    Raises:
        NotFoundError: if there is no such release.
    """
    with session_scope(engine) as session:
        row = session.get(Release, release_id)
        if row is None:
            raise NotFoundError(f"release #{release_id} not found")
        return ReleaseRecord.from_row(row)


def _by_tag(session: Session, tag: str, env: str | None) -> Release | None:
    query = select(Release).where(Release.tag == tag)
    if env is not None:
        query = query.where(Release.env == env)
    return session.scalars(
        query.order_by(Release.created_at.desc(), Release.id.desc()).limit(1)
    ).first()


def release_by_tag(engine: Engine, tag: str, env: str | None = None) -> ReleaseRecord:
    """The newest release carrying `tag` (in `env` when given).

    A tag names a combination of versions, so a rollback to an earlier state may carry
    the same tag again; the newest row is returned.

    Raises:
        NotFoundError: for an unknown env, or an unknown tag (naming the newest tags).
    """
    if env is not None:
        check_env(env)
    with session_scope(engine) as session:
        row = _by_tag(session, tag, env)
        if row is not None:
            return ReleaseRecord.from_row(row)
        query = select(Release.tag).order_by(Release.created_at.desc(), Release.id.desc())
        if env is not None:
            query = query.where(Release.env == env)
        known = list(dict.fromkeys(session.scalars(query.limit(50))))[:5]
    where = f" in {env}" if env else ""
    hint = f" (newest: {', '.join(known)})" if known else " (no releases recorded yet)"
    raise NotFoundError(f"unknown release tag {tag!r}{where}{hint}")


@dataclass(frozen=True, slots=True)
class ReleaseDiff:
    """What changed from release `a` to release `b`.

    `changed` maps a model to (version in a, version in b); `code` and `image` are
    (a, b) pairs, or None when equal.
    """

    a_tag: str
    b_tag: str
    added: dict[str, str] = field(default_factory=dict)
    removed: dict[str, str] = field(default_factory=dict)
    changed: dict[str, tuple[str, str]] = field(default_factory=dict)
    unchanged: dict[str, str] = field(default_factory=dict)
    digests_changed: dict[str, tuple[str | None, str | None]] = field(default_factory=dict)
    code: tuple[str, str] | None = None
    image: tuple[str, str] | None = None

    @property
    def is_empty(self) -> bool:
        """True when both releases ran the same code, image, models and artifacts."""
        return not (
            self.added
            or self.removed
            or self.changed
            or self.digests_changed
            or self.code
            or self.image
        )


def diff_releases(a: ReleaseRecord, b: ReleaseRecord) -> ReleaseDiff:
    """Models added, removed and changed, and the code and image, from `a` to `b`."""
    names_a, names_b = set(a.model_versions), set(b.model_versions)
    digests_changed = {
        name: (a.artifact_digests.get(name), b.artifact_digests.get(name))
        for name in sorted(names_a & names_b)
        if a.artifact_digests.get(name) != b.artifact_digests.get(name)
    }
    return ReleaseDiff(
        a_tag=a.tag,
        b_tag=b.tag,
        added={n: b.model_versions[n] for n in sorted(names_b - names_a)},
        removed={n: a.model_versions[n] for n in sorted(names_a - names_b)},
        changed={
            n: (a.model_versions[n], b.model_versions[n])
            for n in sorted(names_a & names_b)
            if a.model_versions[n] != b.model_versions[n]
        },
        unchanged={
            n: a.model_versions[n]
            for n in sorted(names_a & names_b)
            if a.model_versions[n] == b.model_versions[n]
        },
        digests_changed=digests_changed,
        code=(a.code_version, b.code_version) if a.code_version != b.code_version else None,
        image=(a.image_version, b.image_version) if a.image_version != b.image_version else None,
    )
