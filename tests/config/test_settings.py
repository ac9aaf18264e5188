"""Settings: sources and precedence, one-line errors naming the variable, masked display."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import SECRET_FIELDS, ConfigError, Settings, load_settings, masked_items
from config.settings import value_sources

ROOT = Path(__file__).resolve().parents[2]


def run_sml(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the `sml` console script in a subprocess with the test's environment."""
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
        timeout=120,
    )


def test_load_settings_env_wins_over_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    env_file = tmp_path / "x.env"
    env_file.write_text("ROUTER_PORT=9001\nMLFLOW_EXPERIMENT=from-file\n")
    monkeypatch.setenv("SML_ENV_FILE", str(env_file))
    monkeypatch.setenv("ROUTER_PORT", "9002")

    settings = load_settings()

    assert settings.ROUTER_PORT == 9002
    assert settings.MLFLOW_EXPERIMENT == "from-file"
    sources = value_sources()
    assert (sources["ROUTER_PORT"], sources["MLFLOW_EXPERIMENT"]) == ("env", ".env")
    assert sources["CANARY_ALPHA"] == "default"


def test_load_settings_empty_value_means_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "")
    monkeypatch.setenv("SUPABASE_KEY", "")
    monkeypatch.setenv("ROUTER_PORT", "")

    settings = load_settings()

    assert settings.SUPABASE_URL is None
    assert settings.SUPABASE_KEY is None
    assert settings.ROUTER_PORT == 8080
    assert not settings.uses_supabase
    assert value_sources()["ROUTER_PORT"] == "default"


def test_load_settings_parses_lists(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELS", "intent-classifier, spam-filter")
    monkeypatch.setenv("CANARY_STAGES", "5,50,100")

    settings = load_settings()

    assert settings.MODELS == ["intent-classifier", "spam-filter"]
    assert settings.CANARY_STAGES == [5.0, 50.0, 100.0]


@pytest.mark.parametrize(
    ("name", "value", "expected"),
    [
        ("DATABASE_URL", "nonsense", "DATABASE_URL: expected a database URL"),
        ("ENVIRONMENT", "qa", "ENVIRONMENT: Input should be 'dev', 'stg' or 'prd'"),
        ("ROUTER_PORT", "http", "ROUTER_PORT:"),
        ("CANARY_STAGES", "10,5,100", "CANARY_STAGES: expected strictly increasing"),
        ("SUPABASE_URL", "db.example.com", "SUPABASE_URL: expected an http(s)://"),
        ("SOURCE_TABLE", "queries;drop", "SOURCE_TABLE:"),
    ],
)
def test_load_settings_bad_value_is_one_line_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(name, value)

    with pytest.raises(ConfigError) as caught:
        load_settings()

    message = str(caught.value)
    assert "\n" not in message
    assert expected in message


def test_load_settings_refuses_placeholder_secrets_outside_dev(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ENVIRONMENT", "prd")
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:changeme@db/state")

    with pytest.raises(ConfigError, match="DATABASE_URL: holds a placeholder value"):
        load_settings()


@pytest.mark.parametrize(("name", "value"), [("DATABASE_URL", "nonsense"), ("ENVIRONMENT", "qa")])
def test_sml_config_bad_value_prints_one_line_exit_2(name: str, value: str) -> None:
    result = run_sml("config", env={name: value})

    assert result.returncode == 2
    assert "Traceback" not in result.stderr + result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("invalid configuration: ")
    assert f"{name}:" in lines[0]


def test_sml_config_shows_every_field_with_its_source(tmp_path: Path) -> None:
    env_file = tmp_path / "cfg.env"
    env_file.write_text("MLFLOW_EXPERIMENT=from-dotenv\n")

    result = run_sml("config", env={"SML_ENV_FILE": str(env_file), "ROUTER_PORT": "9100"})

    assert result.returncode == 0, result.stderr
    rows = {
        cells[1].strip(): [c.strip() for c in cells[2:4]]
        for line in result.stdout.splitlines()
        if len(cells := line.split("│")) >= 4
    }
    assert set(Settings.model_fields) <= set(rows)
    assert rows["ROUTER_PORT"] == ["9100", "env"]
    assert rows["MLFLOW_EXPERIMENT"] == ["from-dotenv", ".env"]
    assert rows["CANARY_ALPHA"] == ["0.05", "default"]


def test_masked_items_redacts_database_passwords_and_masks_keys(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw-sentinel@db.example.com:5432/state")
    monkeypatch.setenv(
        "SOURCE_DATABASE_URL", "postgresql://db.example.com/src?password=pw-sentinel2"
    )
    monkeypatch.setenv("SUPABASE_KEY", "key-sentinel")

    shown = {name: value for name, value, _ in masked_items(load_settings())}

    assert shown["DATABASE_URL"] == "postgresql://app:***@db.example.com:5432/state"
    assert "pw-sentinel2" not in shown["SOURCE_DATABASE_URL"]
    assert shown["SOURCE_DATABASE_URL"].startswith("postgresql://db.example.com/src?password=")
    assert shown["SUPABASE_KEY"] == "********"
    assert shown["PREFECT_API_KEY"] == "(unset)"


def test_secret_fields_are_exactly_the_secretstr_fields() -> None:
    assert {
        "DATABASE_URL",
        "SOURCE_DATABASE_URL",
        "SUPABASE_KEY",
        "PREFECT_API_KEY",
        "ALERT_WEBHOOK_URL",
    } == set(SECRET_FIELDS)


def test_settings_repr_never_shows_secret_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://app:pw-sentinel@db/state")
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_key-sentinel")

    settings = load_settings()

    for text in (repr(settings), str(settings), str(settings.model_dump())):
        assert "pw-sentinel" not in text
        assert "key-sentinel" not in text
