"""`sml state`: build, inspect and garbage-collect release states (core.release_state).

    sml state build --model faq-retriever --version 3   # one version's answer index
    sml state build --env prd                           # every stateful model of prd's release
    sml state show --env prd [--at '2h ago']            # the states the release reads
    sml state gc [--dry-run]                            # keep the last RELEASE_STATE_KEEP releases'

A build runs in this process with a progress bar (the same chunked functions the
`build_release_state` flow maps across workers).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from cli.resources import ledger_database, open_registry
from cli.rollout import stateful_models
from config import Settings, load_settings
from core.errors import NotFoundError
from core.ledger import check_env, current_release
from core.timeparse import parse_time

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.registry import ModelRegistry
    from core.release_state import ReleaseState

state_app = typer.Typer(
    help="Release state (answer indexes) built per model version, switched by the release.",
    no_args_is_help=True,
)
console = Console()


def build_one(
    settings: Settings,
    engine: Engine,
    registry: ModelRegistry,
    model: tuple[str, str],
    out: Console,
) -> tuple[ReleaseState, bool]:
    """Build the answer index of `model` = (name, version) here, with a progress bar."""
    from core.release_state import as_embedder, build_answer_index, state_dir_of
    from core.source import read_faq_answers

    name, version = model
    embedder = as_embedder(registry.load(name, version).model, name, version)
    corpus = read_faq_answers(settings)
    columns = (BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress("{task.description}", *columns, console=out, transient=True) as bar:
        task = bar.add_task(f"embedding {name} v{version}", total=len(corpus))
        state, built = build_answer_index(
            engine, name, version, embedder, corpus,
            state_dir=state_dir_of(settings),
            chunk_rows=settings.RELEASE_STATE_CHUNK_ROWS,
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )  # fmt: skip
    verb = f"built in {state.build_seconds:.1f} s" if built else "already built: reused"
    out.print(f"state {state.key} of {name} v{version}: {state.rows:,} answers, {verb}")
    return state, built


def _release_models(engine: Engine, env: str) -> list[tuple[str, str]]:
    release = current_release(engine, check_env(env))
    if release is None:
        raise NotFoundError(f"nothing was released in {env} yet")
    stateful = stateful_models()
    return sorted((m, v) for m, v in release.model_versions.items() if m in stateful)


@state_app.command("build")
def build(
    model: Annotated[str | None, typer.Option("--model", "-m", help="a stateful model")] = None,
    version: Annotated[str | None, typer.Option("--version", "-v", help="its version")] = None,
    env: Annotated[str | None, typer.Option("--env", "-e", help="dev | stg | prd")] = None,
) -> None:
    """Build the answer index of MODEL v VERSION, or of every stateful model of ENV's
    current release (nothing for a state already built)."""
    if (model is None) != (version is None) or (model is None) == (env is None):
        raise typer.BadParameter("give --model NAME --version N, or --env E")
    settings = load_settings()
    with ledger_database(settings) as engine:
        targets = [(model, version)] if model and version else _release_models(engine, env or "")
        if not targets:
            console.print(f"the release of {env} names no model that reads state")
        registry = open_registry(settings)
        for target in targets:
            build_one(settings, engine, registry, target, console)


@state_app.command("show")
def show(
    env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")],
    at: Annotated[str | None, typer.Option("--at", help="ISO time or '2h ago'")] = None,
) -> None:
    """The states the release in force in ENV (now, or at --at) reads, and where they live."""
    from core.release_state import state_for_release

    check_env(env)
    with ledger_database() as engine:
        states = state_for_release(
            engine, env, parse_time(at) if at else None, stateful=stateful_models()
        )
    table = Table(title=f"release state of {env}" + (f" at {at}" if at else ""))
    for column in ("model", "key", "backend", "location", "rows", "built at", "seconds"):
        table.add_column(column, overflow="fold")
    for name, state in sorted(states.items()):
        table.add_row(
            f"{name} v{state.model_versions[name]}",
            state.key,
            state.backend,
            state.location,
            f"{state.rows:,}",
            f"{state.built_at:%Y-%m-%d %H:%M:%S} UTC",
            f"{state.build_seconds:.2f}",
        )
    console.print(table if states else f"the release of {env} reads no state")


@state_app.command("gc")
def gc(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="only say what would go")] = False,
) -> None:
    """Drop states no release of the last RELEASE_STATE_KEEP (per env) and no active
    rollout points at, and every staging area a killed build left."""
    from core.release_state import collect_garbage, state_dir_of

    settings = load_settings()
    with ledger_database(settings) as engine:
        report = collect_garbage(
            engine,
            keep_releases=settings.RELEASE_STATE_KEEP,
            stateful=stateful_models(),
            state_dir=state_dir_of(settings),
            dry_run=dry_run,
        )
    verb = "would drop" if dry_run else "dropped"
    for key in report.dropped:
        console.print(f"{verb} state {key}")
    for location in report.orphans:
        console.print(f"{verb} abandoned staging {location}")
    for location in report.busy:
        console.print(f"left {location}: a build holds it")
    console.print(report.describe())


def step_release_state(settings: Settings, console: Console) -> None:
    """Demo: build the answer index of every stateful model of the env's current release
    (with progress), then show that a rollback would switch states by pointer."""
    from core.ledger import releases_history
    from core.release_state import model_state_key

    env = settings.ENVIRONMENT
    with ledger_database(settings) as engine:
        targets = _release_models(engine, env)
        if not targets:
            console.print(f"the release of {env} names no model that reads state: nothing to build")
            return
        registry = open_registry(settings)
        for target in targets:
            build_one(settings, engine, registry, target, console)
        history = releases_history(engine, env, 2)
    if len(history) == 2:
        stateful = stateful_models()
        parent = {m: v for m, v in history[1].model_versions.items() if m in stateful}
        keys = ", ".join(f"{m} v{v}: {model_state_key(m, v)}" for m, v in sorted(parent.items()))
        console.print(
            f"a rollback of {env} to {history[1].tag} switches readers by pointer to "
            f"{keys or 'no state'}: built before that release, nothing to rebuild"
        )
