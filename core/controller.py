"""The canary controller's decisions: a pure `decide` and a reconciler over the database.

`decide(figures, stage_index=..., policy=...)` looks at one stage's figures and answers
hold, advance, promote or rollback:
- **rollback** when an always-valid sequential test (core.sequential) finds evidence that
  the candidate breaches a threshold: error rate above the champion's by more than
  CANARY_ERROR_MARGIN, negative feedback above by more than CANARY_FEEDBACK_MARGIN, p95
  above CANARY_P95_MAX_MS, or p95 above the champion's p95 x (1 + CANARY_P95_MARGIN).
  The family-wise alpha CANARY_ALPHA is split (Bonferroni) over every stage and every
  test, so a candidate as good as the champion is rolled back with probability <= alpha
  over the whole rollout, however often the controller looks.
- **advance** (or **promote** at the last stage) when the stage has baked
  CANARY_BAKE_SECONDS, each arm served CANARY_MIN_SAMPLES, and the gate passes: every
  threshold holds on the point estimates. Otherwise **hold** and look again next tick.
See docs/statistics.md for the maths and the simulations that check it.

`reconcile(engine, settings, ...)` applies the decisions to every active rollout through the
ledger; it is safe to run any number of times, including after a crash mid-tick.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import Engine

from config import Settings
from core import ledger
from core.analysis import StageFigures, stage_figures
from core.db import utcnow
from core.errors import ConflictError
from core.gates import GateCheck, GateReport, evaluate_gate
from core.sequential import (
    SequentialResult,
    bonferroni_alpha,
    difference_of_proportions,
    proportion_above,
)

Action = Literal["hold", "advance", "promote", "rollback"]
Outcome = Literal[
    "held", "advanced", "promoted", "rolled_back", "skipped", "conflict", "awaiting_approval"
]
Checkpoint = Callable[[str], None]

log = logging.getLogger(__name__)

CONTROLLER_ACTOR = "rollout-controller"
APPROVAL_REQUESTED = "approval_requested"
APPROVAL_ANSWERED = "approval_answered"

# Sequential tests run on every stage: error rate, negative feedback, p95 limit, p95 vs champion.
TESTS_PER_STAGE = 4
# "p95 above T" <=> "more than 5% of requests slower than T".
P95_TAIL = 0.05
# Mixing scales (tau) of the normal mixtures: the size of effect each test is most
# sensitive to (see docs/statistics.md for the trade-off). Rates: ~5 points; tail: ~10.
TAU_RATE = 0.05
TAU_TAIL = 0.10


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """The canary thresholds (all from Settings CANARY_*)."""

    stages: tuple[float, ...]
    bake_seconds: float
    min_samples: int
    alpha: float
    error_margin: float
    p95_max_ms: float
    p95_margin: float
    feedback_margin: float
    require_approval: bool = False

    @classmethod
    def from_settings(cls, settings: Settings) -> CanaryPolicy:
        """Read the policy from Settings."""
        return cls(
            stages=tuple(settings.CANARY_STAGES),
            bake_seconds=settings.CANARY_BAKE_SECONDS,
            min_samples=settings.CANARY_MIN_SAMPLES,
            alpha=settings.CANARY_ALPHA,
            error_margin=settings.CANARY_ERROR_MARGIN,
            p95_max_ms=settings.CANARY_P95_MAX_MS,
            p95_margin=settings.CANARY_P95_MARGIN,
            feedback_margin=settings.CANARY_FEEDBACK_MARGIN,
            require_approval=settings.CANARY_REQUIRE_APPROVAL,
        )

    @property
    def test_alpha(self) -> float:
        """The level of each single sequential test (alpha over stages x tests)."""
        return bonferroni_alpha(self.alpha, len(self.stages) * TESTS_PER_STAGE)


@dataclass(frozen=True, slots=True)
class Verdict:
    """What to do with a rollout's current stage, and the evidence behind it."""

    action: Action
    stage_index: int
    reasons: tuple[str, ...]
    gate: GateReport
    tests: dict[str, SequentialResult] = field(default_factory=dict)

    @property
    def breaches(self) -> list[str]:
        """Names of the sequential tests that found a breach (the rollback triggers)."""
        return [name for name, result in self.tests.items() if result.reject]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view stored with the rollout event."""
        return {
            "action": self.action,
            "stage_index": self.stage_index,
            "reasons": list(self.reasons),
            "gate": self.gate.as_dict(),
            "tests": {name: result.as_dict() for name, result in self.tests.items()},
        }


def sequential_tests(figures: StageFigures, policy: CanaryPolicy) -> dict[str, SequentialResult]:
    """Run the four always-valid breach tests on one stage's figures."""
    champ, cand = figures.champion, figures.candidate
    alpha = policy.test_alpha
    tests: dict[str, SequentialResult] = {}
    if champ.n and cand.n:
        tests["error_rate"] = difference_of_proportions(
            cand.errors, cand.n, champ.errors, champ.n,
            margin=policy.error_margin, alpha=alpha, tau=TAU_RATE,
        )  # fmt: skip
        tests["negative_feedback"] = difference_of_proportions(
            cand.negative_feedback, cand.n, champ.negative_feedback, champ.n,
            margin=policy.feedback_margin, alpha=alpha, tau=TAU_RATE,
        )  # fmt: skip
    if cand.n:
        tests["p95_limit"] = proportion_above(
            cand.over_limit, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL
        )
        if figures.relative_threshold_ms is not None:
            tests["p95_vs_champion"] = proportion_above(
                cand.over_relative, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL
            )
    return tests


