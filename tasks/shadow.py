"""Prefect tasks of the shadow evaluation: each wraps one call of `core.shadow`.

Only the database sampling, model loading, MLflow logging and ledger writes do I/O and
retry, and only on transient errors. Tasks receiving an engine or a registry use
`NO_CACHE`. `replay_chunk` is mapped, possibly on a Dask cluster (`tasks.chunk_runner`):
it takes plain data and opens the registry where it runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from config import get_settings
from core import shadow
from core.loadtest import LoadTestReport
from core.plots import markdown_images, shadow_plots
from core.registry import ModelRegistry
from core.reporting import artifact_key, gate_table, shadow_report_markdown
from core.shadow import (
    ChunkCounts,
    LatencyProfile,
    ReplayRequest,
    RequestChunk,
    SampleSplit,
    ShadowAction,
    ShadowReport,
    ShadowSampling,
    ShadowSubjects,
    ShadowThresholds,
)
from core.worker_resources import worker_registry
from models import stateful_models
from tasks.policies import IO_TASK


@task(name="shadow-resolve-subjects", **IO_TASK)
def resolve_subjects(
    engine: Engine,
    registry: ModelRegistry,
    env: str,
    model_name: str,
    candidate_version: str | None,
) -> ShadowSubjects:
    """`core.shadow.resolve_subjects`: champion, candidate and rollout to evaluate."""
    return shadow.resolve_subjects(
        engine,
        registry,
        env=env,
        model_name=model_name,
        candidate_version=candidate_version,
        stateful=stateful_models(),
    )


@task(name="shadow-sample-requests", **IO_TASK)
def sample_requests(
    engine: Engine, subjects: ShadowSubjects, sampling: ShadowSampling, now: datetime
) -> list[ReplayRequest]:
    """`core.shadow.sample_requests`: recent served inputs, with labels where known and
    the candidate's online shadow answer where the router logged one."""
    requests = shadow.sample_requests(
        engine,
        env=subjects.env,
        model_name=subjects.model_name,
        window_hours=sampling.window_hours,
        sample_size=sampling.sample_size,
        now=now,
        champion_version=subjects.champion_version,
        candidate_version=subjects.candidate_version,
    )
    get_run_logger().info(
        "shadow %s v%s vs champion v%s in %s: %d requests from the last %g h",
        subjects.model_name, subjects.candidate_version, subjects.champion_version,
        subjects.env, len(requests), sampling.window_hours,
    )  # fmt: skip
    return requests


@task(name="shadow-split-sample", cache_policy=NO_CACHE)
def split_sample(requests: list[ReplayRequest]) -> SampleSplit:
    """`core.shadow.split_sample`: count the online pairs, keep the rest for replay."""
    split = shadow.split_sample(requests)
    get_run_logger().info(
        "%d of %d sampled requests answered by online shadow rows; %d to replay",
        split.online.n, len(requests), len(split.to_replay),
    )  # fmt: skip
    return split


@task(name="shadow-replay-chunk", **IO_TASK)
def replay_chunk(subjects: ShadowSubjects, chunk: RequestChunk) -> ChunkCounts:
    """Replay one chunk through both versions, loaded where the task runs (a Dask worker
    or the flow's process) from this process's registry: digest-verified before
    unpickling, then cached for the next chunk. Only plain data comes in."""
    registry = worker_registry(get_settings())
    champion = registry.load(subjects.model_name, subjects.champion_version)
    candidate = registry.load(subjects.model_name, subjects.candidate_version)
    return shadow.replay_chunk(champion, candidate, chunk)


@task(name="shadow-measure-latency", **IO_TASK)
def measure_latency(
    registry: ModelRegistry,
    subjects: ShadowSubjects,
    requests: Sequence[ReplayRequest],
    limit: int,
) -> LatencyProfile:
    """Single-request latencies of both versions on a subsample."""
    champion = registry.load(subjects.model_name, subjects.champion_version)
    candidate = registry.load(subjects.model_name, subjects.candidate_version)
    return shadow.measure_latency(champion, candidate, requests, limit=limit)


@task(name="shadow-evaluate", cache_policy=NO_CACHE)
def evaluate(
    counts: list[ChunkCounts],
    latency: LatencyProfile,
    thresholds: ShadowThresholds,
    subjects: ShadowSubjects,
    online_latency: LatencyProfile | None = None,
) -> ShadowReport:
    """Merge the chunks (online evidence and replayed) and compute rates, intervals,
    paired accuracy and the gate."""
    return shadow.evaluate(
        shadow.merge_chunks(counts),
        latency,
        thresholds,
        model_name=subjects.model_name,
        champion_version=subjects.champion_version,
        candidate_version=subjects.candidate_version,
        online_latency=online_latency,
    )


@task(name="shadow-publish-report", cache_policy=NO_CACHE)
def publish_report(report: ShadowReport) -> str:
    """Leave the report (markdown) and every gate threshold (table) as Prefect artifacts;
    return the markdown."""
    markdown = shadow_report_markdown(report)
    key = artifact_key("shadow", report.model_name)
    create_markdown_artifact(markdown=markdown, key=key, description=report.gate.summary())
    create_table_artifact(
        table=gate_table(report.gate),
        key=f"{key}-gate",
        description="shadow gate: every threshold",
    )
    return markdown


@task(name="shadow-plot", cache_policy=NO_CACHE)
def plot(report: ShadowReport, latency: LatencyProfile, reports_dir: Path) -> list[Path]:
    """PNG plots (latency distributions, per-intent agreement) in a folder of their own
    under `reports_dir`, shown by a Prefect markdown artifact (`shadow-<model>-plots`)."""
    out_dir = reports_dir / f"shadow-{report.model_name}-v{report.candidate_version}"
    paths = shadow_plots(report, latency, out_dir)
    create_markdown_artifact(
        markdown=markdown_images(paths),
        key=f"{artifact_key('shadow', report.model_name)}-plots",
        description=f"shadow plots of {report.model_name} v{report.candidate_version}",
    )
    return paths


@task(name="shadow-log-mlflow", **IO_TASK)
def log_to_mlflow(
    registry: ModelRegistry, report: ShadowReport, markdown: str, files: list[Path]
) -> str:
    """Log the evaluation as an MLflow run with the report and plots; return the run id."""
    run_id = shadow.log_to_mlflow(
        registry.client,
        experiment=registry.experiment,
        artifact_location=registry.artifact_location,
        report=report,
        markdown=markdown,
        files=files,
    )
    get_run_logger().info("MLflow run %s", run_id)
    return run_id


@task(name="shadow-act-on-report", **IO_TASK)
def act_on_report(
    engine: Engine,
    registry: ModelRegistry,
    subjects: ShadowSubjects,
    report: ShadowReport,
    stages: list[float],
    actor: str,
    start_canary: bool,
    load_test: LoadTestReport | None = None,
) -> tuple[ShadowAction, int | None]:
    """`core.shadow.act_on_report`: record the verdict (and the load test's, when one ran)
    and move the rollout on them."""
    action, rollout_id = shadow.act_on_report(
        engine,
        subjects,
        report,
        stages=stages,
        actor=actor,
        registry=registry,
        start_canary=start_canary,
        load_test=load_test,
    )
    logger = get_run_logger()
    passed = report.passed and (load_test is None or load_test.passed)
    level = logger.info if passed else logger.warning
    summary = report.gate.summary() + ("" if load_test is None else f"; {load_test.gate.summary()}")
    level("%s -> %s (rollout %s)", summary, action, rollout_id)
    return action, rollout_id
