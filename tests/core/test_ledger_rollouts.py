"""Rollout operations: each one changes the row, appends one event, and refuses when stale.

Each test runs on SQLite and on the real Postgres (the `engine` fixture).
"""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from sqlalchemy import Engine, select

from core.db import Rollout, RolloutEvent, session_scope
from core.errors import ConflictError, DataError, NotFoundError
from core.ledger import (
    abort,
    active_rollouts,
    advance_stage,
    current_release,
    get_rollout,
    last_figures,
    pause,
    promote,
    record_event,
    releases_history,
    resume,
    rollback,
    rollback_env,
    rollout_events,
    rollout_stages,
    routing_state,
    set_stage,
    start_rollout,
)
from tests.factories import make_release

STAGES = [1.0, 10.0, 25.0, 50.0, 100.0]


def _start(engine: Engine, version: str = "2", **kwargs: object) -> int:
    args: dict[str, object] = {
        "env": "prd",
        "model_name": "clf",
        "candidate_version": version,
        "stages": STAGES,
        "actor": "alice",
        "reason": "retrained on img-1",
    }
    args.update(kwargs)
    return start_rollout(engine, **args).id  # type: ignore[arg-type]


def test_start_rollout_canary_at_stage_zero_with_fresh_salt(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    first = get_rollout(engine, _start(engine))
    assert (first.status, first.stage_index, first.percent) == ("canary", 0, 1.0)
    assert (first.champion_version, first.candidate_version) == ("1", "2")
    assert len(first.salt) == 16
    abort(engine, first.id, actor="alice", reason="again")
    second = get_rollout(engine, _start(engine))
    assert second.salt != first.salt
    [event] = rollout_events(engine, second.id)
    assert (event.seq, event.kind, event.actor, event.to_status) == (1, "start", "alice", "canary")
    assert event.figures == {"stages": STAGES, "mode": "canary"}


def test_start_rollout_refuses_second_active_rollout_of_model(engine: Engine) -> None:
    make_release(engine, models=dict(clf="1", other="5"))
    rid = _start(engine)
    with pytest.raises(ConflictError, match=rf"rollout #{rid} of clf .* already active in prd"):
        _start(engine, version="3")
    # another model, or another env, is fine
    _start(engine, model_name="other", version="6")
    make_release(engine, env="stg", models={"clf": "1"})
    _start(engine, env="stg")
    assert [(r.env, r.model_name) for r in active_rollouts(engine)] == [
        ("prd", "clf"),
        ("prd", "other"),
        ("stg", "clf"),
    ]
    assert [r.model_name for r in active_rollouts(engine, "prd")] == ["clf", "other"]


def test_start_rollout_refuses_bad_input(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="no champion of 'clf' in prd"):
        _start(engine)
    make_release(engine, models={"clf": "1"})
    with pytest.raises(ConflictError, match="v1 is already the champion"):
        _start(engine, version="1")
    with pytest.raises(DataError, match="strictly increasing"):
        _start(engine, stages=[10, 5, 100])
    with pytest.raises(DataError, match=r"\(0, 100\]"):
        _start(engine, stages=[0, 100])
    with pytest.raises(DataError, match="mode"):
        _start(engine, mode="blue-green")
    with pytest.raises(NotFoundError, match="unknown env"):
        _start(engine, env="qa")
    assert active_rollouts(engine) == []


def test_database_index_allows_one_active_rollout_per_model(engine: Engine) -> None:
    """The partial unique index backs the ledger's check even for a writer that skips it."""
    from datetime import UTC, datetime

    from sqlalchemy.exc import IntegrityError

    make_release(engine, models={"clf": "1"})
    _start(engine)
    now = datetime.now(UTC)
    with pytest.raises(IntegrityError), session_scope(engine) as session:
        session.add(
            Rollout(
                env="prd",
                model_name="clf",
                champion_version="1",
                candidate_version="9",
                salt="x",
                stage_index=0,
                percent=1.0,
                status="paused",
                stage_started_at=now,
                created_at=now,
                updated_at=now,
                event_seq=0,
            )
        )


def test_advance_stage_moves_once_per_expected_index(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    before = get_rollout(engine, rid)
    moved = advance_stage(
        engine,
        rid,
        expected_stage_index=0,
        stages=STAGES,
        actor="controller",
        reason="gates passed",
        figures={"n_candidate": 412, "error_rate_diff": -0.001},
    )
    assert (moved.stage_index, moved.percent, moved.status) == (1, 10.0, "canary")
    assert moved.stage_started_at > before.stage_started_at
    with pytest.raises(ConflictError, match="at stage 1, not 0: it was already moved"):
        advance_stage(
            engine, rid, expected_stage_index=0, stages=STAGES, actor="controller", reason="dup"
        )
    for index in (1, 2, 3):
        advance_stage(
            engine, rid, expected_stage_index=index, stages=STAGES, actor="c", reason="ok"
        )
    with pytest.raises(ConflictError, match=r"last stage \(100%\): promote it instead"):
        advance_stage(engine, rid, expected_stage_index=4, stages=STAGES, actor="c", reason="x")
    events = rollout_events(engine, rid)
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert [e.percent for e in events] == [1.0, 10.0, 25.0, 50.0, 100.0]
    assert events[1].figures == {"n_candidate": 412, "error_rate_diff": -0.001}
    assert get_rollout(engine, rid).event_seq == 5


def test_shadow_rollout_advances_into_canary_stage_zero(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine, mode="shadow")
    shadow = get_rollout(engine, rid)
    assert (shadow.status, shadow.stage_index, shadow.percent) == ("shadow", -1, 0.0)
    assert routing_state(engine, "prd")["clf"].mode == "shadow"
    canary = advance_stage(
        engine, rid, expected_stage_index=-1, stages=STAGES, actor="c", reason="shadow ok"
    )
    assert (canary.status, canary.stage_index, canary.percent) == ("canary", 0, 1.0)
    state = routing_state(engine, "prd")["clf"]
    assert (state.mode, state.percent, state.salt) == ("canary", 1.0, canary.salt)


def test_pause_resume_keeps_serving_and_returns_to_previous_mode(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    advance_stage(engine, rid, expected_stage_index=0, stages=STAGES, actor="c", reason="ok")
    paused = pause(engine, rid, actor="bob", reason="investigating a ticket")
    assert paused.status == "paused"
    state = routing_state(engine, "prd")["clf"]
    assert (state.mode, state.percent) == ("canary", 10.0)
    with pytest.raises(ConflictError, match="it is paused, advance needs shadow or canary"):
        advance_stage(engine, rid, expected_stage_index=1, stages=STAGES, actor="c", reason="x")
    with pytest.raises(ConflictError, match="it is paused, pause needs"):
        pause(engine, rid, actor="bob", reason="again")
    assert resume(engine, rid, actor="bob", reason="fine").status == "canary"
    with pytest.raises(ConflictError, match="it is canary, resume needs paused"):
        resume(engine, rid, actor="bob", reason="again")

    abort(engine, rid, actor="bob", reason="done")
    shadow_id = _start(engine, version="3", mode="shadow")
    pause(engine, shadow_id, actor="bob", reason="hold")
    assert routing_state(engine, "prd")["clf"].mode == "shadow"
    assert resume(engine, shadow_id, actor="bob", reason="go").status == "shadow"
    kinds = [(e.kind, e.from_status, e.to_status) for e in rollout_events(engine, rid)]
    assert kinds == [
        ("start", None, "canary"),
        ("advance", "canary", "canary"),
        ("pause", "canary", "paused"),
        ("resume", "paused", "canary"),
        ("abort", "canary", "aborted"),
    ]


def test_set_stage_moves_to_any_stage_and_keeps_paused(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    assert set_stage(engine, rid, stage_index=3, stages=STAGES, actor="a", reason="r").percent == 50
    pause(engine, rid, actor="a", reason="hold")
    down = set_stage(engine, rid, stage_index=1, actor="a", reason="less")  # started stages
    assert (down.status, down.percent) == ("paused", 10.0)
    with pytest.raises(DataError, match=r"stage: expected 0\.\.4, got 5"):
        set_stage(engine, rid, stage_index=5, actor="a", reason="r")
    assert rollout_stages(engine, rid) == STAGES


def test_abort_ends_rollout_and_champion_serves_everyone(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    ended = abort(engine, rid, actor="alice", reason="wrong candidate")
    assert ended.status == "aborted"
    assert ended.ended_at is not None
    assert routing_state(engine, "prd")["clf"].mode == "champion_only"
    with pytest.raises(ConflictError, match=r"cannot abort rollout #\d+ .*already aborted since"):
        abort(engine, rid, actor="alice", reason="again")


def test_promote_records_release_and_ends_rollout_in_one_step(engine: Engine) -> None:
    make_release(engine, models=dict(clf="1", other="5"))
    rid = _start(engine)
    record, release = promote(
        engine,
        rid,
        actor="controller",
        reason="all stages passed",
        figures={"p95_ms": 12.5},
        code_version="1.1",
        image_version="img-2",
    )
    assert (record.status, record.percent) == ("promoted", 100.0)
    assert release.model_versions == {"clf": "2", "other": "5"}
    assert release.artifact_digests == {"other": "sha-other-5"}  # clf v2 digest unknown
    assert (release.code_version, release.image_version) == ("1.1", "img-2")
    assert release.tag == "v1.1-clfv2-otherv5"
    assert "promote clf v2 (rollout #" in (release.reason or "")
    assert current_release(engine, "prd") == release
    state = routing_state(engine, "prd")["clf"]
    assert (state.mode, state.champion_version) == ("champion_only", "2")
    last = rollout_events(engine, rid)[-1]
    assert (last.kind, last.from_status, last.to_status) == ("promote", "canary", "promoted")
    assert last.figures == {"p95_ms": 12.5, "release": {"id": release.id, "tag": release.tag}}
    with pytest.raises(ConflictError, match="already promoted"):
        promote(engine, rid, actor="x", reason="again", code_version="1", image_version="i")
    assert len(releases_history(engine, "prd")) == 2


def test_rollback_rollout_returns_users_to_champion(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    figures = {"error_rate": {"champion": 0.01, "candidate": 0.2}, "nan": float("nan")}
    rolled = rollback(engine, rid, actor="controller", reason="error rate breach", figures=figures)
    assert rolled.status == "rolled_back"
    assert routing_state(engine, "prd")["clf"].mode == "champion_only"
    last = rollout_events(engine, rid)[-1]
    assert last.figures == {"error_rate": {"champion": 0.01, "candidate": 0.2}, "nan": None}
    assert len(releases_history(engine, "prd")) == 1  # no release for a rollout rollback


def test_record_event_appends_gate_result_without_state_change(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    event = record_event(
        engine,
        rid,
        kind="gate",
        actor="controller",
        reason="waiting for samples",
        figures={"n": 12, "needed": 200},
    )
    assert (event.seq, event.from_status, event.to_status) == (2, "canary", "canary")
    assert get_rollout(engine, rid).status == "canary"
    assert last_figures(engine, [rid])[rid].figures == {"n": 12, "needed": 200}
    with pytest.raises(DataError, match="event kind"):
        record_event(engine, rid, kind="", actor="c")
    with pytest.raises(NotFoundError, match="rollout #999 not found"):
        record_event(engine, 999, kind="gate", actor="c")


def test_unknown_rollout_is_refused_by_every_operation(engine: Engine) -> None:
    for op in (pause, resume, abort, rollback):
        with pytest.raises(NotFoundError, match="rollout #42 not found"):
            op(engine, 42, actor="a", reason="r")
    with pytest.raises(NotFoundError, match="rollout #42 not found"):
        promote(engine, 42, actor="a", reason="r", code_version="1", image_version="i")
    with pytest.raises(NotFoundError, match="rollout #42 not found"):
        get_rollout(engine, 42)
    with pytest.raises(NotFoundError, match="rollout #42 not found"):
        rollout_events(engine, 42)


def test_event_seq_is_unique_per_rollout_in_database(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    rid = _start(engine)
    for i in range(3):
        record_event(engine, rid, kind="gate", actor="c", figures={"i": i})
    with session_scope(engine) as session:
        seqs = session.scalars(
            select(RolloutEvent.seq).where(RolloutEvent.rollout_id == rid).order_by("seq")
        ).all()
    assert seqs == [1, 2, 3, 4]


@dataclass(frozen=True)
class _Verdict:
    """A compat judgement with the shape of core.compat.CompatReport (verdict, reason)."""

    verdict: str
    reason: str


def _three_releases(engine: Engine) -> None:
    for version in ("1", "2", "3"):
        make_release(engine, models=dict(clf=version, other="5"))


def test_rollback_env_to_parent_appends_release_with_old_versions(engine: Engine) -> None:
    _three_releases(engine)
    judged: list[tuple[str, str]] = []

    def verdict(name: str, version: str) -> _Verdict:
        judged.append((name, version))
        return _Verdict("compatible", "loads and reproduces its golden predictions")

    release = rollback_env(
        engine, "prd", actor="oncall", reason="v3 misbehaves", verdict_fn=verdict
    )
    assert release.model_versions == {"clf": "2", "other": "5"}
    assert release.tag == "v1.0-clfv2-otherv5"
    assert release.reason is not None
    assert release.reason.startswith("rollback to v1.0-clfv2-otherv5 (#2): v3 misbehaves")
    assert judged == [("clf", "2")]  # only versions that change are judged
    assert routing_state(engine, "prd")["clf"].champion_version == "2"
    history = releases_history(engine, "prd")
    assert [r.model_versions["clf"] for r in history] == ["2", "3", "2", "1"]


def test_rollback_env_to_tag_rolls_back_active_rollout_of_model(engine: Engine) -> None:
    _three_releases(engine)
    rid = _start(engine, version="4")
    other_rid = _start(engine, model_name="other", version="6")
    first_tag = releases_history(engine, "prd")[-1].tag
    release = rollback_env(engine, "prd", to_tag=first_tag, actor="oncall", reason="back to v1")
    assert release.model_versions["clf"] == "1"
    assert get_rollout(engine, rid).status == "rolled_back"
    assert get_rollout(engine, other_rid).status == "canary"  # its version did not change
    last = rollout_events(engine, rid)[-1]
    assert last.kind == "rollback"
    assert last.figures is not None
    assert last.figures["release"] == {"id": release.id, "tag": release.tag}
    state = routing_state(engine, "prd")
    assert (state["clf"].mode, state["clf"].champion_version) == ("champion_only", "1")
    assert state["other"].mode == "canary"


def test_rollback_env_refuses_broken_target_with_reason_unless_forced(engine: Engine) -> None:
    _three_releases(engine)

    def verdict(name: str, version: str) -> _Verdict:
        return _Verdict("broken", "cannot load: module 'models.text' has no attribute 'Norm'")

    with pytest.raises(
        ConflictError,
        match=r"rollback refused: clf v2 is broken under image img-1: cannot load: "
        r"module 'models.text' has no attribute 'Norm' \(--force to override\)",
    ):
        rollback_env(engine, "prd", actor="oncall", reason="r", verdict_fn=verdict)
    assert len(releases_history(engine, "prd")) == 3  # nothing written

    forced = rollback_env(engine, "prd", actor="oncall", reason="r", verdict_fn=verdict, force=True)
    assert forced.model_versions["clf"] == "2"
    assert forced.forced is True
    assert "(forced past: clf v2 is broken under image img-1" in (forced.reason or "")


def test_rollback_env_refuses_when_nothing_to_roll_back(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match="nothing was ever released in prd"):
        rollback_env(engine, "prd", actor="a", reason="r")
    make_release(engine, models={"clf": "1"})
    with pytest.raises(NotFoundError, match=r"at its first release v1\.0-clfv1"):
        rollback_env(engine, "prd", actor="a", reason="r")
    make_release(engine, models={"clf": "1"})  # same versions again
    with pytest.raises(ConflictError, match="already runs the versions of"):
        rollback_env(engine, "prd", actor="a", reason="r")
    with pytest.raises(NotFoundError, match="unknown release tag 'nope' in prd"):
        rollback_env(engine, "prd", to_tag="nope", actor="a", reason="r")
    with pytest.raises(NotFoundError, match="unknown env"):
        rollback_env(engine, "qa", actor="a", reason="r")
