"""One release travels dev -> stg -> prd: open in the next environment a rollout of exactly
the versions the previous one runs.

Model versions are shared by every environment (one retrain per image); each environment
has its own releases and rollouts. Promoting `stg` to `prd` opens in prd one canary rollout
per model whose version differs from prd's current release, of exactly the version (same
artifact digest) that stg's current release runs. Three steps, like an env rollback:

1. read: both current releases, what completed a rollout upstream
   (`core.ledger.completed_versions`), each version's digest in the registry;
2. plan: a pure decision (`plan_promotion` -> `PromotionPlan`): what is opened, what is
   refused, what is forced;
3. apply: one ledger `start_rollout` per model (`apply_promotion`); the controller takes
   them from there, and each promotion records a release (forced when its rollout was).

A version that never completed a rollout upstream (nor was its first release), or whose
upstream release recorded no digest, is refused unless `force`: a forced rollout has
`forced = true` (a column, not a word in a reason). A digest that differs between the
upstream release and the registry is refused always: it is not the same artifact.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlalchemy import Engine

from core import ledger
from core.errors import ConflictError, NotFoundError
from core.ledger import AliasRegistry, ReleaseRecord, RolloutRecord


@dataclass(frozen=True, slots=True)
class PromotionStep:
    """One model to roll out downstream: the upstream version against the current one."""

    model_name: str
    version: str
    digest: str | None
    champion_version: str
    refusal: str | None
    """Why this version may go only forced (None: it completed a rollout upstream)."""

    @property
    def forced(self) -> bool:
        """True when this step goes past a refusal."""
        return self.refusal is not None


@dataclass(frozen=True, slots=True)
class PromotionPlan:
    """What a promotion will open, decided before anything is written."""

    from_env: str
    to_env: str
    source: ReleaseRecord
    target: ReleaseRecord
    steps: tuple[PromotionStep, ...]
    actor: str
    reason: str

    @property
    def forced(self) -> bool:
        """True when any step goes past a refusal."""
        return any(step.forced for step in self.steps)

    def rollout_reason(self, step: PromotionStep) -> str:
        """The reason recorded on the rollout a step opens."""
        text = f"promote {self.source.tag} from {self.from_env}: {self.reason}"
        return text + (f" (forced past: {step.refusal})" if step.refusal else "")


def _refusal(
    name: str, version: str, digest: str | None, proven: Mapping[str, frozenset[str]], env: str
) -> str | None:
    """Why `name` v`version` may go downstream only forced, or None."""
    if version not in proven.get(name, frozenset()):
        return f"{name} v{version} never completed a rollout in {env}"
    if digest is None:
        return f"{env}'s release records no artifact digest for {name} v{version}"
    return None


def plan_promotion(
    source: ReleaseRecord,
    target: ReleaseRecord,
    proven: Mapping[str, frozenset[str]],
    registry_digests: Mapping[str, str | None],
    *,
    force: bool,
    actor: str,
    reason: str,
) -> PromotionPlan:
    """Decide a promotion of `source` (from_env's current release) over `target` (to_env's);
    writes nothing.

    Args:
        proven: per model, the versions that completed a rollout in the source env.
        registry_digests: per model to promote, the registry's artifact digest.

    Raises:
        NotFoundError: a model to_env has no release of (its first release comes from its
            retrain).
        ConflictError: nothing would change, a digest differs from the registry's (always),
            or a refusal without `force`.
    """
    to_env = target.env
    steps, mismatches = [], []
    for name, version in sorted(source.model_versions.items()):
        current = target.model_versions.get(name)
        if current == version:
            continue
        if current is None:
            raise NotFoundError(
                f"{name} is in no release of {to_env} yet: nothing to roll out against"
            )
        digest = source.artifact_digests.get(name)
        if digest is not None and registry_digests.get(name) != digest:
            mismatches.append(
                f"{name} v{version}: {source.env} released artifact {digest[:12]}, the registry "
                f"holds {(registry_digests.get(name) or 'none')[:12]}"
            )
        refusal = _refusal(name, version, digest, proven, source.env)
        steps.append(PromotionStep(name, version, digest, current, refusal))
    if mismatches:
        raise ConflictError("promotion refused, not the same artifact: " + "; ".join(mismatches))
    if not steps:
        raise ConflictError(f"{to_env} already runs the versions of {source.tag}: nothing to do")
    refusals = [step.refusal for step in steps if step.refusal]
    if refusals and not force:
        raise ConflictError("promotion refused: " + "; ".join(refusals) + " (--force to override)")
    return PromotionPlan(source.env, to_env, source, target, tuple(steps), actor, reason)


def apply_promotion(
    engine: Engine,
    plan: PromotionPlan,
    *,
    stages: Sequence[float],
    registry: AliasRegistry,
    stateful: Collection[str] = (),
) -> list[RolloutRecord]:
    """Open one canary rollout per step in `plan.to_env`, forced where the step is.

    Every model is checked first (an active rollout carrying it, as lead or bundle member;
    a version of a model in `stateful` whose release state is not published: `force` does
    not go past that, the version could not answer), so a refusal opens nothing.

    Raises:
        ConflictError: a rollout of a model is already active in to_env, or the env moved
            since the plan (its champion is no longer the planned one).
        StateNotReadyError: a stateful version's release state is not published.
    """
    ledger.require_state_ready(
        engine, {step.model_name: step.version for step in plan.steps}, stateful
    )
    rollouts = ledger.active_rollouts(engine, plan.to_env)
    active = {name: r for r in rollouts for name in r.candidate_versions}
    busy = [
        f"#{active[s.model_name].id} ({s.model_name})" for s in plan.steps if s.model_name in active
    ]
    if busy:
        raise ConflictError(
            f"rollouts already active in {plan.to_env}: {', '.join(busy)}: end them first"
        )
    current = ledger.current_release(engine, plan.to_env)
    if current is None or current.id != plan.target.id:
        raise ConflictError(f"{plan.to_env} changed while preparing the promotion: look again")
    return [
        ledger.start_rollout(
            engine,
            env=plan.to_env,
            model_name=step.model_name,
            candidate_version=step.version,
            champion_version=step.champion_version,
            stages=stages,
            actor=plan.actor,
            reason=plan.rollout_reason(step),
            registry=registry,
            forced=step.forced,
        )
        for step in plan.steps
    ]


@dataclass(frozen=True, slots=True)
class PromotionFacts:
    """What a promotion is planned on (read by `read_promotion`)."""

    source: ReleaseRecord
    target: ReleaseRecord
    proven: dict[str, frozenset[str]]
    registry_digests: dict[str, str | None]


def read_promotion(
    engine: Engine, registry: AliasRegistry, *, from_env: str, to_env: str
) -> PromotionFacts:
    """Both current releases, what completed a rollout in `from_env`, and the registry's
    digest of each upstream version to_env does not run.

    Raises:
        NotFoundError: an unknown env, nothing released in either env, or an upstream
            version the registry does not hold.
        ConflictError: from_env and to_env are the same environment.
    """
    ledger.check_env(from_env)
    ledger.check_env(to_env)
    if from_env == to_env:
        raise ConflictError(f"promote from {from_env} to {to_env}: name two environments")
    source = ledger.current_release(engine, from_env)
    if source is None:
        raise NotFoundError(f"nothing was ever released in {from_env}: nothing to promote")
    target = ledger.current_release(engine, to_env)
    if target is None:
        raise NotFoundError(f"nothing was ever released in {to_env}: record its first release")
    digests = {
        name: registry.get_version(name, version).artifact_sha256
        for name, version in source.model_versions.items()
        if target.model_versions.get(name) != version
    }
    return PromotionFacts(source, target, ledger.completed_versions(engine, from_env), digests)


def promote_release(  # noqa: PLR0913 (keyword-only: each is a field of the promotion)
    engine: Engine,
    registry: AliasRegistry,
    *,
    from_env: str,
    to_env: str,
    stages: Sequence[float],
    actor: str,
    reason: str,
    force: bool = False,
    stateful: Collection[str] = (),
) -> list[RolloutRecord]:
    """Open in `to_env` a rollout of each version `from_env`'s current release runs and
    `to_env`'s does not (same versions, same artifact digests); return them. A version of
    a model in `stateful` (the models that read release state) needs its state published.

    Raises:
        NotFoundError: unknown env, nothing released in either env, a model to_env never
            released, or an unregistered version.
        ConflictError: nothing to promote, a digest mismatch (always), a version that never
            completed a rollout in from_env (without `force`), or an active rollout in the way.
        StateNotReadyError: a stateful version's release state is not published (always).
    """
    facts = read_promotion(engine, registry, from_env=from_env, to_env=to_env)
    plan = plan_promotion(
        facts.source, facts.target, facts.proven, facts.registry_digests,
        force=force, actor=actor, reason=reason,
    )  # fmt: skip
    return apply_promotion(engine, plan, stages=stages, registry=registry, stateful=stateful)


def promotion_summary(from_env: str, to_env: str, rollouts: Sequence[RolloutRecord]) -> str:
    """One line: what the promotion opened in `to_env` (forced ones said so)."""
    opened = ", ".join(
        f"#{r.id} {r.model_name} v{r.candidate_version} vs v{r.champion_version}"
        + (" (forced)" if r.forced else "")
        for r in rollouts
    )
    return f"promoted {from_env} -> {to_env}: opened {opened}"


def promotion_markdown(summary: str, rollouts: Sequence[RolloutRecord], actor: str) -> str:
    """The promotion report: the summary and one table row per rollout opened."""
    rows = [
        f"| #{r.id} | {r.model_name} | v{r.champion_version} | v{r.candidate_version} | "
        f"{r.percent:g}% | {'yes' if r.forced else 'no'} |"
        for r in rollouts
    ]
    return "\n".join(
        [
            f"# {summary}",
            "",
            f"by {actor}",
            "",
            "| rollout | model | champion | candidate | percent | forced |",
            "|---|---|---|---|---|---|",
            *rows,
        ]
    )
