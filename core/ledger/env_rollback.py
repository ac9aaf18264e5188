"""Environment rollback: point an env back at an earlier release's model versions.

Four steps, each with one job, chained by `rollback_env`:

1. read: the current release and the target (`rollback_target`);
2. judge: each version that would serve again, under the running image (`judge_versions`,
   the injected `verdict_fn`, which is `core.compat` in production);
3. plan: a pure decision from those facts (`plan_env_rollback` -> `EnvRollbackPlan`):
   what changes, what is refused, whether it is forced, and the texts that say why;
4. apply: one write transaction (`apply_env_rollback`) that re-checks the env did not
   move, appends the release and rolls back the affected active rollouts; then MLflow
   follows (`core.ledger.registry_sync.follow_env_rollback`).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from core.db import ACTIVE_STATUSES, Release, Rollout, session_scope, utcnow
from core.errors import ConflictError, NotFoundError
from core.ledger.history import release_by_tag
from core.ledger.readiness import require_state_ready
from core.ledger.records import AliasRegistry, CompatJudgement, RolloutRecord, VerdictFn
from core.ledger.registry_sync import follow_env_rollback
from core.ledger.releases import ReleaseRecord, _current_row, check_env, record_release_in
from core.ledger.rollout_rows import append_event
from core.ledger.rollout_start import rollout_models
from core.ledger.transactions import lock_env, write_transaction


@dataclass(frozen=True, slots=True)
class JudgedVersion:
    """A version that would serve again, with its compat verdict under the running image."""

    name: str
    version: str
    verdict: str
    reason: str

    @property
    def broken(self) -> bool:
        """True when the version cannot serve under the running image."""
        return self.verdict == "broken"


@dataclass(frozen=True, slots=True)
class EnvRollbackPlan:
    """What an env rollback will do, decided before anything is written.

    `changed` maps each model whose version changes to the version that serves again;
    `removed` lists models the target does not hold. `refusals` are the broken verdicts
    it goes past, which only a forced rollback may do (`forced` is then True).
    """

    env: str
    current: ReleaseRecord
    target: ReleaseRecord
    changed: dict[str, str]
    removed: tuple[str, ...]
    verdicts: tuple[JudgedVersion, ...]
    refusals: tuple[str, ...]
    forced: bool
    actor: str
    code_version: str
    image_version: str
    release_reason: str
    event_reason: str
    registry_reason: str

    @property
    def affected(self) -> frozenset[str]:
        """The models whose serving version changes (their active rollouts end)."""
        return frozenset(self.changed) | frozenset(self.removed)

    @property
    def replaced(self) -> dict[str, str]:
        """Per changed model, the version it replaces (models new to the env are absent)."""
        current = self.current.model_versions
        return {name: current[name] for name in self.changed if name in current}

    def event_figures(self, release: ReleaseRecord) -> dict[str, Any]:
        """The figures recorded on each rollout this rollback ends."""
        return {
            "rollback_to": {"id": self.target.id, "tag": self.target.tag},
            "verdicts": {
                v.name: {"version": v.version, "status": v.verdict, "reason": v.reason}
                for v in self.verdicts
            },
            "forced": self.forced,
            "release": {"id": release.id, "tag": release.tag},
        }


def rollback_target(
    engine: Engine, env: str, to_tag: str | None
) -> tuple[ReleaseRecord, ReleaseRecord]:
    """The current release of `env` and the one to go back to (`to_tag`, else the parent).

    Raises:
        NotFoundError: unknown env, nothing released yet, unknown tag, or no earlier release.
        ConflictError: the target does not name every model the current release serves.
    """
    current, target = _find_target(engine, env, to_tag)
    missing = sorted(set(current.model_versions) - set(target.model_versions))
    if missing:
        raise ConflictError(
            f"{target.tag} does not name {', '.join(missing)}, which {env} serves now "
            f"({current.tag}): a rollback switches versions, it never removes a model; "
            "pick a release that names every model (`sml history --env "
            f"{env}`, then `--to TAG`)"
        )
    return current, target


def _find_target(
    engine: Engine, env: str, to_tag: str | None
) -> tuple[ReleaseRecord, ReleaseRecord]:
    """The current release of `env` and `to_tag`'s release, else the current's parent."""
    check_env(env)
    with session_scope(engine) as session:
        current_row = _current_row(session, env)
        if current_row is None:
            raise NotFoundError(f"nothing was ever released in {env}: nothing to roll back")
        current = ReleaseRecord.from_row(current_row)
        if to_tag is None:
            if current.parent_id is None:
                raise NotFoundError(
                    f"{env} is at its first release {current.tag}: there is no earlier one"
                )
            parent = session.get(Release, current.parent_id)
            assert parent is not None  # a foreign key
            return current, ReleaseRecord.from_row(parent)
    return current, release_by_tag(engine, to_tag, env)


def changed_versions(current: ReleaseRecord, target: ReleaseRecord) -> dict[str, str]:
    """Per model whose version differs, the target's version (what would serve again)."""
    return {
        name: version
        for name, version in target.model_versions.items()
        if current.model_versions.get(name) != version
    }


