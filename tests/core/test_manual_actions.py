"""`core.manual_actions`: each rollout action through the real ledger, without Prefect."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from core import ledger
from core.errors import ConflictError
from core.manual_actions import RolloutActionRequest, apply_rollout_action

MODEL = "intent-classifier"
VERSIONS = {"code_version": "1.0", "image_version": "img-1"}


def _request(**values: object) -> RolloutActionRequest:
    return RolloutActionRequest.model_validate({"actor": "ana", "reason": "ticket 42", **values})


def _apply(engine: Engine, **values: object) -> tuple[ledger.RolloutRecord, object]:
    return apply_rollout_action(
        engine, _request(**values), registry=None, stages=[1, 50, 100], **VERSIONS
    )


@pytest.fixture
def released(engine: Engine) -> Engine:
    """A state database whose dev release serves v1 of the model."""
    ledger.record_release(
        engine,
        env="dev",
        code_version="1.0",
        image_version="img-1",
        model_versions={MODEL: "1"},
        artifact_digests={MODEL: None},
        reason="v1",
        actor="test",
    )
    return engine


def test_apply_rollout_action_walks_a_rollout_from_start_to_promotion(released: Engine) -> None:
    started, none = _apply(
        released, action="start", env="dev", model_name=MODEL, candidate_version="2"
    )
    assert (started.status, started.percent, none) == ("canary", 1, None)
    rid = started.id

    assert _apply(released, action="pause", rollout_id=rid)[0].status == "paused"
    assert _apply(released, action="set_stage", rollout_id=rid, stage_index=1)[0].percent == 50
    assert _apply(released, action="resume", rollout_id=rid)[0].status == "canary"
    promoted, release = _apply(released, action="promote", rollout_id=rid)

    assert promoted.status == "promoted"
    assert isinstance(release, ledger.ReleaseRecord)
    assert release.model_versions == {MODEL: "2"}
    kinds = [e.kind for e in ledger.rollout_events(released, rid)]
    assert kinds == ["start", "pause", "set_stage", "resume", "promote"]
    assert {e.actor for e in ledger.rollout_events(released, rid)} == {"ana"}


@pytest.mark.parametrize(("action", "status"), [("abort", "aborted"), ("rollback", "rolled_back")])
def test_apply_rollout_action_ends_a_rollout(released: Engine, action: str, status: str) -> None:
    [started, _] = _apply(
        released, action="start", env="dev", model_name=MODEL, candidate_version="2"
    )

    ended, release = _apply(released, action=action, rollout_id=started.id)

    assert (ended.status, release) == (status, None)
    with pytest.raises(ConflictError, match="already"):
        _apply(released, action="pause", rollout_id=started.id)
