"""Promoting a rollout: the candidates become the champions, in one release.

A rollout of a bundle is promoted as one: the release it appends sets every model of the
rollout (lead and members) to its candidate version, with each candidate's artifact digest,
so the env never runs half a bundle. MLflow aliases follow after the commit, for every
model (`core.ledger.registry_sync.follow_promotion`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any

from sqlalchemy import Engine

from core.db import ACTIVE_STATUSES, Rollout, session_scope, utcnow
from core.errors import NotFoundError
from core.ledger.readiness import require_state_ready
from core.ledger.records import AliasRegistry, RolloutRecord
from core.ledger.registry_sync import follow_promotion
from core.ledger.releases import ReleaseRecord, record_release_in
from core.ledger.rollout_rows import append_event, locked_rollout, refuse_unless
from core.ledger.transactions import write_transaction


def _candidates(engine: Engine, rollout_id: int) -> dict[str, str]:
    """{model: candidate version} of every model of the rollout, lead first.

    Raises:
        NotFoundError: no such rollout.
    """
    with session_scope(engine) as session:
        row = session.get(Rollout, rollout_id)
        if row is None:
            raise NotFoundError(f"rollout #{rollout_id} not found")
        return RolloutRecord.from_row(row).candidate_versions


def _candidate_digests(
    candidates: Mapping[str, str], registry: AliasRegistry | None
) -> dict[str, str | None]:
    """Each candidate's artifact digest from the registry (None without one: unknown).

    Read before any lock is taken: it is registry I/O.

    Raises:
        NotFoundError: a candidate is not registered.
    """
    if registry is None:
        return dict.fromkeys(candidates)
    return {
        name: registry.get_version(name, version).artifact_sha256
        for name, version in candidates.items()
    }


def _release_reason(record: RolloutRecord, reason: str) -> str:
    """`promote <model> v<N> [+ <model> v<M>] (rollout #id): reason`."""
    versions = " + ".join(f"{m} v{v}" for m, v in record.candidate_versions.items())
    return f"promote {versions} (rollout #{record.id}): {reason}"


def promote(  # noqa: PLR0913 (keyword-only: each names a fact the ledger records)
    engine: Engine,
    rollout_id: int,
    *,
    actor: str,
    reason: str,
    figures: Mapping[str, Any] | None = None,
    registry: AliasRegistry | None = None,
    code_version: str,
    image_version: str,
    stateful: Collection[str] = (),
) -> tuple[RolloutRecord, ReleaseRecord]:
    """Make the candidates the champions: rollout promoted and a new release, one transaction.

    The release sets every model of the rollout (a bundle's members too) to its candidate
    version (other models carry over) with each candidate's artifact digest from the
    registry when given (unknown otherwise), `forced` when the rollout was. A candidate of
    a model in `stateful` must have its release state published. After the commit, each
    model's MLflow aliases in the env follow: `<env>-champion` -> candidate,
    `<env>-previous` -> old champion, `<env>-candidate` removed if still there.

    Raises:
        NotFoundError: no such rollout.
        ConflictError: it has already ended (for example, another promotion won).
        StateNotReadyError: a stateful candidate's release state is not published.
    """
    candidates = _candidates(engine, rollout_id)
    require_state_ready(engine, candidates, stateful)
    digests = _candidate_digests(candidates, registry)
    with write_transaction(engine) as session:
        row = locked_rollout(session, rollout_id)
        refuse_unless(row, ACTIVE_STATUSES, "promote")
        now, record = utcnow(), RolloutRecord.from_row(row)
        release = record_release_in(
            session, env=row.env, code_version=code_version, image_version=image_version,
            model_versions=record.candidate_versions, artifact_digests=digests,
            reason=_release_reason(record, reason), actor=actor, at=now, forced=row.forced,
        )  # fmt: skip
        from_status = row.status
        row.status, row.percent, row.updated_at, row.ended_at = "promoted", 100.0, now, now
        acted_on = dict(figures or {}) | {"release": {"id": release.id, "tag": release.tag}}
        append_event(
            session, row, kind="promote", actor=actor, reason=reason,
            from_status=from_status, figures=acted_on, ts=now,
        )  # fmt: skip
        record = RolloutRecord.from_row(row)
    if registry is not None:
        follow_promotion(registry, record)
    return record, release
