"""Shadow evaluation, the record: one MLflow run with the figures, the report and plots."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from core.mlflow_reports import ReportRun, log_report_run
from core.shadow.statistics import ShadowReport


def log_to_mlflow(
    client: Any,
    *,
    experiment: str,
    artifact_location: str | None,
    report: ShadowReport,
    markdown: str,
    files: Sequence[Path],
) -> str:
    """Log the evaluation as an MLflow run (metrics, report, plots); return the run id.

    `client` is an `mlflow.MlflowClient`; the experiment is created if missing.
    """
    return log_report_run(
        client,
        experiment=experiment,
        artifact_location=artifact_location,
        run=ReportRun(
            name=f"shadow-{report.model_name}-v{report.candidate_version}",
            tags={
                "sml.kind": "shadow_evaluation",
                "sml.model": report.model_name,
                "sml.champion_version": report.champion_version,
                "sml.candidate_version": report.candidate_version,
                "sml.verdict": "pass" if report.passed else "fail",
            },
            metrics=report_metrics(report),
            markdown=markdown,
            figures=report.as_dict(),
            files=files,
            folder="shadow",
            stem="shadow-report",
        ),
    )


def report_metrics(report: ShadowReport) -> dict[str, float]:
    """The report's headline figures as MLflow metrics (those that could be measured)."""
    metrics: dict[str, float | None] = {
        "requests": float(report.requests),
        "online_requests": float(report.online_requests),
        "replayed_requests": float(report.replayed_requests),
        "agreement": report.agreement.value,
        "champion_error_rate": report.champion_error.value,
        "candidate_error_rate": report.candidate_error.value,
        **{f"champion_latency_{k}_ms": v for k, v in report.champion_latency.items()},
        **{f"candidate_latency_{k}_ms": v for k, v in report.candidate_latency.items()},
    }
    if report.accuracy is not None:
        metrics |= {
            "champion_accuracy": report.accuracy.champion.value,
            "candidate_accuracy": report.accuracy.candidate.value,
            "accuracy_drop": report.accuracy.drop,
            "mcnemar_p_value": report.accuracy.mcnemar_p_value,
        }
    return {key: float(value) for key, value in metrics.items() if value is not None}
