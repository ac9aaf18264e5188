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
def test_demo_step_without_a_release_says_so_and_shows_status(ledger_db: Engine) -> None:
    console = Console(record=True, width=200)
    demo_step(load_settings(), console)
    text = console.export_text()
    assert "nothing released in dev yet: retrain-on-image-change records the first" in text
    assert "(nothing released)" in text
    assert current_release(ledger_db, "dev") is None


@pytest.mark.slow
@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_demo_step_shows_the_release_and_never_records_one_from_an_alias(
    ledger_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from core.registry import ModelRegistry
    from tests.factories import make_release, train_and_register

    registry = ModelRegistry.from_settings(get_settings())
    champion = train_and_register(registry, alias="dev-champion")
    # MLflow's fluent API unsets MLFLOW_TRACKING_URI on exit; restore the test's store
    monkeypatch.setenv("MLFLOW_TRACKING_URI", registry.tracking_uri)
    settings = load_settings()

    console = Console(record=True, width=200)
    demo_step(settings, console)  # an alias alone is not a release: the ledger is the truth
    assert "nothing released in dev yet" in console.export_text()
    assert current_release(ledger_db, "dev") is None

    release = make_release(
        ledger_db, env="dev", models={"intent-classifier": champion.version},
        digests={"intent-classifier": champion.artifact_sha256},
    )  # fmt: skip
    again = Console(record=True, width=200)
    demo_step(settings, again)
    text = again.export_text()
    assert f"dev runs {release.tag}" in text
    assert "$ sml status" in text
    assert "$ sml history --env dev" in text
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
