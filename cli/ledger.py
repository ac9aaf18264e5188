"""`sml status | history | diff | rollout ... | rollback`: the ledger from a terminal.

Every command is a thin call into `core.ledger`; tables are built by plain functions
(`status_table`, `history_table`, `diff_table`, `events_table`) that the demo and
`sml term` reuse. Bad input (unknown env, tag, rollout or version) raises a
`core.errors` error, which `cli.main.main` prints as one line with exit code 2.
"""

from __future__ import annotations

import getpass
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from config import Settings, load_settings
from core.errors import NotFoundError, SmlError
from core.ledger import (
    ENVIRONMENTS,
    EventRecord,
    ReleaseRecord,
    RolloutRecord,
    active_rollouts,
    check_env,
    check_stages,
    current_release,
    diff_releases,
    last_figures,
    list_rollouts,
    release_at,
    release_by_tag,
    releases_history,
    rollout_events,
)
from core.timeparse import parse_time

if TYPE_CHECKING:
    from core.registry import ModelRegistry

console = Console()
rollout_app = typer.Typer(
    help="Start and steer rollouts by hand (the controller does it on a schedule).",
    no_args_is_help=True,
)

Reason = Annotated[str, typer.Option("--reason", "-r", help="why (kept in the ledger)")]
Actor = Annotated[
    str | None, typer.Option("--actor", help="who (default: the login name)", show_default=False)
]
RolloutId = Annotated[int, typer.Argument(help="rollout id (see `sml status`)")]


# --- wiring ----------------------------------------------------------------------------


def _actor(actor: str | None) -> str:
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "operator"


def ledger_engine(settings: Settings) -> Engine:
    """The state database engine, refused with one line if it was never migrated.

    Raises:
        SmlError: when the ledger tables are missing (run `sml db upgrade`).
    """
    from core.db import make_engine
    from core.db.engine import table_names

    engine = make_engine(settings.database_url)
    if not {"releases", "rollouts", "rollout_events"} <= table_names(engine):
        engine.dispose()
        raise SmlError("the state database has no ledger tables yet: run `sml db upgrade`")
    return engine


def model_registry(settings: Settings) -> ModelRegistry:
    """The MLflow registry of these settings (imports MLflow: ~10 s the first time)."""
    from core.registry import ModelRegistry

    return ModelRegistry.from_settings(settings)


# --- tables ----------------------------------------------------------------------------


def _fmt_time(ts: datetime | None) -> str:
    return f"{ts:%Y-%m-%d %H:%M:%S}" if ts else "-"


def _fmt_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{k}={_fmt_value(v)}" for k, v in value.items()) + "}"
    return str(value)


def format_figures(event: EventRecord | None, width: int = 70) -> str:
    """`kind: k=v, k=v` of an event's figures, cut to `width` characters."""
    if event is None or not event.figures:
        return "-"
    text = f"{event.kind}: " + ", ".join(f"{k}={_fmt_value(v)}" for k, v in event.figures.items())
    return text if len(text) <= width else text[: width - 1] + "…"


def _stage(rollout: RolloutRecord) -> str:
    return "shadow" if rollout.stage_index < 0 else str(rollout.stage_index)


def status_table(engine: Engine, envs: tuple[str, ...] = ENVIRONMENTS) -> Table:
    """Per env and model: release tag, champion, candidate, status, stage, percent, gates."""
    table = Table(title="status", show_lines=False)
    for column in ("env", "release", "model", "champion", "candidate", "rollout", "status"):
        table.add_column(column)
    table.add_column("stage", justify="right")
    table.add_column("percent", justify="right")
    table.add_column("last gate figures", overflow="fold")
    for env in envs:
        release = current_release(engine, env)
        rollouts = {r.model_name: r for r in active_rollouts(engine, env)}
        figures = last_figures(engine, [r.id for r in rollouts.values()])
        models = sorted(set(release.model_versions if release else {}) | set(rollouts))
        if not models:
            table.add_row(env, "(nothing released)", *["-"] * 8)
            continue
        for i, name in enumerate(models):
            r = rollouts.get(name)
            champion = release.model_versions.get(name, "-") if release else "-"
            table.add_row(
                env if i == 0 else "",
                (release.tag if release else "-") if i == 0 else "",
                name,
                r.champion_version if r else champion,
                r.candidate_version if r else "-",
                f"#{r.id}" if r else "-",
                r.status if r else "serving",
                _stage(r) if r else "-",
                f"{r.percent:g}%" if r else "-",
                format_figures(figures.get(r.id)) if r else "-",
            )
    return table


def _models_text(release: ReleaseRecord) -> str:
    return ", ".join(f"{n} v{v}" for n, v in sorted(release.model_versions.items()))


