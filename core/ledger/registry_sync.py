"""MLflow follows the ledger: aliases and rolled-back tags, set after the database committed.

The state database is the source of truth routers read; the registry is told afterwards.
A crash in between leaves the registry behind, never ahead (the controller's
`finish_promotions` repairs aliases of a promotion the crash interrupted). Every alias is
the env's own (`core.aliases.env_alias`: `prd-champion`, `stg-candidate`, ...): a change
in one environment never moves another's.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.aliases import env_alias
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


def _drop_candidate_alias(registry: AliasRegistry, name: str, version: str, env: str) -> None:
    """Remove `<env>-candidate` of `name` if it still points at `version` (a newer candidate
    keeps its alias)."""
    alias = env_alias(env, "candidate")
    still_candidate = registry.version_by_alias(name, alias)
    if still_candidate is not None and still_candidate.version == version:
        registry.delete_alias(name, alias)


def follow_promotion(registry: AliasRegistry, promoted: RolloutRecord) -> None:
    """For every model of the rollout (the lead and each bundle member), in its env:
    `<env>-champion` -> its candidate, `<env>-previous` -> its old champion, `<env>-candidate`
    removed if it still points at the promoted version (a newer candidate keeps its alias).
    Other environments' aliases are not touched."""
    env, champions = promoted.env, promoted.champion_versions
    for name, candidate in promoted.candidate_versions.items():
        registry.set_alias(name, env_alias(env, "champion"), candidate)
        registry.set_alias(name, env_alias(env, "previous"), champions[name])
        _drop_candidate_alias(registry, name, candidate, env)


def follow_rollback(
    registry: AliasRegistry, ended: RolloutRecord, *, actor: str, reason: str | None
) -> None:
    """After a rollout ended without promotion (rolled back, or aborted when `reason` is
    None): every candidate of the rollout loses its `<env>-candidate` alias if it still
    points at it, and a rolled-back one is tagged with why."""
    for name, candidate in ended.candidate_versions.items():
        if reason is not None:
            tag_rolled_back(registry, name, candidate, env=ended.env, actor=actor, reason=reason)
        _drop_candidate_alias(registry, name, candidate, ended.env)


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
    """After an env rollback: `<env>-champion` back on each restored version, and every version
    taken out of service tagged with why (the replaced champions and the candidates of
    the rollouts it ended).

    Args:
        restored: model -> the version that serves again.
        replaced: model -> the version it replaces (models new to the env are absent).
    """
    for name, version in sorted(restored.items()):
        registry.set_alias(name, env_alias(env, "champion"), version)
        old = replaced.get(name)
        if old is not None:
            tag_rolled_back(registry, name, old, env=env, actor=actor, reason=reason)
    for rollout in rolled_back:
        follow_rollback(registry, rollout, actor=actor, reason=reason)
