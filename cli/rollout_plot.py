"""`sml rollout plot ID`: a rollout's stages as one picture, kept with its MLflow report run.

The figures are the ones each controller decision (advance, promote, rollback) acted on,
drawn by `core.plots.stage_plot` with the canary policy's thresholds; the PNG lands in
`reports_dir` and, unless `--no-mlflow`, in an MLflow run `rollout-<id>` (kind `rollout`)
with a markdown report that shows it.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cli.options import RolloutId
from cli.resources import ledger_database, open_registry
from config import load_settings
from core.canary import CanaryPolicy
from core.errors import SmlError
from core.ledger import get_rollout, rollout_events, rollout_stages
from core.mlflow_reports import ReportRun, log_report_run
from core.reporting import stage_records

console = Console()


def rollout_plot(
    rollout_id: RolloutId,
    mlflow: Annotated[
        bool, typer.Option("--mlflow/--no-mlflow", help="also log it as an MLflow run")
    ] = True,
) -> None:
    """Plot a rollout's judged stages (thresholds drawn, versions and n in the title)."""
    from core.plots import markdown_images, stage_plot  # matplotlib and scipy: only here

    settings = load_settings()
    with ledger_database(settings) as engine:
        rollout = get_rollout(engine, rollout_id)
        events = rollout_events(engine, rollout_id)
        stages = stage_records(rollout_id, events, rollout_stages(engine, rollout_id))
    if not stages:
        raise SmlError(f"rollout #{rollout_id} has no judged stage yet: nothing to plot")
    versions = {"champion": rollout.champion_version, "candidate": rollout.candidate_version}
    path = stage_plot(
        f"rollout #{rollout.id} in {rollout.env}: {rollout.model_name} ({rollout.status})",
        [{"label": s.label, "figures": s.figures} for s in stages],
        settings.reports_dir / f"rollout-{rollout.id}-stages.png",
        CanaryPolicy.from_settings(settings),
        versions,
    )
    console.print(f"stages plotted: {path}", highlight=False)
    if not mlflow:
        return
    registry = open_registry(settings)
    run_id = log_report_run(
        registry.client,
        experiment=registry.experiment,
        artifact_location=registry.artifact_location,
        run=ReportRun(
            name=f"rollout-{rollout.id}",
            tags={
                "sml.kind": "rollout",
                "sml.env": rollout.env,
                "sml.model": rollout.model_name,
                "sml.rollout_id": str(rollout.id),
                "sml.champion_version": rollout.champion_version,
                "sml.candidate_version": rollout.candidate_version,
                "sml.status": rollout.status,
            },
            metrics={},
            markdown=f"# Rollout #{rollout.id}: {rollout.model_name} "
            f"v{rollout.candidate_version} vs v{rollout.champion_version} ({rollout.status})\n\n"
            + markdown_images([path]),
            figures={
                "stages": [{"label": s.label, "action": s.action, **s.figures} for s in stages]
            },
            files=[path],
            folder="rollout",
            stem=f"rollout-{rollout.id}",
        ),
    )
    console.print(f"MLflow run {run_id} (experiment {registry.experiment})", highlight=False)
