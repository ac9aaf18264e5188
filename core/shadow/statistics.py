"""Shadow evaluation, step 4: from merged counts to figures with intervals and the gate.

`evaluate` turns the merged counts into rates with confidence intervals (statsmodels
Wilson intervals), latency percentiles, McNemar's exact test on the paired accuracy
(statsmodels), a bootstrap interval (scipy) on the accuracy difference, and the gate
(Settings SHADOW_*), listing every failed threshold.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import stats
from statsmodels.stats.contingency_tables import mcnemar
from statsmodels.stats.proportion import proportion_confint

from config import Settings
from core.gates import GateCheck, GateReport, evaluate_gate
from core.shadow.replay import ChunkCounts, LatencyProfile

CONFIDENCE = 0.95


@dataclass(frozen=True, slots=True)
class ShadowThresholds:
    """The shadow gate's thresholds (Settings SHADOW_*)."""

    min_agreement: float
    max_error_rate: float
    max_p95_ms: float
    max_accuracy_drop: float

    @classmethod
    def from_settings(cls, settings: Settings) -> ShadowThresholds:
        """Read the thresholds from Settings."""
        return cls(
            min_agreement=settings.SHADOW_MIN_AGREEMENT,
            max_error_rate=settings.SHADOW_MAX_ERROR_RATE,
            max_p95_ms=settings.SHADOW_MAX_P95_MS,
            max_accuracy_drop=settings.SHADOW_MAX_ACCURACY_DROP,
        )


@dataclass(frozen=True, slots=True)
class Rate:
    """A rate with its Wilson confidence interval."""

    count: int
    n: int
    value: float | None
    low: float | None
    high: float | None

    @classmethod
    def of(cls, count: int, n: int) -> Rate:
        """count / n with a 95% Wilson interval (statsmodels); None values when n = 0."""
        if n == 0:
            return cls(count, n, None, None, None)
        low, high = proportion_confint(count, n, alpha=1 - CONFIDENCE, method="wilson")
        return cls(count, n, count / n, float(low), float(high))

    def describe(self) -> str:
        """`0.912 [0.905, 0.918] (4560/5000)` or `n/a`."""
        if self.value is None:
            return "n/a (0 requests)"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}] ({self.count}/{self.n})"


@dataclass(frozen=True, slots=True)
class AccuracyComparison:
    """Paired accuracy on labelled requests: both rates, McNemar, and the difference."""

    champion: Rate
    candidate: Rate
    mcnemar_statistic: float
    mcnemar_p_value: float
    drop: float
    drop_low: float
    drop_high: float


