"""The reconciler with bundles, independent rollouts and release state, on real rows in
SQLite and Postgres.

A /answer request writes one row per model; the member's rows here are all failures, far
slower than any limit: if the controller counted them, every bundle would be rolled back.
It judges the lead's rows, so a good lead promotes the whole bundle in one release.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import Engine, insert, select

from config import load_settings
from core import ledger
from core.controller import CanaryPolicy, reconcile
from core.db import ReleaseStateRow, Traffic, session_scope
from core.release_state import model_state_key
from core.simulation import Arm, write_simulated_traffic
from core.tick import STATE_NOT_READY
from tests.core.memory_registry import MemoryRegistry
from tests.core.test_ledger_readiness import publish_state

CLF, FAQ = "intent-classifier", "faq-retriever"
GOOD = Arm(error_rate=0.01, negative_feedback_rate=0.05, latency_median_ms=20.0)
BETTER = Arm(error_rate=0.0, negative_feedback_rate=0.01, latency_median_ms=18.0)
BROKEN = Arm(error_rate=0.60, negative_feedback_rate=0.05, latency_median_ms=20.0)
VERSIONS = {"code_version": "1.0.0", "image_version": "img-1"}
SIZES = [6_000, 700, 300, 200, 120]  # per stage: both arms reach 50 samples, even at 1%


@pytest.fixture
def policy() -> CanaryPolicy:
    """Default thresholds, short stages: bake 60 s, 50 samples per arm."""
    base = CanaryPolicy.from_settings(load_settings())
    return dataclasses.replace(base, bake_seconds=60.0, min_samples=50)


def _release(engine: Engine) -> None:
    ledger.record_release(
        engine, env="dev", code_version="1.0.0", image_version="img-1",
        model_versions={CLF: "1", FAQ: "1"}, artifact_digests={}, reason="v1", actor="test",
    )  # fmt: skip


def _start(
    engine: Engine, policy: CanaryPolicy, model: str, bundle: dict[str, str] | None = None
) -> ledger.RolloutRecord:
    return ledger.start_rollout(
        engine, env="dev", model_name=model, candidate_version="2", stages=policy.stages,
        actor="test", reason="canary v2", bundle=bundle,
    )  # fmt: skip


def _feed(engine: Engine, rollout_id: int, lead: Arm, seed: int, size: int) -> datetime:
    """A stage's traffic for the rollout's lead, and for every bundle member one broken,
    slow row per request (same request id and rollout id, as /answer writes them); returns
    a time after the stage's bake."""
    rollout = ledger.get_rollout(engine, rollout_id)
    start = rollout.stage_started_at
    write_simulated_traffic(
        engine, rollout, champion=GOOD, candidate=lead, requests=size, start=start,
        span_seconds=600, rng=np.random.default_rng(seed),
    )  # fmt: skip
    members = [m for m in rollout.candidate_versions if m != rollout.model_name]
    table = Traffic.__table__
    with engine.begin() as conn:
        lead_rows = conn.execute(
            select(table).where(
                table.c.rollout_id == rollout.id,
                table.c.model_name == rollout.model_name,
                table.c.ts >= start,
            )
        ).mappings()
        copies = [
            {k: v for k, v in row.items() if k != "id"}
            | {"model_name": m, "latency_ms": 99_999.0, "error": "member failed"}
            for row in lead_rows
            for m in members
        ]
        if copies:
            conn.execute(insert(Traffic), copies)
    return start + timedelta(minutes=11)


