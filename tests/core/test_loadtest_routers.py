"""The load test against real router processes (`sml serve --pin`) on loopback.

Issue 12's must-show: the load test passes a candidate trained identically to its
champion and catches one that is 3x slower per request. The slow candidate is a real
registered version whose predict sleeps (the family's test-only `extra_latency_ms`
knob), calibrated on this machine: the sleep is twice the champion's median latency
measured by the identical run, so a request to it takes ~3x as long end to end.
"""

from __future__ import annotations

import pytest

from config import get_settings
from core.loadtest import (
    LoadTestPlan,
    LoadTestReport,
    LoadTestThresholds,
    RouterStartError,
    Versions,
    compare_versions,
    pinned_routers,
    replayable,
)
from core.registry import ModelRegistry
from models.intent_classifier import GOLDEN_INPUTS
from tests.factories import slow_config, train_and_register

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "intent-classifier"
# a few seconds of load per phase and model: 4 rounds x 1 s at 50 req/s = 200 requests per
# model at the target rate, enough for a p95 that is not the single slowest request; short
# phases, finely interleaved, so a burst of other work on the machine hits both models
PLAN = LoadTestPlan(
    queries=100, rate_rps=50.0, connections=4, phase_seconds=1.0, rounds=4, timeout_seconds=5.0
)
# A sleep calibrated on the identical run's champion makes the slow candidate ~3x slower
# only if the machine's load stays put; on a busy CI machine it may not (the champion's
# p50 went from a few ms to 23 ms once), and the run is calibrated again on it.
CALIBRATIONS = 3


def _compare(champion: str, candidate: str) -> LoadTestReport:
    texts = replayable(GOLDEN_INPUTS)
    thresholds = LoadTestThresholds.from_settings(get_settings())
    report, measurements = compare_versions(
        Versions("dev", MODEL, champion, candidate), texts, "golden_inputs", PLAN, thresholds
    )
    assert len(measurements.latencies("candidate", "target_rate")) > 150
    print(f"\n{report.gate.summary()}")
    for side in ("champion", "candidate"):
        for phase, f in report.figures(side).items():
            print(
                f"{side} {phase}: n={f.requests} errors={f.errors} "
                f"rps={f.throughput_rps:.1f} p50={f.p50_ms:.2f} p95={f.p95_ms:.2f} "
                f"p99={f.p99_ms:.2f}"
            )
    return report


def _p50s(report: LoadTestReport) -> tuple[float, float]:
    """The champion's and the candidate's p50 at the target rate, in ms."""
    champion_p50 = report.champion["target_rate"].p50_ms
    candidate_p50 = report.candidate["target_rate"].p50_ms
    assert champion_p50 is not None
    assert candidate_p50 is not None
    return champion_p50, candidate_p50


def test_load_test_passes_an_identical_candidate_and_catches_a_3x_slower_one() -> None:
    registry = ModelRegistry.from_settings(get_settings())
    champion = train_and_register(registry).version
    twin = train_and_register(registry).version  # the same data, config and seed

    identical = _compare(champion, twin)

    assert identical.passed, identical.gate.summary()
    assert identical.candidate["target_rate"].errors == 0
    base_ms = identical.champion["target_rate"].p50_ms
    assert base_ms is not None
    for _attempt in range(CALIBRATIONS):
        config = slow_config(extra_latency_ms=2 * base_ms)
        slower = _compare(champion, train_and_register(registry, config=config).version)
        champion_p50, candidate_p50 = _p50s(slower)
        if candidate_p50 >= 2.2 * champion_p50:  # it is ~3x slower per request
            break
        # the machine got busier since the identical run (the champion's own latency
        # grew): calibrate again on the champion's latency of this run
        base_ms = max(base_ms, champion_p50)
    assert candidate_p50 >= 2.2 * champion_p50, "the slow candidate was not ~3x slower"
    assert not slower.passed
    # caught by latency, by throughput, or both (which one depends on the machine's noise
    # in the run: a burst during the champion's slice can lift its p95); never by errors
    failed = {check.name for check in slower.gate.failed}
    assert failed & {"p95_vs_champion", "throughput_vs_champion"}
    assert "candidate_error_rate" not in failed


def test_pinned_router_that_cannot_load_its_version_fails_to_start_with_its_log() -> None:
    routers = pinned_routers(MODEL, {"candidate": "404"}, startup_timeout=8)
    with pytest.raises(RouterStartError, match="not ready") as caught:
        routers.__enter__()

    assert "http://127.0.0.1:" in str(caught.value)
