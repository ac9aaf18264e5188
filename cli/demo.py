"""`sml demo`: the whole model lifecycle on embedded defaults (SQLite, local MLflow, Prefect).

The demo is a list of steps, each a function of (settings, console), in lifecycle order:
state database, source data, v1 champion, the release ledger, simulated users through the
router (in process), the preflight of an offered image under a real second Python
environment (`cli.demo_preflight`), an image bump with retraining, shadow evaluation,
canary stages up to promotion in stg, the same release promoted to prd through its own
canary, a faulty candidate rolled back by the controller, an embedder upgrade (its answer
index built as release state) canaried as a bundle with the classifier on /answer, an
instant rollback to the previous answers, and a summary with PNG plots of each stage's
figures in `.local/reports/`. Prefect's temporary server starts once, at the first flow,
and serves every flow of the run. The canary policy is shortened for the demo
(`cli.lifecycle.DEMO_OVERRIDES`).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

from rich.console import Console

from cli.bundle_demo import BundleStory
from cli.demo_preflight import Preflight
from cli.demo_server import DemoPrefectServer, spawn_prefect_server
from cli.ledger import demo_step as step_release_ledger
from cli.lifecycle import Lifecycle, apply_demo_environment, start_warm_up
from cli.registry import step_registry_state
from cli.source_data import step_source_data
from cli.state import step_release_state
from config import Settings, get_settings
from core.db import make_engine, upgrade
from core.db.engine import table_names
from flows.in_process import in_process_flow_runs


def _embedded_sqlite_file(url: str) -> Path | None:
    """The file behind a `sqlite:///` URL, or None for any other database."""
    prefix = "sqlite:///"
    return Path(url[len(prefix) :]) if url.startswith(prefix) else None


def demo_state_paths(settings: Settings) -> list[Path]:
    """What a previous demo left under LOCAL_DIR: the state and MLflow stores, model cache,
    release state, spill and reports (not the source data: create_data is idempotent).

    Only embedded stores inside LOCAL_DIR are listed: a demo pointed at real servers
    (Postgres, an MLflow server) never deletes anything.
    """
    local = settings.LOCAL_DIR.resolve()
    candidates: list[Path] = [
        local / "release_state",
        settings.MODEL_CACHE_DIR,
        settings.TRAFFIC_SPILL_DIR,
        settings.reports_dir,
        Path(settings.MLFLOW_ARTIFACT_LOCATION),
    ]
    for url in (settings.database_url, settings.MLFLOW_TRACKING_URI):
        file = _embedded_sqlite_file(url)
        if file is not None:
            candidates += [file, Path(f"{file}-wal"), Path(f"{file}-shm")]
    resolved = [path.resolve() for path in candidates if path.exists()]
    return [path for path in resolved if path.is_relative_to(local) and path != local]


def step_fresh_state(settings: Settings, console: Console) -> None:
    """Start from empty embedded stores, so `make demo` tells the same story every run."""
    removed = demo_state_paths(settings)
    for path in removed:
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink()
    if removed:
        names = ", ".join(str(p.relative_to(settings.LOCAL_DIR.resolve())) for p in removed)
        console.print(f"previous demo state removed from {settings.LOCAL_DIR}: {names}")
    else:
        console.print(f"no previous demo state in {settings.LOCAL_DIR}")


def step_migrate(settings: Settings, console: Console) -> None:
    """Migrate the state database."""
    engine = make_engine(settings.database_url)
    revision = upgrade(engine)
    console.print(f"state database at {revision}: tables {', '.join(sorted(table_names(engine)))}")
    engine.dispose()


LIFECYCLE = Lifecycle()
BUNDLE = BundleStory(LIFECYCLE)
PREFLIGHT = Preflight()

STEPS: list[tuple[str, Callable[[Settings, Console], None]]] = [
    ("fresh demo state", step_fresh_state),
    ("state database", step_migrate),
    ("source data", step_source_data),
    ("v1 champion", LIFECYCLE.step_champion),
    ("model registry", step_registry_state),
    ("release ledger", step_release_ledger),
    ("users through the router", LIFECYCLE.step_users),
    ("preflight of an offered image", PREFLIGHT.step),
    ("image bump and retrain", LIFECYCLE.step_image_bump),
    ("shadow evaluation", LIFECYCLE.step_shadow),
    ("canary up to promotion", LIFECYCLE.step_canary),
    ("release state", step_release_state),
    ("the stg release travels to prd", LIFECYCLE.step_promote_to_prd),
    ("faulty candidate rolled back", LIFECYCLE.step_faulty),
    ("embedder upgrade as a bundle", BUNDLE.step_embedder_upgrade),
    ("instant rollback to the previous answers", BUNDLE.step_instant_rollback),
    ("a stale candidate: users ask again", LIFECYCLE.step_confusing),
    ("summary and plots", LIFECYCLE.step_summary),
]


LOCAL_STEPS = (step_fresh_state, step_migrate, step_source_data)


def run_demo(console: Console, server: DemoPrefectServer | None = None) -> None:
    """Run every step in order, numbered, with the demo's short canary policy. `server`:
    one `spawn_prefect_server` started earlier (else it is spawned now); stopped here."""
    apply_demo_environment()
    LIFECYCLE.reset()
    started = time.monotonic()
    server = server or spawn_prefect_server()
    warm_up: list[threading.Thread] = []
    try:
        with in_process_flow_runs(api_url=server.api_url if server else None):
            for number, (title, step) in enumerate(STEPS, start=1):
                if step not in LOCAL_STEPS:  # the later steps need Prefect and MLflow warm
                    for thread in warm_up:
                        thread.join()
                console.rule(f"[bold]{number}. {title}")
                step_started = time.monotonic()
                step(get_settings(), console)  # re-read: a step may change the environment
                console.print(f"[dim]({time.monotonic() - step_started:.1f} s)[/dim]")
                if step is step_migrate:
                    # after our migrations: MLflow's own (Alembic too) must not run alongside
                    warm_up = start_warm_up(get_settings(), server)
                    PREFLIGHT.start_build(get_settings())  # uv, on the other core
                elif step == LIFECYCLE.step_champion:
                    PREFLIGHT.start(get_settings())  # the champions exist: judge them aside
    finally:
        LIFECYCLE.close()
        if server is not None:
            server.stop()
    console.rule(f"[bold]demo finished in {time.monotonic() - started:.0f} s")
