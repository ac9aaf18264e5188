"""`shadow-evaluation`: judge the candidate on recent production inputs.

Samples the requests an env served in the last SHADOW_WINDOW_HOURS. A sampled request the
candidate already answered in online shadow (the router's `shadow` row of the same
request) is evidence as it is; only the others are replayed, in
chunks (mapped tasks: with DASK_SCHEDULER_ADDRESS set they run on the workers of that
Dask cluster, else in this process; `tasks.chunk_runner`) through both
versions, times single requests on a subsample, and reports agreement, error rates,
latency percentiles and, where feedback holds labels, paired accuracy (McNemar), each
rate with a 95% interval. The gate (Settings SHADOW_*) lists every failed threshold.
Reports: Prefect markdown + table artifacts, a progress artifact while replaying, an
MLflow run with the report and plots. Before a pass lets the candidate take users, the
pre-canary load test (the `load-test` flow, as a subflow; `load_test`, default
LOADTEST_ENABLED) must pass too. On the verdicts: a shadow-mode rollout advances into
canary stage 0 or is rolled back (the reason names the failed thresholds of either
gate); with no rollout, a pass of both starts the canary.

    prefect deployment run 'shadow-evaluation/prd' --param model_name=intent-classifier
"""

from __future__ import annotations

from prefect import flow, unmapped

from config import Settings, get_settings
from core.db import state_database, utcnow
from core.loadtest import LoadTestReport, load_test_due
from core.reporting import artifact_key
from core.shadow import (
    ChunkCounts,
    ReplayRequest,
    ShadowReport,
    ShadowSampling,
    ShadowSubjects,
    ShadowThresholds,
    chunk_requests,
)
from flows.load_test import load_test as load_test_flow
from models import stateful_models
from tasks.chunk_runner import map_chunks
from tasks.registry import open_registry
from tasks.reporting import start_progress
from tasks.shadow import (
    act_on_report,
    evaluate,
    log_to_mlflow,
    measure_latency,
    plot,
    publish_report,
    replay_chunk,
    resolve_subjects,
    sample_requests,
    split_sample,
)

ACTOR = "shadow-evaluation"


@flow(name="shadow-evaluation")
def shadow_evaluation(  # noqa: PLR0913 (each parameter is a field of the run form)
    model_name: str = "intent-classifier",
    env: str | None = None,
    candidate_version: str | None = None,
    window_hours: float | None = None,
    sample_size: int | None = None,
    batch_size: int | None = None,
    latency_sample: int = 200,
    start_canary: bool = True,
    log_mlflow: bool = True,
    load_test: bool | None = None,
) -> ShadowReport:
    """Evaluate `candidate_version` (default: the active rollout's, else the `candidate`
    alias) against the champion of `env` (default: ENVIRONMENT) on recent traffic.

    window_hours, sample_size, batch_size default to SHADOW_WINDOW_HOURS,
    SHADOW_SAMPLE_SIZE, SHADOW_BATCH_SIZE; latency_sample requests are timed one by one.
    load_test (default LOADTEST_ENABLED): run the pre-canary load test when a pass would
    let the candidate take users (`core.loadtest.load_test_due`).
    """
    settings = get_settings()
    sampling = ShadowSampling.from_settings(
        settings, window_hours=window_hours, sample_size=sample_size, batch_size=batch_size,
        latency_sample=latency_sample,
    )  # fmt: skip
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract: who is compared, on which recent requests
        registry = open_registry(settings)
        subjects = resolve_subjects(
            engine, registry, env or settings.ENVIRONMENT, model_name, candidate_version
        )
        requests = sample_requests(engine, subjects, sampling, utcnow())

        # Transform: online pairs as they are, replay the rest in mapped chunks, time
        # single requests of both (the latency evidence), judge over the union
        split = split_sample(requests)
        counts = [split.online, *replay(settings, subjects, split.to_replay, sampling.batch_size)]
        latency = measure_latency(registry, subjects, requests, sampling.latency_sample)
        thresholds = ShadowThresholds.from_settings(settings)
        report = evaluate(counts, latency, thresholds, subjects, split.online_latency)

        # Load: the reports (Prefect, plots, MLflow), then the ledger
        markdown = publish_report(report)
        files = plot(report, latency, settings.reports_dir)
        if log_mlflow:
            log_to_mlflow(registry, report, markdown, files)
        due = load_test_due(
            enabled=settings.LOADTEST_ENABLED if load_test is None else load_test,
            shadow_passed=report.passed,
            rollout_status=None if subjects.rollout is None else subjects.rollout.status,
            start_canary=start_canary,
            stateful=model_name in stateful_models(),
        )
        loaded = pre_canary_load_test(subjects, log_mlflow) if due else None
        act_on_report(
            engine, registry, subjects, report, settings.CANARY_STAGES, ACTOR, start_canary,
            loaded,
        )  # fmt: skip
    return report


def pre_canary_load_test(subjects: ShadowSubjects, log_mlflow: bool) -> LoadTestReport:
    """The `load-test` flow as a subflow on the same versions; its verdict is recorded
    by `act_on_report`, with the evaluation's."""
    return load_test_flow(
        model_name=subjects.model_name,
        env=subjects.env,
        candidate_version=subjects.candidate_version,
        record_event=False,
        log_mlflow=log_mlflow,
    )


def replay(
    settings: Settings, subjects: ShadowSubjects, requests: list[ReplayRequest], batch_size: int
) -> list[ChunkCounts]:
    """Replay the sample as mapped tasks, one per chunk, on the Dask cluster at
    DASK_SCHEDULER_ADDRESS if set (else in this process); a progress artifact follows."""
    chunks = chunk_requests(requests, batch_size)
    progress = start_progress(
        key=artifact_key("shadow", subjects.model_name, "progress"),
        description=f"replayed chunks of {len(requests)} requests",
        total=max(len(chunks), 1),
    )
    if not chunks:  # every sampled request was answered online: nothing to replay
        progress.advance(1)
        return []
    counts = []
    mapped = {"subjects": unmapped(subjects), "chunk": chunks}
    for done, chunk_counts in enumerate(map_chunks(settings, replay_chunk, mapped), start=1):
        counts.append(chunk_counts)
        progress.advance(done)
    return counts
