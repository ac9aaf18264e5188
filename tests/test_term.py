"""`sml term`: the preloaded namespace, the status table, and the shell itself."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from cli import term
from config import load_settings
from core.db import make_engine, upgrade
from core.synthetic import create_source_table

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def ctx() -> term.TermContext:
    settings = load_settings()
    engine = make_engine(settings.database_url)
    context = term.TermContext(settings, engine, Console(record=True, width=160))
    yield context
    engine.dispose()


def test_build_namespace_preloads_settings_engine_and_status(ctx: term.TermContext) -> None:
    namespace = term.build_namespace(ctx)

    assert namespace["settings"] is ctx.settings
    assert namespace["engine"] is ctx.engine
    assert callable(namespace["status"])


def test_build_namespace_includes_added_preloaders(
    ctx: term.TermContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(term.PRELOADED, "answer", lambda c: c.settings.ROUTER_PORT)

    assert term.build_namespace(ctx)["answer"] == 8080


def test_status_shows_revision_release_and_source_rows(ctx: term.TermContext) -> None:
    upgrade(ctx.engine)
    create_source_table(ctx.settings.source_database_url, rows=50, seed=1)

    term.build_namespace(ctx)["status"]()
    output = ctx.console.export_text()

    assert "not migrated" not in output
    assert "none yet" in output
    assert "50 (newest" in output
    assert ctx.settings.CODE_VERSION in output


def test_status_before_anything_exists_says_what_to_run(ctx: term.TermContext) -> None:
    term.print_status(ctx)
    output = ctx.console.export_text()

    assert "not migrated (sml db upgrade)" in output
    assert "no table (python create_data.py)" in output


def test_status_shows_a_failing_row_as_its_error_class(
    ctx: term.TermContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: term.TermContext) -> list[tuple[str, str]]:
        raise OSError("disk gone")

    monkeypatch.setattr(term, "STATUS_ROWS", [broken, term.identity_rows])

    term.print_status(ctx)
    output = ctx.console.export_text()

    assert "OSError" in output
    assert "environment" in output


def test_status_hides_database_passwords(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw-sentinel@127.0.0.1:1/state")
    settings = load_settings()
    engine = make_engine(settings.database_url)
    console = Console(record=True, width=160)

    term.print_status(term.TermContext(settings, engine, console))
    output = console.export_text()

    assert "pw-sentinel" not in output
    assert "postgresql://app:***@127.0.0.1:1/state" in output
    engine.dispose()


def test_sml_term_runs_ipython_with_env_file_loaded(tmp_path: Path) -> None:
    env_file = tmp_path / "term.env"
    env_file.write_text("MLFLOW_EXPERIMENT=from-env-file\nSML_TERM_PROBE=exported\n")
    commands = (
        "print('EXPERIMENT', settings.MLFLOW_EXPERIMENT)\n"
        "import os; print('PROBE', os.environ['SML_TERM_PROBE'])\n"
        "print('DIALECT', engine.dialect.name)\n"
        "status()\n"
    )

    result = subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", "term"],
        input=commands,
        capture_output=True,
        text=True,
        env={**os.environ, "SML_ENV_FILE": str(env_file), "COLUMNS": "160"},
        cwd=ROOT,
        timeout=180,
    )

    assert result.returncode == 0, result.stderr
    assert "EXPERIMENT from-env-file" in result.stdout
    assert "PROBE exported" in result.stdout
    assert "DIALECT sqlite" in result.stdout
    assert "stateful-ml status" in result.stdout
