"""Releases: tags, parents, carry-over of unnamed models, and the routing read side."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from core.errors import NotFoundError
from core.ledger import current_release, record_release, release_tag, routing_state


@pytest.mark.parametrize(
    ("env", "expected"),
    [("dev", "v1.2.3-av42-bv15"), ("prd", "v1.2.3-av42-bv15"), ("stg", "v1.2.3-av42-bv15-rc")],
)
def test_release_tag_names_code_and_models_sorted(env: str, expected: str) -> None:
    assert release_tag(env, "1.2.3", {"b": "15", "a": "42"}) == expected


def test_record_release_links_parent_and_keeps_unnamed_models(engine: Engine) -> None:
    first = record_release(
        engine,
        env="dev",
        code_version="1",
        image_version="i1",
        model_versions={"a": "1", "b": "1"},
        artifact_digests={"a": "d1", "b": "e1"},
        reason="first",
    )
    second = record_release(
        engine,
        env="dev",
        code_version="1",
        image_version="i1",
        model_versions={"a": "2"},
        artifact_digests={"a": "d2"},
        reason="promote a",
    )
    assert second.parent_id == first.id
    assert second.model_versions == {"a": "2", "b": "1"}
    assert second.artifact_digests == {"a": "d2", "b": "e1"}
    assert current_release(engine, "dev") == second
    assert current_release(engine, "prd") is None


def test_unknown_env_is_refused_with_the_known_ones(engine: Engine) -> None:
    with pytest.raises(NotFoundError, match=r"unknown env 'qa'.*dev, stg, prd"):
        current_release(engine, "qa")


def test_routing_state_serves_champion_of_current_release(engine: Engine) -> None:
    record_release(
        engine,
        env="dev",
        code_version="1",
        image_version="i1",
        model_versions={"a": "3"},
        artifact_digests={"a": "d"},
        reason="r",
    )
    state = routing_state(engine, "dev")["a"]
    assert (state.mode, state.champion_version, state.candidate_version) == (
        "champion_only",
        "3",
        None,
    )
    assert routing_state(engine, "stg") == {}
