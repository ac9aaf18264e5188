"""`core.worker_resources`: what a chunk task opens where it runs, once per process."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import text

from config import Settings
from core.worker_resources import ENGINES_KEPT, worker_engine, worker_registry


def _settings(tmp_path: Path, **overrides: object) -> Settings:
    values: dict[str, object] = {
        "DATABASE_URL": f"sqlite:///{tmp_path}/state.db",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "MODEL_CACHE_DIR": tmp_path / "models",
        "MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "artifacts"),
    }
    return Settings(**{**values, **overrides})  # type: ignore[arg-type]


def test_worker_registry_is_one_per_store_and_cache_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)

    first = worker_registry(settings)

    assert worker_registry(_settings(tmp_path)) is first  # equal settings: the same one
    assert first.tracking_uri == settings.MLFLOW_TRACKING_URI
    assert first.cache_dir == settings.MODEL_CACHE_DIR
    other = worker_registry(_settings(tmp_path, MODEL_CACHE_DIR=tmp_path / "elsewhere"))
    assert other is not first


def test_worker_engine_is_one_per_database_and_the_oldest_is_disposed(tmp_path: Path) -> None:
    engines = [
        worker_engine(_settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/db{i}.db"))
        for i in range(ENGINES_KEPT + 1)
    ]

    assert (
        worker_engine(_settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/db1.db"))
        is (engines[1])
    )
    with engines[1].connect() as conn:
        assert conn.execute(text("SELECT 1")).scalar() == 1
    # more databases than ENGINES_KEPT: the oldest was disposed, asking again opens anew
    again = worker_engine(_settings(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path}/db0.db"))
    assert again is not engines[0]


def test_settings_refuse_a_scheduler_address_without_its_scheme(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="DASK_SCHEDULER_ADDRESS"):
        _settings(tmp_path, DASK_SCHEDULER_ADDRESS="dask-scheduler:8786")
    assert _settings(tmp_path, DASK_SCHEDULER_ADDRESS="tcp://dask-scheduler:8786")
