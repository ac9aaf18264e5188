"""`sml registry`: versions table, show, check, against a real MLflow sqlite store."""

from __future__ import annotations

import json

import pytest
from rich.console import Console

from config import get_settings
from core.registry import ModelRegistry
from tests.factories import train_and_register

NAME = "intent-classifier"


@pytest.fixture
def registered(monkeypatch: pytest.MonkeyPatch, sml) -> ModelRegistry:
    """v1 (image img-1, champion in prd and stg) and v2 (image img-2, stg's candidate) in
    the settings' store; the CLI runs on image img-2 with wide, colourless tables."""
    monkeypatch.setattr("cli.registry.console", Console(width=300, color_system=None))
    monkeypatch.setenv("IMAGE_VERSION", "img-2")
    get_settings.cache_clear()
    registry = ModelRegistry.from_settings(get_settings())
    v1 = train_and_register(registry, image_version="img-1", alias="prd-champion")
    registry.set_alias(NAME, "stg-champion", v1.version)
    train_and_register(registry, image_version="img-2", alias="stg-candidate")
    return registry


def test_registry_lists_versions_with_aliases_and_verdicts(registered, sml) -> None:
    result = sml("registry")
    assert result.code == 0, result.err
    assert "running image img-2" in result.out
    rows = [line for line in result.out.splitlines() if NAME in line]
    assert len(rows) == 2
    v2, v1 = rows  # newest first
    assert "stg-candidate" in v2
    assert "native" in v2
    assert "prd-champion, stg-champion" in v1  # each environment's aliases
    assert "img-1" in v1


def test_registry_check_records_verdict_then_lists_it(registered, sml) -> None:
    result = sml("registry", "check", NAME, "prd-champion")
    assert result.code == 0, result.err
    assert "v1 under img-2: compatible" in result.out
    assert registered.get_version(NAME, "1").compat_verdict("img-2") == "compatible"
    listing = sml("registry", "--image", "img-1")
    rows = [line for line in listing.out.splitlines() if NAME in line]
    assert len(rows) == 1
    assert "compatible" in rows[0]


def test_registry_show_prints_every_tag(registered, sml) -> None:
    result = sml("registry", "show", NAME, "2")
    assert result.code == 0, result.err
    for tag in ("artifact_sha256", "data_snapshot_hash", "golden_digest", "pkg.scikit-learn"):
        assert tag in result.out


def test_registry_list_and_show_print_json_with_full_identifiers(registered, sml) -> None:
    listed = json.loads(sml("registry", "-o", "json").out)
    assert listed["image_version"] == "img-2"
    v2, v1 = listed["versions"]  # newest first, as the table
    assert (v2["version"], v2["aliases"], v1["aliases"]) == (
        "2", ["stg-candidate"], ["prd-champion", "stg-champion"],
    )  # fmt: skip
    sha = registered.get_version(NAME, "1").artifact_sha256
    assert v1["artifact_sha256"] == sha
    assert len(sha) == 64  # the table shows 12 characters, the JSON all of them
    shown = json.loads(sml("registry", "show", NAME, "prd-champion", "-o", "json").out)
    assert (shown["version"], shown["image_version"]) == ("1", "img-1")
    assert shown["tags"]["artifact_sha256"] == sha


def test_registry_show_unknown_version_is_one_line_error(registered, sml) -> None:
    result = sml("registry", "show", NAME, "9")
    assert result.code == 2
    assert "has no version 9" in result.err
    assert "Traceback" not in result.err


def test_step_registry_state_prints_table_and_champion_lineage(registered) -> None:
    from cli.registry import step_registry_state

    registered.set_alias(NAME, "dev-champion", "1")  # the settings' env is dev
    console = Console(record=True, width=300, color_system=None)
    step_registry_state(get_settings(), console)
    out = console.export_text()
    assert "model registry (running image img-2)" in out
    assert "intent-classifier dev-champion v1: image img-1" in out


def test_registry_show_defaults_to_this_environments_champion(registered, sml) -> None:
    result = sml("registry", "show", NAME)  # ENVIRONMENT=dev has no champion yet
    assert result.code == 2
    assert "has no alias 'dev-champion'" in result.err
    bare = sml("registry", "show", NAME, "champion")
    assert bare.code == 2
    assert "names no environment" in bare.err
