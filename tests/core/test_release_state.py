"""Release state: built once per set of model versions, switched by the release pointer."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import Engine, text

from core.errors import DataError, NotFoundError
from core.ledger import rollback_env
from core.release_state import (
    build_release_state,
    count_scored,
    read_scored,
    state_for_release,
    state_key,
    validate_identifier,
)
from tests.factories import make_release

QUERIES = pd.DataFrame(
    {"query_id": [f"q{i}" for i in range(50)], "text": [f"text number {i}" for i in range(50)]}
)


class CountingPredictor:
    """A deterministic stand-in for ModelRegistry.load(...).predict that counts calls."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def __call__(self, name: str, version: str, texts: Sequence[str]) -> list[str]:
        self.calls.append((name, version))
        return [f"{name}-v{version}-{len(t) % 3}" for t in texts]


def test_build_release_state_scores_every_query_once_per_set_of_versions(
    engine: Engine, tmp_path: Path
) -> None:
    predict = CountingPredictor()
    versions = {"intent-classifier": "1", "other": "4"}
    state, built = build_release_state(engine, versions, QUERIES, predict, state_dir=tmp_path)
    assert built
    assert state.key == state_key(versions)
    assert state.rows == count_scored(engine, state) == 100
    assert read_scored(engine, state, ["q7"])[("q7", "intent-classifier")].startswith("intent")

    again, built_again = build_release_state(engine, versions, QUERIES, predict, state_dir=tmp_path)
    assert not built_again
    assert again == state
    assert len(predict.calls) == 2  # two models, scored once


def test_rollback_switches_state_by_pointer_without_rebuilding(
    engine: Engine, tmp_path: Path
) -> None:
    predict = CountingPredictor()
    make_release(
        engine, models={"intent-classifier": "1"}, digests={}, code_version="1.0.0", reason="first"
    )
    v1, _ = build_release_state(
        engine, {"intent-classifier": "1"}, QUERIES, predict, state_dir=tmp_path
    )
    make_release(
        engine,
        models={"intent-classifier": "2"},
        digests={},
        code_version="1.0.0",
        reason="promote v2",
    )
    v2, _ = build_release_state(
        engine, {"intent-classifier": "2"}, QUERIES, predict, state_dir=tmp_path
    )
    assert state_for_release(engine, "prd") == v2
    calls_before = len(predict.calls)

    rollback_env(engine, "prd", actor="test", reason="v2 misbehaves")

    assert state_for_release(engine, "prd") == v1
    assert len(predict.calls) == calls_before  # nothing rebuilt
    # point in time: just after v2's state was built, v2 was in force
    assert state_for_release(engine, "prd", at=v2.built_at + timedelta(milliseconds=1)) == v2


def test_postgres_state_lives_in_its_own_schema_and_staging_is_gone(
    postgres_url: str, tmp_path: Path
) -> None:
    from core.db import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    state, _ = build_release_state(
        engine, {"m": "1"}, QUERIES, CountingPredictor(), state_dir=tmp_path
    )
    with engine.connect() as conn:
        schemas = set(
            conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata "
                    "WHERE schema_name LIKE 'release_state_%'"
                )
            ).scalars()
        )
    assert schemas == {state.location} == {f"release_state_{state.key}"}
    engine.dispose()


def test_state_of_a_release_never_built_names_the_fix(engine: Engine) -> None:
    make_release(
        engine,
        models={"intent-classifier": "9"},
        digests={},
        code_version="1.0.0",
        reason="unbuilt",
    )
    with pytest.raises(NotFoundError, match=r"no built state .*`sml state build --env prd`"):
        state_for_release(engine, "prd")
    with pytest.raises(NotFoundError, match="nothing was released in stg"):
        state_for_release(engine, "stg")


@pytest.mark.parametrize(
    "name",
    ["Release_State", "release_state_x; DROP TABLE traffic", "1abc", "a" * 64, "", "x-y", 'a"b'],
)
def test_validate_identifier_refuses_unsafe_schema_names(name: str) -> None:
    with pytest.raises(DataError, match="refusing SQL identifier"):
        validate_identifier(name)


def test_build_refuses_queries_without_text(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"lack columns \['text'\]"):
        build_release_state(
            engine, {"m": "1"}, QUERIES[["query_id"]], CountingPredictor(), state_dir=tmp_path
        )


def test_sml_state_show_reports_the_state_of_the_release_in_force(
    engine: Engine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from config import get_settings

    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    get_settings.cache_clear()
    make_release(
        engine, models={"intent-classifier": "1"}, digests={}, code_version="1.0.0", reason="first"
    )
    state, _ = build_release_state(
        engine, {"intent-classifier": "1"}, QUERIES, CountingPredictor(), state_dir=tmp_path
    )
    result = CliRunner().invoke(app, ["state", "show", "--env", "prd"])
    assert result.exit_code == 0, result.output
    assert state.key in result.output
    assert "intent-classifier v1" in result.output
