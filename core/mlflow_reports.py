"""One MLflow run per evaluation report (shadow evaluation, load test): tags, metrics,
the markdown and JSON report and the plots, under one artifact folder."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True, slots=True)
class ReportRun:
    """What one report run holds: its name and tags, its metrics, and the report itself
    (`markdown` and `figures` as JSON, in `<stem>.md` and `<stem>.json`) plus `files`, logged
    under the artifact folder `folder`."""

    name: str
    tags: Mapping[str, str]
    metrics: Mapping[str, float]
    markdown: str
    figures: Mapping[str, Any]
    files: Sequence[Path]
    folder: str
    stem: str


def log_report_run(
    client: Any, *, experiment: str, artifact_location: str | None, run: ReportRun
) -> str:
    """Log `run` to MLflow through `client` (an `mlflow.MlflowClient`), creating the
    experiment if missing; return the run id."""
    found = client.get_experiment_by_name(experiment)
    experiment_id = (
        found.experiment_id
        if found is not None
        else client.create_experiment(experiment, artifact_location=artifact_location)
    )
    created = client.create_run(experiment_id, run_name=run.name, tags=dict(run.tags))
    run_id = str(created.info.run_id)
    for key, value in run.metrics.items():
        client.log_metric(run_id, key, value)
    with tempfile.TemporaryDirectory() as tmp:
        md = Path(tmp) / f"{run.stem}.md"
        md.write_text(run.markdown)
        js = Path(tmp) / f"{run.stem}.json"
        js.write_text(json.dumps(dict(run.figures), indent=2, default=str))
        for path in (md, js, *run.files):
            client.log_artifact(run_id, str(path), artifact_path=run.folder)
    client.set_terminated(run_id)
    return run_id
