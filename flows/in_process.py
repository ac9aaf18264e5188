"""Flow runs called in this process (the demo, the tests), not started by a worker."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any


@contextmanager
def in_process_flow_runs(api_url: str | None = None) -> Iterator[None]:
    """Flow runs called inside this block send no heartbeats; with `api_url`, they (and
    every Prefect client of this process, threads included) use that API server.

    Prefect 3.8's sync flow engine joins its heartbeat thread when a run ends, and that
    thread sleeps in 1 s steps: every run returned up to 1 s late (a trivial flow took 1.10 s
    with heartbeats, 0.11 s without; the demo makes about 35 runs). A heartbeat lets the
    server mark a run whose process died as crashed; a run called here lives and dies with
    the caller's process, which reports its outcome itself. Runs that a worker starts
    (every deployment) keep Prefect's heartbeats.

    The API address goes into the settings context of this thread and into the process
    environment, which threads without that context read (restored on exit). On exit,
    the logs and events still queued are sent first, while that server still runs.
    """
    from prefect.settings import (
        PREFECT_API_URL,
        PREFECT_FLOWS_HEARTBEAT_FREQUENCY,
        temporary_settings,
    )

    updates: dict[Any, Any] = {PREFECT_FLOWS_HEARTBEAT_FREQUENCY: None}
    if api_url is None:
        with temporary_settings(updates=updates):
            yield
        return
    previous = os.environ.get("PREFECT_API_URL")
    os.environ["PREFECT_API_URL"] = api_url
    try:
        with temporary_settings(updates={**updates, PREFECT_API_URL: api_url}):
            try:
                yield
            finally:
                _drain_to_the_server()
    finally:
        if previous is None:
            os.environ.pop("PREFECT_API_URL", None)
        else:
            os.environ["PREFECT_API_URL"] = previous


def _drain_to_the_server() -> None:
    """Send the run logs and events Prefect still queues (its background workers would
    otherwise try at exit, to a server that has stopped, and print the failure)."""
    from prefect.events.worker import EventsWorker
    from prefect.logging.handlers import APILogWorker

    with contextlib.suppress(RuntimeError):  # never started: nothing was logged
        APILogWorker.instance().drain()
    EventsWorker.drain_all()
