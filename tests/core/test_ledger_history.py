"""Release history: the release in force at a time, lookups by tag, diffs, tags per env.

Each test runs on SQLite and on the real Postgres (the `engine` fixture).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from core.errors import NotFoundError
from core.ledger import (
    ENVIRONMENTS,
    ReleaseRecord,
    current_release,
    diff_releases,
    record_release,
    release_at,
    release_by_tag,
    releases_history,
)
from tests.factories import make_release

T0 = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)  # a Tuesday morning


@pytest.fixture
def timeline(engine: Engine) -> dict[str, ReleaseRecord]:
    """prd: r1 at 09:00, r2 at 12:00 (a v43), r3 at 14:00 (image bump, b v16), r4 next day."""
    return {
        "r1": make_release(
            engine, env="prd", at=T0, models={"a": "42", "b": "15"}, code_version="1.2.3"
        ),
        "r2": make_release(
            engine, env="prd", at=T0 + timedelta(hours=3), models={"a": "43"}, code_version="1.2.3"
        ),
        "r3": make_release(
            engine,
            env="prd",
            at=T0 + timedelta(hours=5),
            models={"b": "16"},
            image_version="img-2",
            code_version="1.2.3",
        ),
        "r4": make_release(
            engine,
            env="prd",
            at=T0 + timedelta(days=1),
            models={"a": "44"},
            image_version="img-2",
            code_version="1.3.0",
        ),
        # other envs at the same times must never leak into prd's answers
        "dev": make_release(
            engine, env="dev", at=T0 + timedelta(hours=4), models={"a": "99"}, code_version="1.2.3"
        ),
    }


@pytest.mark.parametrize(
    ("at", "expected"),
    [
        (T0 - timedelta(seconds=1), None),
        (T0, "r1"),
        (T0 + timedelta(hours=2, minutes=59), "r1"),
        (T0 + timedelta(hours=3), "r2"),
        (T0 + timedelta(hours=4, minutes=30), "r2"),  # dev released at 13:00, prd did not
        (T0 + timedelta(hours=5), "r3"),
        (T0 + timedelta(hours=23), "r3"),
        (T0 + timedelta(days=30), "r4"),
    ],
)
def test_release_at_returns_release_in_force_at_time(
    engine: Engine, timeline: dict[str, ReleaseRecord], at: datetime, expected: str | None
) -> None:
    found = release_at(engine, "prd", at)
    assert (found.id if found else None) == (timeline[expected].id if expected else None)


def test_release_at_answers_last_tuesday_at_14h_with_versions(
    engine: Engine, timeline: dict[str, ReleaseRecord]
) -> None:
    found = release_at(engine, "prd", T0.replace(hour=14) + timedelta(minutes=1))
    assert found is not None
    assert (found.code_version, found.image_version) == ("1.2.3", "img-2")
    assert found.model_versions == {"a": "43", "b": "16"}
    assert found.tag == "v1.2.3-av43-bv16"
    assert found.artifact_digests == {"a": "sha-a-43", "b": "sha-b-16"}


def test_release_at_refuses_naive_time(engine: Engine) -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        release_at(engine, "prd", datetime(2026, 1, 1))


def test_releases_history_lists_env_newest_first_with_parents(
    engine: Engine, timeline: dict[str, ReleaseRecord]
) -> None:
    history = releases_history(engine, "prd")
    assert [r.id for r in history] == [timeline[k].id for k in ("r4", "r3", "r2", "r1")]
    assert [r.parent_id for r in history] == [
        timeline["r3"].id,
        timeline["r2"].id,
        timeline["r1"].id,
        None,
    ]
    assert [r.id for r in releases_history(engine, "prd", limit=2)] == [
        timeline["r4"].id,
        timeline["r3"].id,
    ]
    assert releases_history(engine, "stg") == []


def test_diff_releases_reports_models_image_and_code(
    engine: Engine, timeline: dict[str, ReleaseRecord]
) -> None:
    diff = diff_releases(timeline["r1"], timeline["r4"])
    assert diff.changed == {"a": ("42", "44"), "b": ("15", "16")}
    assert (diff.added, diff.removed, diff.unchanged) == ({}, {}, {})
    assert diff.code == ("1.2.3", "1.3.0")
    assert diff.image == ("img-1", "img-2")
    assert diff.digests_changed["a"] == ("sha-a-42", "sha-a-44")
    assert not diff.is_empty

    same = diff_releases(timeline["r2"], timeline["r2"])
    assert same.is_empty
    assert same.unchanged == {"a": "43", "b": "15"}


def test_diff_releases_reports_added_and_removed_models(engine: Engine) -> None:
    a = make_release(engine, env="dev", at=T0, models={"a": "1", "b": "2"}, code_version="1.2.3")
    b = record_release(
        engine,
        env="dev",
        code_version="1.2.3",
        image_version="img-1",
        model_versions={"a": "1", "c": "7"},
        artifact_digests={},
        reason="swap b for c",
        replace_models=True,
        at=T0 + timedelta(hours=1),
    )
    diff = diff_releases(a, b)
    assert diff.added == {"c": "7"}
    assert diff.removed == {"b": "2"}
    assert diff.unchanged == {"a": "1"}
    assert (diff.code, diff.image) == (None, None)


def test_release_tags_in_dev_stg_prd_name_code_and_models(engine: Engine) -> None:
    tags = {
        env: make_release(
            engine,
            env=env,
            at=T0,
            models={"intent-classifier": "42", "ranker": "15"},
            code_version="1.2.3",
        ).tag
        for env in ENVIRONMENTS
    }
    assert tags == {
        "dev": "v1.2.3-intent-classifierv42-rankerv15",
        "stg": "v1.2.3-intent-classifierv42-rankerv15-rc",
        "prd": "v1.2.3-intent-classifierv42-rankerv15",
    }
    # the same tag names a different row in each env
    assert release_by_tag(engine, tags["prd"], "prd").env == "prd"
    assert release_by_tag(engine, tags["dev"], "dev").env == "dev"
    assert release_by_tag(engine, tags["stg"]).env == "stg"


def test_release_by_tag_returns_newest_row_with_that_tag(
    engine: Engine, timeline: dict[str, ReleaseRecord]
) -> None:
    again = make_release(
        engine,
        env="prd",
        at=T0 + timedelta(days=2),
        models={"a": "42", "b": "15"},
        image_version="img-1",
        code_version="1.2.3",
    )
    assert again.tag == timeline["r1"].tag
    assert release_by_tag(engine, again.tag, "prd").id == again.id
    assert current_release(engine, "prd") == again


def test_release_by_tag_unknown_names_newest_tags(
    engine: Engine, timeline: dict[str, ReleaseRecord]
) -> None:
    with pytest.raises(NotFoundError, match=r"unknown release tag 'v9' in prd \(newest: v1\.3\.0"):
        release_by_tag(engine, "v9", "prd")
    with pytest.raises(NotFoundError, match="no releases recorded yet"):
        release_by_tag(engine, "v9", "stg")
    with pytest.raises(NotFoundError, match="unknown env 'qa'"):
        release_by_tag(engine, "v9", "qa")
