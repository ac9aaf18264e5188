"""`sml demo` starts from empty embedded stores, and never deletes what is not its own."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console

from cli.demo import demo_state_paths, step_fresh_state
from config import get_settings


def _leave_a_previous_demo(local: Path) -> list[Path]:
    """The files and folders a previous demo run leaves under LOCAL_DIR."""
    made = [local / "state.db", local / "state.db-wal", local / "mlflow.db"]
    for folder in ("mlartifacts", "models", "spill", "reports", "release_state"):
        (local / folder / "x").mkdir(parents=True)
        made.append(local / folder)
    for file in made:
        if not file.exists():
            file.write_text("old")
    (local / "source.db").write_text("source rows")
    return made


def test_fresh_state_removes_the_previous_demo_but_keeps_source_data(
    isolated_settings: Path,
) -> None:
    made = _leave_a_previous_demo(isolated_settings)
    out = io.StringIO()

    step_fresh_state(get_settings(), Console(file=out, width=200))

    assert not [path for path in made if path.exists()]
    assert (isolated_settings / "source.db").read_text() == "source rows"
    assert "previous demo state removed" in out.getvalue()
    step_fresh_state(get_settings(), Console(file=out, width=200))  # twice: nothing left
    assert "no previous demo state" in out.getvalue()


def test_fresh_state_with_the_relative_default_paths(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in ("LOCAL_DIR", "DATABASE_URL", "MLFLOW_TRACKING_URI", "MLFLOW_ARTIFACT_LOCATION"):
        monkeypatch.delenv(key)
    for key in ("MODEL_CACHE_DIR", "TRAFFIC_SPILL_DIR"):
        monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # the embedded defaults are relative: .local/...
    made = _leave_a_previous_demo(tmp_path / ".local")
    get_settings.cache_clear()

    step_fresh_state(get_settings(), Console(file=io.StringIO()))

    assert not [path for path in made if path.exists()]


def test_fresh_state_never_touches_real_servers_or_paths_outside_local_dir(
    isolated_settings: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _leave_a_previous_demo(isolated_settings)
    outside = tmp_path / "elsewhere" / "mlflow.db"
    outside.parent.mkdir()
    outside.write_text("not the demo's")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:secret@db.example.com/state")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{outside}")
    get_settings.cache_clear()

    paths = demo_state_paths(get_settings())

    assert isolated_settings / "state.db" not in paths  # the state database is Postgres now
    assert outside not in paths
    assert all(path.resolve().is_relative_to(isolated_settings.resolve()) for path in paths)
