"""No command prints or logs a secret: sentinel secrets set, every output path scanned.

The sentinels sit in DATABASE_URL and SOURCE_DATABASE_URL (as passwords), SUPABASE_KEY
and PREFECT_API_KEY; the commands run in subprocesses (stdout + stderr scanned) and
in-process (exception messages and every log record scanned).
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest

from config import ConfigError, load_settings, masked_items

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "Zq9sentinelX4"
UNREACHABLE = "127.0.0.1:1"
SECRET_ENV = {
    "DATABASE_URL": f"postgresql://app:{SENTINEL}db@{UNREACHABLE}/state",
    "SOURCE_DATABASE_URL": f"postgresql://app:{SENTINEL}src@{UNREACHABLE}/source",
    "SUPABASE_KEY": f"{SENTINEL}supa",
    "PREFECT_API_KEY": f"pnu_{SENTINEL}prefect",
}


@pytest.fixture
def sentinel_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRET_ENV.items():
        monkeypatch.setenv(name, value)
    return SECRET_ENV


def run(args: list[str], env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    """Run a command with the test env (+ `env`); return stdout and stderr together."""
    result = subprocess.run(
        args,
        input=stdin,
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200", **(env or {})},
        cwd=ROOT,
        timeout=180,
    )
    return result.stdout + result.stderr


def sml(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> str:
    return run([sys.executable, "-c", "from cli.main import main; main()", *args], env, stdin)


def test_sml_config_never_prints_a_secret(sentinel_env: dict[str, str]) -> None:
    output = sml("config")

    assert "DATABASE_URL" in output
    assert "postgresql://app:***@" in output
    assert SENTINEL not in output


@pytest.mark.parametrize(
    "bad",
    [
        {"ENVIRONMENT": "qa"},
        {"DATABASE_URL": f"nonsense-{SENTINEL}"},
        {"SOURCE_DATABASE_URL": f"mysql://u:{SENTINEL}@h/db"},
        {"ENVIRONMENT": "prd", "DATABASE_URL": f"postgresql://u:changeme{SENTINEL}@h/db"},
        {"ROUTER_PORT": "not-a-port"},
    ],
    ids=lambda d: "+".join(d),
)
def test_sml_config_bad_value_error_never_prints_a_secret(
    sentinel_env: dict[str, str], bad: dict[str, str]
) -> None:
    output = sml("config", env=bad)

    assert "invalid configuration" in output
    assert SENTINEL not in output


def test_sml_db_upgrade_unreachable_never_prints_the_password(
    sentinel_env: dict[str, str],
) -> None:
    output = sml("db", "upgrade")

    assert "could not reach the state database" in output
    assert SENTINEL not in output


def test_sml_term_status_and_settings_never_print_a_secret(
    sentinel_env: dict[str, str],
) -> None:
    commands = "status()\nprint(settings)\nsettings\nprint(repr(settings.DATABASE_URL))\n"

    output = sml("term", stdin=commands)

    assert "stateful-ml status" in output
    assert SENTINEL not in output


def test_create_secrets_check_and_output_never_print_a_secret(
    sentinel_env: dict[str, str], tmp_path: Path
) -> None:
    script = str(ROOT / "create_secrets.py")

    check = run([sys.executable, script, "--check"])
    written = run([sys.executable, script, "--output", str(tmp_path / "s.yaml")])

    assert "set (from env)" in check
    assert "wrote Secret" in written
    assert SENTINEL not in check + written
    assert SENTINEL in (tmp_path / "s.yaml").read_text()  # the manifest is the one place


def test_create_data_unreachable_source_never_prints_the_password(
    sentinel_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SUPABASE_KEY")
    output = run([sys.executable, str(ROOT / "create_data.py"), "--rows", "10"])

    assert "could not reach the source database" in output
    assert SENTINEL not in output


def test_settings_repr_str_dump_and_masked_items_never_show_a_secret(
    sentinel_env: dict[str, str],
) -> None:
    settings = load_settings()

    texts = [
        repr(settings),
        str(settings),
        str(settings.model_dump()),
        settings.model_dump_json(),
        str(masked_items(settings)),
    ]

    assert all(SENTINEL not in text for text in texts)


def test_in_process_error_paths_log_no_secret(
    sentinel_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from core.errors import SmlError
    from core.source import read_queries

    caplog.set_level(logging.DEBUG)
    messages: list[str] = []
    monkeypatch.delenv("SUPABASE_KEY")
    with pytest.raises(SmlError) as unreachable:
        read_queries(load_settings())
    messages.append(str(unreachable.value))
    monkeypatch.setenv("ENVIRONMENT", "qa")
    with pytest.raises(ConfigError) as bad:
        load_settings()
    messages.append(str(bad.value))

    assert all(SENTINEL not in m for m in messages)
    assert SENTINEL not in caplog.text
