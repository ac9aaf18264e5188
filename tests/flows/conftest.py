"""Flow tests run under one session-scoped Prefect test harness (a real temporary server).

PREFECT_HOME is isolated and telemetry is off; the start timeout is raised because the
temporary server takes 16-40 s to start on these machines (see shared/REFERENCE.md). The
harness's server is Prefect's app behind the demo's `RetrySoon` (cli/demo_server.py): a
503 from SQLite write contention is retried after 0.05 s instead of Prefect's client's
silent 2 s (the flow tests met 13 of them in a run).
"""

from __future__ import annotations

import os
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="sml-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_TASKS_DISABLE_CACHING", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


PREFECT_APP = "prefect.server.api.server:create_app"
HINTED_APP = "cli.demo_server:create_app"


def _serving_the_hinted_app(start: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """Prefect's SubprocessASGIServer command, with uvicorn serving HINTED_APP."""

    def run_uvicorn(server: Any) -> Any:
        popen = subprocess.Popen

        def hinted(args: list[str], **kwargs: Any) -> Any:
            return popen([HINTED_APP if arg == PREFECT_APP else arg for arg in args], **kwargs)

        subprocess.Popen = hinted  # type: ignore[assignment,misc]
        try:
            return start(server)
        finally:
            subprocess.Popen = popen  # type: ignore[misc]

    return run_uvicorn


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """A real Prefect API for every flow test in this session."""
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.testing.utilities import prefect_test_harness

    from flows.in_process import in_process_flow_runs

    start = SubprocessASGIServer._run_uvicorn_command
    SubprocessASGIServer._run_uvicorn_command = _serving_the_hinted_app(start)  # type: ignore[method-assign]
    try:
        with prefect_test_harness(server_startup_timeout=120), in_process_flow_runs():
            yield
    finally:
        SubprocessASGIServer._run_uvicorn_command = start  # type: ignore[method-assign]


@pytest.fixture
def state_db() -> Iterator[Engine]:
    """The migrated state database the flows open from the (isolated) settings."""
    from config import get_settings
    from core.db import make_engine, upgrade

    engine = make_engine(get_settings().database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
