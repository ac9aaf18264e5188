"""`sml rollout start|pause|resume|abort|rollback|promote|set-stage|show|list`.

Steer one rollout by hand (the controller does it on a schedule). Each command is one
call into `core.ledger`; the registry is opened only by commands that move MLflow aliases
or tags, and only after the rollout id was checked (so a typo fails before MLflow loads).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Annotated

import typer
from rich.console import Console

from cli.options import Actor, Env, Reason, RolloutId, operator
from cli.resources import ledger_database, open_registry
from cli.tables import events_table, rollouts_table, stage_text, versions_text
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
    set_stage,
    start_rollout,
)

console = Console()
rollout_app = typer.Typer(
    help="Start and steer rollouts by hand (the controller does it on a schedule).",
    no_args_is_help=True,
)


def _print_rollout(verb: str, r: RolloutRecord) -> None:
    console.print(
        f"rollout #{r.id} {verb}: {versions_text(r)} in {r.env}: {r.status}, "
        f"stage {stage_text(r)}, {r.percent:g}%",
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
    actor: Actor = None,
) -> None:
    """Open a rollout of a registered candidate version against the env's champion; with
    `--with NAME=VERSION`, a bundle: those models roll out together with it (one salt)."""
    check_env(env)
    bundle = parse_bundle(with_)
    settings = load_settings()
    percents = check_stages(parse_stages(stages)) if stages is not None else settings.CANARY_STAGES
    if mode not in ("shadow", "canary"):
        raise SmlError(f"--mode: expected shadow or canary, got {mode!r}")
    stateful = stateful_models()
    with ledger_database(settings) as engine:
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
        )
    _print_rollout("started", record)


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
    stage: Annotated[int, typer.Argument(help="stage index, 0 = first canary stage")],
    reason: Reason,
    actor: Actor = None,
) -> None:
    """Put a rollout at a given stage (up or down) of the stages it was started with."""
    with ledger_database() as engine:
        record = set_stage(
            engine, rollout_id, stage_index=stage, actor=operator(actor), reason=reason
        )
    _print_rollout("moved", record)


@rollout_app.command("show")
def rollout_show(rollout_id: RolloutId) -> None:
    """A rollout's events: every stage change, gate result and manual action."""
    with ledger_database() as engine:
        events = rollout_events(engine, rollout_id)
    console.print(events_table(events, f"rollout #{rollout_id}"))


@rollout_app.command("list")
def rollout_list(
    env: Annotated[str | None, typer.Option("--env", "-e")] = None,
    limit: Annotated[int, typer.Option("--limit", "-n", min=1)] = 20,
) -> None:
    """The newest rollouts, active or ended."""
    if env is not None:
        check_env(env)
    with ledger_database() as engine:
        rollouts = list_rollouts(engine, env, limit)
    console.print(rollouts_table(rollouts, "rollouts"))
