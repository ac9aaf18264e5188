"""Repair: an environment's MLflow aliases made to mirror its ledger again.

The ledger is the truth of what an environment serves; `<env>-champion` mirrors the
model's version in the env's current release. Every multi-step write records the ledger
first and moves aliases after, so a crash leaves the aliases behind, never ahead: this
module finds and fixes that. `plan_repair` is pure (unit-tested); `repair_env` reads the
ledger and the registry, plans, and applies unless asked for a dry run. Used by
`sml repair` and by each retrain (for the model it retrains), so the next run finishes
what a crashed one left half-done.

What is mirrored: `<env>-champion` = the release's version (removed when the env has no
release of the model); `<env>-candidate` is removed when it names that same version (a
champion is no longer a candidate). Other candidates have no ledger row until a rollout
starts, so they are left alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.aliases import env_alias, split_env_alias
from core.ledger import current_release

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.registry import ModelRegistry


@dataclass(frozen=True, slots=True)
class AliasFix:
    """One alias to move (`version`) or remove (`version` None), and what it was."""

    model: str
    alias: str
    version: str | None
    was: str | None
    why: str

    def describe(self) -> str:
        """One line for the operator."""
        was = f"v{self.was}" if self.was is not None else "unset"
        now = f"v{self.version}" if self.version is not None else "removed"
        return f"{self.model}: {self.alias} {was} -> {now} ({self.why})"


def plan_repair(
    env: str, release: Mapping[str, str], aliases: Mapping[str, Mapping[str, str]]
) -> list[AliasFix]:
    """The alias changes that make `env`'s aliases mirror its ledger; pure.

    Args:
        release: model -> version in the env's current release ({} before any release).
        aliases: model -> {alias: version} as the registry holds them (all envs').
    """
    champion_alias, candidate_alias = env_alias(env, "champion"), env_alias(env, "candidate")
    fixes: list[AliasFix] = []
    for model in sorted(set(release) | set(aliases)):
        held = aliases.get(model, {})
        want, have = release.get(model), held.get(champion_alias)
        if want != have:
            why = (
                f"the {env} release serves v{want}"
                if want is not None
                else f"no release of it in {env}: the next retrain gives it a first one"
            )
            fixes.append(AliasFix(model, champion_alias, want, have, why))
        if want is not None and held.get(candidate_alias) == want:
            fixes.append(
                AliasFix(model, candidate_alias, None, want, f"v{want} is the {env} champion")
            )
    return fixes


def env_aliases(
    registry: ModelRegistry, env: str, models: Iterable[str]
) -> dict[str, dict[str, str]]:
    """model -> {alias: version} of `env`'s aliases only (models with none are left out)."""
    found: dict[str, dict[str, str]] = {}
    for model in models:
        mine = {
            alias: version
            for alias, version in registry.aliases(model).items()
            if (split_env_alias(alias) or ("", ""))[0] == env
        }
        if mine:
            found[model] = mine
    return found


def apply_repair(registry: ModelRegistry, fixes: Iterable[AliasFix]) -> None:
    """Carry out `fixes` in the registry.

    Raises:
        NotFoundError: a version the ledger names is missing from the registry.
    """
    for fix in fixes:
        if fix.version is None:
            registry.delete_alias(fix.model, fix.alias)
        else:
            registry.set_alias(fix.model, fix.alias, fix.version)


def repair_env(
    engine: Engine,
    registry: ModelRegistry,
    env: str,
    *,
    models: Iterable[str] | None = None,
    dry_run: bool = False,
) -> list[AliasFix]:
    """Make `env`'s aliases mirror its ledger (of `models`, default every model the ledger
    or the registry knows); return what was (or, with `dry_run`, would be) changed.

    Raises:
        NotFoundError: an unknown env, or a version the ledger names is not registered.
    """
    record = current_release(engine, env)
    release = dict(record.model_versions) if record is not None else {}
    if models is None:
        wanted = set(release) | set(registry.list_models())
    else:
        wanted = set(models)
        release = {model: version for model, version in release.items() if model in wanted}
    fixes = plan_repair(env, release, env_aliases(registry, env, sorted(wanted)))
    if not dry_run:
        apply_repair(registry, fixes)
    return fixes
