"""What the demo prints from the ledger: the load test's figures and the closing summary."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from config import Settings

MODEL = "intent-classifier"  # the demo's story is this model's


def print_load_test(settings: Settings, console: Console) -> None:
    """The pre-canary load test the shadow evaluation ran (its ledger event)."""
    from core import ledger

    engine = _engine(settings)
    try:
        events = [
            e
            for r in ledger.active_rollouts(engine, settings.ENVIRONMENT)
            for e in ledger.rollout_events(engine, r.id)
            if e.kind == "load_test" and e.figures
        ]
    finally:
        engine.dispose()
    for event in events:
        figures = event.figures or {}
        sides = []
        for side in ("champion", "candidate"):
            at_rate = figures[side]["target_rate"]
            saturated = figures[side]["saturation"]
            quantiles = "/".join(_num(at_rate[q]) for q in ("p50_ms", "p95_ms", "p99_ms"))
            sides.append(
                f"{side} v{figures[f'{side}_version']}: p50/p95/p99 {quantiles} ms, "
                f"{_num(saturated['throughput_rps'], 0)} req/s at saturation"
            )
        console.print("load test on real routers (loopback): " + "; ".join(sides))
        console.print(f"[bold]{event.reason}[/bold]")


def print_summary(settings: Settings, console: Console, rollouts: list[int]) -> None:
    """Releases, rollouts with their events, aliases; PNG plots of each stage."""
    from cli.resources import open_registry
    from core import ledger
    from core.canary import CanaryPolicy
    from core.plots import stage_plot
    from core.reporting import stage_records

    engine = _engine(settings)
    try:
        table = Table(title="releases of stg and prd")
        for column in ("#", "env", "tag", "models", "reason"):
            table.add_column(column)
        for env in ("stg", "prd"):
            for r in reversed(ledger.releases_history(engine, env, 10)):
                models = str(r.model_versions)
                table.add_row(str(r.id), env, r.tag, models, (r.reason or "")[:60])
        console.print(table)
        out_dir = settings.reports_dir
        for rollout_id in rollouts:
            rollout = ledger.get_rollout(engine, rollout_id)
            events = ledger.rollout_events(engine, rollout_id)
            console.print(
                f"rollout #{rollout.id} v{rollout.candidate_version} vs "
                f"v{rollout.champion_version}: {rollout.status}; events: "
                + ", ".join(e.kind for e in events)
            )
            stages = stage_records(rollout_id, events, ledger.rollout_stages(engine, rollout_id))
            if stages:
                path = stage_plot(
                    f"rollout #{rollout.id}: {MODEL} v{rollout.candidate_version} "
                    f"({rollout.status})",
                    [{"label": s.label, "figures": s.figures} for s in stages],
                    Path(out_dir) / f"rollout-{rollout.id}-stages.png",
                    CanaryPolicy.from_settings(settings),  # thresholds drawn
                    {"champion": rollout.champion_version, "candidate": rollout.candidate_version},
                )
                console.print(f"  stage figures plotted: {path}")
        aliases = open_registry(settings).aliases(MODEL)
        console.print(f"MLflow aliases of {MODEL} (per environment): {aliases}")
        console.print(f"reports (PNG, markdown): {out_dir}")
    finally:
        engine.dispose()


def _engine(settings: Settings) -> Any:
    from core.db import make_engine

    return make_engine(settings.database_url)


def _num(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"
