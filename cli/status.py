"""`sml status [--env] [-o json] [--watch [--interval S] [--count N]]`.

Reads the ledger and judges each active rollout's current stage as the controller would
(`cli.status_view`); prints trees (`cli.status_tree`) or JSON. `--watch` redraws in
place (rich Live) every `--interval` seconds until Ctrl-C, or `--count` times.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.live import Live
from sqlalchemy import Engine

from cli.options import AnyEnv, Output, OutputFormat
from cli.records import print_json
from cli.resources import ledger_database
from cli.status_tree import status_tree
from cli.status_view import status_document
from config import load_settings
from core.canary import CanaryPolicy
from core.ledger import ENVIRONMENTS, check_env

console = Console()


def status_now(engine: Engine, envs: tuple[str, ...] = ENVIRONMENTS) -> dict[str, Any]:
    """The status document of `envs` in `engine` now, judged with the settings' canary
    policy and the model families' hand-off labels (as the controller judges)."""
    import models

    policy = CanaryPolicy.from_settings(load_settings(), handoff_labels=models.handoff_labels())
    return status_document(
        engine, envs, policy, now=datetime.now(UTC), stateful=models.stateful_models()
    )


def read_status(envs: tuple[str, ...]) -> dict[str, Any]:
    """The status document of `envs` now, from the settings' state database."""
    with ledger_database() as engine:
        return status_now(engine, envs)


def watch(
    draw: Callable[[], Any], *, interval: float, count: int | None, live: Live | None = None
) -> int:
    """Call `draw` and show what it returns, every `interval` seconds, `count` times
    (None: until interrupted); return how many times it drew."""
    drawn = 0
    with live or Live(console=console, auto_refresh=False) as shown:
        try:
            while count is None or drawn < count:
                if drawn:
                    time.sleep(interval)
                shown.update(draw(), refresh=True)
                drawn += 1
        except KeyboardInterrupt:
            pass
    return drawn


def status(
    env: AnyEnv = None,
    output: Output = OutputFormat.text,
    watch_: Annotated[
        bool, typer.Option("--watch", "-w", help="redraw in place until Ctrl-C")
    ] = False,
    interval: Annotated[
        float, typer.Option("--interval", min=0.5, help="seconds between redraws")
    ] = 5.0,
    count: Annotated[
        int | None, typer.Option("--count", min=1, help="with --watch: stop after N draws")
    ] = None,
) -> None:
    """Per env: the release, its models, and each active rollout's current stage (step
    k/N, percent, time in stage, bake left, n vs the minimum, every gate with its
    estimate, threshold and always-valid p-value) and last events."""
    envs = (check_env(env),) if env else ENVIRONMENTS
    if output is OutputFormat.json:
        if not watch_:
            print_json(read_status(envs))
            return
        drawn = 0
        while count is None or drawn < count:  # one JSON document per line per draw
            if drawn:
                time.sleep(interval)
            typer.echo(json.dumps(read_status(envs), allow_nan=False))
            drawn += 1
        return
    if not watch_:
        console.print(status_tree(read_status(envs)))
        return
    watch(lambda: status_tree(read_status(envs)), interval=interval, count=count)
