"""`sml serve`: run the router (the image's default command)."""

from __future__ import annotations

import logging

import typer

from config import load_settings


def serve(
    host: str | None = typer.Option(None, help="bind address (default: ROUTER_HOST)"),
    port: int | None = typer.Option(None, help="port (default: ROUTER_PORT)"),
    pin: list[str] | None = typer.Option(
        None,
        help="serve exactly MODEL=VERSION (repeatable) instead of the ledger's state, and "
        "write no traffic rows: the load test's routers (serving/pinned.py)",
    ),
) -> None:
    """Serve predictions: sticky canary routing, online shadow, fallback, traffic log."""
    import uvicorn

    from serving.app import create_app
    from serving.pinned import PinError, parse_pins, pinned_states

    try:
        pins = parse_pins(pin or [])
    except PinError as exc:
        raise typer.BadParameter(str(exc), param_hint="--pin") from exc
    settings = load_settings(**({"MODELS": list(pins)} if pins else {}))
    logging.basicConfig(
        level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    states = pinned_states(pins)
    app = (
        create_app(settings, state_reader=lambda: states, record_traffic=False)
        if pins
        else create_app(settings)
    )
    uvicorn.run(
        app,
        host=host or settings.ROUTER_HOST,
        port=port or settings.ROUTER_PORT,
        log_level=settings.LOG_LEVEL.lower(),
        access_log=False,
    )
