"""`sml rollout start|pause|resume|abort|rollback|promote|set-stage|show|list|plot`.

Steer one rollout by hand (the controller does it on a schedule). Each command is one
call into `core.ledger`; the registry is opened only by commands that move MLflow aliases
or tags, and only after the rollout id was checked (so a typo fails before MLflow loads).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Annotated

import typer
from rich.console import Console
from sqlalchemy import Engine, select

from cli.fit import Fitted
from cli.options import Actor, AnyEnv, Env, Output, OutputFormat, Reason, RolloutId, operator
from cli.records import event_json, print_json, rollout_record_json
from cli.resources import ledger_database, open_registry
from cli.rollout_plot import rollout_plot
from cli.tables import events_table, fmt_time, rollouts_table, stage_text, versions_text
from config import load_settings
from core.errors import SmlError
from core.ledger import (
    RolloutRecord,
    abort,
    check_env,
    check_stages,
    get_rollout,
    list_rollouts,
    pause,
    promote,
    resume,
    rollback,
    rollout_events,
    rollout_stages,
    set_stage,
    start_rollout,
)

console = Console()
rollout_app = typer.Typer(
    help="Start and steer rollouts by hand (the controller does it on a schedule).",
    no_args_is_help=True,
)
rollout_app.command("plot")(rollout_plot)


def _print_rollout(verb: str, r: RolloutRecord) -> None:
    console.print(
        f"rollout #{r.id} {verb}: {versions_text(r)} in {r.env}: {r.status}, "
        f"{stage_text(r)}, {r.percent:g}%",
        highlight=False,
    )


def stateful_models() -> frozenset[str]:
    """The registered model names whose versions read release state (their family has a
    `state`): a version of one takes no traffic before its state is published.

    Imports the model families (pandas) only when a command needs the set.
    """
    import models

    return models.stateful_models()


_MEMBER = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9._-]*)=(?P<version>\d+)$")


def parse_bundle(pairs: Sequence[str] | None) -> dict[str, str] | None:
    """`["faq-retriever=4"]` -> {"faq-retriever": "4"} (None for no pairs).

    Raises:
        SmlError: a pair that is not NAME=VERSION (VERSION a number), or a model named twice.
    """
    bundle: dict[str, str] = {}
    for pair in pairs or ():
        match = _MEMBER.fullmatch(pair.strip())
        if match is None:
            raise SmlError(
                f"--with: expected NAME=VERSION (a registered model and a version number), "
                f"like faq-retriever=4; got {pair!r}"
            )
        if match["name"] in bundle:
            raise SmlError(f"--with: {match['name']} named twice; name each model once")
        bundle[match["name"]] = match["version"]
    return bundle or None


def parse_stages(text: str) -> list[float]:
    """`1,10,25` -> [1.0, 10.0, 25.0] (checked by `core.ledger.check_stages` afterwards).

    Raises:
        SmlError: a part that is not a number.
    """
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise SmlError(f"--stages: expected comma-separated percents, got {text!r}") from None


def rollouts_with_status(engine: Engine, env: str, status: str) -> list[RolloutRecord]:
    """Every rollout of `env` with `status`, oldest first."""
    from core.db import Rollout, session_scope

    query = select(Rollout).where(Rollout.env == env, Rollout.status == status)
    with session_scope(engine) as session:
        return [RolloutRecord.from_row(row) for row in session.scalars(query.order_by(Rollout.id))]


def rolled_back_before(engine: Engine, env: str, versions: Mapping[str, str]) -> list[str]:
    """Why each of `versions` ({model: version}) was rolled back in `env` before, one
    line per rollout that rolled it back (who, when, the reason), oldest first."""
    found = []
    for rollout in rollouts_with_status(engine, env, "rolled_back"):
        hits = [
            f"{name} v{version}"
            for name, version in rollout.candidate_versions.items()
            if versions.get(name) == version
        ]
        if not hits:
            continue
        events = rollout_events(engine, rollout.id)
        last = next((e for e in reversed(events) if e.to_status == "rolled_back"), None)
        why = (
            f" by {last.actor} at {fmt_time(last.ts)} UTC: {last.reason or 'no reason given'}"
            if last is not None
            else ""
        )
        found.append(f"{' + '.join(hits)} was rolled back in {env} (rollout #{rollout.id}){why}")
    return found


@rollout_app.command("start")
def rollout_start(  # noqa: PLR0913 (each parameter is an option of the command)
    env: Env,
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
    with_: Annotated[
        list[str] | None,
        typer.Option(
            "--with",
            help="another model rolled out with it, as NAME=VERSION (repeatable): a bundle",
        ),
    ] = None,
    force: Annotated[
        bool,
        typer.Option("--force", help="start even though a version was rolled back in this env"),
    ] = False,
    actor: Actor = None,
) -> None:
    """Open a rollout of a registered candidate version against the env's champion; with
    `--with NAME=VERSION`, a bundle: those models roll out together with it (one salt).
    A version already rolled back in the env needs `--force` (recorded on the rollout)."""
    check_env(env)
    bundle = parse_bundle(with_)
    settings = load_settings()
    percents = check_stages(parse_stages(stages)) if stages is not None else settings.CANARY_STAGES
    if mode not in ("shadow", "canary"):
        raise SmlError(f"--mode: expected shadow or canary, got {mode!r}")
    stateful = stateful_models()
    with ledger_database(settings) as engine:
        earlier = rolled_back_before(engine, env, {model: version} | (bundle or {}))
        if earlier and not force:
            raise SmlError(
                "; ".join(earlier) + ": start it again with --force (recorded on the rollout)"
            )
        record = start_rollout(
            engine,
            env=env,
            model_name=model,
            candidate_version=version,
            champion_version=champion,
            stages=percents,
            mode=mode,  # type: ignore[arg-type]
            actor=operator(actor),
            reason=reason,
            registry=open_registry(settings),
            bundle=bundle,
            stateful=stateful,
            forced=bool(earlier),
        )
    _print_rollout("started", record)
    if record.forced:
        console.print("[yellow]recorded as forced:[/yellow] " + "; ".join(earlier), highlight=False)


@rollout_app.command("pause")
def rollout_pause(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Hold a rollout where it is (it keeps serving; nothing advances)."""
    with ledger_database() as engine:
        record = pause(engine, rollout_id, actor=operator(actor), reason=reason)
    _print_rollout("paused", record)


