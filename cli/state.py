"""`sml state`: build and inspect the derived state of releases (core.release_state)."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from cli.resources import ledger_database, open_registry
from config import Settings, load_settings
from core.ledger import check_env, current_release
from core.timeparse import parse_time

state_app = typer.Typer(
    help="Derived state built per release, switched by pointer.", no_args_is_help=True
)
console = Console()


@state_app.command("build")
def build(env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")]) -> None:
    """Build the derived state of the release in force in ENV (nothing if already built)."""
    from core.errors import NotFoundError
    from core.release_state import build_release_state
    from core.source import read_queries

    check_env(env)
    settings = load_settings()
    with ledger_database(settings) as engine:
        release = current_release(engine, env)
        if release is None:
            raise NotFoundError(f"nothing was released in {env} yet")
        registry = open_registry(settings)
        queries = read_queries(settings)
        console.print(f"scoring {len(queries):,} source queries with {release.tag} ...")
        state, built = build_release_state(
            engine,
            release.model_versions,
            queries,
            lambda name, version, texts: registry.load(name, version).predict(texts),
            state_dir=settings.LOCAL_DIR / "release_state",
        )
    verb = f"built in {state.build_seconds:.1f} s" if built else "already built: reused"
    console.print(f"state {state.key} of {release.tag}: {state.rows:,} rows, {verb}")


@state_app.command("show")
def show(
    env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")],
    at: Annotated[str | None, typer.Option("--at", help="ISO time or '2h ago'")] = None,
) -> None:
    """Where the derived state of the release in force in ENV (now, or at --at) lives."""
    from core.release_state import state_for_release

    check_env(env)
    with ledger_database() as engine:
        state = state_for_release(engine, env, parse_time(at) if at else None)
    table = Table(title=f"release state of {env}" + (f" at {at}" if at else ""), show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value", overflow="fold")
    for field, value in (
        ("key", state.key),
        ("models", ", ".join(f"{m} v{v}" for m, v in sorted(state.model_versions.items()))),
        ("backend", state.backend),
        ("location", state.location),
        ("rows", f"{state.rows:,}"),
        ("built at", f"{state.built_at:%Y-%m-%d %H:%M:%S} UTC"),
        ("build seconds", f"{state.build_seconds:.2f}"),
    ):
        table.add_row(field, value)
    console.print(table)


def step_release_state(settings: Settings, console: Console) -> None:
    """Demo: build the derived state of every release of the env, then show that rolling
    back would switch to an already-built state (nothing to rebuild)."""
    from core.ledger import releases_history
    from core.release_state import build_release_state, state_key
    from core.source import read_queries

    env = settings.ENVIRONMENT
    registry = open_registry(settings)
    queries = read_queries(settings)
    table = Table(title=f"derived state per release of {env} (scored source queries)")
    for column in ("release", "state key", "rows", "build"):
        table.add_column(column)
    with ledger_database(settings) as engine:
        history = list(reversed(releases_history(engine, env, 50)))  # oldest first
        for release in history:
            state, built = build_release_state(
                engine,
                release.model_versions,
                queries,
                lambda name, version, texts: registry.load(name, version).predict(texts),
                state_dir=settings.LOCAL_DIR / "release_state",
            )
            build = f"built in {state.build_seconds:.2f} s" if built else "reused (same versions)"
            table.add_row(release.tag, state.key, f"{state.rows:,}", build)
    console.print(table)
    if len(history) >= 2:
        parent = history[-2]
        console.print(
            f"a rollback of {env} to {parent.tag} switches readers to state "
            f"{state_key(parent.model_versions)} by pointer: already built, nothing to rebuild"
        )
