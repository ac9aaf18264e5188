"""`shadow-evaluation`: replay recent production inputs through champion and candidate.

Samples the requests an env served in the last SHADOW_WINDOW_HOURS, replays them in
chunks (mapped tasks: on a cluster each chunk can run on another worker) through both
versions, times single requests on a subsample, and reports agreement, error rates,
latency percentiles and, where feedback holds labels, paired accuracy (McNemar), each
rate with a 95% interval. The gate (Settings SHADOW_*) lists every failed threshold.
Reports: Prefect markdown + table artifacts, a progress artifact while replaying, an
MLflow run with the report and plots. On the verdict: a shadow-mode rollout advances into
canary stage 0 or is rolled back; with no rollout, a pass starts the canary.

    prefect deployment run 'shadow-evaluation/prd' --param model_name=intent-classifier
"""

from __future__ import annotations

from pathlib import Path

from prefect import flow, get_run_logger, unmapped
from prefect.artifacts import (
    create_markdown_artifact,
    create_progress_artifact,
    create_table_artifact,
    update_progress_artifact,
)

from config import get_settings
from core.db import utcnow
from core.shadow import ShadowReport, ShadowThresholds, chunk_requests, report_markdown
from tasks.ledger import open_registry, open_state_database
from tasks.shadow import (
    act_on_report,
    evaluate,
    log_to_mlflow,
    measure_latency,
    plot,
    replay_chunk,
    resolve_subjects,
    sample_requests,
)

ACTOR = "shadow-evaluation"


@flow(name="shadow-evaluation")
def shadow_evaluation(
    model_name: str = "intent-classifier",
    env: str | None = None,
    candidate_version: str | None = None,
    window_hours: float | None = None,
    sample_size: int | None = None,
    batch_size: int | None = None,
    latency_sample: int = 200,
    start_canary: bool = True,
    log_mlflow: bool = True,
) -> ShadowReport:
    """Evaluate `candidate_version` (default: the active rollout's, else the `candidate`
    alias) against the champion of `env` (default: ENVIRONMENT) on recent traffic.

    window_hours, sample_size, batch_size default to SHADOW_WINDOW_HOURS,
    SHADOW_SAMPLE_SIZE, SHADOW_BATCH_SIZE; latency_sample requests are timed one by one.
    """
    logger = get_run_logger()
    settings = get_settings()
    env = env or settings.ENVIRONMENT
    window = window_hours if window_hours is not None else settings.SHADOW_WINDOW_HOURS
    size = sample_size if sample_size is not None else settings.SHADOW_SAMPLE_SIZE
    batch = batch_size if batch_size is not None else settings.SHADOW_BATCH_SIZE

    # Extract
    engine = open_state_database(settings)
    registry = open_registry(settings)
    subjects = resolve_subjects(engine, registry, env, model_name, candidate_version)
    requests = sample_requests(engine, env, model_name, window, size, utcnow())
    logger.info(
        "shadow %s v%s vs champion v%s in %s: %d requests from the last %g h",
        model_name, subjects.candidate_version, subjects.champion_version, env,
        len(requests), window,
    )  # fmt: skip

    # Transform: replay chunks as mapped tasks, progress as they finish
    chunks = chunk_requests(requests, batch)
    progress = create_progress_artifact(
        progress=0.0,
        key=f"shadow-{model_name}-progress",
        description=f"replayed chunks of {len(requests)} requests",
    )
    futures = replay_chunk.map(
        unmapped(registry),
        unmapped(model_name),
        unmapped(subjects.champion_version),
        unmapped(subjects.candidate_version),
        chunks,
    )
    counts = []
    for done, future in enumerate(futures, start=1):
        counts.append(future.result())
        update_progress_artifact(progress, progress=100.0 * done / len(chunks))
    latency = measure_latency(
        registry, model_name, subjects.champion_version, subjects.candidate_version,
        requests, latency_sample,
    )  # fmt: skip
    report = evaluate(counts, latency, ShadowThresholds.from_settings(settings), subjects)
    markdown = report_markdown(report)

    # Load: reports, then the ledger
    create_markdown_artifact(
        markdown=markdown, key=f"shadow-{model_name}", description=report.gate.summary()
    )
    create_table_artifact(
        table=[
            {"check": c.name, "value": c.value, "comparison": c.comparison,
             "threshold": c.threshold, "passed": c.passed}
            for c in report.gate.checks
        ],
        key=f"shadow-{model_name}-gate",
        description="shadow gate: every threshold",
    )  # fmt: skip
    out_dir = Path(settings.reports_dir) / f"shadow-{model_name}-v{subjects.candidate_version}"
    files = plot(report, latency, out_dir)
    if log_mlflow:
        run_id = log_to_mlflow(registry, report, markdown, files)
        logger.info("MLflow run %s", run_id)
    action, rollout_id = act_on_report(
        engine, registry, subjects, report, list(settings.CANARY_STAGES), ACTOR, start_canary
    )
    level = logger.info if report.passed else logger.warning
    level("%s -> %s (rollout %s)", report.gate.summary(), action, rollout_id)
    engine.dispose()
    return report
