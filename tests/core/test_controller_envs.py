"""Two environments on one registry and one state database: the controller never moves
another environment's aliases (the `champion` alias used to flip 3 -> 2 -> 3 every tick
when stg and prd each had a recent promotion). SQLite and Postgres."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy import Engine

from config import load_settings
from core import ledger
from core.controller import CanaryPolicy, finish_promotions, reconcile
from tests.core.memory_registry import MemoryRegistry
from tests.factories import make_release

MODEL = "intent-classifier"
VERSIONS = {"code_version": "1.0.0", "image_version": "img-1"}


@pytest.fixture
def policy() -> CanaryPolicy:
    """Default thresholds, short stages."""
    return dataclasses.replace(CanaryPolicy.from_settings(load_settings()), min_samples=50)


def _promote_in(engine: Engine, env: str, candidate: str, policy: CanaryPolicy) -> None:
    """A rollout of `candidate` in `env`, promoted in the database; MLflow never told (the
    crash `finish_promotions` repairs)."""
    rollout = ledger.start_rollout(
        engine, env=env, model_name=MODEL, candidate_version=candidate, stages=policy.stages,
        actor="test", reason=f"canary v{candidate}",
    )  # fmt: skip
    ledger.promote(engine, rollout.id, actor="test", reason="done", **VERSIONS)


def test_promotions_in_two_envs_never_flip_each_others_champion(
    engine: Engine, policy: CanaryPolicy
) -> None:
    registry = MemoryRegistry.of(MODEL, "1", "2", "3")
    for env in ("stg", "prd"):
        make_release(engine, env=env, models={MODEL: "1"})
        registry.set_alias(MODEL, f"{env}-champion", "1")
    _promote_in(engine, "stg", "3", policy)
    _promote_in(engine, "prd", "2", policy)
    # a third env with an active rollout, so reconcile has work in the loop too
    make_release(engine, env="dev", models={MODEL: "1"})
    ledger.start_rollout(
        engine, env="dev", model_name=MODEL, candidate_version="3", stages=policy.stages,
        actor="test", reason="canary in dev",
    )  # fmt: skip

    expected = {
        (MODEL, "stg-champion"): "3",
        (MODEL, "stg-previous"): "1",
        (MODEL, "prd-champion"): "2",
        (MODEL, "prd-previous"): "1",
    }
    for tick in range(6):
        if tick % 3 == 0:
            reconcile(engine, policy, registry=registry, **VERSIONS)  # every env
        else:
            env = "stg" if tick % 3 == 1 else "prd"
            finish_promotions(engine, registry, env=env)
            reconcile(engine, policy, registry=registry, env=env, **VERSIONS)
        assert registry.env_aliases("stg") | registry.env_aliases("prd") == expected, tick
        assert registry.env_aliases("dev") == {}  # dev promoted nothing: untouched
    # each alias was moved once, by its own env's repair, and never again
    assert sorted(alias for _, alias, _ in registry.moves[2:]) == sorted(a for _, a in expected)
    assert not any(alias in ("champion", "previous", "candidate") for _, alias in registry.aliases)