def advance_gate(figures: StageFigures, *, stage_index: int, policy: CanaryPolicy) -> GateReport:
    """The thresholds a stage must meet to move on (every failure listed).

    At a 100% stage nobody is on the champion, so only the candidate's own checks apply.
    """
    champ, cand = figures.champion, figures.candidate
    full = policy.stages[stage_index] >= 100.0
    checks = [
        GateCheck("bake_seconds", figures.elapsed_seconds, ">=", policy.bake_seconds, True),
        GateCheck("candidate_samples", cand.n, ">=", policy.min_samples, True),
        GateCheck("candidate_p95_ms", cand.p95_ms, "<=", policy.p95_max_ms),
    ]
    if not full:
        champion_p95 = champ.p95_ms
        checks += [
            GateCheck("champion_samples", champ.n, ">=", policy.min_samples, True),
            GateCheck(
                "error_rate_excess",
                cand.error_rate - champ.error_rate if champ.n and cand.n else None,
                "<=",
                policy.error_margin,
                True,
            ),
            GateCheck(
                "p95_vs_champion_ms",
                cand.p95_ms if champion_p95 is not None else None,
                "<=",
                champion_p95 * (1 + policy.p95_margin) if champion_p95 is not None else 0.0,
            ),
            GateCheck(
                "negative_feedback_excess",
                cand.negative_feedback_rate - champ.negative_feedback_rate
                if champ.n and cand.n
                else None,
                "<=",
                policy.feedback_margin,
            ),
        ]
    return evaluate_gate(f"stage {stage_index} ({policy.stages[stage_index]:g}%)", checks)


def decide(figures: StageFigures, *, stage_index: int, policy: CanaryPolicy) -> Verdict:
    """Decide what to do with a rollout at `stage_index` given the stage's figures.

    Pure: no I/O, no clock (the window length is in `figures`).

    Raises:
        ValueError: if stage_index is outside the policy's stages.
    """
    if not 0 <= stage_index < len(policy.stages):
        raise ValueError(f"stage index {stage_index} outside 0..{len(policy.stages) - 1}")
    tests = sequential_tests(figures, policy)
    gate = advance_gate(figures, stage_index=stage_index, policy=policy)
    breaches = [name for name, result in tests.items() if result.reject]
    if breaches:
        reasons = tuple(
            f"{name}: {tests[name].estimate:.4g} above {tests[name].null:.4g} "
            f"(always-valid p={tests[name].p_value:.2g} < {policy.test_alpha:.2g})"
            for name in breaches
        )
        return Verdict("rollback", stage_index, reasons, gate, tests)
    if not gate.passed:
        return Verdict("hold", stage_index, tuple(c.describe() for c in gate.failed), gate, tests)
    last = stage_index == len(policy.stages) - 1
    return Verdict("promote" if last else "advance", stage_index, (gate.summary(),), gate, tests)


