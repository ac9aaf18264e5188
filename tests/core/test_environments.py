"""Must show (issue 10): stg and prd on one MLflow store and one Postgres state database.

Retrain's own steps (`core.retrain`: plan on the ledger, train, judge, give the role) give
each environment its first release of one shared v1 and stg its candidate v2; a stg canary
driven to promotion through the real controller, the same versions promoted to prd
(`core.promotion`), a prd canary to promotion, then a prd rollback; the controller ticks
BOTH environments throughout. After every tick each environment's aliases are exactly
what its own actions made them (never moved by the other's), and at the end each
environment's releases and events are exactly as expected.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from config import load_settings
from core import ledger, retrain
from core.aliases import env_alias
from core.controller import CanaryPolicy, reconcile
from core.db import make_engine, upgrade
from core.promotion import promote_release
from core.registry import ModelRegistry
from core.retrain import RetrainOutcome
from core.simulation import Arm, write_simulated_traffic
from tests.factories import make_registry, train_and_register

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

MODEL = "intent-classifier"
ENVS = ("stg", "prd")
GOOD = Arm(error_rate=0.01, negative_feedback_rate=0.05, latency_median_ms=20.0)
BETTER = Arm(error_rate=0.0, negative_feedback_rate=0.01, latency_median_ms=18.0)
SIZES = [6_000, 700, 300, 200, 120]  # both arms reach 50 samples per stage, even at 1%
VERSIONS = {"code_version": "0.1.0", "image_version": "img-1"}


@pytest.fixture
def engine(postgres_url: str) -> Iterator[Engine]:
    """One migrated Postgres state database for both environments."""
    eng = make_engine(postgres_url)
    upgrade(eng)
    yield eng
    eng.dispose()


@pytest.fixture
def policy() -> CanaryPolicy:
    """Default thresholds and stages, short bake and 50 samples per arm."""
    base = CanaryPolicy.from_settings(load_settings())
    return dataclasses.replace(base, bake_seconds=60.0, min_samples=50)


@dataclasses.dataclass
class World:
    """Both environments' controller and what each env's aliases must be after a tick."""

    engine: Engine
    registry: ModelRegistry
    policy: CanaryPolicy
    expected: dict[str, dict[str, str]]
    ticks: int = 0

    def tick(self, now: datetime) -> list[str]:
        """One controller tick per environment; aliases checked after each. Returns the
        outcomes (`env:outcome`)."""
        outcomes = []
        for env in ENVS:
            for outcome in reconcile(
                self.engine, self.policy, env=env, registry=self.registry, now=now, **VERSIONS
            ):
                outcomes.append(f"{env}:{outcome.outcome}")
                if outcome.outcome == "promoted":  # this env's own action moves its aliases
                    self._promoted(env, outcome.rollout_id)
            self.check()
            self.ticks += 1
        return outcomes

    def _promoted(self, env: str, rollout_id: int) -> None:
        rollout = ledger.get_rollout(self.engine, rollout_id)
        mine = self.expected[env]
        mine.pop(env_alias(env, "candidate"), None)
        mine[env_alias(env, "champion")] = rollout.candidate_version
        mine[env_alias(env, "previous")] = rollout.champion_version

    def check(self) -> None:
        """Every alias of the model is exactly what its own env made it."""
        assert self.registry.aliases(MODEL) == {
            alias: version for env in ENVS for alias, version in self.expected[env].items()
        }, f"after tick {self.ticks}"

    def drive_canary(self, env: str, rollout_id: int) -> None:
        """Feed each stage's traffic and tick both envs until the rollout is promoted."""
        for index, size in enumerate(SIZES):
            rollout = ledger.get_rollout(self.engine, rollout_id)
            assert (rollout.env, rollout.stage_index) == (env, index)
            write_simulated_traffic(
                self.engine, rollout, champion=GOOD, candidate=BETTER, requests=size,
                start=rollout.stage_started_at, span_seconds=600,
                rng=np.random.default_rng(index),
            )  # fmt: skip
            outcomes = self.tick(rollout.stage_started_at + timedelta(minutes=11))
            last = index == len(SIZES) - 1
            assert outcomes == [f"{env}:{'promoted' if last else 'advanced'}"], outcomes


def _retrain(engine: Engine, registry: ModelRegistry, env: str, image: str) -> RetrainOutcome:
    """What retrain-on-image-change does for the model in `env` on `image`: its core steps
    (tasks/retrain.py wraps each), with the training itself from the factories."""
    settings = load_settings()
    plan = retrain.plan_model(engine, registry, MODEL, image, env=env)
    if plan.up_to_date:
        return RetrainOutcome.nothing_to_do(plan)
    report = retrain.judge_champion(registry, plan)
    version = plan.resume_version or train_and_register(registry, image_version=image).version
    verdict = report.verdict if report is not None else None
    return retrain.give_role(
        engine, registry, plan, version, verdict, settings=settings, actor="retrain"
    )


