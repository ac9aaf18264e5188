"""`sml demo`: the project's main job, on embedded defaults (SQLite, local MLflow, Prefect).

The demo is a list of steps, each a function of (settings, console). Each capability adds
its step here, in lifecycle order, so `make demo` always runs the most complete lifecycle.
"""

from __future__ import annotations

from collections.abc import Callable

from rich.console import Console

from cli.ledger import demo_step as step_release_ledger
from config import Settings, load_settings
from core.db import make_engine, upgrade
from core.db.engine import table_names
from create_data import step_source_data


def step_migrate(settings: Settings, console: Console) -> None:
    """Migrate the state database."""
    engine = make_engine(settings.database_url)
    revision = upgrade(engine)
    console.print(f"state database at {revision}: tables {', '.join(sorted(table_names(engine)))}")
    engine.dispose()


STEPS: list[tuple[str, Callable[[Settings, Console], None]]] = [
    ("state database", step_migrate),
    ("source data", step_source_data),
    ("release ledger", step_release_ledger),
]


def run_demo(console: Console) -> None:
    """Run every step in order, numbered."""
    settings = load_settings()
    for number, (title, step) in enumerate(STEPS, start=1):
        console.rule(f"[bold]{number}. {title}")
        step(settings, console)
