"""Options the ledger commands share: why (kept in the ledger), who, which rollout."""

from __future__ import annotations

import getpass
from typing import Annotated

import typer

Reason = Annotated[str, typer.Option("--reason", "-r", help="why (kept in the ledger)")]
Actor = Annotated[
    str | None, typer.Option("--actor", help="who (default: the login name)", show_default=False)
]
RolloutId = Annotated[int, typer.Argument(help="rollout id (see `sml status`)")]
Env = Annotated[str, typer.Option("--env", "-e", help="dev | stg | prd")]


def operator(actor: str | None) -> str:
    """Who acts: `--actor` when given, else the login name, else `operator`."""
    if actor:
        return actor
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no login name in some containers
        return "operator"
