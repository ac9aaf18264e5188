"""`sml serve`: run the router (the image's default command)."""

from __future__ import annotations

import logging

import typer

from config import load_settings


def serve(
    host: str | None = typer.Option(None, help="bind address (default: ROUTER_HOST)"),
    port: int | None = typer.Option(None, help="port (default: ROUTER_PORT)"),
) -> None:
    """Serve predictions: sticky canary routing, online shadow, fallback, traffic log."""
    import uvicorn

    from serving.app import create_app

    settings = load_settings()
    logging.basicConfig(
        level=settings.LOG_LEVEL, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    uvicorn.run(
        create_app(settings),
        host=host or settings.ROUTER_HOST,
        port=port or settings.ROUTER_PORT,
        log_level=settings.LOG_LEVEL.lower(),
        access_log=False,
    )
