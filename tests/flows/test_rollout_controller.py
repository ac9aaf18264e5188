"""`rollout-controller` flow under the harness: ticks, rollback, and operator approval.

Approval: the flow pauses with a `StageDecision` form; the test answers it the way the UI
does (`resume_flow_run` with run_input) from another thread, or lets it time out.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from config import get_settings
from core import ledger
from core.controller import TickOutcome
from core.simulation import Arm, write_simulated_traffic
from flows.rollout_controller import rollout_controller
from tests.factories import make_release

MODEL = "intent-classifier"
GOOD = Arm(error_rate=0.0, negative_feedback_rate=0.0, latency_median_ms=15.0)
BROKEN = Arm(error_rate=0.6, negative_feedback_rate=0.0, latency_median_ms=15.0)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real MLflow store with versions 1 and 2 of the model, shared by this module."""
    from tests.factories import make_registry, train_and_register

    root = tmp_path_factory.mktemp("controller-mlflow")
    registry = make_registry(root)
    assert train_and_register(registry, alias="dev-champion").version == "1"
    assert train_and_register(registry, alias="dev-candidate").version == "2"
    return root


@pytest.fixture
def state_db(state_db: Engine, monkeypatch: pytest.MonkeyPatch, registered: Path) -> Engine:
    """The flows' state database (tests/flows/conftest.py) with v1 released in dev, the
    module's registry, and short stages (no bake, 50 samples per arm)."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{registered}/mlflow.db")
    monkeypatch.setenv("MLFLOW_ARTIFACT_LOCATION", str(registered / "mlartifacts"))
    monkeypatch.setenv("MODEL_CACHE_DIR", str(registered / "model-cache"))
    monkeypatch.setenv("MLFLOW_EXPERIMENT", "tests")
    monkeypatch.setenv("CANARY_BAKE_SECONDS", "0")
    monkeypatch.setenv("CANARY_MIN_SAMPLES", "50")
    # the traffic below is written just now: its follow-up windows must have passed
    monkeypatch.setenv("CANARY_FOLLOWUP_SECONDS", "0.01")
    monkeypatch.setenv("CANARY_ABANDONMENT_SECONDS", "0.01")
    get_settings.cache_clear()
    make_release(
        state_db, env="dev", models={MODEL: "1"}, digests={MODEL: None}, code_version="1",
        image_version="local", reason="v1",
    )  # fmt: skip
    return state_db


def _rollout_with_traffic(engine: Engine, candidate: Arm) -> int:
    rollout = ledger.start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version="2",
        stages=[1, 10, 25, 50, 100],
        actor="test",
        reason="canary",
    )
    write_simulated_traffic(
        engine,
        rollout,
        champion=GOOD,
        candidate=candidate,
        requests=6_000,
        start=rollout.stage_started_at,
        span_seconds=0.01,
        rng=np.random.default_rng(3),
    )
    return rollout.id


def _kinds(engine: Engine, rollout_id: int) -> list[str]:
    return [e.kind for e in ledger.rollout_events(engine, rollout_id)]


def test_rollout_controller_tick_advances_good_and_rolls_back_broken(state_db: Engine) -> None:
    rollout_id = _rollout_with_traffic(state_db, GOOD)
    outcomes = rollout_controller(env="dev")
    assert [o.outcome for o in outcomes] == ["advanced"]
    assert _kinds(state_db, rollout_id) == ["start", "advance"]

    # the same tick again: the new stage has no data yet, nothing is written
    assert [o.outcome for o in rollout_controller(env="dev")] == ["held"]
    assert _kinds(state_db, rollout_id) == ["start", "advance"]

    ledger.abort(state_db, rollout_id, actor="test", reason="next case")
    broken_id = _rollout_with_traffic(state_db, BROKEN)
    outcomes = rollout_controller(env="dev")
    assert [o.outcome for o in outcomes] == ["rolled_back"]
    assert _kinds(state_db, broken_id) == ["start", "rollback"]


def _answer_when_paused(answer: dict[str, str], done: threading.Event) -> None:
    """Resume the first paused flow run with `answer`, as the UI form would."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateName,
    )
    from prefect.flow_runs import resume_flow_run

    paused = FlowRunFilter(state=FlowRunFilterState(name=FlowRunFilterStateName(any_=["Paused"])))
    deadline = time.monotonic() + 120
    with get_client(sync_client=True) as client:
        while time.monotonic() < deadline and not done.is_set():
            runs = client.read_flow_runs(flow_run_filter=paused)
            if runs:
                time.sleep(0.5)  # let the flow save its input form
                resume_flow_run(runs[0].id, run_input=answer)
                return
            time.sleep(0.5)


def _run_with_answer(answer: dict[str, str]) -> list[TickOutcome]:
    done = threading.Event()
    operator = threading.Thread(target=_answer_when_paused, args=(answer, done))
    operator.start()
    try:
        return rollout_controller(env="dev", approval_poll_seconds=1)
    finally:
        done.set()
        operator.join()


def test_rollout_controller_waits_for_operator_approval(
    state_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_REQUIRE_APPROVAL", "true")
    get_settings.cache_clear()
    rollout_id = _rollout_with_traffic(state_db, GOOD)

    outcomes = _run_with_answer({"decision": "approve", "actor": "ana", "reason": "looks good"})

    assert [o.outcome for o in outcomes] == ["advanced"]
    events = ledger.rollout_events(state_db, rollout_id)
    assert [e.kind for e in events] == [
        "start",
        "approval_requested",
        "approval_answered",
        "advance",
    ]
    assert events[2].actor == "ana"
    assert events[2].reason == "approve: looks good"
    assert ledger.get_rollout(state_db, rollout_id).stage_index == 1


def test_rollout_controller_operator_rollback_answer(
    state_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_REQUIRE_APPROVAL", "true")
    get_settings.cache_clear()
    rollout_id = _rollout_with_traffic(state_db, GOOD)

    outcomes = _run_with_answer({"decision": "rollback", "actor": "bo", "reason": "not today"})

    assert [o.outcome for o in outcomes] == ["rolled_back"]
    events = ledger.rollout_events(state_db, rollout_id)
    assert [e.kind for e in events][-1] == "rollback"
    assert events[-1].actor == "bo"


def test_rollout_controller_approval_timeout_holds(
    state_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CANARY_REQUIRE_APPROVAL", "true")
    get_settings.cache_clear()
    rollout_id = _rollout_with_traffic(state_db, GOOD)

    outcomes = rollout_controller(env="dev", approval_timeout_seconds=2, approval_poll_seconds=1)

    assert [o.outcome for o in outcomes] == ["held"]
    assert _kinds(state_db, rollout_id) == ["start", "approval_requested", "approval_answered"]
    assert ledger.get_rollout(state_db, rollout_id).stage_index == 0