def history_table(releases: list[ReleaseRecord], title: str, highlight: int | None = None) -> Table:
    """Releases newest first: time, tag, models, image, code, actor, reason."""
    table = Table(title=title)
    for column in ("#", "time (UTC)", "tag", "models", "image", "code", "actor"):
        table.add_column(column)
    table.add_column("reason", overflow="fold")
    for r in releases:
        style = "bold green" if r.id == highlight else None
        table.add_row(
            str(r.id),
            _fmt_time(r.created_at),
            r.tag,
            _models_text(r),
            r.image_version,
            r.code_version,
            r.actor,
            r.reason or "",
            style=style,
        )
    return table


def diff_table(a: ReleaseRecord, b: ReleaseRecord) -> Table:
    """What differs between two releases, row by row."""
    diff = diff_releases(a, b)
    table = Table(title=f"{a.env}#{a.id} {a.tag}  ->  {b.env}#{b.id} {b.tag}")
    table.add_column("what")
    table.add_column(a.tag)
    table.add_column(b.tag)
    table.add_column("change")
    table.add_row("code", a.code_version, b.code_version, "changed" if diff.code else "same")
    table.add_row("image", a.image_version, b.image_version, "changed" if diff.image else "same")
    for name, (old, new) in diff.changed.items():
        table.add_row(name, f"v{old}", f"v{new}", "changed", style="yellow")
    for name, version in diff.added.items():
        table.add_row(name, "-", f"v{version}", "added", style="green")
    for name, version in diff.removed.items():
        table.add_row(name, f"v{version}", "-", "removed", style="red")
    for name, version in diff.unchanged.items():
        note = "same version, other artifact" if name in diff.digests_changed else "same"
        table.add_row(name, f"v{version}", f"v{version}", note)
    return table


def events_table(events: list[EventRecord], title: str) -> Table:
    """A rollout's events in order: who did what, why, on which figures."""
    table = Table(title=title)
    for column in ("seq", "time (UTC)", "kind", "actor", "status", "stage", "percent"):
        table.add_column(column)
    table.add_column("reason", overflow="fold")
    table.add_column("figures", overflow="fold")
    for e in events:
        table.add_row(
            str(e.seq),
            _fmt_time(e.ts),
            e.kind,
            e.actor,
            f"{e.from_status or '-'} -> {e.to_status or '-'}",
            "-" if e.stage_index is None else str(e.stage_index),
            "-" if e.percent is None else f"{e.percent:g}%",
            e.reason or "",
            format_figures(e, width=120) if e.figures else "",
        )
    return table


def rollouts_table(rollouts: list[RolloutRecord], title: str) -> Table:
    """Rollouts, newest first."""
    table = Table(title=title)
    for column in ("#", "env", "model", "champion", "candidate", "status", "stage", "percent"):
        table.add_column(column)
    table.add_column("started (UTC)")
    table.add_column("ended (UTC)")
    for r in rollouts:
        table.add_row(
            str(r.id),
            r.env,
            r.model_name,
            r.champion_version,
            r.candidate_version,
            r.status,
            _stage(r),
            f"{r.percent:g}%",
            _fmt_time(r.created_at),
            _fmt_time(r.ended_at),
        )
    return table


# --- read commands ---------------------------------------------------------------------


def status(
    env: Annotated[str | None, typer.Option("--env", "-e", help="one env (default: all)")] = None,
) -> None:
    """Per env: release tag, champion, candidate, percent, stage, status, last gate figures."""
    envs = (check_env(env),) if env else ENVIRONMENTS
    engine = ledger_engine(load_settings())
    console.print(status_table(engine, envs))


