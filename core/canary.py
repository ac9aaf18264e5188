"""The canary's decision for one stage: the policy, the gate, and a pure `decide`.

`decide(figures, stage_index=..., policy=...)` looks at one stage's figures and answers
hold, advance, promote or rollback:
- **rollback** when an always-valid sequential test (core.sequential) finds evidence that
  the candidate breaches a threshold: error rate above the champion's by more than
  CANARY_ERROR_MARGIN, negative feedback above by more than CANARY_FEEDBACK_MARGIN, p95
  above CANARY_P95_MAX_MS, p95 above the champion's p95 x (1 + CANARY_P95_MARGIN), or a
  user-behaviour rate (reformulation, hand-off, abandonment: core.behaviour) above the
  champion's by more than its CANARY_*_MARGIN.
  The family-wise alpha CANARY_ALPHA is split (Bonferroni) over every stage and every
  test, so a candidate as good as the champion is rolled back with probability <= alpha
  over the whole rollout, however often the controller looks.
- **advance** (or **promote** at the last stage) when the stage has baked
  CANARY_BAKE_SECONDS, each arm served CANARY_MIN_SAMPLES, and the gate passes: every
  threshold holds on the point estimates; a user-outcome rate (negative feedback and the
  behaviour rates) may exceed its margin by its noise, ADVANCE_NOISE_Z standard errors of
  the difference, so an identical candidate is not held tick after tick by the scatter of
  a few hundred answers. Otherwise **hold** and look again next tick.
See docs/statistics.md for the maths and the simulations that check it. No I/O here:
core.controller runs this over the database.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from config import Settings
from core.analysis import ArmFigures, StageFigures
from core.behaviour import BehaviourWindows
from core.gates import GateCheck, GateReport, evaluate_gate
from core.sequential import (
    SequentialResult,
    bonferroni_alpha,
    difference_of_proportions,
    proportion_above,
)

Action = Literal["hold", "advance", "promote", "rollback"]
# Sequential tests run on every stage: error rate, negative feedback, p95 limit, p95 vs
# champion, and the three behaviour rates (reformulation, hand-off, abandonment).
TESTS_PER_STAGE = 7
# "p95 above T" <=> "more than 5% of requests slower than T".
P95_TAIL = 0.05
# Mixing scales (tau) of the normal mixtures: the size of effect each test is most
# sensitive to (see docs/statistics.md for the trade-off). Rates: ~5 points; tail: ~10.
TAU_RATE = 0.05
TAU_TAIL = 0.10
# The advance gate's noise allowance on user-outcome rates: an excess is held only when it
# is above the margin by more than 0.84 standard errors (one-sided 80%): a rate whose excess
# is truly at the margin passes at most 20% of its looks, an identical one is rarely held.
ADVANCE_NOISE_Z = 0.8416


@dataclass(frozen=True, slots=True)
class CanaryPolicy:
    """The canary thresholds, and whether a forward move waits for an operator (and how
    long a request stays open), all from Settings CANARY_*."""

    stages: tuple[float, ...]
    bake_seconds: float
    min_samples: int
    alpha: float
    error_margin: float
    p95_max_ms: float
    p95_margin: float
    feedback_margin: float
    reformulation_margin: float = 0.03
    handoff_margin: float = 0.02
    abandonment_margin: float = 0.03
    followup_seconds: float = 60.0
    abandonment_seconds: float = 300.0
    handoff_labels: tuple[str, ...] = ()
    require_approval: bool = False
    approval_timeout_seconds: int = 3600

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        approval_timeout_seconds: int | None = None,
        handoff_labels: tuple[str, ...] = (),
    ) -> CanaryPolicy:
        """Read the policy from Settings (`approval_timeout_seconds` overrides
        CANARY_APPROVAL_TIMEOUT_SECONDS when given; `handoff_labels` are the model
        families' hand-off outputs, `models.handoff_labels()`)."""
        return cls(
            stages=tuple(settings.CANARY_STAGES),
            bake_seconds=settings.CANARY_BAKE_SECONDS,
            min_samples=settings.CANARY_MIN_SAMPLES,
            alpha=settings.CANARY_ALPHA,
            error_margin=settings.CANARY_ERROR_MARGIN,
            p95_max_ms=settings.CANARY_P95_MAX_MS,
            p95_margin=settings.CANARY_P95_MARGIN,
            feedback_margin=settings.CANARY_FEEDBACK_MARGIN,
            reformulation_margin=settings.CANARY_REFORMULATION_MARGIN,
            handoff_margin=settings.CANARY_HANDOFF_MARGIN,
            abandonment_margin=settings.CANARY_ABANDONMENT_MARGIN,
            followup_seconds=settings.CANARY_FOLLOWUP_SECONDS,
            abandonment_seconds=settings.CANARY_ABANDONMENT_SECONDS,
            handoff_labels=tuple(handoff_labels),
            require_approval=settings.CANARY_REQUIRE_APPROVAL,
            approval_timeout_seconds=approval_timeout_seconds
            or settings.CANARY_APPROVAL_TIMEOUT_SECONDS,
        )

    @property
    def test_alpha(self) -> float:
        """The level of each single sequential test (alpha over stages x tests)."""
        return bonferroni_alpha(self.alpha, len(self.stages) * TESTS_PER_STAGE)

    @property
    def behaviour(self) -> BehaviourWindows:
        """The windows and labels the behaviour figures are read with (core.behaviour)."""
        return BehaviourWindows(
            self.followup_seconds, self.abandonment_seconds, self.handoff_labels
        )

    def behaviour_margins(self) -> dict[str, float]:
        """Each behaviour test's name -> its margin (the allowed absolute excess)."""
        return {
            "reformulation": self.reformulation_margin,
            "handoff": self.handoff_margin,
            "abandonment": self.abandonment_margin,
        }


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


def _behaviour_counts(arm: ArmFigures, metric: str) -> tuple[int, int]:
    """(events, answers followed) of one behaviour metric of an arm."""
    if metric == "abandonment":
        return arm.abandonments, arm.abandonment_n
    return (arm.reformulations if metric == "reformulation" else arm.handoffs), arm.followup_n


def _rate_check(
    name: str, candidate: tuple[int, int], champion: tuple[int, int], margin: float
) -> GateCheck:
    """`name`: the candidate's rate minus the champion's, at most `margin` plus
    ADVANCE_NOISE_Z standard errors of that difference (unpooled); skipped until both arms
    have a denominator. `candidate` and `champion` are (events, n)."""
    (c_events, c_n), (h_events, h_n) = candidate, champion
    if not (c_n and h_n):
        return GateCheck(name, None, "<=", margin)
    c_rate, h_rate = c_events / c_n, h_events / h_n
    se = math.sqrt(c_rate * (1 - c_rate) / c_n + h_rate * (1 - h_rate) / h_n)
    return GateCheck(name, c_rate - h_rate, "<=", margin + ADVANCE_NOISE_Z * se)


def sequential_tests(
    figures: StageFigures, policy: CanaryPolicy, *, full: bool = False
) -> dict[str, SequentialResult]:
    """Run the always-valid breach tests (TESTS_PER_STAGE) on one stage's figures; a test
    whose figures are not there yet (an arm with no followed answers) is not run.

    p95_vs_champion takes the champion's p95 as known, so it runs only where the champion
    served alongside at least min_samples requests: not on a `full` (100%) stage, whose
    champion rows are the few the routers served before they polled the new percent
    (bench/aa_serving.py found identical candidates rolled back there by this test).
    """
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
    for metric, margin in policy.behaviour_margins().items():
        (c_events, c_n), (h_events, h_n) = (
            _behaviour_counts(cand, metric),
            _behaviour_counts(champ, metric),
        )
        if c_n and h_n:
            tests[metric] = difference_of_proportions(
                c_events, c_n, h_events, h_n, margin=margin, alpha=alpha, tau=TAU_RATE
            )
    if cand.n:
        tests["p95_limit"] = proportion_above(
            cand.over_limit, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL,
            cluster_variance=cand.over_limit_var,
        )  # fmt: skip
        known = not full and champ.n >= policy.min_samples
        if figures.relative_threshold_ms is not None and known:
            tests["p95_vs_champion"] = proportion_above(
                cand.over_relative, cand.n, p0=P95_TAIL, alpha=alpha, tau=TAU_TAIL,
                cluster_variance=cand.over_relative_var,
            )  # fmt: skip
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
            # what users did next is only known once the follow-up window has passed: a
            # stage shorter than that must not move on blind to it
            GateCheck(
                "followed_answers",
                min(champ.followup_n, cand.followup_n),
                ">=",
                policy.min_samples,
                True,
            ),
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
            _rate_check(
                "negative_feedback_excess",
                (cand.negative_feedback, cand.n),
                (champ.negative_feedback, champ.n),
                policy.feedback_margin,
            ),
            *(
                _rate_check(
                    f"{metric}_excess",
                    _behaviour_counts(cand, metric),
                    _behaviour_counts(champ, metric),
                    margin,
                )
                for metric, margin in policy.behaviour_margins().items()
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
    tests = sequential_tests(figures, policy, full=policy.stages[stage_index] >= 100.0)
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
