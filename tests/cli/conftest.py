"""CLI fixtures: `sml` run in-process through `cli.main.main` against the test database."""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass

import pytest
from sqlalchemy import Engine


@dataclass(frozen=True)
class SmlResult:
    """What one `sml` invocation printed and returned."""

    code: int
    out: str
    err: str


SmlRunner = Callable[..., SmlResult]


@pytest.fixture
def ledger_db(engine: Engine, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Engine:
    """The migrated test database (SQLite and Postgres), set as the CLI's DATABASE_URL."""
    from config import get_settings

    monkeypatch.setenv("DATABASE_URL", db_url)
    monkeypatch.setenv("CODE_VERSION", "1.0")
    monkeypatch.setenv("IMAGE_VERSION", "img-1")
    get_settings.cache_clear()
    return engine


@pytest.fixture
def sml(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> SmlRunner:
    """Run `sml ARGS...` as the console script does (errors as one line, exit 2)."""
    from rich.console import Console

    from cli.main import main

    # rich tables unwrapped, easy to read in asserts
    for module in ("cli.ledger", "cli.rollout", "cli.release", "cli.status"):
        monkeypatch.setattr(f"{module}.console", Console(width=250, color_system=None))
    monkeypatch.setenv("USER", "tester")

    def run(*args: str) -> SmlResult:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["sml", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        captured = capsys.readouterr()
        return SmlResult(code=code, out=captured.out, err=captured.err)

    return run
