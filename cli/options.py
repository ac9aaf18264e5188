"""Options the ledger commands share: why (kept in the ledger), who, which rollout, which
env (completed from the known environments), and the output format of read commands."""

from __future__ import annotations

import getpass
from enum import StrEnum
from typing import Annotated

import typer

from core.ledger import ENVIRONMENTS


def complete_env(incomplete: str) -> list[str]:
    """Shell completion of `--env`: the known environments starting with `incomplete`."""
    return [env for env in ENVIRONMENTS if env.startswith(incomplete)]


class OutputFormat(StrEnum):
    """How a read command prints: tables and trees for people, JSON for scripts."""

    text = "text"
    json = "json"


Reason = Annotated[str, typer.Option("--reason", "-r", help="why (kept in the ledger)")]
Actor = Annotated[
    str | None, typer.Option("--actor", help="who (default: the login name)", show_default=False)
]
RolloutId = Annotated[int, typer.Argument(help="rollout id (see `sml status`)")]
Env = Annotated[
    str, typer.Option("--env", "-e", help="dev | stg | prd", autocompletion=complete_env)
]
AnyEnv = Annotated[
    str | None,
    typer.Option("--env", "-e", help="one env (default: all)", autocompletion=complete_env),
]
Output = Annotated[
    OutputFormat,
    typer.Option(
        "--output", "-o", help="text (tables) or json (stable schema: docs/cli.md)",
        case_sensitive=False,
    ),
]  # fmt: skip


def operator(actor: str | None) -> str:
    """Who acts: `--actor` when given, else the login name, else `operator`."""
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "operator"
