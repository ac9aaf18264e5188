"""The load test's records: the latency plot, the MLflow run and the ledger event."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sqlalchemy import Engine

from core import ledger
from core.loadtest.report import PHASE_TITLES, SIDES, LoadTestReport
from core.loadtest.run import Measurements
from core.loadtest.stats import PHASES
from core.mlflow_reports import ReportRun, log_report_run

EVENT_KIND = "load_test"


def latency_plot(report: LoadTestReport, measurements: Measurements, out_dir: Path) -> Path:
    """`load-test-latency.png`: each model's latency CDF, one panel per phase, with its
    p95 marked (matplotlib, Agg backend chosen here, not at import)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, len(PHASES), figsize=(11, 4), squeeze=False)
    for ax, phase in zip(axes[0], PHASES, strict=True):
        for side in SIDES:
            values = sorted(measurements.latencies(side, phase))
            if not values:
                continue
            shares = [(i + 1) / len(values) for i in range(len(values))]
            (line,) = ax.plot(values, shares, label=f"{side} v{report.version(side)}")
            p95 = report.figures(side)[phase].p95_ms
            if p95 is not None:
                ax.axvline(p95, color=line.get_color(), linestyle=":", linewidth=1)
        ax.set_xscale("log")
        ax.set_xlabel("client-side latency (ms, log scale; dotted: p95)")
        ax.set_ylabel("share of requests")
        ax.set_title(PHASE_TITLES[phase])
        ax.legend(loc="lower right")
    fig.suptitle(f"{report.model_name}: load test, {report.gate.summary()[:80]}")
    fig.tight_layout()
    path = out_dir / "load-test-latency.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def report_metrics(report: LoadTestReport) -> dict[str, float]:
    """The figures as MLflow metrics, e.g. `candidate_saturation_p95_ms` (measured ones)."""
    metrics: dict[str, float] = {"queries": float(report.queries)}
    for side in SIDES:
        for phase, figures in report.figures(side).items():
            for key, value in figures.as_dict().items():
                if key != "phase" and value is not None:
                    metrics[f"{side}_{phase}_{key}"] = float(value)
    return metrics


def log_to_mlflow(
    client: Any,
    *,
    experiment: str,
    artifact_location: str | None,
    report: LoadTestReport,
    markdown: str,
    files: Sequence[Path],
) -> str:
    """Log the load test as an MLflow run (metrics, the report, the plot); return its id.

    `client` is an `mlflow.MlflowClient`; the experiment is created if missing.
    """
    return log_report_run(
        client,
        experiment=experiment,
        artifact_location=artifact_location,
        run=ReportRun(
            name=f"load-test-{report.model_name}-v{report.candidate_version}",
            tags={
                "sml.kind": "load_test",
                "sml.model": report.model_name,
                "sml.env": report.env,
                "sml.champion_version": report.champion_version,
                "sml.candidate_version": report.candidate_version,
                "sml.verdict": "pass" if report.passed else "fail",
            },
            metrics=report_metrics(report),
            markdown=markdown,
            figures=report.as_dict(),
            files=files,
            folder="load_test",
            stem="load-test-report",
        ),
    )


def record_event(engine: Engine, rollout_id: int, report: LoadTestReport, actor: str) -> None:
    """Append the load test's verdict and figures to a rollout's events (`load_test`).

    Raises:
        NotFoundError: no such rollout.
    """
    ledger.record_event(
        engine, rollout_id, kind=EVENT_KIND, actor=actor, reason=report.gate.summary(),
        figures=report.as_dict(),
    )  # fmt: skip