@dataclass(frozen=True, slots=True)
class ShadowReport:
    """The evaluation: every figure, its interval, and the gate verdict.

    `requests` = `online_requests` (answered by the candidate's online shadow rows) +
    `replayed_requests`. `online_latency` (champion row vs shadow row percentiles, ms) is
    indicative only: shadow latency is measured off the hot path; the gate judges the
    single-request timings in `champion_latency` / `candidate_latency`.
    """

    model_name: str
    champion_version: str
    candidate_version: str
    requests: int
    agreement: Rate
    champion_error: Rate
    candidate_error: Rate
    champion_latency: dict[str, float | None]
    candidate_latency: dict[str, float | None]
    accuracy: AccuracyComparison | None
    per_intent: dict[str, Rate]
    gate: GateReport
    replay_rows_per_second: float | None = None
    online_requests: int = 0
    replayed_requests: int = 0
    online_latency: dict[str, dict[str, float | None]] | None = None

    @property
    def passed(self) -> bool:
        """True when every gate threshold holds."""
        return self.gate.passed

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready view for events, artifacts and MLflow."""

        def rate(r: Rate) -> dict[str, Any]:
            return {"count": r.count, "n": r.n, "value": r.value, "low": r.low, "high": r.high}

        accuracy = None
        if self.accuracy is not None:
            a = self.accuracy
            accuracy = {
                "champion": rate(a.champion),
                "candidate": rate(a.candidate),
                "mcnemar_statistic": a.mcnemar_statistic,
                "mcnemar_p_value": a.mcnemar_p_value,
                "drop": a.drop,
                "drop_ci": [a.drop_low, a.drop_high],
            }
        return {
            "model_name": self.model_name,
            "champion_version": self.champion_version,
            "candidate_version": self.candidate_version,
            "requests": self.requests,
            "agreement": rate(self.agreement),
            "champion_error": rate(self.champion_error),
            "candidate_error": rate(self.candidate_error),
            "champion_latency_ms": self.champion_latency,
            "candidate_latency_ms": self.candidate_latency,
            "accuracy": accuracy,
            "per_intent_agreement": {k: rate(v) for k, v in self.per_intent.items()},
            "gate": self.gate.as_dict(),
            "replay_rows_per_second": self.replay_rows_per_second,
            "online_requests": self.online_requests,
            "replayed_requests": self.replayed_requests,
            "online_latency_ms_indicative": self.online_latency,
        }


def compare_accuracy(table: Sequence[Sequence[int]], *, seed: int = 0) -> AccuracyComparison | None:
    """Paired accuracy of champion and candidate from the 2x2 table of correctness.

    McNemar's exact test (statsmodels) on the discordant pairs; the accuracy drop
    (champion - candidate) with a 95% bootstrap interval (scipy) over the paired
    per-request differences. None when nothing was labelled.
    """
    (both, champ_only), (cand_only, neither) = table
    n = both + champ_only + cand_only + neither
    if n == 0:
        return None
    test = mcnemar([[both, champ_only], [cand_only, neither]], exact=True)
    differences = np.concatenate(
        [np.ones(champ_only), -np.ones(cand_only), np.zeros(both + neither)]
    )
    drop = float(differences.mean())
    if champ_only + cand_only == 0:
        low = high = 0.0
    else:
        boot = stats.bootstrap(
            (differences,),
            np.mean,
            confidence_level=CONFIDENCE,
            n_resamples=2000,
            method="percentile",
            random_state=np.random.default_rng(seed),
        )
        low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
    return AccuracyComparison(
        champion=Rate.of(both + champ_only, n),
        candidate=Rate.of(both + cand_only, n),
        mcnemar_statistic=float(test.statistic),
        mcnemar_p_value=float(test.pvalue),
        drop=drop,
        drop_low=low,
        drop_high=high,
    )


def evaluate(
    counts: ChunkCounts,
    latency: LatencyProfile,
    thresholds: ShadowThresholds,
    *,
    model_name: str,
    champion_version: str,
    candidate_version: str,
    online_latency: LatencyProfile | None = None,
) -> ShadowReport:
    """Rates with intervals, latency percentiles, paired accuracy, and the gate verdict.

    `counts` may merge online evidence and replayed chunks; `online_latency` (the logged
    latencies of the online pairs) is reported as indicative, never gated.

    The gate fails on: agreement below SHADOW_MIN_AGREEMENT, candidate error rate above
    SHADOW_MAX_ERROR_RATE, candidate p95 above SHADOW_MAX_P95_MS, accuracy drop above
    SHADOW_MAX_ACCURACY_DROP (skipped without labels); an empty sample fails too.
    """
    agreement = Rate.of(counts.agree, counts.both_answered)
    champion_error = Rate.of(counts.champion_errors, counts.n)
    candidate_error = Rate.of(counts.candidate_errors, counts.n)
    accuracy = compare_accuracy(counts.correct_table)
    cand_latency = latency.percentiles("candidate")
    gate = _gate(
        f"shadow {model_name} v{candidate_version} vs v{champion_version}",
        counts.n, agreement, candidate_error, cand_latency["p95"], accuracy, thresholds,
    )  # fmt: skip
    total_seconds = counts.champion_seconds + counts.candidate_seconds
    return ShadowReport(
        model_name=model_name,
        champion_version=champion_version,
        candidate_version=candidate_version,
        requests=counts.n,
        agreement=agreement,
        champion_error=champion_error,
        candidate_error=candidate_error,
        champion_latency=latency.percentiles("champion"),
        candidate_latency=cand_latency,
        accuracy=accuracy,
        per_intent={
            intent: Rate.of(agreed, n) for intent, (n, agreed) in sorted(counts.per_intent.items())
        },
        gate=gate,
        replay_rows_per_second=(
            counts.replayed / total_seconds if total_seconds > 0 and counts.replayed else None
        ),
        online_requests=counts.online,
        replayed_requests=counts.replayed,
        online_latency=_indicative(online_latency),
    )


def _gate(
    title: str,
    n: int,
    agreement: Rate,
    candidate_error: Rate,
    candidate_p95_ms: float | None,
    accuracy: AccuracyComparison | None,
    thresholds: ShadowThresholds,
) -> GateReport:
    """The shadow gate over the figures (accuracy skipped without labels)."""
    return evaluate_gate(
        title,
        [
            GateCheck("requests", n, ">=", 1, required=True),
            GateCheck("agreement", agreement.value, ">=", thresholds.min_agreement, True),
            GateCheck(
                "candidate_error_rate", candidate_error.value, "<=", thresholds.max_error_rate, True
            ),
            GateCheck("candidate_p95_ms", candidate_p95_ms, "<=", thresholds.max_p95_ms, True),
            GateCheck(
                "accuracy_drop",
                accuracy.drop if accuracy else None,
                "<=",
                thresholds.max_accuracy_drop,
            ),
        ],
    )


def _indicative(online_latency: LatencyProfile | None) -> dict[str, dict[str, float | None]] | None:
    """Percentiles of the online pairs' logged latencies (None without online pairs)."""
    if online_latency is None or not online_latency.champion_ms:
        return None
    return {w: online_latency.percentiles(w) for w in ("champion", "candidate")}