def history(
    env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")],
    at: Annotated[
        str | None,
        typer.Option("--at", help="show the release in force then: ISO time or '2h ago'"),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 50,
) -> None:
    """The releases of an env, newest first; with --at, the one in force at that time."""
    check_env(env)
    when = parse_time(at) if at else None
    engine = ledger_engine(load_settings())
    if when is None:
        console.print(history_table(releases_history(engine, env, limit), f"releases of {env}"))
        return
    found = release_at(engine, env, when)
    if found is None:
        console.print(f"nothing was released in {env} at or before {_fmt_time(when)} UTC")
        return
    console.print(
        f"in force in [bold]{env}[/bold] at {_fmt_time(when)} UTC: [bold]{found.tag}[/bold] "
        f"({_models_text(found)}; image {found.image_version}; code {found.code_version}), "
        f"since {_fmt_time(found.created_at)}",
        highlight=False,
    )
    around = releases_history(engine, env, limit)
    console.print(history_table(around, f"releases of {env}", highlight=found.id))


def diff(
    tag_a: Annotated[str, typer.Argument(help="the older release tag")],
    tag_b: Annotated[str, typer.Argument(help="the newer release tag")],
    env: Annotated[
        str | None, typer.Option("--env", "-e", help="look the tags up in this env")
    ] = None,
) -> None:
    """Compare two releases: models added, removed, changed; image; code."""
    if env is not None:
        check_env(env)
    engine = ledger_engine(load_settings())
    a, b = release_by_tag(engine, tag_a, env), release_by_tag(engine, tag_b, env)
    console.print(diff_table(a, b))


def rollback_command(
    env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")],
    reason: Reason,
    to: Annotated[
        str | None, typer.Option("--to", help="release tag (default: the previous release)")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="proceed even if the target is judged broken")
    ] = False,
    actor: Actor = None,
) -> None:
    """Point an env back at an earlier release: one state change routers see in seconds."""
    from core.ledger import rollback_env
    from core.ledger.verdicts import compat_verdict_fn

    check_env(env)
    settings = load_settings()
    engine = ledger_engine(settings)
    if to is not None:
        release_by_tag(engine, to, env)  # an unknown tag fails before MLflow is imported
    elif current_release(engine, env) is None:
        raise NotFoundError(f"nothing was ever released in {env}: nothing to roll back")
    registry = model_registry(settings)
    release = rollback_env(
        engine,
        env,
        to_tag=to,
        actor=_actor(actor),
        reason=reason,
        force=force,
        registry=registry,
        verdict_fn=compat_verdict_fn(registry, settings.IMAGE_VERSION),
        image_version=settings.IMAGE_VERSION,
    )
    console.print(
        f"{env} rolled back: now [bold]{release.tag}[/bold] ({_models_text(release)})",
        highlight=False,
    )
    if release.reason and "[FORCED" in release.reason:
        console.print(f"[yellow]recorded as forced:[/yellow] {release.reason}", highlight=False)


# --- rollout commands ------------------------------------------------------------------


def _print_rollout(verb: str, r: RolloutRecord) -> None:
    console.print(
        f"rollout #{r.id} {verb}: {r.model_name} v{r.candidate_version} vs "
        f"v{r.champion_version} in {r.env}: {r.status}, stage {_stage(r)}, {r.percent:g}%",
        highlight=False,
    )


@rollout_app.command("start")
def rollout_start(
    env: Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")],
    model: Annotated[str, typer.Option("--model", "-m", help="registered model name")],
    version: Annotated[str, typer.Option("--version", "-v", help="candidate version")],
    reason: Reason,
    mode: Annotated[str, typer.Option("--mode", help="shadow | canary")] = "canary",
    stages: Annotated[
        str | None, typer.Option("--stages", help="percents, like 1,10,25,50,100")
    ] = None,
    champion: Annotated[
        str | None, typer.Option("--champion", help="default: the env's current version")
    ] = None,
    actor: Actor = None,
) -> None:
    """Open a rollout of a registered candidate version against the env's champion."""
    from core.ledger import start_rollout

    check_env(env)
    settings = load_settings()
    percents = check_stages(_parse_stages(stages)) if stages is not None else settings.CANARY_STAGES
    if mode not in ("shadow", "canary"):
        raise SmlError(f"--mode: expected shadow or canary, got {mode!r}")
    engine = ledger_engine(settings)
    record = start_rollout(
        engine,
        env=env,
        model_name=model,
        candidate_version=version,
        champion_version=champion,
        stages=percents,
        mode=mode,  # type: ignore[arg-type]
        actor=_actor(actor),
        reason=reason,
        registry=model_registry(settings),
    )
    _print_rollout("started", record)


