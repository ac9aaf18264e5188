"""`sml release promote` and where each release is in `sml status`, on SQLite and Postgres.

The registry is the in-memory one of tests/core/memory_registry.py (what the command reads
of MLflow is the ledger's AliasRegistry protocol); the database is the real one.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from sqlalchemy import Engine

from core import ledger
from tests.core.memory_registry import MemoryRegistry
from tests.factories import make_release

SmlRunner = Callable[..., Any]
CLF = "clf"


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> MemoryRegistry:
    book = MemoryRegistry.of(CLF, "1", "2", "3")
    monkeypatch.setattr("cli.release.open_registry", lambda _settings: book)
    return book


def _stg_promoted_v2(engine: Engine, registry: MemoryRegistry) -> None:
    for env in ("stg", "prd"):
        make_release(engine, env=env, models={CLF: "1"}, digests={CLF: "sha-clf-1"})
    rollout = ledger.start_rollout(
        engine, env="stg", model_name=CLF, candidate_version="2", stages=[1.0, 100.0],
        actor="t", reason="canary",
    )  # fmt: skip
    ledger.promote(
        engine, rollout.id, actor="c", reason="ok", registry=registry,
        code_version="1.0", image_version="img-1",
    )  # fmt: skip


def test_release_promote_opens_the_rollout_and_status_shows_where_releases_are(
    ledger_db: Engine, sml: SmlRunner, registry: MemoryRegistry
) -> None:
    _stg_promoted_v2(ledger_db, registry)

    done = sml("release", "promote", "--from", "stg", "--to", "prd", "-r", "rc ok")

    assert done.code == 0, done.err
    (opened,) = ledger.active_rollouts(ledger_db, "prd")
    assert (opened.candidate_version, opened.champion_version) == ("2", "1")
    assert "promoted stg -> prd: rollouts opened" in done.out
    assert "recorded as forced" not in done.out
    envs = {e["env"]: e for e in json.loads(sml("status", "-o", "json").out)["environments"]}
    assert envs["stg"]["release"]["tag"] == "v1.0-clfv2-rc"
    assert envs["stg"]["also_in"] == []  # prd still runs v1 until its canary promotes
    ledger.promote(
        ledger_db, opened.id, actor="c", reason="ok", registry=registry,
        code_version="1.0", image_version="img-1",
    )  # fmt: skip
    envs = {e["env"]: e for e in json.loads(sml("status", "-o", "json").out)["environments"]}
    assert (envs["stg"]["release"]["tag"], envs["stg"]["also_in"]) == ("v1.0-clfv2-rc", ["prd"])
    assert (envs["prd"]["release"]["tag"], envs["prd"]["also_in"]) == ("v1.0-clfv2", ["stg"])
    assert envs["dev"]["release"] is None
    lines = sml("status").out.splitlines()
    assert any("same versions in: prd" in line for line in lines)
    assert "dev  (nothing released)" in lines


def test_release_promote_refuses_then_forced_is_said_and_recorded(
    ledger_db: Engine, sml: SmlRunner, registry: MemoryRegistry
) -> None:
    for env in ("stg", "prd"):
        make_release(ledger_db, env=env, models={CLF: "1"}, digests={CLF: "sha-clf-1"})
    make_release(ledger_db, env="stg", models={CLF: "3"}, digests={CLF: "sha-clf-3"})

    refused = sml("release", "promote", "--from", "stg", "--to", "prd", "-r", "hotfix")
    assert refused.code == 2
    lines = [line for line in refused.err.splitlines() if line.strip()]
    assert len(lines) == 1
    assert "clf v3 never completed a rollout in stg" in lines[0]

    forced = sml("release", "promote", "--from", "stg", "--to", "prd", "--force", "-r", "hotfix")
    assert forced.code == 0, forced.err
    (opened,) = ledger.active_rollouts(ledger_db, "prd")
    assert opened.forced is True
    assert f"recorded as forced: rollout #{opened.id} (clf v3)" in forced.out


def test_release_promote_bad_input_is_one_line(ledger_db: Engine, sml: SmlRunner) -> None:
    unknown = sml("release", "promote", "--from", "qa", "--to", "prd")
    assert unknown.code == 2
    assert "unknown env 'qa'" in unknown.err
    empty = sml("release", "promote", "--from", "stg", "--to", "prd")
    assert empty.code == 2
    assert "nothing was ever released in stg" in empty.err
