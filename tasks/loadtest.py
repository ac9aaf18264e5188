"""Prefect tasks of the pre-canary load test: each wraps one call of `core.loadtest`.

Only the database read, MLflow logging and ledger write retry (transient errors only).
The load itself does not retry: a second run would not be the same measurement, and a
router that does not start is a finding, not a hiccup.
"""

from __future__ import annotations

from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from core import loadtest
from core.loadtest import (
    LoadTestPlan,
    LoadTestReport,
    LoadTestThresholds,
    Measurements,
    QuerySource,
    Versions,
)
from core.registry import ModelRegistry
from core.reporting import artifact_key, gate_table
from models import stateful_models
from tasks.policies import IO_TASK


@task(name="loadtest-recent-queries", **IO_TASK)
def recent_queries(
    engine: Engine, registry: ModelRegistry, versions: Versions, limit: int
) -> tuple[list[str], QuerySource]:
    """The most recent production queries of the model in its env; with no traffic yet,
    the golden inputs recorded with the champion (something realistic to replay)."""
    texts = loadtest.recent_queries(
        engine, env=versions.env, model_name=versions.model_name, limit=limit
    )
    source: QuerySource = "traffic"
    if not texts:
        golden, _ = registry.golden_predictions(versions.model_name, versions.champion_version)
        texts, source = loadtest.replayable(golden), "golden_inputs"
    get_run_logger().info(
        "load test of %s v%s vs v%s in %s: %d queries from %s",
        versions.model_name, versions.candidate_version, versions.champion_version,
        versions.env, len(texts), source,
    )  # fmt: skip
    return texts, source


@task(name="loadtest-run", cache_policy=NO_CACHE)
def run(
    versions: Versions,
    texts: list[str],
    source: QuerySource,
    plan: LoadTestPlan,
    thresholds: LoadTestThresholds,
) -> tuple[LoadTestReport, Measurements]:
    """`core.loadtest.compare_versions`: both versions in pinned routers, the load, the gate."""
    report, measurements = loadtest.compare_versions(
        versions, texts, source, plan, thresholds, stateful=stateful_models()
    )
    logger = get_run_logger()
    (logger.info if report.passed else logger.warning)("%s", report.gate.summary())
    return report, measurements


@task(name="loadtest-publish-report", cache_policy=NO_CACHE)
def publish_report(report: LoadTestReport) -> str:
    """Leave the report (markdown), the figures and the gate (tables) as Prefect artifacts;
    return the markdown."""
    markdown = loadtest.report_markdown(report)
    key = artifact_key("load-test", report.model_name)
    create_markdown_artifact(markdown=markdown, key=key, description=report.gate.summary())
    create_table_artifact(
        table=loadtest.figures_table(report),
        key=f"{key}-figures",
        description="load test: figures per phase and model",
    )
    create_table_artifact(
        table=gate_table(report.gate), key=f"{key}-gate", description="load test gate"
    )
    return markdown


@task(name="loadtest-plot", cache_policy=NO_CACHE)
def plot(report: LoadTestReport, measurements: Measurements, reports_dir: Path) -> list[Path]:
    """The latency plot in a folder of its own under `reports_dir`."""
    out_dir = reports_dir / f"load-test-{report.model_name}-v{report.candidate_version}"
    return [loadtest.latency_plot(report, measurements, out_dir)]


@task(name="loadtest-log-mlflow", **IO_TASK)
def log_to_mlflow(
    registry: ModelRegistry, report: LoadTestReport, markdown: str, files: list[Path]
) -> str:
    """Log the load test as an MLflow run with the report and plot; return the run id."""
    run_id = loadtest.log_to_mlflow(
        registry.client,
        experiment=registry.experiment,
        artifact_location=registry.artifact_location,
        report=report,
        markdown=markdown,
        files=files,
    )
    get_run_logger().info("MLflow run %s", run_id)
    return run_id


@task(name="loadtest-record-event", **IO_TASK)
def record_event(engine: Engine, rollout_id: int, report: LoadTestReport, actor: str) -> None:
    """`core.loadtest.record_event`: the verdict and figures as a `load_test` event."""
    loadtest.record_event(engine, rollout_id, report, actor)
