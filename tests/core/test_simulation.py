"""Seeded simulations of 1,000 rollouts each, through the real `core.controller.decide`.

Targets (issues 6 and 12): A/A false rollbacks <= CANARY_ALPHA with every gate on (the
behaviour gates included); a 2x error rate, and answers that make users reformulate 2x as
often, rolled back within the first two stages in >= 95% of runs; a 3x slower p95 rolled
back by the latency gate.
Figures are printed (run with -s) and recorded in docs/statistics.md.
"""

from __future__ import annotations

import dataclasses

import pytest

from config import load_settings
from core.controller import CanaryPolicy
from core.simulation import (
    Scenario,
    aa_scenario,
    double_error_scenario,
    double_reformulation_scenario,
    simulate_rollouts,
    triple_latency_scenario,
)

RUNS = 1_000

pytestmark = pytest.mark.slow


@pytest.fixture
def policy() -> CanaryPolicy:
    """The default canary policy from Settings (alpha 0.05, stages 1,10,25,50,100)."""
    return CanaryPolicy.from_settings(load_settings())


def test_simulate_aa_rollouts_false_rollbacks_within_alpha(policy: CanaryPolicy) -> None:
    result = simulate_rollouts(aa_scenario(), policy, runs=RUNS, seed=20261122)
    print(
        f"A/A: false rollbacks {result.rate('rollback'):.3f}, promoted {result.rate('promote'):.3f}"
    )
    assert result.rate("rollback") <= policy.alpha
    # and the identical candidate does get promoted (the controller is not just stuck)
    assert result.rate("promote") >= 0.95


def test_simulate_double_error_rate_rolled_back_within_two_stages(policy: CanaryPolicy) -> None:
    result = simulate_rollouts(double_error_scenario(), policy, runs=RUNS, seed=20261123)
    print(f"2x errors: rolled back within 2 stages {result.rollback_within(2):.3f}")
    assert result.rollback_within(2) >= 0.95
    assert result.rate("promote") == 0.0
    assert set(result.breaches) == {"error_rate"}


def test_simulate_triple_latency_rolled_back_by_latency_gate(policy: CanaryPolicy) -> None:
    result = simulate_rollouts(triple_latency_scenario(), policy, runs=RUNS, seed=20261124)
    print(f"3x p95: rolled back {result.rate('rollback'):.3f}, breaches {dict(result.breaches)}")
    assert result.rate("rollback") == 1.0
    assert result.breaches["p95_vs_champion"] == RUNS
    assert result.breaches["error_rate"] == 0


def test_simulate_double_reformulation_rolled_back_by_its_gate_within_two_stages(
    policy: CanaryPolicy,
) -> None:
    scenario = double_reformulation_scenario()
    assert (scenario.champion.error_rate, scenario.champion.latency_median_ms) == (
        scenario.candidate.error_rate,
        scenario.candidate.latency_median_ms,
    )
    result = simulate_rollouts(scenario, policy, runs=RUNS, seed=20261130)
    print(
        f"2x reformulation: rolled back within 2 stages {result.rollback_within(2):.3f}, "
        f"breaches {dict(result.breaches)}"
    )
    assert result.rollback_within(2) >= 0.95
    assert result.rate("promote") == 0.0
    assert result.breaches["reformulation"] == result.runs * result.rate("rollback")
    assert result.breaches["error_rate"] == result.breaches["negative_feedback"] == 0


@pytest.mark.parametrize(
    ("metric", "changes"),
    [("handoff", {"handoff_rate": 0.06}), ("abandonment", {"abandonment_rate": 0.25})],
)
def test_simulate_power_of_the_other_behaviour_gates(
    policy: CanaryPolicy, metric: str, changes: dict[str, float]
) -> None:
    """Twice the hand-offs (3% -> 6%) or 5 points more abandonment (20% -> 25%)."""
    champion = aa_scenario().champion
    scenario = Scenario(metric, champion, dataclasses.replace(champion, **changes))
    result = simulate_rollouts(scenario, policy, runs=RUNS, seed=20261131)
    print(f"{metric}: rolled back {result.rate('rollback'):.3f} {dict(result.breaches)}")
    assert result.rollback_within(3) >= 0.95
    assert set(result.breaches) == {metric}
