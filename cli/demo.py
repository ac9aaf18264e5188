"""`sml demo`: the project's main job, on embedded defaults (SQLite, local MLflow, Prefect)."""

from __future__ import annotations

from rich.console import Console

from config import load_settings
from core.db import make_engine, upgrade
from core.db.engine import table_names


def run_demo(console: Console) -> None:
    """Migrate the state database and report what exists."""
    settings = load_settings()
    engine = make_engine(settings.database_url)
    console.rule("[bold]1. state database")
    revision = upgrade(engine)
    console.print(f"migrated to {revision}: tables {sorted(table_names(engine))}")
