"""The load test end to end, minus the orchestration: start both versions' routers, load
them, judge the candidate."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass

from core.loadtest.client import Target
from core.loadtest.gate import LoadTestThresholds, load_test_gate
from core.loadtest.report import LoadTestReport, QuerySource, figures_by_phase
from core.loadtest.routers import pinned_routers
from core.loadtest.run import LoadTestPlan, Measurements, run_load


@dataclass(frozen=True, slots=True)
class Versions:
    """What is load-tested: one model's champion and candidate versions in one env."""

    env: str
    model_name: str
    champion_version: str
    candidate_version: str


def compare_versions(
    versions: Versions,
    texts: Sequence[str],
    query_source: QuerySource,
    plan: LoadTestPlan,
    thresholds: LoadTestThresholds,
    stateful: Collection[str] = (),
) -> tuple[LoadTestReport, Measurements]:
    """Serve the champion and the candidate each in a pinned router process on loopback,
    replay `texts` against both (interleaved phases, core/loadtest/run.py), and judge the
    candidate. Returns the report and the raw samples (for plots).

    Raises:
        ValueError: the model is in `stateful` (it reads release state and is served
            through /answer; the load test replays /predict), or no texts.
        RouterStartError: a router did not start.
        RuntimeError: a router failed every warm-up request.
    """
    if versions.model_name in stateful:
        raise ValueError(
            f"{versions.model_name} reads release state and is served through /answer: "
            "the load test replays /predict only (docs/load_test.md)"
        )
    labels = {"champion": versions.champion_version, "candidate": versions.candidate_version}
    with pinned_routers(versions.model_name, labels) as urls:
        targets = {label: Target(url, versions.model_name) for label, url in urls.items()}
        measurements = run_load(targets, texts, plan)
    champion = figures_by_phase(measurements, "champion")
    candidate = figures_by_phase(measurements, "candidate")
    report = LoadTestReport(
        env=versions.env,
        model_name=versions.model_name,
        champion_version=versions.champion_version,
        candidate_version=versions.candidate_version,
        plan=plan,
        query_source=query_source,
        queries=len(texts),
        champion=champion,
        candidate=candidate,
        gate=load_test_gate(champion, candidate, thresholds),
    )
    return report, measurements
