"""MLflow follows the ledger: aliases and rolled-back tags, set after the database committed.

The state database is the source of truth routers read; the registry is told afterwards.
A crash in between leaves the registry behind, never ahead (the controller's
`finish_promotions` repairs aliases of a promotion the crash interrupted).
"""

from __future__ import annotations

from collections.abc import Sequence

from core.db import utcnow
from core.ledger.records import AliasRegistry, RolloutRecord


def tag_rolled_back(
    registry: AliasRegistry, name: str, version: str, *, env: str, actor: str, reason: str
) -> None:
    """Tag a version with why, by whom, where and when it was rolled back."""
    registry.set_tag(name, version, "rolled_back_reason", reason)
    registry.set_tag(name, version, "rolled_back_by", actor)
    registry.set_tag(name, version, "rolled_back_env", env)
    registry.set_tag(name, version, "rolled_back_at", utcnow().isoformat(timespec="seconds"))


def follow_promotion(registry: AliasRegistry, promoted: RolloutRecord) -> None:
    """`champion` -> the candidate, `previous` -> the old champion, `candidate` removed
    if it still points at the promoted version (a newer candidate keeps its alias)."""
    name, candidate = promoted.model_name, promoted.candidate_version
    registry.set_alias(name, "champion", candidate)
    registry.set_alias(name, "previous", promoted.champion_version)
    still_candidate = registry.version_by_alias(name, "candidate")
    if still_candidate is not None and still_candidate.version == candidate:
        registry.delete_alias(name, "candidate")


def follow_env_rollback(
    registry: AliasRegistry,
    *,
    env: str,
    restored: dict[str, str],
    replaced: dict[str, str],
    rolled_back: Sequence[RolloutRecord],
    actor: str,
    reason: str,
) -> None:
    """After an env rollback: `champion` back on each restored version, and every version
    taken out of service tagged with why (the replaced champions and the candidates of
    the rollouts it ended).

    Args:
        restored: model -> the version that serves again.
        replaced: model -> the version it replaces (models new to the env are absent).
    """
    for name, version in sorted(restored.items()):
        registry.set_alias(name, "champion", version)
        old = replaced.get(name)
        if old is not None:
            tag_rolled_back(registry, name, old, env=env, actor=actor, reason=reason)
    for rollout in rolled_back:
        tag_rolled_back(
            registry,
            rollout.model_name,
            rollout.candidate_version,
            env=env,
            actor=actor,
            reason=reason,
        )
