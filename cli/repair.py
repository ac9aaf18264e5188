"""`sml repair`: make an environment's MLflow aliases mirror its ledger again.

    sml repair                 # this environment (Settings.ENVIRONMENT)
    sml repair --env prd --dry-run

The ledger is the truth; every write records it first and moves aliases after, so a crash
leaves an alias behind (a first release whose `prd-champion` was never set, a
promotion whose alias never moved). This prints one line per alias it fixes
(`core.repair.repair_env`); with `--dry-run` it only says what it would do.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cli.resources import ledger_database, open_registry
from config import load_settings

console = Console()


def repair(
    env: Annotated[
        str | None,
        typer.Option("--env", "-e", help="dev | stg | prd (default: ENVIRONMENT)"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="say what would change, change nothing")
    ] = False,
) -> None:
    """Fix the environment's aliases (`<env>-champion`, ...) to mirror its ledger."""
    from core.ledger import check_env
    from core.repair import repair_env

    settings = load_settings()
    target = check_env(env or settings.ENVIRONMENT)
    with ledger_database(settings) as engine:
        fixes = repair_env(engine, open_registry(settings), target, dry_run=dry_run)
    if not fixes:
        console.print(f"{target}: every alias mirrors the ledger, nothing to repair")
        return
    verb = "would set" if dry_run else "set"
    for fix in fixes:
        console.print(f"{verb} {fix.describe()}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    """Add `sml repair` to the `sml` app."""
    app.command("repair")(repair)
