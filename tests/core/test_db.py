"""The state schema migrates identically on SQLite and Postgres and enforces its invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine, inspect, select, text
from sqlalchemy.exc import IntegrityError

from core.db import Release, Rollout, Traffic, make_engine, session_scope, upgrade, utcnow
from core.db.engine import current_revision, table_names

EXPECTED_TABLES = {"traffic", "feedback", "rollouts", "rollout_events", "releases"}


def _rollout(env: str = "dev", model: str = "m", status: str = "canary") -> Rollout:
    now = utcnow()
    return Rollout(
        env=env,
        model_name=model,
        champion_version="1",
        candidate_version="2",
        salt="s",
        stage_index=0,
        percent=1.0,
        status=status,
        stage_started_at=now,
        created_at=now,
        updated_at=now,
        event_seq=0,
    )


def test_upgrade_creates_every_table_and_is_safe_to_rerun(db_url: str) -> None:
    eng = make_engine(db_url)
    first = upgrade(eng)
    second = upgrade(eng)
    assert first == second == current_revision(eng)
    assert table_names(eng) >= EXPECTED_TABLES
    eng.dispose()


def test_traffic_has_index_for_per_rollout_time_windows(engine: Engine) -> None:
    indexes = {tuple(ix["column_names"]) for ix in inspect(engine).get_indexes("traffic")}
    assert ("rollout_id", "ts") in indexes


def test_timestamps_round_trip_as_aware_utc(engine: Engine) -> None:
    when = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC) + timedelta(microseconds=7)
    with session_scope(engine) as s:
        s.add(
            Traffic(
                request_id="r",
                ts=when,
                env="dev",
                user_id=None,
                rollout_id=None,
                model_name="m",
                model_version="1",
                role="champion",
                input_text="x",
                output="y",
                latency_ms=1.0,
                error=None,
            )
        )
    with session_scope(engine) as s:
        got = s.scalars(select(Traffic.ts)).one()
    assert got == when
    assert got.tzinfo is not None


def test_naive_datetime_is_refused(engine: Engine) -> None:
    with pytest.raises(Exception, match="naive datetime"), session_scope(engine) as s:
        s.add(
            Traffic(
                request_id="r",
                ts=datetime(2026, 1, 1),
                env="dev",
                user_id=None,
                rollout_id=None,
                model_name="m",
                model_version="1",
                role="champion",
                input_text="x",
                output="y",
                latency_ms=1.0,
                error=None,
            )
        )


def test_database_allows_one_active_rollout_per_env_and_model(engine: Engine) -> None:
    with session_scope(engine) as s:
        s.add(_rollout())
    with pytest.raises(IntegrityError), session_scope(engine) as s:
        s.add(_rollout(status="paused"))
    with session_scope(engine) as s:  # other env, or a finished rollout, is fine
        s.add(_rollout(env="stg"))
        s.add(_rollout(status="rolled_back"))


def test_migration_0004_adds_forced_to_an_existing_database(db_url: str) -> None:
    eng = make_engine(db_url)
    assert upgrade(eng, "0003") == "0003"
    insert = text(
        "INSERT INTO releases (env, created_at, code_version, image_version, model_versions, "
        "artifact_digests, tag, reason, actor) VALUES ('prd', :at, '1', 'i', :models, '{}', "
        ":tag, :reason, 'ops')"
    )
    with eng.begin() as conn:
        for tag, reason in (
            ("v1-mv1", "first"),
            ("v1-mv2", "rollback to v1-mv2 (#1): r [FORCED past: m v2 is broken under image i]"),
        ):
            params = {"at": utcnow().replace(tzinfo=None), "models": '{"m": "1"}'}
            conn.execute(insert, {**params, "tag": tag, "reason": reason})

    assert upgrade(eng) == current_revision(eng) != "0003"
    columns = {c["name"]: c for c in inspect(eng).get_columns("releases")}
    assert columns["forced"]["nullable"] is False
    with session_scope(eng) as s:
        forced = dict(s.execute(select(Release.tag, Release.forced).order_by(Release.id)).all())
    assert forced == {"v1-mv1": False, "v1-mv2": True}  # backfilled from the old reason text
    with eng.begin() as conn:  # a writer that does not know the column gets the default
        conn.execute(insert, {**params, "tag": "v1-mv3", "reason": "later"})
    with session_scope(eng) as s:
        assert s.scalar(select(Release.forced).where(Release.tag == "v1-mv3")) is False
    eng.dispose()
