"""The load test's gate and when the pipeline runs it.

Checks (thresholds from Settings LOADTEST_*), every failed one listed:
- `candidate_p95_ms`: the candidate's p95 at the target rate under the hard limit;
- `p95_vs_champion`: its p95 at the target rate over the champion's, at most 1 + margin;
- `candidate_error_rate`: its failed requests over both phases, under the limit;
- `throughput_vs_champion`: its sustained throughput at saturation over the champion's,
  at least 1 - margin.
Every check is required: a figure that could not be measured (no successful request, a
champion that answered nothing) fails the gate rather than waving the candidate through.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from config import Settings
from core.gates import GateCheck, GateReport, evaluate_gate
from core.loadtest.stats import LoadFigures, Phase, error_rate, ratio

GATE = "load-test"


@dataclass(frozen=True, slots=True)
class LoadTestThresholds:
    """The gate's thresholds (Settings LOADTEST_*)."""

    p95_max_ms: float
    p95_margin: float
    max_error_rate: float
    throughput_margin: float

    @classmethod
    def from_settings(cls, settings: Settings) -> LoadTestThresholds:
        """From Settings LOADTEST_P95_MAX_MS, _P95_MARGIN, _MAX_ERROR_RATE, _THROUGHPUT_MARGIN."""
        return cls(
            p95_max_ms=settings.LOADTEST_P95_MAX_MS,
            p95_margin=settings.LOADTEST_P95_MARGIN,
            max_error_rate=settings.LOADTEST_MAX_ERROR_RATE,
            throughput_margin=settings.LOADTEST_THROUGHPUT_MARGIN,
        )


def load_test_gate(
    champion: Mapping[Phase, LoadFigures],
    candidate: Mapping[Phase, LoadFigures],
    thresholds: LoadTestThresholds,
) -> GateReport:
    """Judge the candidate's figures against the limits and the champion's (module doc)."""
    at_rate, saturated = candidate["target_rate"], candidate["saturation"]
    return evaluate_gate(
        GATE,
        [
            GateCheck("candidate_p95_ms", at_rate.p95_ms, "<=", thresholds.p95_max_ms, True),
            GateCheck(
                "p95_vs_champion",
                ratio(at_rate.p95_ms, champion["target_rate"].p95_ms),
                "<=",
                1 + thresholds.p95_margin,
                True,
            ),
            GateCheck(
                "candidate_error_rate",
                error_rate(list(candidate.values())),
                "<=",
                thresholds.max_error_rate,
                True,
            ),
            GateCheck(
                "throughput_vs_champion",
                ratio(saturated.throughput_rps, champion["saturation"].throughput_rps),
                ">=",
                1 - thresholds.throughput_margin,
                True,
            ),
        ],
    )


def load_test_due(
    *,
    enabled: bool,
    shadow_passed: bool,
    rollout_status: str | None,
    start_canary: bool,
    stateful: bool = False,
) -> bool:
    """Whether the shadow evaluation runs the load test before acting on its verdict: only
    when it is enabled and its outcome can matter, i.e. the shadow gate passed and a pass
    would start a canary (no rollout, `start_canary`) or move a shadow-mode rollout into
    its first canary stage. Not for a model that reads release state (`stateful`): the
    load test replays `POST /predict`, and such a model is served through `/answer`
    together with its classifier (not load-tested yet: docs/load_test.md)."""
    if not (enabled and shadow_passed) or stateful:
        return False
    return rollout_status == "shadow" if rollout_status is not None else start_canary
