"""Shared fixtures: isolated settings per test, SQLite and real-Postgres state databases.

Postgres tests use TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test).
Under SML_REQUIRE_POSTGRES=1 (set by .ci/run) an unreachable Postgres fails the test;
otherwise it skips with the reason shown.

`make test` runs the suite in one pytest-xdist worker per core (`--dist load`). Isolation
is per test (a temp dir, SQLite files, a uuid-named Postgres database) and per worker
process (its own PREFECT_HOME and Prefect test server on a free port: tests/flows/conftest.py).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

# Set before any Prefect or MLflow import (tests import them lazily).
os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

TEST_POSTGRES_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("SML_REQUIRE_POSTGRES") == "1"

SETTINGS_ENV_KEYS = (
    "ENVIRONMENT",
    "IMAGE_VERSION",
    "CODE_VERSION",
    "LOCAL_DIR",
    "DATABASE_URL",
    "SOURCE_DATABASE_URL",
    "SUPABASE_URL",
    "SUPABASE_KEY",
    "MLFLOW_TRACKING_URI",
    "MLFLOW_ARTIFACT_LOCATION",
    "MODEL_CACHE_DIR",
    "TRAFFIC_SPILL_DIR",
    "MODELS",
)


@pytest.fixture(scope="session", autouse=True)
def mlflow_store_template(tmp_path_factory: pytest.TempPathFactory) -> None:
    """New SQLite MLflow stores are copies of one migrated by MLflow (tests/mlflow_template.py)."""
    from tests.mlflow_template import install

    install(tmp_path_factory.mktemp("mlflow-template"))


@pytest.fixture(autouse=True)
def isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Point every embedded default at a temp dir and ignore the developer's .env."""
    from config import get_settings

    for key in SETTINGS_ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    local = tmp_path / "local"
    monkeypatch.setenv("SML_ENV_FILE", str(tmp_path / "no.env"))
    monkeypatch.setenv("LOCAL_DIR", str(local))
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{local}/state.db")
    monkeypatch.setenv("SOURCE_DATABASE_URL", f"sqlite:///{local}/source.db")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{local}/mlflow.db")
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", str(local / "mlartifacts"))
    monkeypatch.setenv("MODEL_CACHE_DIR", str(local / "models"))
    monkeypatch.setenv("TRAFFIC_SPILL_DIR", str(local / "spill"))
    # Most tests exercise one model; the tests of several models set MODELS themselves,
    # and the demo, lifecycle and README tests run the shipped default (both families).
    monkeypatch.setenv("MODELS", "intent-classifier")
    get_settings.cache_clear()
    yield local
    get_settings.cache_clear()


# The longest tests (a minute or more each on 2 cores: `pytest --durations`), longest
# first. They run first, so pytest-xdist deals them round-robin to the workers at the
# start; in collection order the README block (~4-5 min) started last and the run ended
# with one worker busy and the other idle for minutes.
LONGEST_FIRST = (
    "tests/test_readme_operating.py::test_readme_laptop_block_on_a_fresh_clone",
    "tests/flows/test_lifecycle.py::test_demo_lifecycle_final_state_exact[postgres]",
    "tests/core/test_loadtest_routers.py::test_load_test_passes_an_identical_candidate",
    "tests/flows/test_deployments.py::test_image_published_event_starts_a_retrain",
    "tests/flows/test_lifecycle.py::test_demo_lifecycle_final_state_exact[sqlite]",
    "tests/flows/test_deployments.py::test_deploy_all_then_run_controller_through",
    "tests/k8s/test_dockerfile.py::test_image_defaults_serve_health",
    "tests/core/test_registry_s3.py::test_register_and_load_through_mlflow_server",
    "tests/flows/test_dask_chunks.py::",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the `LONGEST_FIRST` tests first, in that order; the rest keep theirs."""

    def rank(item: pytest.Item) -> int:
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if item.nodeid.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)


def _postgres_admin_engine() -> Engine:
    url = make_url(TEST_POSTGRES_URL).set(drivername="postgresql+psycopg")
    return create_engine(url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)


@pytest.fixture(scope="session")
def postgres_available() -> str:
    """The admin URL of a reachable Postgres, or skip/fail per SML_REQUIRE_POSTGRES."""
    engine = _postgres_admin_engine()
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # any driver error means: not reachable
        reason = f"Postgres unreachable at {TEST_POSTGRES_URL}: {type(exc).__name__}"
        if REQUIRE_POSTGRES:
            pytest.fail(reason + " (SML_REQUIRE_POSTGRES=1)")
        pytest.skip(reason)
    finally:
        engine.dispose()
    return TEST_POSTGRES_URL


@pytest.fixture
def postgres_url(postgres_available: str) -> Iterator[str]:
    """A fresh, empty Postgres database for one test, dropped afterwards."""
    name = f"sml_t_{uuid.uuid4().hex[:12]}"
    admin = _postgres_admin_engine()
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    url = make_url(TEST_POSTGRES_URL).set(database=name)
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """A fresh SQLite database file in the test's temp dir."""
    return f"sqlite:///{tmp_path}/state-{uuid.uuid4().hex[:6]}.db"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def db_url(request: pytest.FixtureRequest) -> str:
    """Run the test once on SQLite and once on the real Postgres."""
    if request.param == "sqlite":
        return request.getfixturevalue("sqlite_url")
    return request.getfixturevalue("postgres_url")


@pytest.fixture
def engine(db_url: str) -> Iterator[Engine]:
    """A migrated state database engine, on SQLite and on Postgres."""
    from core.db import make_engine, upgrade

    eng = make_engine(db_url)
    upgrade(eng)
    yield eng
    eng.dispose()
