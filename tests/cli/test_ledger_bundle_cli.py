"""`sml rollout start --with`, and bundles and release state in `sml status | history | diff`.

Commands run in-process through `cli.main.main` on SQLite and Postgres. Which models read
release state comes from the model families; the tables take that set as a parameter, so
the state columns are checked on the tables themselves with a stateful `faq`.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from rich.console import Console
from rich.table import Table
from sqlalchemy import Engine

from cli.rollout import parse_bundle, stateful_models
from cli.tables import diff_table, history_table, status_table
from config import get_settings, load_settings
from core.errors import SmlError
from core.ledger import current_release, record_release, releases_history, start_rollout
from core.registry import ModelRegistry
from core.release_state import model_state_key
from tests.factories import make_release, train_and_register

SmlRunner = Callable[..., Any]  # the `sml` fixture of tests/cli/conftest.py

T0 = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
STAGES = [1.0, 10.0, 100.0]


def _text(table: Table) -> str:
    console = Console(width=250, color_system=None, record=True)
    console.print(table)
    return console.export_text()


def _rows(text: str, column: int) -> dict[str, str]:
    """Table lines by their cell in `column` (status: 3, the model; diff: 0, `what`)."""
    rows = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) > column:
            rows[cells[column]] = line
    return rows


def test_parse_bundle_reads_name_version_pairs() -> None:
    assert parse_bundle(None) is None
    assert parse_bundle([]) is None
    assert parse_bundle(["faq-retriever=4", " ranker=12 "]) == {
        "faq-retriever": "4",
        "ranker": "12",
    }


@pytest.mark.parametrize(
    ("pairs", "message"),
    [
        (["faq-retriever"], "--with: expected NAME=VERSION"),
        (["faq-retriever=v4"], "--with: expected NAME=VERSION"),
        (["=4"], "--with: expected NAME=VERSION"),
        (["a=1", "a=2"], "--with: a named twice"),
    ],
)
def test_parse_bundle_refuses_malformed_pairs(pairs: list[str], message: str) -> None:
    with pytest.raises(SmlError, match=message):
        parse_bundle(pairs)


def test_rollout_start_with_a_malformed_pair_fails_with_one_line(
    ledger_db: Engine, sml: SmlRunner
) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", faq="1"))
    args = ("rollout", "start", "-e", "prd", "-m", "clf", "-v", "2", "-r", "x")
    result = sml(*args, "--with", "faq:2")
    assert result.code == 2
    lines = [line for line in result.err.splitlines() if line.strip()]
    assert len(lines) == 1, result.err
    assert "--with: expected NAME=VERSION" in lines[0]
    assert "'faq:2'" in lines[0]


def test_status_shows_every_model_of_a_bundle(ledger_db: Engine, sml: SmlRunner) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", faq="3", other="7"))
    rollout = start_rollout(
        ledger_db, env="prd", model_name="clf", candidate_version="2", stages=STAGES,
        actor="a", reason="r", bundle={"faq": "4"},
    )  # fmt: skip
    result = sml("status", "--env", "prd")
    assert result.code == 0, result.err
    lines = [line.strip("│├└─ ") for line in result.out.splitlines()]
    assert f"rollout #{rollout.id} bundle clf v2 vs v1 + faq v4 vs v3 canary" in lines
    assert f"clf v1  in rollout #{rollout.id}" in lines
    assert f"faq v3  in rollout #{rollout.id}" in lines
    assert "other v7" in lines
    listed = sml("rollout", "list", "--env", "prd")
    assert "clf + faq" in listed.out
    assert "v1 + v3" in listed.out
    assert "v2 + v4" in listed.out


def test_status_table_shows_the_state_key_of_each_stateful_model(ledger_db: Engine) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", faq="3"))
    start_rollout(
        ledger_db, env="prd", model_name="clf", candidate_version="2", stages=STAGES,
        actor="a", reason="r", bundle={"faq": "4"},
    )  # fmt: skip
    rows = _rows(_text(status_table(ledger_db, ("prd",), stateful={"faq"})), 3)
    assert model_state_key("faq", "3") in rows["faq"]  # the champion's: what serves now
    assert model_state_key("clf", "1") not in rows["clf"]


def test_history_and_diff_name_the_state_of_each_release(ledger_db: Engine) -> None:
    a = make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", faq="3"))
    b = record_release(
        ledger_db, env="prd", code_version="1.1", image_version="img-2",
        model_versions={"clf": "1", "faq": "4"}, artifact_digests={}, reason="embedder",
    )  # fmt: skip
    history = _text(history_table(releases_history(ledger_db, "prd"), "h", stateful={"faq"}))
    assert f"faq:{model_state_key('faq', '3')}" in history
    assert f"faq:{model_state_key('faq', '4')}" in history
    rows = _rows(_text(diff_table(a, b, stateful={"faq"})), 0)
    assert model_state_key("faq", "3") in rows["state faq"]
    assert model_state_key("faq", "4") in rows["state faq"]
    assert "changed" in rows["state faq"]
    assert "changed" in rows["image"]
    assert "same" in rows["clf"]
    assert "state clf" not in rows  # the classifier reads no state


def test_history_at_names_the_release_and_its_state(ledger_db: Engine, sml: SmlRunner) -> None:
    tag = make_release(ledger_db, env="prd", at=T0, models=dict(clf="1")).tag
    result = sml("history", "--env", "prd", "--at", "2026-11-17T10:00:00+00:00")
    assert result.code == 0, result.err
    assert f"{tag} (clf v1; state -; image img-1; code 1.0)" in result.out  # clf reads none
    assert "clf" not in stateful_models()


@pytest.fixture
def two_models(ledger_db: Engine, monkeypatch: pytest.MonkeyPatch) -> ModelRegistry:
    """A real MLflow store with v1 and v2 of `clf` and `faq`; prd runs both at v1, and
    `prd-candidate` points at each v2 (as retrain leaves it)."""
    registry = ModelRegistry.from_settings(load_settings())
    for name in ("clf", "faq"):
        for seed in (1, 2):
            info = train_and_register(registry, name=name, rows=300, seed=seed)
        registry.set_alias(name, "prd-candidate", info.version)
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", faq="1"))
    # MLflow's fluent API unsets MLFLOW_TRACKING_URI on exit: put the test's value back
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    get_settings.cache_clear()
    return registry


def _aliases(registry: ModelRegistry, name: str) -> dict[str, str | None]:
    return {
        role: (found.version if found else None)
        for role in ("champion", "previous", "candidate")
        for found in [registry.version_by_alias(name, f"prd-{role}")]
    }


@pytest.mark.slow
@pytest.mark.integration
def test_bundle_started_promoted_and_rolled_back_from_the_cli_moves_both_models_aliases(
    ledger_db: Engine, sml: SmlRunner, two_models: ModelRegistry
) -> None:
    start = ("rollout", "start", "-e", "prd", "-m", "clf", "-v", "2", "-r", "embedder v2")
    unknown = sml(*start, "--with", "faq=9")
    assert unknown.code == 2
    assert "faq" in unknown.err
    started = sml(*start, "--with", "faq=2")
    assert started.code == 0, started.err
    assert "clf v2 vs v1 + faq v2 vs v1 in prd: canary" in started.out
    rid = started.out.split("#")[1].split()[0]
    promoted = sml("rollout", "promote", rid, "-r", "all stages passed")
    assert promoted.code == 0, promoted.err
    release = current_release(ledger_db, "prd")
    assert release is not None
    assert release.model_versions == {"clf": "2", "faq": "2"}
    assert set(release.artifact_digests) == {"clf", "faq"}
    for name in ("clf", "faq"):
        assert _aliases(two_models, name) == {"champion": "2", "previous": "1", "candidate": None}

    # a bundle back to v1 as candidates, rolled back: the release stays, candidates cleared
    for name in ("clf", "faq"):
        two_models.set_alias(name, "prd-candidate", "1")
    again = sml(*start[:7], "1", "-r", "back", "--with", "faq=1")
    assert again.code == 0, again.err
    rid = again.out.split("#")[1].split()[0]
    assert sml("rollout", "rollback", rid, "-r", "worse answers").code == 0
    assert current_release(ledger_db, "prd") == release
    for name in ("clf", "faq"):
        assert _aliases(two_models, name) == {"champion": "2", "previous": "1", "candidate": None}
        assert two_models.get_version(name, "1").tags["rolled_back_reason"] == "worse answers"