def test_bundle_walks_every_stage_on_its_lead_rows_then_promotes_both(
    engine: Engine, policy: CanaryPolicy
) -> None:
    _release(engine)
    rollout = _start(engine, policy, CLF, bundle={FAQ: "2"})
    registry = MemoryRegistry({(m, v): f"sha-{m}-{v}" for m in (CLF, FAQ) for v in ("1", "2")})
    for index, size in enumerate(SIZES):
        later = _feed(engine, rollout.id, BETTER, seed=index, size=size)
        outcomes = reconcile(engine, policy, now=later, registry=registry, **VERSIONS)
        expected = "promoted" if index == len(SIZES) - 1 else "advanced"
        assert [o.outcome for o in outcomes] == [expected], outcomes

    releases = ledger.releases_history(engine, "dev", 10)
    assert len(releases) == 2  # the first, then one for the whole bundle
    assert releases[0].model_versions == {CLF: "2", FAQ: "2"}
    assert releases[0].artifact_digests == {CLF: f"sha-{CLF}-2", FAQ: f"sha-{FAQ}-2"}
    assert registry.env_aliases("dev") == {
        (CLF, "dev-champion"): "2", (CLF, "dev-previous"): "1",
        (FAQ, "dev-champion"): "2", (FAQ, "dev-previous"): "1",
    }  # fmt: skip
    judged = ledger.rollout_events(engine, rollout.id)[1].figures
    assert judged is not None
    assert judged["figures"]["candidate"]["errors"] == 0  # the member's failures are not judged


def test_bundle_with_a_failing_lead_is_rolled_back_as_a_whole(
    engine: Engine, policy: CanaryPolicy
) -> None:
    _release(engine)
    rollout = _start(engine, policy, CLF, bundle={FAQ: "2"})
    later = _feed(engine, rollout.id, BROKEN, seed=1, size=SIZES[0])
    outcomes = reconcile(engine, policy, now=later, **VERSIONS)
    assert [o.outcome for o in outcomes] == ["rolled_back"]
    release = ledger.current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {CLF: "1", FAQ: "1"}
    states = ledger.routing_state(engine, "dev")
    assert {s.mode for s in states.values()} == {"champion_only"}


def test_independent_rollouts_are_judged_and_moved_apart(
    engine: Engine, policy: CanaryPolicy
) -> None:
    _release(engine)
    clf, faq = _start(engine, policy, CLF), _start(engine, policy, FAQ)
    later = max(
        _feed(engine, clf.id, BETTER, seed=3, size=SIZES[0]),
        _feed(engine, faq.id, BROKEN, seed=4, size=SIZES[0]),
    )
    outcomes = {o.rollout_id: o.outcome for o in reconcile(engine, policy, now=later, **VERSIONS)}
    assert outcomes == {clf.id: "advanced", faq.id: "rolled_back"}
    moved = ledger.get_rollout(engine, clf.id)
    assert (moved.status, moved.percent) == ("canary", policy.stages[1])
    states = ledger.routing_state(engine, "dev")
    assert (states[CLF].mode, states[FAQ].mode) == ("canary", "champion_only")


def test_controller_holds_a_stateful_candidate_until_its_state_is_published(
    engine: Engine, policy: CanaryPolicy
) -> None:
    _release(engine)
    publish_state(engine, FAQ, "2")  # started while the state was there ...
    rollout = _start(engine, policy, CLF, bundle={FAQ: "2"})
    with session_scope(engine) as session:  # ... then it was garbage-collected
        session.delete(session.get(ReleaseStateRow, model_state_key(FAQ, "2")))
    later = _feed(engine, rollout.id, BETTER, seed=5, size=SIZES[0])
    stateful = {FAQ}
    for _ in range(2):  # held, with one event however often it ticks
        [outcome] = reconcile(engine, policy, now=later, stateful=stateful, **VERSIONS)
        assert outcome.outcome == "held"
        assert f"{FAQ} v2" in outcome.detail
        assert "build_release_state" in outcome.detail
    kinds = [e.kind for e in ledger.rollout_events(engine, rollout.id)]
    assert kinds == ["start", STATE_NOT_READY]
    assert ledger.get_rollout(engine, rollout.id).stage_index == 0

    publish_state(engine, FAQ, "2")
    [outcome] = reconcile(engine, policy, now=later, stateful=stateful, **VERSIONS)
    assert outcome.outcome == "advanced"


def test_controller_rolls_back_a_stateful_candidate_without_state(
    engine: Engine, policy: CanaryPolicy
) -> None:
    _release(engine)
    rollout = _start(engine, policy, CLF, bundle={FAQ: "2"})  # no gate asked at start
    later = _feed(engine, rollout.id, BROKEN, seed=6, size=SIZES[0])
    [outcome] = reconcile(engine, policy, now=later, stateful={FAQ}, **VERSIONS)
    assert outcome.outcome == "rolled_back"  # a rollback is never held