# --- the reconciler ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What one tick found for one rollout: its figures and verdict (None when skipped)."""

    rollout: ledger.RolloutRecord
    policy: CanaryPolicy
    figures: StageFigures | None
    verdict: Verdict | None
    skipped: str | None = None

    @property
    def needs_approval_for(self) -> Action | None:
        """advance/promote when the verdict would move the rollout forward, else None."""
        if self.verdict is None or self.rollout.status != "canary":
            return None
        return self.verdict.action if self.verdict.action in ("advance", "promote") else None


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What the tick did to one rollout, and why (one line)."""

    rollout_id: int
    outcome: Outcome
    detail: str
    stage_index: int


def _noop(_point: str) -> None:
    return None


def plan_rollout(
    engine: Engine, rollout: ledger.RolloutRecord, policy: CanaryPolicy, *, now: datetime
) -> TickPlan:
    """Compute the current stage's figures in SQL and decide; no write.

    The stages are the ones the rollout was started with (the thresholds come from
    `policy`). Shadow rollouts are skipped (the shadow evaluation moves them into canary).
    Paused ones are analysed (a breach still rolls them back) but never moved forward.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    if rollout.status == "shadow":
        return TickPlan(rollout, policy, None, None, "shadow: waiting for the shadow evaluation")
    policy = dataclasses.replace(policy, stages=tuple(ledger.rollout_stages(engine, rollout.id)))
    if not 0 <= rollout.stage_index < len(policy.stages):
        return TickPlan(rollout, policy, None, None, f"stage {rollout.stage_index} not in stages")
    figures = stage_figures(
        engine,
        rollout.id,
        since=rollout.stage_started_at,
        until=max(now, rollout.stage_started_at),
        latency_limit_ms=policy.p95_max_ms,
        p95_margin=policy.p95_margin,
    )
    verdict = decide(figures, stage_index=rollout.stage_index, policy=policy)
    return TickPlan(rollout, policy, figures, verdict)


def _evidence(plan: TickPlan) -> dict[str, Any]:
    assert plan.figures is not None
    assert plan.verdict is not None
    return {"figures": plan.figures.as_dict(), "verdict": plan.verdict.as_dict()}


def apply_plan(
    engine: Engine,
    plan: TickPlan,
    *,
    actor: str = CONTROLLER_ACTOR,
    registry: ledger.AliasRegistry | None = None,
    code_version: str,
    image_version: str,
    approved: bool = False,
) -> TickOutcome:
    """Carry out a plan through the ledger (each write is one transaction with one event).

    Safe to repeat: advances are compare-and-set on the stage index and ended rollouts
    refuse changes, so a plan made from stale state ends as `conflict`, writing nothing.
    A forward move that needs approval (policy.require_approval) is only made when
    `approved`.
    """
    rollout, verdict, policy = plan.rollout, plan.verdict, plan.policy
    if verdict is None:
        return TickOutcome(rollout.id, "skipped", plan.skipped or "", rollout.stage_index)
    reason = "; ".join(verdict.reasons)
    try:
        if verdict.action == "rollback":
            ledger.rollback(
                engine, rollout.id, actor=actor, reason=reason,
                figures=_evidence(plan), registry=registry,
            )  # fmt: skip
            return TickOutcome(rollout.id, "rolled_back", reason, rollout.stage_index)
        if verdict.action == "hold" or rollout.status != "canary":
            why = reason if verdict.action == "hold" else f"{rollout.status}: not moving"
            return TickOutcome(rollout.id, "held", why, rollout.stage_index)
        if policy.require_approval and not approved:
            return TickOutcome(
                rollout.id, "awaiting_approval", f"{verdict.action} needs an operator",
                rollout.stage_index,
            )  # fmt: skip
        if verdict.action == "advance":
            ledger.advance_stage(
                engine, rollout.id, expected_stage_index=rollout.stage_index,
                stages=policy.stages, actor=actor, reason=reason, figures=_evidence(plan),
            )  # fmt: skip
            return TickOutcome(rollout.id, "advanced", reason, rollout.stage_index)
        current = ledger.get_rollout(engine, rollout.id)
        if (current.stage_index, current.stage_started_at) != (
            rollout.stage_index,
            rollout.stage_started_at,
        ):
            raise ConflictError(f"rollout #{rollout.id} moved since it was analysed")
        ledger.promote(
            engine, rollout.id, actor=actor, reason=reason, figures=_evidence(plan),
            registry=registry, code_version=code_version, image_version=image_version,
        )  # fmt: skip
        return TickOutcome(rollout.id, "promoted", reason, rollout.stage_index)
    except ConflictError as exc:
        # Another tick (or an operator) changed the rollout first: nothing to do here.
        log.info("rollout #%s: %s", rollout.id, exc)
        return TickOutcome(rollout.id, "conflict", str(exc), rollout.stage_index)