def judge_versions(
    verdict_fn: VerdictFn | None, versions: Mapping[str, str]
) -> dict[str, CompatJudgement]:
    """Each version's compat judgement, by model name (none without a `verdict_fn`).

    Raises:
        whatever `verdict_fn` raises (`core.compat`: NotFoundError for an unknown version).
    """
    if verdict_fn is None:
        return {}
    return {name: verdict_fn(name, version) for name, version in sorted(versions.items())}


def plan_env_rollback(
    current: ReleaseRecord,
    target: ReleaseRecord,
    judgements: Mapping[str, CompatJudgement],
    *,
    force: bool,
    actor: str,
    reason: str,
    code_version: str | None = None,
    image_version: str | None = None,
) -> EnvRollbackPlan:
    """Decide an env rollback from the two releases and the judgements; writes nothing.

    Code and image default to the current release's (they are what runs).

    Raises:
        ConflictError: nothing would change, or a version judged broken without `force`.
    """
    changed = changed_versions(current, target)
    removed = tuple(sorted(set(current.model_versions) - set(target.model_versions)))
    if not changed and not removed:
        raise ConflictError(
            f"{current.env} already runs the versions of {target.tag}: nothing to do"
        )
    running_image = image_version or current.image_version
    verdicts = tuple(
        JudgedVersion(name, changed[name], judged.verdict, judged.reason)
        for name, judged in sorted(judgements.items())
        if name in changed
    )
    refusals = tuple(
        f"{v.name} v{v.version} is broken under image {running_image}: {v.reason}"
        for v in verdicts
        if v.broken
    )
    if refusals and not force:
        raise ConflictError("rollback refused: " + "; ".join(refusals) + " (--force to override)")
    why = reason + (f" (forced past: {'; '.join(refusals)})" if refusals else "")
    return EnvRollbackPlan(
        env=current.env,
        current=current,
        target=target,
        changed=changed,
        removed=removed,
        verdicts=verdicts,
        refusals=refusals,
        forced=bool(refusals),
        actor=actor,
        code_version=code_version or current.code_version,
        image_version=running_image,
        release_reason=f"rollback to {target.tag} (#{target.id}): {why}",
        event_reason=f"env rollback to {target.tag}: {why}",
        registry_reason=f"rollback of {current.env} to {target.tag}: {why}",
    )


