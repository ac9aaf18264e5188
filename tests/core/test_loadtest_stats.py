"""The load test's maths: percentiles, pooling of rounds, error rate, throughput, the gate
and the interleaved schedule, without any server."""

from __future__ import annotations

import numpy as np
import pytest

from core.loadtest import (
    LoadTestPlan,
    LoadTestThresholds,
    PhaseSample,
    Versions,
    compare_versions,
    load_test_due,
    load_test_gate,
    percentile,
    schedule,
    summarize,
)
from core.loadtest.stats import LoadFigures, Phase, error_rate, ratio

THRESHOLDS = LoadTestThresholds(
    p95_max_ms=250.0, p95_margin=0.5, max_error_rate=0.01, throughput_margin=0.25
)


@pytest.mark.parametrize("q", [0, 1, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy_linear_method(q: float) -> None:
    values = list(np.random.default_rng(7).lognormal(1.0, 0.6, size=1001))

    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_interpolates_between_ranks_and_handles_edges() -> None:
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([5.0], 99) == 5.0
    assert percentile([], 95) is None
    with pytest.raises(ValueError, match="within"):
        percentile([1.0], 101)


def test_summarize_pools_rounds_error_rate_and_throughput() -> None:
    rounds = [
        PhaseSample("saturation", (1.0, 2.0, 3.0), errors=1, seconds=2.0),
        PhaseSample("saturation", (4.0, 5.0), errors=0, seconds=3.0),
    ]

    figures = summarize("saturation", rounds)

    assert (figures.requests, figures.errors, figures.seconds) == (6, 1, 5.0)
    assert figures.error_rate == pytest.approx(1 / 6)
    assert figures.throughput_rps == pytest.approx(5 / 5.0)  # successes per second
    assert figures.p50_ms == 3.0
    assert figures.p95_ms == pytest.approx(4.8)


def test_summarize_refuses_samples_of_another_phase() -> None:
    with pytest.raises(ValueError, match="another phase"):
        summarize("saturation", [PhaseSample("target_rate", (1.0,), 0, 1.0)])


def test_error_rate_and_ratio_of_unmeasured_figures_are_none() -> None:
    assert error_rate([]) is None
    assert ratio(None, 2.0) is None
    assert ratio(2.0, 0.0) is None
    assert ratio(3.0, 2.0) == 1.5


def _figures(p95: float | None, rps: float, errors: int = 0) -> dict[Phase, LoadFigures]:
    """Figures whose target-rate p95 and saturation throughput are as given."""
    seconds = 10.0
    served = round(rps * seconds)
    return {
        "target_rate": LoadFigures("target_rate", 200, errors, 10.0, p95, p95, p95),
        "saturation": LoadFigures("saturation", served, 0, seconds, 1.0, 1.0, 1.0),
    }


def test_gate_passes_a_candidate_like_its_champion() -> None:
    report = load_test_gate(_figures(10.0, 300), _figures(12.0, 280), THRESHOLDS)

    assert report.passed, report.summary()
    assert [c.name for c in report.checks] == [
        "candidate_p95_ms",
        "p95_vs_champion",
        "candidate_error_rate",
        "throughput_vs_champion",
    ]


def test_gate_lists_every_failed_threshold() -> None:
    # 3x the champion's p95 (over the hard limit too), 2% errors, half the throughput
    report = load_test_gate(_figures(100.0, 300), _figures(300.0, 150, errors=34), THRESHOLDS)

    assert not report.passed
    assert {c.name for c in report.failed} == {
        "candidate_p95_ms",
        "p95_vs_champion",
        "candidate_error_rate",
        "throughput_vs_champion",
    }
    assert "p95_vs_champion 3 <= 1.5: FAILED" in report.summary()


def test_gate_fails_figures_it_could_not_measure() -> None:
    # a candidate that answered nothing at the target rate has no p95: not a pass
    report = load_test_gate(_figures(10.0, 300), _figures(None, 300), THRESHOLDS)

    assert {c.name for c in report.failed} == {"candidate_p95_ms", "p95_vs_champion"}


def test_schedule_interleaves_models_and_alternates_who_goes_first() -> None:
    order = schedule(["champion", "candidate"], rounds=2)

    assert order == [
        ("target_rate", "champion"),
        ("target_rate", "candidate"),
        ("saturation", "candidate"),
        ("saturation", "champion"),
        ("target_rate", "champion"),
        ("target_rate", "candidate"),
        ("saturation", "candidate"),
        ("saturation", "champion"),
    ]


@pytest.mark.parametrize(
    ("enabled", "passed", "status", "start_canary", "due"),
    [
        (True, True, None, True, True),  # a pass would start the canary
        (True, True, None, False, False),  # a pass would only report
        (True, True, "shadow", False, True),  # a pass would advance into stage 0
        (True, True, "canary", True, False),  # already taking users: only events
        (True, False, None, True, False),  # the shadow gate failed: nothing to load-test
        (False, True, None, True, False),  # switched off
    ],
)
def test_load_test_due_only_when_its_verdict_can_matter(
    enabled: bool, passed: bool, status: str | None, start_canary: bool, due: bool
) -> None:
    assert (
        load_test_due(
            enabled=enabled, shadow_passed=passed, rollout_status=status, start_canary=start_canary
        )
        is due
    )


def test_load_test_is_not_due_for_a_model_that_reads_release_state() -> None:
    assert not load_test_due(
        enabled=True, shadow_passed=True, rollout_status=None, start_canary=True, stateful=True
    )


def test_compare_versions_refuses_a_stateful_model_before_starting_routers() -> None:
    versions = Versions("dev", "faq-retriever", "1", "2")
    plan = LoadTestPlan(
        queries=10, rate_rps=1.0, connections=1, phase_seconds=1.0, rounds=1, timeout_seconds=1.0
    )

    with pytest.raises(ValueError, match="/predict only"):
        compare_versions(
            versions, ["hi"], "traffic", plan, THRESHOLDS, stateful=frozenset({"faq-retriever"})
        )