@rollout_app.command("resume")
def rollout_resume(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Let a paused rollout continue."""
    with ledger_database() as engine:
        record = resume(engine, rollout_id, actor=operator(actor), reason=reason)
    _print_rollout("resumed", record)


@rollout_app.command("abort")
def rollout_abort(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Stop a rollout without judging the candidate; the champion serves everyone (the
    `<env>-candidate` aliases of its models are removed)."""
    settings = load_settings()
    with ledger_database(settings) as engine:
        get_rollout(engine, rollout_id)  # unknown ids fail before MLflow is imported
        record = abort(
            engine,
            rollout_id,
            actor=operator(actor),
            reason=reason,
            registry=open_registry(settings),
        )
    _print_rollout("aborted", record)


@rollout_app.command("rollback")
def rollout_rollback(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Roll a rollout back (candidate judged bad; tagged so in MLflow)."""
    settings = load_settings()
    with ledger_database(settings) as engine:
        get_rollout(engine, rollout_id)  # unknown ids fail before MLflow is imported
        record = rollback(
            engine,
            rollout_id,
            actor=operator(actor),
            reason=reason,
            registry=open_registry(settings),
        )
    _print_rollout("rolled back", record)


@rollout_app.command("promote")
def rollout_promote(rollout_id: RolloutId, reason: Reason, actor: Actor = None) -> None:
    """Make the candidates the champions now: one new release (every model of a bundle),
    MLflow aliases follow. Refused while a candidate's release state is not published."""
    settings = load_settings()
    stateful = stateful_models()
    with ledger_database(settings) as engine:
        get_rollout(engine, rollout_id)  # unknown ids fail before MLflow is imported
        record, release = promote(
            engine,
            rollout_id,
            actor=operator(actor),
            reason=reason,
            registry=open_registry(settings),
            code_version=settings.CODE_VERSION,
            image_version=settings.IMAGE_VERSION,
            stateful=stateful,
        )
    _print_rollout("promoted", record)
    forced = " (forced: its rollout was opened past a refusal)" if release.forced else ""
    console.print(f"{release.env} release [bold]{release.tag}[/bold]{forced}", highlight=False)


@rollout_app.command("set-stage")
def rollout_set_stage(
    rollout_id: RolloutId,
    step: Annotated[int, typer.Argument(help="step k of N, one-based (as `sml status` shows)")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Put a rollout at a given step (up or down) of the stages it was started with."""
    with ledger_database() as engine:
        steps = len(rollout_stages(engine, rollout_id))
        if not 1 <= step <= steps:
            raise SmlError(f"step: expected 1..{steps} (of rollout #{rollout_id}), got {step}")
        record = set_stage(
            engine, rollout_id, stage_index=step - 1, actor=operator(actor), reason=reason
        )
    _print_rollout("moved", record)


@rollout_app.command("show")
def rollout_show(rollout_id: RolloutId, output: Output = OutputFormat.text) -> None:
    """A rollout's events: every stage change, gate result and manual action."""
    with ledger_database() as engine:
        rollout = get_rollout(engine, rollout_id)
        events = rollout_events(engine, rollout_id)
    if output is OutputFormat.json:
        print_json(
            {
                "schema": "sml.rollout/v1",
                "rollout": rollout_record_json(rollout),
                "events": [event_json(e, figures=True) for e in events],
            }
        )
        return
    console.print(Fitted(events_table(events, f"rollout #{rollout_id}")))


@rollout_app.command("list")
def rollout_list(
    env: AnyEnv = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
    output: Output = OutputFormat.text,
) -> None:
    """The newest rollouts, active or ended."""
    if env is not None:
        check_env(env)
    with ledger_database() as engine:
        rollouts = list_rollouts(engine, env, limit)
    if output is OutputFormat.json:
        print_json(
            {"schema": "sml.rollouts/v1", "rollouts": [rollout_record_json(r) for r in rollouts]}
        )
        return
    console.print(Fitted(rollouts_table(rollouts, "rollouts")))
