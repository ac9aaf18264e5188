"""`sml compat preflight` and `sml retrain --reproduce`, in-process against real stores.

The preflight runs under real environments: this interpreter with this checkout's code
(nothing differs: identical), and this interpreter with the next image's code, in which
the class every pickle references was renamed (broken). The reproduced retrain reads the
real source table (SQLite), trains the real family and compares golden predictions.
"""

from __future__ import annotations

import sys
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, delete

from config import Settings, get_settings
from core.compat_preflight import preflight_tag
from core.registry import ModelRegistry, ModelVersionInfo
from tests.cli.conftest import SmlRunner
from tests.core.compat_environments import changed_code_root
from tests.factories import DATA_END, SMALL_ROWS, make_release

pytestmark = pytest.mark.slow

NORMALIZER_RENAMED = ("class TextNormalizer(", "class QueryNormalizer(")


@pytest.fixture
def wide_console(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unwrapped rich output, easy to read in asserts."""
    from rich.console import Console

    monkeypatch.setattr("cli.compat.console", Console(width=300, color_system=None))


def _trained_from_source(settings: Settings) -> tuple[ModelRegistry, ModelVersionInfo]:
    """What the train flow does, without Prefect: the source table -> a registered version."""
    from cli.resources import open_registry
    from core.source import read_queries
    from core.synthetic.source_table import create_source_table
    from models import INTENT_CLASSIFIER
    from models.intent_classifier import BASELINE_CONFIG
    from models.pipeline import train_family
    from models.registration import register_trained

    create_source_table(settings.source_database_url, SMALL_ROWS, seed=7, end=DATA_END)
    registry = open_registry(settings)
    trained = train_family(read_queries(settings), INTENT_CLASSIFIER, BASELINE_CONFIG)
    return registry, register_trained(registry, trained, INTENT_CLASSIFIER)


def test_preflight_under_this_interpreter_is_identical_and_passes(
    ledger_db: Engine, sml: SmlRunner, wide_console: None
) -> None:
    _, info = _trained_from_source(get_settings())
    make_release(ledger_db, models={info.name: info.version},
                 digests={info.name: info.artifact_sha256}, image_version="img-1")  # fmt: skip

    result = sml("compat", "preflight", "--python", sys.executable)

    assert result.code == 0, result.out + result.err
    assert f"{info.name} │ {info.version}" in result.out
    assert "prd champion" in result.out
    assert "identical" in result.out
    assert "passes" in result.out


def test_preflight_of_code_without_the_pickled_class_exits_non_zero(
    ledger_db: Engine, sml: SmlRunner, wide_console: None, tmp_path: Path
) -> None:
    registry, info = _trained_from_source(get_settings())
    make_release(ledger_db, models={info.name: info.version},
                 digests={info.name: info.artifact_sha256}, image_version="img-1")  # fmt: skip
    code = changed_code_root(tmp_path / "next-image", *NORMALIZER_RENAMED)

    result = sml("compat", "preflight", "--python", sys.executable, "--code", str(code))

    assert result.code == 1, result.out + result.err
    assert "broken (blocks)" in result.out
    assert "Can't get attribute 'TextNormalizer'" in result.out
    assert f"FAILS: champion {info.name} v{info.version} would be broken" in result.out
    stored = registry.get_version(info.name, info.version)
    assert any(key.startswith("preflight.") for key in stored.tags)


def test_preflight_needs_exactly_one_environment(ledger_db: Engine, sml: SmlRunner) -> None:
    result = sml("compat", "preflight")
    assert result.code == 2
    assert "give exactly one of a lock, a requirements file or a python" in result.err
    result = sml("compat", "preflight", "--lock", "/nonexistent/uv.lock")
    assert result.code == 2
    assert "does not exist" in result.err


def test_preflight_tag_is_keyed_by_the_lock_hash() -> None:
    assert preflight_tag("ab" * 32) == "preflight." + "ab" * 8


def test_retrain_reproduce_matches_then_reports_a_changed_source_window(
    sml: SmlRunner, wide_console: None
) -> None:
    settings = get_settings()
    _, info = _trained_from_source(settings)

    same = sml("retrain", "--reproduce", info.name, info.version)

    assert same.code == 0, same.out + same.err
    assert f"{info.name} v{info.version} reproduced: identical" in same.out
    assert "all 25 golden predictions match" in same.out

    # the source loses its oldest 60 days: the recorded snapshot is gone
    from core.source import source_table

    engine = create_engine(settings.source_database_url)
    table = source_table(settings.SOURCE_TABLE)
    with engine.begin() as conn:
        removed = conn.execute(
            delete(table).where(table.c.created_at < DATA_END - timedelta(days=120))
        ).rowcount
    engine.dispose()
    assert removed > 0

    changed = sml("retrain", "--reproduce", info.name, info.version)

    assert changed.code == 1, changed.out + changed.err
    assert f"{info.name} v{info.version} does NOT reproduce" in changed.out
    assert f"({SMALL_ROWS} rows, " in changed.out
    assert f"({SMALL_ROWS - removed} rows)" in changed.out
    assert "is no longer available" in changed.out
    assert "predictions changed on " in changed.out, changed.out


def test_retrain_without_reproduce_is_refused(sml: SmlRunner) -> None:
    result = sml("retrain", "intent-classifier", "1")
    assert result.code == 2
    assert "only `sml retrain --reproduce MODEL VERSION`" in result.err