def _parse_stages(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SmlError(f"--stages: expected comma-separated percents, got {text!r}") from None


@rollout_app.command("pause")
def rollout_pause(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Hold a rollout where it is (it keeps serving; nothing advances)."""
    from core.ledger import pause

    _print_rollout("paused", pause(_engine(), rollout_id, actor=_actor(actor), reason=reason))


@rollout_app.command("resume")
def rollout_resume(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Let a paused rollout continue."""
    from core.ledger import resume

    _print_rollout("resumed", resume(_engine(), rollout_id, actor=_actor(actor), reason=reason))


@rollout_app.command("abort")
def rollout_abort(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Stop a rollout without judging the candidate; the champion serves everyone."""
    from core.ledger import abort

    _print_rollout("aborted", abort(_engine(), rollout_id, actor=_actor(actor), reason=reason))


@rollout_app.command("rollback")
def rollout_rollback(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Roll a rollout back (candidate judged bad; tagged so in MLflow)."""
    from core.ledger import get_rollout, rollback

    settings = load_settings()
    engine = ledger_engine(settings)
    get_rollout(engine, rollout_id)  # unknown ids fail before MLflow is imported
    record = rollback(
        engine,
        rollout_id,
        actor=_actor(actor),
        reason=reason,
        registry=model_registry(settings),
    )
    _print_rollout("rolled back", record)


@rollout_app.command("promote")
def rollout_promote(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Make the candidate the champion now: a new release, MLflow aliases follow."""
    from core.ledger import get_rollout, promote

    settings = load_settings()
    engine = ledger_engine(settings)
    get_rollout(engine, rollout_id)
    record, release = promote(
        engine,
        rollout_id,
        actor=_actor(actor),
        reason=reason,
        registry=model_registry(settings),
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
    )
    _print_rollout("promoted", record)
    console.print(f"{release.env} release [bold]{release.tag}[/bold]", highlight=False)


@rollout_app.command("set-stage")
def rollout_set_stage(
    rollout_id: RolloutId,
    stage: Annotated[int, typer.Argument(help="stage index, 0 = first canary stage")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Put a rollout at a given stage (up or down) of the stages it was started with."""
    from core.ledger import set_stage

    record = set_stage(_engine(), rollout_id, stage_index=stage, actor=_actor(actor), reason=reason)
    _print_rollout("moved", record)


@rollout_app.command("show")
def rollout_show(rollout_id: RolloutId) -> None:
    """A rollout's events: every stage change, gate result and manual action."""
    engine = _engine()
    console.print(events_table(rollout_events(engine, rollout_id), f"rollout #{rollout_id}"))


@rollout_app.command("list")
def rollout_list(
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
) -> None:
    """The newest rollouts, active or ended."""
    if env is not None:
        check_env(env)
    console.print(rollouts_table(list_rollouts(_engine(), env, limit), "rollouts"))


def _engine() -> Engine:
    return ledger_engine(load_settings())


def register(app: typer.Typer) -> None:
    """Add the ledger commands to the `sml` app."""
    app.command("status")(status)
    app.command("history")(history)
    app.command("diff")(diff)
    app.command("rollback")(rollback_command)
    app.add_typer(rollout_app, name="rollout")


# --- demo step and `sml term` helpers ---------------------------------------------------


def first_release_from_registry(
    engine: Engine, registry: ModelRegistry, settings: Settings
) -> ReleaseRecord | None:
    """Record the env's first release from the registry's `champion` aliases, if none yet.

    Returns the current release (existing or new), or None when no model has a champion.
    """
    from core.ledger import record_release

    env = settings.ENVIRONMENT
    existing = current_release(engine, env)
    if existing is not None:
        return existing
    versions: dict[str, str] = {}
    digests: dict[str, str | None] = {}
    for name in settings.MODELS:
        champion = registry.version_by_alias(name, "champion")
        if champion is not None:
            versions[name] = champion.version
            digests[name] = champion.artifact_sha256 or None
    if not versions:
        return None
    return record_release(
        engine,
        env=env,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
        model_versions=versions,
        artifact_digests=digests,
        reason="first release: the registered champions",
        actor="demo",
    )


def demo_step(settings: Settings, console: Console) -> None:
    """Demo: record (or show) the env's first release, then `sml status` and `sml history`."""
    from core.db import make_engine

    engine = make_engine(settings.database_url)
    try:
        env = settings.ENVIRONMENT
        before = current_release(engine, env)
        release = first_release_from_registry(engine, model_registry(settings), settings)
        if release is None:
            console.print(f"no model has a champion yet: nothing to release in {env}")
        elif before is None:
            console.print(f"recorded the first release of {env}: [bold]{release.tag}[/bold]")
        else:
            console.print(f"{env} runs [bold]{release.tag}[/bold] (recorded earlier)")
        console.print("[dim]$ sml status[/dim]")
        console.print(status_table(engine))
        console.print(f"[dim]$ sml history --env {env}[/dim]")
        console.print(history_table(releases_history(engine, env, 10), f"releases of {env}"))
    finally:
        engine.dispose()


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
        """Print the status table of every env."""
        self.console.print(status_table(self.engine))

    def history(self, env: str, limit: int = 20) -> None:
        """Print an env's releases, newest first."""
        self.console.print(
            history_table(releases_history(self.engine, env, limit), f"releases of {env}")
        )

    def at(self, env: str, when: str | datetime) -> ReleaseRecord | None:
        """The release in force in `env` at `when` (ISO, '2h ago', 'yesterday' or datetime)."""
        moment = parse_time(when) if isinstance(when, str) else when
        return release_at(self.engine, env, moment)

    def diff(self, tag_a: str, tag_b: str, env: str | None = None) -> None:
        """Print what differs between two releases."""
        a = release_by_tag(self.engine, tag_a, env)
        b = release_by_tag(self.engine, tag_b, env)
        self.console.print(diff_table(a, b))

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
