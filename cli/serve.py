"""`sml serve`: run the router (the image's default command).

`--workers N` (default ROUTER_WORKERS; 0 = one per usable core) runs N router processes
on one socket, each with its own model pool, poller, shadow workers and traffic writer:
they share nothing but the database. Each process answers /metrics for itself (scrape
with one worker per pod, or read the traffic table, to see all of them).
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import typer
from fastapi import FastAPI

from config import Settings, load_settings

PINS_ENV = "SML_SERVE_PINS"
"""How `--pin` reaches the worker processes of `--workers N` (comma-separated)."""


def usable_cores(cgroup_root: Path = Path("/sys/fs/cgroup")) -> int:
    """The cores this process may use: its CPU affinity, capped by a cgroup v2 CPU quota
    (a pod's CPU limit; `os.cpu_count()` would give the node's cores)."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    try:
        quota, period = (cgroup_root / "cpu.max").read_text().split()[:2]
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, math.ceil(int(quota) / int(period))))


def worker_count(requested: int) -> int:
    """`requested` processes, or one per usable core when it is 0."""
    return requested if requested > 0 else usable_cores()


def serve(
    host: str | None = typer.Option(None, help="bind address (default: ROUTER_HOST)"),
    port: int | None = typer.Option(None, help="port (default: ROUTER_PORT)"),
    pin: list[str] | None = typer.Option(
        None,
        help="serve exactly MODEL=VERSION (repeatable) instead of the ledger's state, and "
        "write no traffic rows: the load test's routers (serving/pinned.py)",
    ),
    workers: int | None = typer.Option(
        None,
        min=0,
        max=64,
        help="router processes sharing the port (default: ROUTER_WORKERS; 0 = one per core)",
    ),
) -> None:
    """Serve predictions: sticky canary routing, online shadow, fallback, traffic log."""
    import uvicorn

    from serving.pinned import PinError, parse_pins

    try:
        pins = parse_pins(pin or [])
    except PinError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pin") from exc
    settings = _settings(pins)
    processes = worker_count(settings.ROUTER_WORKERS if workers is None else workers)
    options = {
        "host": host or settings.ROUTER_HOST,
        "port": port or settings.ROUTER_PORT,
        "log_level": settings.LOG_LEVEL.lower(),
        "access_log": False,
    }
    if processes == 1:
        uvicorn.run(_app(settings, pins), **options)  # type: ignore[arg-type]
        return
    logging.getLogger(__name__).info("starting %d router processes", processes)
    os.environ[PINS_ENV] = ",".join(f"{name}={version}" for name, version in pins.items())
    uvicorn.run(
        "cli.serve:app_from_env",
        factory=True,
        workers=processes,
        **options,  # type: ignore[arg-type]
    )


def _settings(pins: dict[str, str]) -> Settings:
    """The settings of this process: MODELS are the pinned models when pins are given."""
    return load_settings(**({"MODELS": list(pins)} if pins else {}))


def _app(settings: Settings, pins: dict[str, str]) -> FastAPI:
    """The router app: the ledger's state, or exactly the pinned versions (no traffic)."""
    from serving.app import create_app
    from serving.pinned import pinned_states

    logging.basicConfig(
        level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    if not pins:
        return create_app(settings)
    states = pinned_states(pins)
    return create_app(settings, state_reader=lambda: states, record_traffic=False)


def app_from_env() -> FastAPI:
    """uvicorn's factory in each process of `--workers N`: the settings from the
    environment, the pins from SML_SERVE_PINS (set by `serve`)."""
    from serving.pinned import parse_pins

    pins = parse_pins([p for p in os.environ.get(PINS_ENV, "").split(",") if p])
    return _app(_settings(pins), pins)
