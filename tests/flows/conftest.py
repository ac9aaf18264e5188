"""Flow tests run under one session-scoped Prefect test harness (a real temporary server).

PREFECT_HOME is isolated and telemetry is off; the start timeout is raised because the
temporary server takes 16-40 s to start on these machines (see shared/REFERENCE.md).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

import pytest
from sqlalchemy import Engine

os.environ.setdefault("PREFECT_HOME", tempfile.mkdtemp(prefix="sml-prefect-home-"))
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("PREFECT_TASKS_DISABLE_CACHING", "true")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_TO_API_ENABLED", "false")


@pytest.fixture(scope="session", autouse=True)
def prefect_harness() -> Iterator[None]:
    """A real Prefect API for every flow test in this session."""
    from prefect.testing.utilities import prefect_test_harness

    from flows.in_process import in_process_flow_runs

    with prefect_test_harness(server_startup_timeout=120), in_process_flow_runs():
        yield


@pytest.fixture
def state_db() -> Iterator[Engine]:
    """The migrated state database the flows open from the (isolated) settings."""
    from config import get_settings
    from core.db import make_engine, upgrade

    engine = make_engine(get_settings().database_url)
    upgrade(engine)
    yield engine
    engine.dispose()
