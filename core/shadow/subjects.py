"""Shadow evaluation, what it is about and what follows: the subjects and the verdict.

`resolve_subjects` finds the champion (the env's current release) and the candidate
(given, the active rollout's, or the env's `<env>-candidate` alias); `act_on_report` records the
evaluation in the ledger and moves the rollout on its verdict.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine

from core import ledger
from core.aliases import env_alias
from core.errors import ConflictError, NotFoundError
from core.ledger import AliasRegistry, RolloutRecord
from core.loadtest.record import EVENT_KIND as LOAD_TEST_EVENT
from core.loadtest.report import LoadTestReport
from core.shadow.statistics import ShadowReport


@dataclass(frozen=True, slots=True)
class ShadowSubjects:
    """Which versions a shadow evaluation compares, and the rollout it belongs to (if any)."""

    env: str
    model_name: str
    champion_version: str
    candidate_version: str
    rollout: RolloutRecord | None


def resolve_subjects(
    engine: Engine,
    registry: AliasRegistry,
    *,
    env: str,
    model_name: str,
    candidate_version: str | None,
    stateful: Collection[str] = (),
) -> ShadowSubjects:
    """Find the champion (current release) and candidate (given, else the active
    rollout's, else the registry's `<env>-candidate` alias) of `model_name` in `env`.

    The active rollout is the one carrying the model, as its lead or as a member of a
    bundle. A candidate of a model in `stateful` (the models that read release state)
    takes no shadow traffic before its state is published: refused here, before any replay.

    Raises:
        NotFoundError: no release holds the model in `env`, or no candidate can be found.
        ConflictError: the candidate is the champion, or differs from the active rollout's.
        StateNotReadyError: the candidate's release state is not published.
    """
    release = ledger.current_release(engine, env)
    champion = (release.model_versions if release else {}).get(model_name)
    if champion is None:
        raise NotFoundError(f"no champion of {model_name!r} in {env}: nothing released yet")
    active = [r for r in ledger.active_rollouts(engine, env) if model_name in r.candidate_versions]
    rollout = active[0] if active else None
    if candidate_version is None:
        candidate_version = _default_candidate(registry, env, model_name, rollout)
    candidate_version = str(candidate_version)
    if candidate_version == str(champion):
        raise ConflictError(f"{model_name} v{candidate_version} is already the champion in {env}")
    if rollout is not None and rollout.candidate_versions[model_name] != candidate_version:
        raise ConflictError(
            f"rollout #{rollout.id} carries {model_name} v{rollout.candidate_versions[model_name]} "
            f"in {env}, not v{candidate_version}: end it first"
        )
    ledger.require_state_ready(engine, {model_name: candidate_version}, stateful)
    return ShadowSubjects(env, model_name, str(champion), candidate_version, rollout)


def _default_candidate(
    registry: AliasRegistry, env: str, model_name: str, rollout: RolloutRecord | None
) -> str:
    """The active rollout's candidate, else the version `<env>-candidate` points at.

    Raises:
        NotFoundError: no rollout and no `<env>-candidate` alias.
    """
    if rollout is not None:
        return rollout.candidate_versions[model_name]
    alias = env_alias(env, "candidate")
    found = registry.version_by_alias(model_name, alias)
    if found is None:
        raise NotFoundError(
            f"no candidate of {model_name!r} in {env}: name a version, or set the `{alias}` alias"
        )
    return found.version


ShadowAction = Literal["advanced_to_canary", "started_canary", "rolled_back", "reported"]


def act_on_report(
    engine: Engine,
    subjects: ShadowSubjects,
    report: ShadowReport,
    *,
    stages: Sequence[float],
    actor: str,
    registry: AliasRegistry | None = None,
    start_canary: bool = True,
    load_test: LoadTestReport | None = None,
) -> tuple[ShadowAction, int | None]:
    """Record the evaluation (and the pre-canary load test, when one ran) in the ledger and
    move the rollout on the verdict: both gates must pass.

    A shadow-mode rollout advances into canary stage 0 on a pass and is rolled back on a
    fail (the reason names every failed threshold of either gate, e.g. `shadow ...: pass;
    load-test: fail (p95_vs_champion ...)`). Without a rollout, a pass starts a canary
    rollout (when `start_canary`); a fail only reports. A canary or paused rollout only
    gets the events. Returns what was done and the rollout id.

    Raises:
        ConflictError: the rollout changed meanwhile (the ledger refuses stale moves).
    """
    gates = [report.gate] if load_test is None else [report.gate, load_test.gate]
    passed = all(gate.passed for gate in gates)
    summary = "; ".join(gate.summary() for gate in gates)
    figures = {"gate": report.gate.as_dict()}
    if load_test is not None:
        figures["load_test_gate"] = load_test.gate.as_dict()
    rollout = subjects.rollout
    if rollout is None:
        if not (passed and start_canary):
            return "reported", None
        rollout_id = _start_canary(engine, subjects, summary, stages, actor)
        _record_evidence(engine, rollout_id, report, load_test, actor)
        return "started_canary", rollout_id
    _record_evidence(engine, rollout.id, report, load_test, actor)
    if rollout.status != "shadow":
        return "reported", rollout.id
    if passed:
        ledger.advance_stage(
            engine, rollout.id, expected_stage_index=rollout.stage_index,
            stages=ledger.rollout_stages(engine, rollout.id), actor=actor, reason=summary,
            figures=figures,
        )  # fmt: skip
        return "advanced_to_canary", rollout.id
    ledger.rollback(
        engine, rollout.id, actor=actor, reason=summary, figures=figures, registry=registry
    )
    return "rolled_back", rollout.id


def _record_evidence(
    engine: Engine,
    rollout_id: int,
    report: ShadowReport,
    load_test: LoadTestReport | None,
    actor: str,
) -> None:
    """The evaluation's event, then the load test's (when one ran), with their figures."""
    ledger.record_event(
        engine, rollout_id, kind="shadow_evaluation", actor=actor,
        reason=report.gate.summary(), figures=report.as_dict(),
    )  # fmt: skip
    if load_test is not None:
        ledger.record_event(
            engine, rollout_id, kind=LOAD_TEST_EVENT, actor=actor,
            reason=load_test.gate.summary(), figures=load_test.as_dict(),
        )  # fmt: skip


def _start_canary(
    engine: Engine,
    subjects: ShadowSubjects,
    summary: str,
    stages: Sequence[float],
    actor: str,
) -> int:
    """Start a canary rollout on a passed evaluation; return the rollout id."""
    rollout = ledger.start_rollout(
        engine,
        env=subjects.env,
        model_name=subjects.model_name,
        candidate_version=subjects.candidate_version,
        champion_version=subjects.champion_version,
        stages=stages,
        mode="canary",
        actor=actor,
        reason=f"shadow evaluation passed: {summary}",
    )
    return rollout.id
