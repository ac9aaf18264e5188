"""`sml release promote --from stg --to prd`: one release travels to the next environment.

Opens in `--to` a canary rollout of exactly the versions (same artifact digests) that
`--from`'s current release runs, one per model whose version differs (core.promotion); the
controller takes them from there. A version that never completed a rollout in `--from` is
refused unless `--force`, which is recorded on the rollout (and later its release) as
forced; a digest that differs from the registry's is refused always.
"""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

from cli.options import Actor, operator
from cli.resources import ledger_database, open_registry
from cli.rollout import stateful_models
from cli.tables import rollouts_table
from config import load_settings
from core.errors import NotFoundError
from core.ledger import check_env, current_release

console = Console()
release_app = typer.Typer(
    help="Releases across environments: promote one from stg to prd.", no_args_is_help=True
)


@release_app.command("promote")
def release_promote(
    from_env: Annotated[str, typer.Option("--from", help="dev | stg: the release to take")],
    to_env: Annotated[str, typer.Option("--to", help="stg | prd: where to roll it out")],
    reason: Annotated[
        str, typer.Option("--reason", "-r", help="why (kept in the ledger)")
    ] = "promote the release",
    force: Annotated[
        bool,
        typer.Option("--force", help="take versions that never completed a rollout (recorded)"),
    ] = False,
    actor: Actor = None,
) -> None:
    """Open in --to the rollouts of --from's current release (same versions and digests)."""
    from core.promotion import promote_release

    check_env(from_env)
    check_env(to_env)
    settings = load_settings()
    stateful = stateful_models()
    with ledger_database(settings) as engine:
        if current_release(engine, from_env) is None:  # fails before MLflow is imported
            raise NotFoundError(f"nothing was ever released in {from_env}: nothing to promote")
        rollouts = promote_release(
            engine,
            open_registry(settings),
            from_env=from_env,
            to_env=to_env,
            stages=settings.CANARY_STAGES,
            actor=operator(actor),
            reason=reason,
            force=force,
            stateful=stateful,
        )
    console.print(rollouts_table(rollouts, f"promoted {from_env} -> {to_env}: rollouts opened"))
    for rollout in rollouts:
        if rollout.forced:
            console.print(
                f"[yellow]recorded as forced:[/yellow] rollout #{rollout.id} "
                f"({rollout.model_name} v{rollout.candidate_version})",
                highlight=False,
            )


def register(app: typer.Typer) -> None:
    """Add `sml release` to the app."""
    app.add_typer(release_app, name="release")
