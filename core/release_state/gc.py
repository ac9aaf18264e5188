"""Garbage collection of release states: keep what a release or a rollout may point at.

Kept, for every model that reads state (`stateful`):
- the states of the versions named by the last `keep_releases` releases of each env
  (Settings RELEASE_STATE_KEEP): a rollback within that window must not wait for a build;
- the states of every active rollout's champion and candidate versions, lead and bundle
  members (a running rollout may shift traffic to either at any moment);
- the states of versions newer than any version a release ever named: a version retrain
  just built and opened as a candidate, whose rollout has not started yet.

Everything else is dropped: other published states (data and `release_states` row), and
every staging schema/file a killed build left behind (and a SQLite file renamed into
place by a build killed before it wrote its row). A staging area whose build is still
running is never dropped: each key is dropped only while holding that key's build lock
(`core.release_state.staging.build_lock`, which a live builder holds from prepare to
publish and a killed builder's process or connection releases), tried without waiting;
a busy key is reported and left for the next run. Schema names read from the catalog are
parsed against the exact pattern of our names and validated before they reach SQL.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

from sqlalchemy import Engine, text

from core.ledger import ENVIRONMENTS, active_rollouts, releases_history
from core.model_lock import ModelLockTimeout
from core.release_state.keys import (
    SCHEMA_PREFIX,
    STAGING_SUFFIX,
    ReleaseState,
    find_state,
    list_states,
    model_state_key,
    validate_identifier,
)
from core.release_state.staging import build_lock, drop_file, drop_published, drop_schema

_OURS = re.compile(rf"^{SCHEMA_PREFIX}(?P<key>[0-9a-f]{{16}})(?P<staging>{STAGING_SUFFIX})?$")


@dataclass(frozen=True)
class GcReport:
    """What a garbage collection kept and dropped (or would have, on a dry run)."""

    kept: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    busy: list[str] = field(default_factory=list)
    dry_run: bool = False

    def describe(self) -> str:
        """One line for a log or a CLI."""
        verb = "would drop" if self.dry_run else "dropped"
        return (
            f"kept {len(self.kept)} states, {verb} {len(self.dropped)} states and "
            f"{len(self.orphans)} abandoned staging areas; {len(self.busy)} busy (building)"
        )

    def markdown(self) -> str:
        """The report as markdown (a Prefect artifact)."""
        verb = "Would drop" if self.dry_run else "Dropped"
        sections = [
            ("Kept states", self.kept),
            (f"{verb} (states)", self.dropped),
            (f"{verb} (abandoned staging)", self.orphans),
            ("Left alone (a build is running)", self.busy),
        ]
        lines = ["# Release state garbage collection", "", self.describe()]
        for title, items in sections:
            lines += ["", f"## {title}", ""] + [f"- `{item}`" for item in items or ["none"]]
        return "\n".join(lines)


def retained_keys(
    engine: Engine, *, keep_releases: int, stateful: Collection[str], states: list[ReleaseState]
) -> set[str]:
    """The state keys garbage collection keeps (see the module docstring); `states` are
    the published ones, for the pending-candidate rule.

    Raises:
        ValueError: keep_releases < 1.
    """
    if keep_releases < 1:
        raise ValueError(f"keep_releases must be >= 1, got {keep_releases}")
    keep, newest = _release_keys(engine, keep_releases, stateful)
    for rollout in active_rollouts(engine):
        for versions in (rollout.champion_versions, rollout.candidate_versions):
            keep |= {model_state_key(m, v) for m, v in versions.items() if m in stateful}
    for state in states:
        pending = [m for m, v in state.model_versions.items() if _as_int(v) > newest.get(m, -1)]
        if len(state.model_versions) == 1 and pending and pending[0] in stateful:
            keep.add(state.key)
    return keep


def _release_keys(
    engine: Engine, keep_releases: int, stateful: Collection[str]
) -> tuple[set[str], dict[str, int]]:
    """The keys of the stateful versions of the last `keep_releases` releases of each
    env, and the newest version of each stateful model any release ever named."""
    keep: set[str] = set()
    newest: dict[str, int] = {}
    for env in ENVIRONMENTS:
        for number, release in enumerate(releases_history(engine, env)):
            named = {m: v for m, v in release.model_versions.items() if m in stateful}
            for model, version in named.items():
                newest[model] = max(newest.get(model, -1), _as_int(version))
            if number < keep_releases:
                keep |= {model_state_key(m, v) for m, v in named.items()}
    return keep, newest


def _as_int(version: str) -> int:
    """A registry version as a number (MLflow versions are 1, 2, ...); -1 if not one."""
    return int(version) if str(version).isdigit() else -1


def collect_garbage(
    engine: Engine,
    *,
    keep_releases: int,
    stateful: Collection[str],
    state_dir: Path,
    dry_run: bool = False,
) -> GcReport:
    """Drop every published state not retained and every abandoned staging area.

    Raises:
        ValueError: keep_releases < 1.
    """
    states = list_states(engine)
    keep = retained_keys(engine, keep_releases=keep_releases, stateful=stateful, states=states)
    report = GcReport(dry_run=dry_run)
    for state in states:
        if state.key in keep:
            report.kept.append(state.key)
        elif _try_drop(engine, state.key, partial(drop_published, engine, state), dry_run):
            report.dropped.append(state.key)
        else:
            report.busy.append(state.location)
    for key, location in _unpublished_areas(engine, state_dir):
        if _try_drop(engine, key, partial(_drop_area, engine, key, location), dry_run):
            report.orphans.append(location)
        else:
            report.busy.append(location)
    return report


def _try_drop(engine: Engine, key: str, drop: Callable[[], None], dry_run: bool) -> bool:
    """Run `drop` while holding `key`'s build lock, tried without waiting (nothing on a
    dry run); False when a live build holds it."""
    try:
        with build_lock(engine, key, timeout=0):
            if not dry_run:
                drop()
    except ModelLockTimeout:
        return False
    return True


def _drop_area(engine: Engine, key: str, location: str) -> None:
    """Drop an unpublished area, unless a build published it since it was listed."""
    staging = location.endswith(f"{STAGING_SUFFIX}.db") or location.endswith(STAGING_SUFFIX)
    if not staging and find_state(engine, key) is not None:
        return
    if engine.dialect.name == "postgresql":
        drop_schema(engine, validate_identifier(location))
    else:
        drop_file(Path(location))


def _unpublished_areas(engine: Engine, state_dir: Path) -> list[tuple[str, str]]:
    """(key, location) of every staging schema/file, and of every final one without a
    `release_states` row (a build killed between its rename and its row)."""
    names: list[tuple[str, str]] = []
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            found = conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata "
                    "WHERE left(schema_name, :n) = :prefix ORDER BY schema_name"
                ),
                {"n": len(SCHEMA_PREFIX), "prefix": SCHEMA_PREFIX},
            ).scalars()
            names = [(name, name) for name in found]
    elif state_dir.is_dir():
        names = [(p.name.removesuffix(".db"), str(p)) for p in sorted(state_dir.glob("*.db"))]
    areas = []
    for name, location in names:
        match = _OURS.fullmatch(name)
        if match is None:
            continue  # not a name this module makes: not ours to drop
        key = match["key"]
        if match["staging"] or find_state(engine, key) is None:
            areas.append((key, location))
    return areas
