"""The demo's ledger step and the `sml term` ledger shortcuts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from rich.console import Console
from sqlalchemy import Engine

from cli.ledger import LedgerShortcuts, demo_step, term_ledger
from config import get_settings, load_settings
from core.ledger import current_release, record_release, releases_history


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_step_without_champion_says_so_and_shows_status(ledger_db: Engine) -> None:
    console = Console(record=True, width=200)
    demo_step(load_settings(), console)
    text = console.export_text()
    assert "no model has a champion yet: nothing to release in dev" in text
    assert "(nothing released)" in text
    assert current_release(ledger_db, "dev") is None


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_step_records_first_release_from_champions_once(
    ledger_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.registry import ModelRegistry
    from tests.factories import train_and_register

    registry = ModelRegistry.from_settings(get_settings())
    champion = train_and_register(registry, alias="dev-champion")
    # MLflow's fluent API unsets MLFLOW_TRACKING_URI on exit; restore the test's store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    settings = load_settings()

    console = Console(record=True, width=200)
    demo_step(settings, console)
    text = console.export_text()
    tag = f"v1.0-intent-classifierv{champion.version}"
    assert f"recorded the first release of dev: {tag}" in text
    assert "$ sml status" in text
    assert "$ sml history --env dev" in text
    assert "first release: the registered champions" in text
    release = current_release(ledger_db, "dev")
    assert release is not None
    assert release.artifact_digests == {"intent-classifier": champion.artifact_sha256}

    again = Console(record=True, width=200)
    demo_step(settings, again)
    assert f"dev runs {tag} (recorded earlier)" in again.export_text()
    assert len(releases_history(ledger_db, "dev")) == 1


def test_term_ledger_shortcuts_print_tables_and_answer_at(engine: Engine) -> None:
    t0 = datetime(2026, 11, 17, 9, tzinfo=UTC)
    tags = [
        record_release(
            engine,
            env="prd",
            code_version="1",
            image_version="i",
            model_versions={"m": str(v)},
            artifact_digests={},
            reason="r",
            at=t0 + timedelta(hours=v),
        ).tag
        for v in (1, 2)
    ]

    class Ctx:
        console = Console(record=True, width=200)

    Ctx.engine = engine  # type: ignore[attr-defined]
    shortcuts = term_ledger(Ctx)
    assert isinstance(shortcuts, LedgerShortcuts)
    shortcuts.status()
    shortcuts.history("prd")
    shortcuts.diff(*tags)
    shortcuts.rollouts()
    text = Ctx.console.export_text()
    assert tags[0] in text
    assert "changed" in text
    found = shortcuts.at("prd", "2026-11-17T10:30")
    assert found is not None
    assert found.tag == tags[0]
    assert shortcuts.api.current_release(engine, "prd").tag == tags[1]
