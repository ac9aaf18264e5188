"""`load-test`: load the candidate and the champion in real router processes before the
candidate takes users.

Both versions are served each by a `sml serve --pin MODEL=VERSION` process on loopback
(in the cluster: in the flow-run pod), which writes no traffic; the most recent production
queries (LOADTEST_QUERIES champion rows of the env) are replayed against both at a target
rate (open loop) and at saturation (closed loop), the phases of the two models
interleaved, on one client clock. The gate (Settings LOADTEST_*) lists every failed
threshold: p95 at the target rate under the limit and within the margin of the champion's,
error rate under the limit, saturation throughput within the margin of the champion's.
Reports: Prefect markdown + table artifacts, an MLflow run with the report and a latency
plot. Run alone, it records a `load_test` event on the model's active rollout (if any) and
moves nothing; shadow-evaluation runs it before starting a canary (docs/load_test.md).

    prefect deployment run 'load-test/stg' --param model_name=intent-classifier
"""

from __future__ import annotations

from prefect import flow

from config import get_settings
from core.db import state_database
from core.loadtest import LoadTestPlan, LoadTestReport, LoadTestThresholds, Versions
from tasks import loadtest
from tasks.registry import open_registry
from tasks.shadow import resolve_subjects

ACTOR = "load-test"


@flow(name="load-test")
def load_test(  # noqa: PLR0913 (each parameter is a field of the run form)
    model_name: str = "intent-classifier",
    env: str | None = None,
    candidate_version: str | None = None,
    queries: int | None = None,
    rate_rps: float | None = None,
    connections: int | None = None,
    phase_seconds: float | None = None,
    rounds: int | None = None,
    record_event: bool = True,
    log_mlflow: bool = True,
) -> LoadTestReport:
    """Load-test `candidate_version` (default: the active rollout's, else the `candidate`
    alias) against the champion of `env` (default: ENVIRONMENT).

    queries, rate_rps, connections, phase_seconds, rounds default to Settings LOADTEST_*.
    record_event: append the verdict to the model's active rollout (shadow-evaluation
    passes False: it records the verdict itself when it acts on it).
    """
    settings = get_settings()
    plan = LoadTestPlan.from_settings(
        settings, queries=queries, rate_rps=rate_rps, connections=connections,
        phase_seconds=phase_seconds, rounds=rounds,
    )  # fmt: skip
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract: who is compared, on which recent queries
        registry = open_registry(settings)
        subjects = resolve_subjects(
            engine, registry, env or settings.ENVIRONMENT, model_name, candidate_version
        )
        versions = Versions(
            subjects.env, subjects.model_name, subjects.champion_version,
            subjects.candidate_version,
        )  # fmt: skip
        texts, source = loadtest.recent_queries(engine, registry, versions, plan.queries)

        # Transform: both versions in real routers, the interleaved load, the gate
        thresholds = LoadTestThresholds.from_settings(settings)
        report, measurements = loadtest.run(versions, texts, source, plan, thresholds)

        # Load: the reports (Prefect, plot, MLflow), then the ledger
        markdown = loadtest.publish_report(report)
        files = loadtest.plot(report, measurements, settings.reports_dir)
        if log_mlflow:
            loadtest.log_to_mlflow(registry, report, markdown, files)
        if record_event and subjects.rollout is not None:
            loadtest.record_event(engine, subjects.rollout.id, report, ACTOR)
    return report