def log_verdict(plan: TickPlan) -> None:
    """Log the decision either way, with every failed threshold or breach."""
    if plan.verdict is None:
        log.info("rollout #%s skipped: %s", plan.rollout.id, plan.skipped)
        return
    v = plan.verdict
    level = logging.WARNING if v.action == "rollback" else logging.INFO
    log.log(
        level,
        "rollout #%s stage %s (%g%%): %s [%s]",
        plan.rollout.id,
        v.stage_index,
        plan.rollout.percent,
        v.action,
        "; ".join(v.reasons),
    )


def reconcile(
    engine: Engine,
    policy: CanaryPolicy,
    *,
    code_version: str,
    image_version: str,
    env: str | None = None,
    registry: ledger.AliasRegistry | None = None,
    actor: str = CONTROLLER_ACTOR,
    now: datetime | None = None,
    checkpoint: Checkpoint = _noop,
) -> list[TickOutcome]:
    """One controller tick over every active rollout (of `env`, or all envs).

    Idempotent and crash-safe: all state is in the database, each change is one ledger
    transaction guarded by compare-and-set, so running it twice, concurrently, or again
    after being killed anywhere continues where the state is, without duplicate or lost
    events. `checkpoint(name)` is called at named points (`planned`, `applied`) so tests
    can stop a real process inside a tick.
    """
    outcomes = []
    if registry is not None:
        finish_promotions(engine, registry, env=env)
    for rollout in ledger.active_rollouts(engine, env):
        plan = plan_rollout(engine, rollout, policy, now=now or utcnow())
        log_verdict(plan)
        checkpoint("planned")
        outcome = apply_plan(
            engine, plan, actor=actor, registry=registry,
            code_version=code_version, image_version=image_version,
        )  # fmt: skip
        checkpoint("applied")
        outcomes.append(outcome)
    return outcomes


def finish_promotions(
    engine: Engine,
    registry: ledger.AliasRegistry,
    *,
    env: str | None = None,
    within: timedelta = timedelta(hours=1),
) -> list[int]:
    """Move MLflow aliases of recent promotions that a crash left behind; idempotent.

    The ledger commits a promotion first and moves the aliases after; a controller killed
    in between leaves `champion` on the old version. For each rollout promoted within
    `within` whose candidate still runs in its env (no later rollback), set `champion` ->
    candidate and `previous` -> old champion if they are not so already. Returns the ids
    of the rollouts repaired.
    """
    lookup = getattr(registry, "version_by_alias", None)
    if lookup is None:
        return []
    cutoff = utcnow() - within
    repaired = []
    for rollout in ledger.list_rollouts(engine, env, limit=50):
        if rollout.status != "promoted" or rollout.ended_at is None or rollout.ended_at < cutoff:
            continue
        release = ledger.current_release(engine, rollout.env)
        if release is None or release.model_versions.get(rollout.model_name) != (
            rollout.candidate_version
        ):
            continue
        found = lookup(rollout.model_name, "champion")
        if found is not None and str(getattr(found, "version", found)) == rollout.candidate_version:
            continue
        registry.set_alias(rollout.model_name, "champion", rollout.candidate_version)
        registry.set_alias(rollout.model_name, "previous", rollout.champion_version)
        log.warning(
            "rollout #%s: champion alias moved to v%s after an interrupted promotion",
            rollout.id,
            rollout.candidate_version,
        )
        repaired.append(rollout.id)
    return repaired


def approval_pending(
    engine: Engine, rollout: ledger.RolloutRecord, *, timeout_seconds: float
) -> bool:
    """True when an operator was already asked about this stage and may still answer.

    Ticks that run while a paused flow waits for an operator do not ask again; a request
    older than the approval timeout is stale (its flow gave up or died) and is asked again.
    """
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    for event in reversed(ledger.rollout_events(engine, rollout.id)):
        if event.kind == APPROVAL_REQUESTED:
            return event.stage_index == rollout.stage_index and event.ts >= cutoff
        if event.kind == APPROVAL_ANSWERED or event.stage_index != rollout.stage_index:
            return False
    return False
