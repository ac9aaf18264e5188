"""`sml state gc` and the argument rules of `sml state build` (the build itself is the
tested core function behind a progress bar)."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine
from typer.testing import CliRunner

from core.release_state import build_answer_index, find_state, state_dir_of
from tests.core.test_release_state import TfidfEmbedder, make_corpus

CORPUS = make_corpus(30)


@pytest.fixture
def cli_env(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The CLI pointed at the test's state database; returns its state dir."""
    from config import get_settings

    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    return state_dir_of(get_settings())


def test_sml_state_gc_dry_run_then_drops_a_state_no_release_names(
    engine: Engine, cli_env: Path
) -> None:
    from cli.main import app

    # a state of a model that reads none (the classifier): nothing retains it
    state, _ = build_answer_index(
        engine, "intent-classifier", "1", TfidfEmbedder(CORPUS["text"], dims=4), CORPUS,
        state_dir=cli_env, chunk_rows=10,
    )  # fmt: skip

    dry = CliRunner().invoke(app, ["state", "gc", "--dry-run"])
    assert dry.exit_code == 0, dry.output
    assert f"would drop state {state.key}" in dry.output
    assert find_state(engine, state.key) is not None

    done = CliRunner().invoke(app, ["state", "gc"])
    assert done.exit_code == 0, done.output
    assert f"dropped state {state.key}" in done.output
    assert find_state(engine, state.key) is None


@pytest.mark.parametrize(
    "args", [[], ["--model", "faq-retriever"], ["--model", "m", "--version", "1", "--env", "prd"]]
)
def test_sml_state_build_wants_a_version_or_an_env(cli_env: Path, args: list[str]) -> None:
    from cli.main import app

    result = CliRunner().invoke(app, ["state", "build", *args])
    assert result.exit_code != 0
    assert "give --model NAME --version N, or --env E" in result.output