def _end_affected_rollouts(
    session: Session, plan: EnvRollbackPlan, release: ReleaseRecord, now: datetime
) -> list[RolloutRecord]:
    """Roll back, with one event each, the env's active rollouts that carry an affected
    model (as lead or as a member of a bundle: a bundle ends as a whole)."""
    rows = session.scalars(
        select(Rollout)
        .where(Rollout.env == plan.env, Rollout.status.in_(ACTIVE_STATUSES))
        .with_for_update()
    ).all()
    ended: list[RolloutRecord] = []
    for row in rows:
        if plan.affected.isdisjoint(rollout_models(row)):
            continue
        from_status = row.status
        row.status, row.updated_at, row.ended_at = "rolled_back", now, now
        append_event(
            session,
            row,
            kind="rollback",
            actor=plan.actor,
            reason=plan.event_reason,
            from_status=from_status,
            figures=plan.event_figures(release),
            ts=now,
        )
        ended.append(RolloutRecord.from_row(row))
    return ended


def apply_env_rollback(
    engine: Engine, plan: EnvRollbackPlan
) -> tuple[ReleaseRecord, list[RolloutRecord]]:
    """Carry a plan out in one write transaction: the release and the ended rollouts.

    Raises:
        ConflictError: the env moved to another release since the plan was made.
    """
    with write_transaction(engine) as session:
        lock_env(session, plan.env)
        now_current = _current_row(session, plan.env)
        if now_current is None or now_current.id != plan.current.id:
            raise ConflictError(
                f"{plan.env} changed while preparing the rollback (now at "
                f"{now_current.tag if now_current else 'nothing'}): look again and retry"
            )
        release = record_release_in(
            session,
            env=plan.env,
            code_version=plan.code_version,
            image_version=plan.image_version,
            model_versions=plan.target.model_versions,
            artifact_digests=plan.target.artifact_digests,
            reason=plan.release_reason,
            actor=plan.actor,
            replace_models=True,
            forced=plan.forced,
        )
        return release, _end_affected_rollouts(session, plan, release, utcnow())


def rollback_env(  # noqa: PLR0913 (keyword-only: each names a fact the ledger records)
    engine: Engine,
    env: str,
    *,
    to_tag: str | None = None,
    actor: str,
    reason: str,
    force: bool = False,
    registry: AliasRegistry | None = None,
    verdict_fn: VerdictFn | None = None,
    code_version: str | None = None,
    image_version: str | None = None,
    stateful: Collection[str] = (),
) -> ReleaseRecord:
    """Point `env` back at an earlier release's model versions, in one state change.

    The target is the release tagged `to_tag` in this env (default: the parent of the
    current release). A new release row holding exactly the target's models is appended
    (code and image default to the current release's: they are what runs), and any active
    rollout of a model whose version changes is rolled back in the same transaction.
    Routers pick it up on their next poll. Each version that would serve again is judged by
    `verdict_fn(name, version)` (core.compat under the running image) first: a `broken`
    verdict refuses the rollback with its reason unless `force`; a forced release is marked
    `forced` and says what it went past in its reason and events. With `registry`, after
    the commit `<env>-champion` moves back and each rolled-back version is tagged. A version
    that serves again and belongs to a model in `stateful` (the models that read release
    state) must still have its state published: a rollback switches the state pointer, it
    never rebuilds (force does not go past this: there would be nothing to serve).

    Raises:
        StateNotReadyError: a stateful version to serve again has no published state.
        NotFoundError: unknown env, unknown tag, nothing released yet, or no earlier release.
        ConflictError: a target version judged broken (without force), nothing to change,
            or the env moved meanwhile.
    """
    current, target = rollback_target(engine, env, to_tag)
    require_state_ready(engine, changed_versions(current, target), stateful)
    judgements = judge_versions(verdict_fn, changed_versions(current, target))
    plan = plan_env_rollback(
        current,
        target,
        judgements,
        force=force,
        actor=actor,
        reason=reason,
        code_version=code_version,
        image_version=image_version,
    )
    release, ended = apply_env_rollback(engine, plan)
    if registry is not None:
        follow_env_rollback(
            registry,
            env=env,
            restored=plan.changed,
            replaced=plan.replaced,
            rolled_back=ended,
            actor=actor,
            reason=plan.registry_reason,
        )
    return release
