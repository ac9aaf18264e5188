"""`rollout-action` flow: typed request, each action through the ledger, refusals as failures.

Runs under the session's real Prefect test harness, against the test's state database
(SQLite from the isolated settings) and a real MLflow store for start/promote.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from config import get_settings
from core.ledger import (
    current_release,
    get_rollout,
    record_release,
    rollout_events,
    start_rollout,
)
from flows.rollout_action import RolloutActionRequest, rollout_action

MODEL = "intent-classifier"


def _seed(engine: Engine, champion: str = "1") -> None:
    record_release(
        engine,
        env="dev",
        code_version="1.0",
        image_version="local",
        model_versions={MODEL: champion},
        artifact_digests={MODEL: "sha"},
        reason="seed",
        actor="test",
    )


def _request(**values: object) -> RolloutActionRequest:
    return RolloutActionRequest.model_validate({"actor": "ana", "reason": "ticket 42", **values})


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"action": "pause"}, "pause needs rollout_id"),
        ({"action": "start", "env": "dev"}, "start needs model_name, candidate_version"),
        ({"action": "set_stage", "rollout_id": 1}, "set_stage needs stage_index"),
        ({"action": "start", "env": "qa", "model_name": "m", "candidate_version": "2"}, "env"),
        ({"action": "start", "env": "dev", "model_name": "m", "candidate_version": "x"}, "pattern"),
        ({"action": "explode", "rollout_id": 1}, "action"),
        ({"action": "pause", "rollout_id": 1, "reason": ""}, "reason"),
    ],
)
def test_rollout_action_request_rejects_incomplete_input(
    values: dict[str, object], message: str
) -> None:
    with pytest.raises(ValidationError, match=message):
        _request(**values)


def test_rollout_action_parameters_render_as_typed_form() -> None:
    from prefect.utilities.callables import parameter_schema

    schema = parameter_schema(rollout_action).model_dump()
    request = schema["definitions"]["RolloutActionRequest"]
    assert request["properties"]["action"]["enum"] == [
        "start",
        "pause",
        "resume",
        "abort",
        "set_stage",
        "promote",
        "rollback",
    ]
    assert set(request["required"]) == {"action", "actor", "reason"}
    assert "dev" in str(request["properties"]["env"])


@pytest.mark.slow
def test_rollout_action_pause_resume_abort_through_ledger(state_db: Engine) -> None:
    _seed(state_db)
    rid = start_rollout(
        state_db,
        env="dev",
        model_name=MODEL,
        candidate_version="2",
        stages=[1, 100],
        actor="t",
        reason="r",
    ).id
    assert rollout_action(_request(action="pause", rollout_id=rid)).status == "paused"
    assert (
        rollout_action(_request(action="set_stage", rollout_id=rid, stage_index=1)).percent == 100
    )
    assert rollout_action(_request(action="resume", rollout_id=rid)).status == "canary"
    assert rollout_action(_request(action="abort", rollout_id=rid)).status == "aborted"
    events = rollout_events(state_db, rid)
    assert [e.kind for e in events] == ["start", "pause", "set_stage", "resume", "abort"]
    assert {(e.actor, e.reason) for e in events[1:]} == {("ana", "ticket 42")}

    state = rollout_action(_request(action="pause", rollout_id=rid), return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=rf"cannot pause rollout #{rid} .* already aborted"):
        state.result()


@pytest.mark.slow
def test_rollout_action_start_then_promote_moves_release_and_aliases(state_db: Engine) -> None:
    from core.registry import ModelRegistry
    from tests.factories import train_and_register

    registry = ModelRegistry.from_settings(get_settings())
    v1 = train_and_register(registry, alias="dev-champion")
    v2 = train_and_register(registry, alias="dev-candidate")
    _seed(state_db, champion=v1.version)

    started = rollout_action(
        _request(action="start", env="dev", model_name=MODEL, candidate_version=v2.version)
    )
    assert (started.status, started.percent) == ("canary", get_settings().CANARY_STAGES[0])

    missing = rollout_action(
        _request(action="pause", rollout_id=started.id + 1000), return_state=True
    )
    assert missing.is_failed()

    promoted = rollout_action(_request(action="promote", rollout_id=started.id))
    assert promoted.status == "promoted"
    assert get_rollout(state_db, started.id).status == "promoted"
    release = current_release(state_db, "dev")
    assert release is not None
    assert release.model_versions == {MODEL: v2.version}
    assert release.artifact_digests == {MODEL: v2.artifact_sha256}
    assert registry.aliases(MODEL) == {"dev-champion": v2.version, "dev-previous": v1.version}

    unknown = rollout_action(
        _request(action="start", env="dev", model_name=MODEL, candidate_version="99"),
        return_state=True,
    )
    assert unknown.is_failed()
    with pytest.raises(Exception, match="has no version 99"):
        unknown.result()


class _FailedState:
    """A finished task state whose result re-raises `exc` (what Prefect hands the check)."""

    def __init__(self, exc: Exception) -> None:
        self.exc = exc

    def result(self) -> None:
        raise self.exc


def test_ledger_tasks_retry_only_transient_failures() -> None:
    from sqlalchemy.exc import OperationalError

    from core.errors import ConflictError
    from tasks.policies import retry_if_transient

    lost = OperationalError("SELECT 1", {}, Exception("server closed the connection"))
    assert retry_if_transient(None, None, _FailedState(lost)) is True
    refused = ConflictError("cannot promote rollout #1: it is already promoted")
    assert retry_if_transient(None, None, _FailedState(refused)) is False
    assert retry_if_transient(None, None, _FailedState(ValueError("bug"))) is False
