"""`sml term` (`make term`): an IPython shell with the environment loaded and helpers at hand.

The shell's namespace is built from `PRELOADED`, a dict of name -> factory(TermContext).
To preload something new (the registry, the ledger, a client), add one entry:

    PRELOADED["registry"] = lambda ctx: Registry(ctx.settings)

`status()` prints a table built from `STATUS_ROWS`, a list of functions returning
(what, value) rows; add one to show more. A row function that fails shows its error
class in the table instead of breaking the shell.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any

from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine
from sqlalchemy.exc import SQLAlchemyError

from cli.ledger import term_ledger
from cli.registry import term_registry
from config import Settings, load_settings
from config.settings import env_file_path
from core.errors import SmlError


@dataclass
class TermContext:
    """What the shell's preloaded objects are built from."""

    settings: Settings
    engine: Engine
    console: Console = field(default_factory=Console)


Preloader = Callable[[TermContext], Any]
StatusRows = Callable[[TermContext], list[tuple[str, str]]]


def identity_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """Environment, code and image version."""
    s = ctx.settings
    return [
        ("environment", s.ENVIRONMENT),
        ("code version", s.CODE_VERSION),
        ("image version", s.IMAGE_VERSION),
    ]


def state_database_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """Where the state database is (password hidden)."""
    from core.source import redacted_url

    return [("state database", redacted_url(ctx.settings.database_url))]


def state_revision_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """The migration revision of the state database."""
    from core.db.engine import current_revision

    revision = current_revision(ctx.engine)
    return [("state revision", revision or "not migrated (sml db upgrade)")]


def source_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """The source table: where, how many rows, the newest timestamp."""
    from sqlalchemy import func, inspect, select

    from core.db import make_engine
    from core.source import redacted_url, source_table

    s = ctx.settings
    where = s.SUPABASE_URL if s.uses_supabase else redacted_url(s.source_database_url)
    rows = [("source", f"{s.SOURCE_TABLE} at {where}")]
    engine = make_engine(s.source_database_url)
    try:
        if not inspect(engine).has_table(s.SOURCE_TABLE):
            return [*rows, ("source rows", "no table (python create_data.py)")]
        table = source_table(s.SOURCE_TABLE)
        with engine.connect() as conn:
            count, newest = conn.execute(select(func.count(), func.max(table.c.created_at))).one()
        return [*rows, ("source rows", f"{count} (newest {newest})")]
    finally:
        engine.dispose()


def ledger_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """The current release of this environment and its active rollouts."""
    from core.ledger import active_rollouts, current_release

    env = ctx.settings.ENVIRONMENT
    release = current_release(ctx.engine, env)
    rows = [("current release", release.tag if release else "none yet")]
    for rollout in active_rollouts(ctx.engine, env):
        rows.append(
            (
                f"rollout {rollout.id}",
                f"{rollout.model_name} v{rollout.champion_version} -> "
                f"v{rollout.candidate_version}: {rollout.status} at {rollout.percent:g}%",
            )
        )
    return rows


def services_rows(ctx: TermContext) -> list[tuple[str, str]]:
    """Where MLflow and Prefect are."""
    s = ctx.settings
    return [
        ("mlflow", s.MLFLOW_TRACKING_URI),
        ("prefect api", s.PREFECT_API_URL or "temporary local server"),
        ("work pool", s.PREFECT_WORK_POOL),
        ("models", ", ".join(s.MODELS)),
    ]


STATUS_ROWS: list[StatusRows] = [
    identity_rows,
    state_database_rows,
    state_revision_rows,
    ledger_rows,
    source_rows,
    services_rows,
]


def status_table(ctx: TermContext) -> Table:
    """The status table: every STATUS_ROWS function's rows, or its error class."""
    table = Table(title="stateful-ml status", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value")
    for rows_of in STATUS_ROWS:
        try:
            rows = rows_of(ctx)
        except (SQLAlchemyError, SmlError, OSError) as exc:
            rows = [
                (
                    rows_of.__name__.removesuffix("_rows").replace("_", " "),
                    f"[red]{type(exc).__name__}[/red]",
                )
            ]
        for what, value in rows:
            table.add_row(what, value)
    return table


def print_status(ctx: TermContext) -> None:
    """Print the status table (preloaded as `status()`)."""
    ctx.console.print(status_table(ctx))


PRELOADED: dict[str, Preloader] = {
    "settings": lambda ctx: ctx.settings,
    "engine": lambda ctx: ctx.engine,
    "console": lambda ctx: ctx.console,
    "status": lambda ctx: partial(print_status, ctx),
    "ledger": term_ledger,
    "registry": term_registry,
}


def build_namespace(ctx: TermContext) -> dict[str, Any]:
    """The shell's namespace: every PRELOADED name built from `ctx`."""
    return {name: factory(ctx) for name, factory in PRELOADED.items()}


def load_env_file() -> None:
    """Export the .env file into the process env (without overriding it), so libraries
    that read env vars themselves (MLflow, Prefect) see the same values as Settings."""
    from dotenv import load_dotenv

    path = env_file_path()
    if path.exists():
        load_dotenv(path, override=False)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def term() -> None:
    """Open an IPython shell with settings, engine and status() preloaded."""
    import IPython

    from core.db import make_engine

    load_env_file()
    settings = load_settings()
    ctx = TermContext(settings=settings, engine=make_engine(settings.database_url))
    namespace = build_namespace(ctx)
    ctx.console.print(
        f"[bold]stateful-ml[/bold] {settings.ENVIRONMENT}: preloaded "
        + ", ".join(sorted(namespace))
        + " (try status())",
        highlight=False,
    )
    try:
        IPython.start_ipython(argv=["--no-banner", "--no-confirm-exit"], user_ns=namespace)
    finally:
        ctx.engine.dispose()
