"""Always-valid sequential tests for the canary controller (mixture SPRT).

The controller looks at a stage's data every tick. A fixed-sample test applied at every
look rejects a true null far more often than its alpha; the mixture sequential probability
ratio test (mSPRT, Robbins 1970; Johari, Koomen, Pekelis & Walsh 2017) does not: under the
null its likelihood ratio is a nonnegative martingale with mean 1, so by Ville's inequality
P(sup_n Lambda_n >= 1/alpha) <= alpha, whatever the number or timing of the looks.

With a normal mixture N(theta0, tau^2) over the effect and an (asymptotically) normal
estimate `d` of the effect with variance `v`, the mixture likelihood ratio is

    Lambda = sqrt(v / (v + tau^2)) * exp( tau^2 (d - theta0)^2 / (2 v (v + tau^2)) ).

We reject `effect <= theta0` when Lambda >= 1/alpha and d > theta0 (the one-sided region is a
subset of the two-sided one, so the error bound still holds). The maths and the choice of
tau are written up in docs/statistics.md.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

# Pseudo-count used only in the variance plug-in, so a stage with 0 errors so far does not
# get a zero variance (which would make any difference look infinitely significant).
VARIANCE_PSEUDO_COUNT = 0.5


@dataclass(frozen=True, slots=True)
class SequentialResult:
    """One look of an always-valid test.

    estimate: the observed effect (difference of rates, or a rate); null: theta0;
    log_lr: log of the mixture likelihood ratio; p_value: 1/Lambda capped at 1 (the
    always-valid p-value of this look); reject: Lambda >= 1/alpha with estimate > null.
    """

    estimate: float
    null: float
    log_lr: float
    alpha: float
    p_value: float
    reject: bool

    @property
    def threshold(self) -> float:
        """The rejection threshold on the likelihood ratio, 1/alpha."""
        return 1.0 / self.alpha

    def as_dict(self) -> dict[str, float | bool]:
        """A JSON-ready view, stored with gate results in rollout events."""
        return {
            "estimate": round(self.estimate, 6),
            "null": round(self.null, 6),
            "log_lr": round(self.log_lr, 4),
            "alpha": self.alpha,
            "p_value": round(self.p_value, 6),
            "reject": self.reject,
        }


def log_mixture_likelihood_ratio(
    estimate: float, null: float, variance: float, tau: float
) -> float:
    """log Lambda of the normal-mixture SPRT for a normal estimate with known variance.

    Raises:
        ValueError: if variance or tau is not positive.
    """
    if variance <= 0 or tau <= 0:
        raise ValueError("variance and tau must be positive")
    tau2 = tau * tau
    shift = estimate - null
    return 0.5 * math.log(variance / (variance + tau2)) + (tau2 * shift * shift) / (
        2.0 * variance * (variance + tau2)
    )


def _result(estimate: float, null: float, log_lr: float, alpha: float) -> SequentialResult:
    p_value = 1.0 if log_lr <= 0 else math.exp(-log_lr)
    reject = estimate > null and log_lr >= math.log(1.0 / alpha)
    return SequentialResult(estimate, null, log_lr, alpha, min(1.0, p_value), reject)


def _no_evidence(estimate: float, null: float, alpha: float) -> SequentialResult:
    return SequentialResult(estimate, null, 0.0, alpha, 1.0, False)


def _check_alpha(alpha: float) -> None:
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")


def difference_of_proportions(
    x_treatment: int,
    n_treatment: int,
    x_control: int,
    n_control: int,
    *,
    margin: float,
    alpha: float,
    tau: float,
) -> SequentialResult:
    """Test H0: p_treatment - p_control <= margin against "greater", valid at every look.

    The variance is the unpooled plug-in p(1-p)/n of each arm (with a 0.5 pseudo-count),
    the usual large-sample form of the two-proportion mSPRT.

    Raises:
        ValueError: on a count outside [0, n] or alpha outside (0, 1).
    """
    _check_alpha(alpha)
    for x, n in ((x_treatment, n_treatment), (x_control, n_control)):
        if n < 0 or not 0 <= x <= n:
            raise ValueError(f"invalid count {x} of {n}")
    if n_treatment == 0 or n_control == 0:
        return _no_evidence(0.0, margin, alpha)
    p_t, p_c = x_treatment / n_treatment, x_control / n_control
    variance = _shrunk_variance(x_treatment, n_treatment) + _shrunk_variance(x_control, n_control)
    estimate = p_t - p_c
    return _result(
        estimate, margin, log_mixture_likelihood_ratio(estimate, margin, variance, tau), alpha
    )


def proportion_above(
    x: int,
    n: int,
    *,
    p0: float,
    alpha: float,
    tau: float,
    cluster_variance: float | None = None,
) -> SequentialResult:
    """Test H0: p <= p0 against "greater" for one proportion, valid at every look.

    Used for latency quantiles: "p95 above T" is the same as "more than 5% of requests
    slower than T", a proportion whose null variance is p0(1-p0)/n for independent
    requests. Latency is not independent from one request to the next (a pause slows
    everything in flight), so `cluster_variance` (`clustered_variance` over the seconds of
    the window) replaces it when larger: the test never assumes more independence than
    the requests show.

    Raises:
        ValueError: on a count outside [0, n], p0 outside (0, 1) or alpha outside (0, 1).
    """
    _check_alpha(alpha)
    if not 0 < p0 < 1:
        raise ValueError(f"p0 must be in (0, 1), got {p0}")
    if n < 0 or not 0 <= x <= n:
        raise ValueError(f"invalid count {x} of {n}")
    if n == 0:
        return _no_evidence(0.0, p0, alpha)
    estimate = x / n
    variance = max(p0 * (1.0 - p0) / n, cluster_variance or 0.0)
    return _result(estimate, p0, log_mixture_likelihood_ratio(estimate, p0, variance, tau), alpha)


def clustered_variance(
    clusters: int, n: int, n_sq: int, x: int, x_sq: int, x_n: int
) -> float | None:
    """The cluster-robust (sandwich) variance of the proportion x/n, from per-cluster counts
    summed in SQL: n = sum n_c, n_sq = sum n_c^2, x = sum x_c, x_sq = sum x_c^2,
    x_n = sum x_c n_c. It is sum (x_c - p n_c)^2 / n^2 x G / (G - 1) with p = x / n over
    G clusters; None with fewer than two clusters (nothing to estimate it from).
    """
    if clusters < 2 or n <= 0:
        return None
    p = x / n
    spread = x_sq - 2.0 * p * x_n + p * p * n_sq
    return max(spread, 0.0) / (n * n) * clusters / (clusters - 1)


def _shrunk_variance(x: int, n: int) -> float:
    p = (x + VARIANCE_PSEUDO_COUNT) / (n + 2 * VARIANCE_PSEUDO_COUNT)
    return p * (1.0 - p) / n


def bonferroni_alpha(alpha: float, tests: int) -> float:
    """The per-test level that keeps the family-wise error of `tests` tests at `alpha`.

    Raises:
        ValueError: if tests < 1.
    """
    if tests < 1:
        raise ValueError("tests must be >= 1")
    return alpha / tests
