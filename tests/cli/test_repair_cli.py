"""`sml repair`: an env's aliases set to mirror its ledger, one line each; `--dry-run`."""

from __future__ import annotations

import pytest
from rich.console import Console
from sqlalchemy import Engine

from tests.cli.conftest import SmlRunner

MODEL = "intent-classifier"


def test_sml_repair_sets_the_champion_alias_a_crash_left_unset(
    ledger_db: Engine, sml: SmlRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import get_settings
    from core.ledger import record_release
    from core.registry import ModelRegistry
    from tests.factories import train_and_register

    monkeypatch.setattr("cli.repair.console", Console(width=250, color_system=None))
    registry = ModelRegistry.from_settings(get_settings())
    v1 = train_and_register(registry, alias="stg-champion")
    # prd recorded its first release, then the run died before `prd-champion`
    record_release(
        ledger_db, env="prd", code_version="1.0", image_version="img-1",
        model_versions={MODEL: v1.version}, artifact_digests={MODEL: v1.artifact_sha256},
        reason="first champion", actor="test",
    )  # fmt: skip

    dry = sml("repair", "--env", "prd", "--dry-run")
    assert dry.code == 0, dry.err
    assert f"would set {MODEL}: prd-champion unset -> v1 (the prd release serves v1)" in dry.out
    assert registry.aliases(MODEL) == {"stg-champion": "1"}

    done = sml("repair", "--env", "prd")
    assert done.code == 0, done.err
    assert f"set {MODEL}: prd-champion unset -> v1" in done.out
    assert registry.aliases(MODEL) == {"stg-champion": "1", "prd-champion": "1"}

    again = sml("repair", "-e", "prd")
    assert "prd: every alias mirrors the ledger, nothing to repair" in again.out
    assert sml("repair", "--env", "nope").code == 2
