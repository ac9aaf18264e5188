"""`sml`: the operator CLI of Stateful ML.

Each command group lives in its own module and is registered here. Errors the user can
act on (bad settings, unknown names, refused actions) print as one line, exit code 2.
"""

from __future__ import annotations

import os
import sys

import typer
from rich.console import Console
from rich.table import Table

from cli.ledger import register as register_ledger
from cli.registry import register as register_registry
from cli.release import register as register_release
from cli.repair import register as register_repair
from cli.serve import serve
from cli.state import state_app
from cli.term import term
from config import ConfigError, load_settings, masked_items
from core.errors import SmlError

app = typer.Typer(
    name="sml",
    help="Stateful ML: retrain, shadow, canary, ledger and rollback for several models.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
db_app = typer.Typer(help="State database.", no_args_is_help=True)
app.add_typer(db_app, name="db")
register_ledger(app)
register_registry(app)
register_release(app)
register_repair(app)
app.command("serve")(serve)
app.add_typer(state_app, name="state")
app.command("term")(term)

console = Console()


@app.command("config")
def show_config() -> None:
    """Print the effective settings, secrets masked, and where each value came from."""
    settings = load_settings()
    table = Table(title=f"settings ({settings.ENVIRONMENT})")
    table.add_column("variable")
    table.add_column("value")
    table.add_column("from")
    for name, value, source in masked_items(settings):
        table.add_row(name, value, source)
    console.print(table)


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the state database migrations (safe to re-run)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import OperationalError

    from core.db import make_engine, upgrade

    settings = load_settings()
    engine = make_engine(settings.database_url)
    try:
        revision = upgrade(engine)
    except OperationalError as exc:
        reason = str(exc.orig).splitlines()[0] if exc.orig is not None else "OperationalError"
        raise SmlError(
            "could not reach the state database "
            f"{make_url(settings.database_url).render_as_string(hide_password=True)}: {reason}"
        ) from None
    finally:
        engine.dispose()
    console.print(f"state database at revision [bold]{revision}[/bold]")


def main() -> None:
    """Console-script entry: run the app, turning known errors into one line."""
    try:
        app()
    except ConfigError as exc:
        Console(stderr=True).print(f"[red]{exc}[/red]", highlight=False, soft_wrap=True)
        sys.exit(2)
    except SmlError as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        sys.exit(2)


@app.command("demo")
def demo() -> None:
    """Run the most complete lifecycle the project has, on embedded defaults."""
    import logging

    from cli.demo_server import spawn_prefect_server

    server = spawn_prefect_server()  # first: it starts while the demo's steps are imported
    from cli.demo import run_demo

    # The demo drives a faulty candidate on purpose: its fallbacks are counted in the
    # step's summary line, so the router's per-request warnings would only bury it.
    logging.getLogger("serving.service").setLevel(logging.ERROR)
    logging.getLogger("alembic").setLevel(logging.ERROR)
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "ERROR")  # MLflow sets its level on import
    # Piped output (CI logs, `| tee`) gets room for the tables instead of rich's 80 columns.
    run_demo(Console(width=None if sys.stdout.isatty() else 150), server)


if __name__ == "__main__":
    main()
