"""`sml status | history | diff | rollback`: the ledger from a terminal; `sml rollout` wiring.

Every command is a thin call into `core.ledger`; tables come from `cli.tables` (shared
with the demo and `sml term`) and the `sml rollout ...` sub-app from `cli.rollout`. Bad
input (unknown env, tag, rollout or version) raises a `core.errors` error, which
`cli.main.main` prints as one line with exit code 2.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from sqlalchemy import Engine

from cli.fit import Fitted
from cli.options import Actor, AnyEnv, Env, Output, OutputFormat, Reason, operator
from cli.records import diff_json, iso, print_json, release_json
from cli.resources import ledger_database, open_registry
from cli.rollout import rollout_app, stateful_models
from cli.status import status, status_now
from cli.status_tree import status_tree
from cli.tables import (
    diff_table,
    events_table,
    fmt_time,
    history_table,
    models_text,
    rollouts_table,
    state_text,
)
from config import Settings, load_settings
from core.db import state_database
from core.errors import NotFoundError
from core.ledger import (
    ReleaseRecord,
    check_env,
    current_release,
    list_rollouts,
    release_at,
    release_by_tag,
    releases_history,
    rollout_events,
)
from core.timeparse import parse_time

console = Console()


# --- read commands -------------------------------------------------------------------


def _print_release_at(engine: Engine, env: str, when: datetime, limit: int, json: bool) -> None:
    """The release in force in `env` at `when` (models, the state it served, image, code),
    then the history with it highlighted."""
    stateful = stateful_models()
    found = release_at(engine, env, when)
    around = releases_history(engine, env, limit)
    if json:
        print_json(
            {
                "schema": "sml.history/v1",
                "env": env,
                "at": iso(when),
                "release": None if found is None else release_json(found, stateful),
                "releases": [release_json(r, stateful) for r in around],
            }
        )
        return
    if found is None:
        console.print(f"nothing was released in {env} at or before {fmt_time(when)} UTC")
        return
    console.print(
        f"in force in [bold]{env}[/bold] at {fmt_time(when)} UTC: [bold]{found.tag}[/bold] "
        f"({models_text(found)}; state {state_text(found, stateful)}; "
        f"image {found.image_version}; code {found.code_version}), "
        f"since {fmt_time(found.created_at)}",
        highlight=False,
    )
    console.print(Fitted(history_table(around, f"releases of {env}", found.id, stateful)))


def history(
    env: Env,
    at: Annotated[
        str | None,
        typer.Option("--at", help="show the release in force then: ISO time or '2h ago'"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
    output: Output = OutputFormat.text,
) -> None:
    """The releases of an env, newest first; with --at, the one in force at that time."""
    check_env(env)
    when = parse_time(at) if at else None
    json = output is OutputFormat.json
    with ledger_database() as engine:
        if when is not None:
            _print_release_at(engine, env, when, limit, json)
            return
        releases = releases_history(engine, env, limit)
    stateful = stateful_models()
    if json:
        print_json(
            {
                "schema": "sml.history/v1",
                "env": env,
                "at": None,
                "release": release_json(releases[0], stateful) if releases else None,
                "releases": [release_json(r, stateful) for r in releases],
            }
        )
        return
    console.print(Fitted(history_table(releases, f"releases of {env}", None, stateful)))


def diff(
    tag_a: Annotated[str, typer.Argument(help="the older release tag")],
    tag_b: Annotated[str, typer.Argument(help="the newer release tag")],
    env: AnyEnv = None,
    output: Output = OutputFormat.text,
) -> None:
    """Compare two releases: models added, removed, changed; image; code; release state."""
    if env is not None:
        check_env(env)
    with ledger_database() as engine:
        a, b = release_by_tag(engine, tag_a, env), release_by_tag(engine, tag_b, env)
    if output is OutputFormat.json:
        print_json({"schema": "sml.diff/v1"} | diff_json(a, b, stateful_models()))
        return
    console.print(Fitted(diff_table(a, b, stateful_models())))


# --- rollback ----------------------------------------------------------------------------


def rollback_command(
    env: Env,
    reason: Reason,
    to: Annotated[
        str | None,
        typer.Option("--to", help="release tag (default: the previous release)"),
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="proceed even if the target is judged broken")
    ] = False,
    actor: Actor = None,
) -> None:
    """Point an env back at an earlier release: one state change routers see in seconds
    (refused when a version to serve again has lost its release state)."""
    from core.ledger import rollback_env
    from core.ledger.verdicts import compat_verdict_fn

    check_env(env)
    settings = load_settings()
    stateful = stateful_models()
    with ledger_database(settings) as engine:
        if to is not None:
            release_by_tag(engine, to, env)  # an unknown tag fails before MLflow is imported
        elif current_release(engine, env) is None:
            raise NotFoundError(f"nothing was ever released in {env}: nothing to roll back")
        registry = open_registry(settings)
        release = rollback_env(
            engine,
            env,
            to_tag=to,
            actor=operator(actor),
            reason=reason,
            force=force,
            registry=registry,
            verdict_fn=compat_verdict_fn(registry, settings.IMAGE_VERSION),
            image_version=settings.IMAGE_VERSION,
            stateful=stateful,
        )
    console.print(
        f"{env} rolled back: now [bold]{release.tag}[/bold] ({models_text(release)})",
        highlight=False,
    )
    if release.forced:
        console.print(f"[yellow]recorded as forced:[/yellow] {release.reason}", highlight=False)


def register(app: typer.Typer) -> None:
    """Add the ledger commands to the `sml` app."""
    app.command("status")(status)
    app.command("history")(history)
    app.command("diff")(diff)
    app.command("rollback")(rollback_command)
    app.add_typer(rollout_app, name="rollout")


# --- demo step and `sml term` helpers ---------------------------------------------------


def demo_step(settings: Settings, console: Console) -> None:
    """Demo: the env's current release (retrain records a first one, ledger first), then
    `sml status` and `sml history`. It writes nothing: the ledger never follows MLflow."""
    env = settings.ENVIRONMENT
    with state_database(settings.database_url, ledger=False) as engine:
        release = current_release(engine, env)
        if release is None:
            console.print(
                f"nothing released in {env} yet: retrain-on-image-change records the first release"
            )
        else:
            console.print(f"{env} runs [bold]{release.tag}[/bold]")
        stateful = stateful_models()
        console.print("[dim]$ sml status[/dim]")
        console.print(status_tree(status_now(engine)))
        console.print(f"[dim]$ sml history --env {env}[/dim]")
        history = releases_history(engine, env, 10)
        console.print(history_table(history, f"releases of {env}", stateful=stateful))


@dataclass
class LedgerShortcuts:
    """The ledger at hand in `sml term` (preloaded as `ledger`): tables and lookups.

    ledger.status(); ledger.history("prd"); ledger.at("prd", "2h ago");
    ledger.diff(tag_a, tag_b); ledger.rollouts(); ledger.events(7); ledger.api.<function>
    """

    engine: Engine
    console: Console

    @property
    def api(self) -> Any:
        """The `core.ledger` module, for any call (pass `ledger.engine`)."""
        import core.ledger

        return core.ledger

    def status(self) -> None:
        """Print `sml status`: every env's tree."""
        self.console.print(status_tree(status_now(self.engine)))

    def history(self, env: str, limit: int = 20) -> None:
        """Print an env's releases, newest first."""
        releases = releases_history(self.engine, env, limit)
        self.console.print(
            history_table(releases, f"releases of {env}", stateful=stateful_models())
        )

    def at(self, env: str, when: str | datetime) -> ReleaseRecord | None:
        """The release in force in `env` at `when` (ISO, '2h ago', 'yesterday' or datetime)."""
        moment = parse_time(when) if isinstance(when, str) else when
        return release_at(self.engine, env, moment)

    def diff(self, tag_a: str, tag_b: str, env: str | None = None) -> None:
        """Print what differs between two releases."""
        a = release_by_tag(self.engine, tag_a, env)
        b = release_by_tag(self.engine, tag_b, env)
        self.console.print(diff_table(a, b, stateful_models()))

    def rollouts(self, env: str | None = None, limit: int = 20) -> None:
        """Print the newest rollouts."""
        self.console.print(rollouts_table(list_rollouts(self.engine, env, limit), "rollouts"))

    def events(self, rollout_id: int) -> None:
        """Print a rollout's events."""
        events = rollout_events(self.engine, rollout_id)
        self.console.print(events_table(events, f"rollout #{rollout_id}"))


def term_ledger(ctx: Any) -> LedgerShortcuts:
    """`sml term` preloader: `PRELOADED["ledger"] = term_ledger` (ctx: cli.term.TermContext)."""
    return LedgerShortcuts(engine=ctx.engine, console=ctx.console)
