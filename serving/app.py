"""The router app factory: `create_app(settings)` returns a FastAPI app whose lifespan
starts and stops the rollout-state poller, shadow workers and traffic writer. Nothing
starts at import.
"""

from __future__ import annotations

import gc
from collections.abc import AsyncIterator, Collection, Iterator
from contextlib import asynccontextmanager, contextmanager

import anyio
from fastapi import FastAPI
from fastapi.telemetry import TelemetryConfig
from sqlalchemy import Engine

from config import Settings, get_settings
from serving.fast_path import PredictFastPath
from serving.limits import BodySizeLimit
from serving.model_cache import ModelSource
from serving.openapi import document_and_refuse
from serving.rollout_state import StateReader
from serving.routes import router
from serving.service import RouterService
from serving.startup_fallback import AliasSource

TITLE = "Stateful ML router"
SUMMARY = "Predictions and FAQ answers: sticky canary routing, shadow and fallback."
NO_TELEMETRY: TelemetryConfig = {"tracing": False, "metrics": False, "logs": False}
"""FastAPI's OpenTelemetry bridge off: it asked the global providers on every request (~3%
of a request's CPU in bench/router.py); the router's figures are its Prometheus /metrics."""


def stateful_models() -> frozenset[str]:
    """The model names whose family reads release state (`models.ModelFamily.state`):
    the router serves each of their versions together with that version's state."""
    from models import FAMILIES

    return frozenset(f.name for f in FAMILIES.values() if f.state)


@contextmanager
def _startup_objects_frozen() -> Iterator[None]:
    """While the router serves, everything loaded before (modules, the app, settings:
    ~250,000 objects) is out of the garbage collector's sight (`gc.freeze`). They live as
    long as the process, yet every full collection walked them all: 190 ms pauses under
    load, the whole p99 of bench/router.py at 64 connections under wrk (200 ms; 57 ms
    frozen). Unfrozen when the router stops, so what it loaded can be collected again."""
    gc.collect()
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def create_app(
    settings: Settings | None = None,
    *,
    model_source: ModelSource | None = None,
    engine: Engine | None = None,
    state_reader: StateReader | None = None,
    alias_source: AliasSource | None = None,
    shadow_in_canary: bool = True,
    stateful: Collection[str] | None = None,
    record_traffic: bool = True,
) -> FastAPI:
    """Build the router app.

    settings: defaults to `get_settings()` (read when called, not at import).
    model_source: defaults to `core.registry.ModelRegistry.from_settings(settings)`.
    engine: the state database (not migrated here: `sml db upgrade` does); defaults to one
        on DATABASE_URL with short timeouts.
    state_reader: defaults to `core.ledger.routing_state(engine, ENVIRONMENT)`.
    alias_source: where `<ENVIRONMENT>-champion` aliases are read while the state database
        has never answered (serving/startup_fallback.py); default: the registry when
        `model_source` is not given, else none.
    shadow_in_canary: in canary mode, also shadow the candidate for champion-arm users.
    stateful: the model names that read release state (default: `stateful_models()`).
    record_traffic: False writes no traffic or feedback rows (pinned: serving/pinned.py).
    The running `RouterService` is `app.state.service` once the lifespan has started.
    """
    settings = settings or get_settings()
    stateful = stateful_models() if stateful is None else frozenset(stateful)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service = RouterService.from_settings(
            settings,
            model_source=model_source,
            engine=engine,
            state_reader=state_reader,
            alias_source=alias_source,
            shadow_in_canary=shadow_in_canary,
            stateful=stateful,
            record_traffic=record_traffic,
        )
        service.start()
        app.state.service = service
        try:
            with _startup_objects_frozen():
                yield
        finally:
            # joins threads and flushes the traffic buffer: keep it off the event loop
            await anyio.to_thread.run_sync(service.stop)
            if engine is None:
                service.engine.dispose()

    app = FastAPI(title=TITLE, summary=SUMMARY, lifespan=lifespan, telemetry=NO_TELEMETRY)
    app.add_middleware(PredictFastPath)  # inside the body limit: added first
    app.add_middleware(BodySizeLimit, max_bytes=settings.ROUTER_MAX_BODY_BYTES)
    app.include_router(router)
    document_and_refuse(app, settings.MODELS)
    return app
