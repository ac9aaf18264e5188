"""Prefect tasks of the shadow evaluation: each wraps one call of `core.shadow`.

Only the database sampling, model loading and MLflow logging do I/O and retry, and only
on transient errors. Tasks receiving an engine or a registry use `NO_CACHE`.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from core import shadow
from core.plots import shadow_plots
from core.registry import ModelRegistry
from core.shadow import (
    ChunkCounts,
    LatencyProfile,
    ReplayRequest,
    ShadowAction,
    ShadowReport,
    ShadowSubjects,
    ShadowThresholds,
)
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
        engine, registry, env=env, model_name=model_name, candidate_version=candidate_version
    )


@task(name="shadow-sample-requests", **IO_TASK)
def sample_requests(
    engine: Engine,
    env: str,
    model_name: str,
    window_hours: float,
    sample_size: int,
    now: datetime,
) -> list[ReplayRequest]:
    """`core.shadow.sample_requests`: recent served inputs, with labels where known."""
    return shadow.sample_requests(
        engine,
        env=env,
        model_name=model_name,
        window_hours=window_hours,
        sample_size=sample_size,
        now=now,
    )


@task(name="shadow-replay-chunk", **IO_TASK)
def replay_chunk(
    registry: ModelRegistry,
    model_name: str,
    champion_version: str,
    candidate_version: str,
    chunk: list[ReplayRequest],
) -> ChunkCounts:
    """Load both versions (verified, cached per worker) and replay one chunk."""
    champion = registry.load(model_name, champion_version)
    candidate = registry.load(model_name, candidate_version)
    return shadow.replay_chunk(champion, candidate, chunk)


@task(name="shadow-measure-latency", **IO_TASK)
def measure_latency(
    registry: ModelRegistry,
    model_name: str,
    champion_version: str,
    candidate_version: str,
    requests: Sequence[ReplayRequest],
    limit: int,
) -> LatencyProfile:
    """Single-request latencies of both versions on a subsample."""
    champion = registry.load(model_name, champion_version)
    candidate = registry.load(model_name, candidate_version)
    return shadow.measure_latency(champion, candidate, requests, limit=limit)


@task(name="shadow-evaluate", cache_policy=NO_CACHE)
def evaluate(
    counts: list[ChunkCounts],
    latency: LatencyProfile,
    thresholds: ShadowThresholds,
    subjects: ShadowSubjects,
) -> ShadowReport:
    """Merge the chunks and compute rates, intervals, paired accuracy and the gate."""
    return shadow.evaluate(
        shadow.merge_chunks(counts),
        latency,
        thresholds,
        model_name=subjects.model_name,
        champion_version=subjects.champion_version,
        candidate_version=subjects.candidate_version,
    )


@task(name="shadow-plot", cache_policy=NO_CACHE)
def plot(report: ShadowReport, latency: LatencyProfile, out_dir: Path) -> list[Path]:
    """PNG plots: latency distributions and per-intent agreement."""
    return shadow_plots(report, latency, out_dir)


@task(name="shadow-log-mlflow", **IO_TASK)
def log_to_mlflow(
    registry: ModelRegistry, report: ShadowReport, markdown: str, files: list[Path]
) -> str:
    """Log the evaluation as an MLflow run with the report and plots; return the run id."""
    return shadow.log_to_mlflow(
        registry.client,
        experiment=registry.experiment,
        artifact_location=registry.artifact_location,
        report=report,
        markdown=markdown,
        files=files,
    )


@task(name="shadow-act-on-report", **IO_TASK)
def act_on_report(
    engine: Engine,
    registry: ModelRegistry,
    subjects: ShadowSubjects,
    report: ShadowReport,
    stages: list[float],
    actor: str,
    start_canary: bool,
) -> tuple[ShadowAction, int | None]:
    """`core.shadow.act_on_report`: record the verdict and move the rollout on it."""
    return shadow.act_on_report(
        engine,
        subjects,
        report,
        stages=stages,
        actor=actor,
        registry=registry,
        start_canary=start_canary,
    )
