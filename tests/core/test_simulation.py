"""Seeded simulations of 1,000 rollouts each, through the real `core.controller.decide`.

Targets (issue 6): A/A false rollbacks <= CANARY_ALPHA; a 2x error rate rolled back within
the first two stages in >= 95% of runs; a 3x slower p95 rolled back by the latency gate.
Figures are printed (run with -s) and recorded in docs/statistics.md.
"""

from __future__ import annotations

import pytest

from config import load_settings
from core.controller import CanaryPolicy
from core.simulation import (
    aa_scenario,
    double_error_scenario,
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
