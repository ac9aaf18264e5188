"""The mSPRT tests: the formula, the one-sided region, validity under repeated looks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from core.sequential import (
    bonferroni_alpha,
    difference_of_proportions,
    log_mixture_likelihood_ratio,
    proportion_above,
)


def test_log_mixture_likelihood_ratio_matches_closed_form() -> None:
    v, tau, d = 0.0004, 0.02, 0.05
    expected = math.sqrt(v / (v + tau**2)) * math.exp(tau**2 * d**2 / (2 * v * (v + tau**2)))
    assert math.exp(log_mixture_likelihood_ratio(d, 0.0, v, tau)) == pytest.approx(expected)


def test_difference_of_proportions_clear_excess_rejects() -> None:
    result = difference_of_proportions(400, 5000, 100, 5000, margin=0.01, alpha=0.0025, tau=0.02)
    assert result.reject
    assert result.estimate == pytest.approx(0.06)
    assert result.p_value < 0.0025


def test_difference_of_proportions_better_candidate_never_rejects() -> None:
    # a large difference in the good direction is not a breach (one-sided)
    result = difference_of_proportions(0, 5000, 400, 5000, margin=0.01, alpha=0.05, tau=0.02)
    assert not result.reject


def test_difference_of_proportions_empty_arm_has_no_evidence() -> None:
    result = difference_of_proportions(0, 0, 10, 100, margin=0.0, alpha=0.05, tau=0.02)
    assert not result.reject
    assert result.p_value == 1.0


def test_difference_of_proportions_invalid_counts_raise() -> None:
    with pytest.raises(ValueError, match="invalid count"):
        difference_of_proportions(11, 10, 0, 10, margin=0, alpha=0.05, tau=0.02)
    with pytest.raises(ValueError, match="alpha"):
        difference_of_proportions(1, 10, 0, 10, margin=0, alpha=1.5, tau=0.02)


def test_proportion_above_tail_share_rejects_only_when_far_above() -> None:
    assert proportion_above(60, 100, p0=0.05, alpha=0.0025, tau=0.1).reject
    assert not proportion_above(6, 100, p0=0.05, alpha=0.0025, tau=0.1).reject


def test_bonferroni_alpha_splits_family_error() -> None:
    assert bonferroni_alpha(0.05, 20) == pytest.approx(0.0025)
    with pytest.raises(ValueError, match="tests"):
        bonferroni_alpha(0.05, 0)


def test_difference_of_proportions_peeking_every_step_keeps_alpha() -> None:
    """Under H0 (equal rates, margin 0), look after every batch of 50: rejections <= alpha.

    The same data tested with a fixed-sample one-sided z-test at every look rejects far
    more often, which is why the controller needs the sequential test.
    """
    rng = np.random.default_rng(11)
    runs, looks, batch, p, alpha = 2000, 60, 50, 0.1, 0.05
    xa = rng.binomial(batch, p, size=(runs, looks)).cumsum(axis=1)
    xb = rng.binomial(batch, p, size=(runs, looks)).cumsum(axis=1)
    n = batch * np.arange(1, looks + 1)
    msprt_hits = naive_hits = 0
    for r in range(runs):
        msprt = naive = False
        for k in range(looks):
            res = difference_of_proportions(
                int(xa[r, k]),
                int(n[k]),
                int(xb[r, k]),
                int(n[k]),
                margin=0.0,
                alpha=alpha,
                tau=0.02,
            )
            msprt |= res.reject
            pa, pb = xa[r, k] / n[k], xb[r, k] / n[k]
            se = math.sqrt((pa * (1 - pa) + pb * (1 - pb)) / n[k]) or 1.0
            naive |= (pa - pb) / se > 1.645
        msprt_hits += msprt
        naive_hits += naive
    assert msprt_hits / runs <= alpha
    assert naive_hits / runs > 2 * alpha