def test_stg_canary_then_prd_promotion_and_rollback_never_cross_environments(
    engine: Engine, policy: CanaryPolicy, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CODE_VERSION", VERSIONS["code_version"])
    registry = make_registry(tmp_path)
    # retrain: stg trains v1 and records its first release; prd finds v1 for the image
    # (versions are shared, one retrain per image) and records its own first release of it
    stg_first = _retrain(engine, registry, "stg", "img-1")
    prd_first = _retrain(engine, registry, "prd", "img-1")
    v1 = stg_first.version
    assert (stg_first.action, prd_first.action, prd_first.version) == (
        "first_champion", "first_champion", v1,
    )  # fmt: skip
    assert registry.aliases(MODEL) == {"stg-champion": v1, "prd-champion": v1}
    # an image bump: stg's retrain trains v2 as its candidate; prd's aliases do not move
    stg_bump = _retrain(engine, registry, "stg", "img-2")
    v2 = stg_bump.version
    assert (stg_bump.action, stg_bump.champion_version) == ("candidate", v1)
    world = World(
        engine, registry, policy,
        expected={"stg": {"stg-champion": v1, "stg-candidate": v2}, "prd": {"prd-champion": v1}},
    )  # fmt: skip
    start = datetime.now().astimezone()
    assert world.tick(start) == []

    # stg: a canary of v2 through the real controller
    stg_canary = ledger.start_rollout(
        engine, env="stg", model_name=MODEL, candidate_version=v2, stages=policy.stages,
        actor="retrain", reason="candidate v2", registry=registry,
    )  # fmt: skip
    world.drive_canary("stg", stg_canary.id)
    assert world.expected["stg"] == {"stg-champion": v2, "stg-previous": v1}
    assert world.tick(start) == []

    # prd: the same versions, promoted from stg, through its own canary
    (prd_canary,) = promote_release(
        engine, registry, from_env="stg", to_env="prd", stages=policy.stages, actor="ana",
        reason="rc passed in stg",
    )  # fmt: skip
    assert (prd_canary.candidate_version, prd_canary.forced) == (v2, False)
    world.check()  # opening a rollout moves no alias
    world.drive_canary("prd", prd_canary.id)
    assert world.expected["prd"] == {"prd-champion": v2, "prd-previous": v1}

    # prd rolls back; stg keeps v2
    ledger.rollback_env(engine, "prd", actor="oncall", reason="prd error budget", registry=registry)
    world.expected["prd"]["prd-champion"] = v1
    world.check()
    for _ in range(3):  # later ticks never undo the rollback, nor touch stg
        assert world.tick(datetime.now().astimezone()) == []

    _assert_releases(engine, v1, v2)
    _assert_events(engine, stg_canary.id, prd_canary.id, len(SIZES))
    assert registry.get_version(MODEL, v2).tags["rolled_back_env"] == "prd"


def _assert_releases(engine: Engine, v1: str, v2: str) -> None:
    stg = list(reversed(ledger.releases_history(engine, "stg")))
    prd = list(reversed(ledger.releases_history(engine, "prd")))
    assert [(r.tag, r.model_versions[MODEL], r.forced) for r in stg] == [
        (f"v0.1.0-intent-classifierv{v1}-rc", v1, False),
        (f"v0.1.0-intent-classifierv{v2}-rc", v2, False),
    ]
    assert [(r.tag, r.model_versions[MODEL], r.forced) for r in prd] == [
        (f"v0.1.0-intent-classifierv{v1}", v1, False),
        (f"v0.1.0-intent-classifierv{v2}", v2, False),
        (f"v0.1.0-intent-classifierv{v1}", v1, False),
    ]
    reasons = [(r.reason or "").split(" (")[0] for r in (*stg, *prd)]
    first = f"first champion: {MODEL} v{v1} trained on image img-1"  # by retrain, per env
    assert reasons[:4] == [first, f"promote {MODEL} v{v2}", first, reasons[1]]
    assert reasons[4] == f"rollback to {prd[0].tag}"
    # the same artifact travelled: prd's v2 release holds stg's digest
    assert prd[1].artifact_digests == stg[1].artifact_digests
    assert prd[2].artifact_digests == prd[0].artifact_digests == stg[0].artifact_digests
    assert [r.parent_id for r in prd] == [None, prd[0].id, prd[1].id]


def _assert_events(engine: Engine, stg_id: int, prd_id: int, stages: int) -> None:
    kinds = ["start", *["advance"] * (stages - 1), "promote"]
    assert [e.kind for e in ledger.rollout_events(engine, stg_id)] == kinds
    assert [e.kind for e in ledger.rollout_events(engine, prd_id)] == kinds
    assert [(r.env, r.status) for r in ledger.list_rollouts(engine, None)] == [
        ("prd", "promoted"),  # the env rollback ends no rollout: prd's canary had finished
        ("stg", "promoted"),
    ]
