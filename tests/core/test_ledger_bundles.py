"""Bundle rollouts: several models under one rollout row, one salt, one release.

Each test runs on SQLite and on the real Postgres (the `engine` fixture). A bundle's lead is
`clf`, its member `faq`; the env's first release runs both at v1.
"""

from __future__ import annotations

import pytest
from pydantic import ValidationError
from sqlalchemy import Engine

from core.errors import ConflictError, DataError, NotFoundError
from core.ledger import (
    abort,
    active_rollouts,
    advance_stage,
    completed_versions,
    current_release,
    get_rollout,
    promote,
    releases_history,
    rollback,
    rollback_env,
    rollout_events,
    routing_state,
    start_rollout,
)
from core.manual_actions import RolloutActionRequest, apply_rollout_action
from tests.core.memory_registry import MemoryRegistry
from tests.factories import make_release

STAGES = [1.0, 10.0, 50.0, 100.0]


def _start(engine: Engine, model: str = "clf", version: str = "2", **kwargs: object) -> int:
    args: dict[str, object] = {
        "env": "prd",
        "model_name": model,
        "candidate_version": version,
        "stages": STAGES,
        "actor": "alice",
        "reason": "new embedder and the classifier retrained with it",
    }
    args.update(kwargs)
    return start_rollout(engine, **args).id  # type: ignore[arg-type]


def _registry() -> MemoryRegistry:
    return MemoryRegistry({(m, v): f"sha-{m}-{v}" for m in ("clf", "faq") for v in ("1", "2", "3")})


def test_start_bundle_records_each_member_against_its_champion(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    rollout = get_rollout(engine, _start(engine, bundle={"faq": "2"}, registry=_registry()))
    assert rollout.bundle == {"faq": {"champion": "1", "candidate": "2"}}
    assert rollout.candidate_versions == {"clf": "2", "faq": "2"}
    assert rollout.champion_versions == {"clf": "1", "faq": "1"}
    [event] = rollout_events(engine, rollout.id)
    assert event.figures == {
        "stages": STAGES,
        "mode": "canary",
        "bundle": {"faq": {"champion": "1", "candidate": "2"}},
    }


def test_routing_state_gives_every_member_the_same_arm(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    rid = _start(engine, bundle={"faq": "2"})
    advance_stage(engine, rid, expected_stage_index=0, stages=STAGES, actor="a", reason="ok")
    states = routing_state(engine, "prd")
    clf, faq = states["clf"], states["faq"]
    assert (clf.rollout_id, clf.salt, clf.percent) == (faq.rollout_id, faq.salt, faq.percent)
    assert (clf.rollout_id, clf.percent) == (rid, 10.0)
    assert (faq.champion_version, faq.candidate_version) == ("1", "2")
    assert clf.lead_model == faq.lead_model == "clf"
    assert clf.bundle == faq.bundle == ("clf", "faq")


def test_start_bundle_refuses_a_member_that_is_the_lead(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    with pytest.raises(DataError, match="clf is the rollout's lead"):
        _start(engine, bundle={"clf": "3"})
    assert active_rollouts(engine, "prd") == []


def test_start_bundle_refuses_a_member_whose_candidate_is_its_champion(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    with pytest.raises(ConflictError, match="faq v1 is already the champion in prd"):
        _start(engine, bundle={"faq": "1"})
    assert active_rollouts(engine, "prd") == []


def test_start_bundle_refuses_a_member_without_champion(engine: Engine) -> None:
    make_release(engine, models={"clf": "1"})
    with pytest.raises(NotFoundError, match="no champion of 'faq' in prd"):
        _start(engine, bundle={"faq": "2"})
    assert active_rollouts(engine, "prd") == []


def test_start_bundle_refuses_an_unregistered_member(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    with pytest.raises(NotFoundError, match="'faq' has no version 9"):
        _start(engine, bundle={"faq": "9"}, registry=_registry())


def test_a_model_is_in_one_active_rollout_as_lead_or_member(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1", "other": "1"})
    lone = _start(engine, "faq", "2")
    # a bundle whose member already leads a rollout
    with pytest.raises(ConflictError, match=rf"rollout #{lone} of faq .* already active in prd"):
        _start(engine, bundle={"faq": "3"})
    abort(engine, lone, actor="a", reason="make room")
    bundle = _start(engine, bundle={"faq": "2"})
    # a single rollout of a model that is a member of an active bundle
    with pytest.raises(ConflictError, match=rf"rollout #{bundle} of clf \(with faq\)"):
        _start(engine, "faq", "3")
    # a bundle whose lead is a member of an active bundle, and one that overlaps on a member
    with pytest.raises(ConflictError, match=rf"rollout #{bundle} of clf"):
        _start(engine, "faq", "3", bundle={"other": "2"})
    with pytest.raises(ConflictError, match=rf"rollout #{bundle} of clf \(with faq\)"):
        _start(engine, "other", "2", bundle={"faq": "3"})
    # a model outside the bundle is free
    _start(engine, "other", "2")
    assert sorted(r.model_name for r in active_rollouts(engine, "prd")) == ["clf", "other"]


def test_promote_bundle_appends_one_release_with_every_candidate(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1", "other": "7"})
    registry = _registry()
    registry.aliases |= {("clf", "prd-candidate"): "2", ("faq", "prd-candidate"): "2"}
    rid = _start(engine, bundle={"faq": "2"})
    record, release = promote(
        engine, rid, actor="a", reason="all stages passed", registry=registry,
        code_version="1.1", image_version="img-2",
    )  # fmt: skip
    assert record.status == "promoted"
    assert release.model_versions == {"clf": "2", "faq": "2", "other": "7"}
    assert release.artifact_digests == {
        "clf": "sha-clf-2",
        "faq": "sha-faq-2",
        "other": "sha-other-7",
    }
    assert release.reason == f"promote clf v2 + faq v2 (rollout #{rid}): all stages passed"
    assert len(releases_history(engine, "prd", 10)) == 2  # one release for the whole bundle
    assert registry.env_aliases("prd") == {
        ("clf", "prd-champion"): "2",
        ("clf", "prd-previous"): "1",
        ("faq", "prd-champion"): "2",
        ("faq", "prd-previous"): "1",
    }
    assert {name: s.mode for name, s in routing_state(engine, "prd").items()} == dict.fromkeys(
        ("clf", "faq", "other"), "champion_only"
    )
    # both completed a rollout here: the next env may take them without force
    assert completed_versions(engine, "prd") == {
        "clf": frozenset({"1", "2"}),
        "faq": frozenset({"1", "2"}),
        "other": frozenset({"7"}),
    }


@pytest.mark.parametrize("end", ["rollback", "abort"])
def test_ending_a_bundle_keeps_the_release_and_clears_every_candidate_alias(
    engine: Engine, end: str
) -> None:
    before = make_release(engine, models={"clf": "1", "faq": "1"})
    registry = _registry()
    registry.aliases |= {
        ("clf", "prd-candidate"): "2",
        ("faq", "prd-candidate"): "2",
        ("faq", "stg-candidate"): "2",  # another env's alias is not this rollout's
    }
    rid = _start(engine, bundle={"faq": "2"})
    ender = rollback if end == "rollback" else abort
    record = ender(engine, rid, actor="a", reason="answers got worse", registry=registry)
    assert record.status == ("rolled_back" if end == "rollback" else "aborted")
    assert current_release(engine, "prd") == before
    assert registry.aliases == {("faq", "stg-candidate"): "2"}
    tagged = {key for key, tags in registry.tags.items() if "rolled_back_reason" in tags}
    assert tagged == ({("clf", "2"), ("faq", "2")} if end == "rollback" else set())
    assert set(routing_state(engine, "prd")) == {"clf", "faq"}
    assert all(s.mode == "champion_only" for s in routing_state(engine, "prd").values())


def test_independent_rollouts_of_two_models_move_apart(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    clf, faq = _start(engine, "clf", "2"), _start(engine, "faq", "2")
    assert get_rollout(engine, clf).salt != get_rollout(engine, faq).salt
    advance_stage(engine, clf, expected_stage_index=0, stages=STAGES, actor="a", reason="ok")
    rollback(engine, faq, actor="a", reason="worse answers")
    states = routing_state(engine, "prd")
    assert (states["clf"].mode, states["clf"].percent, states["clf"].bundle) == (
        "canary",
        10.0,
        ("clf",),
    )
    assert states["faq"].mode == "champion_only"
    _, release = promote(engine, clf, actor="a", reason="ok", code_version="1", image_version="i")
    assert release.model_versions == {"clf": "2", "faq": "1"}


def test_env_rollback_ends_a_bundle_when_a_member_changes(engine: Engine) -> None:
    first = make_release(engine, models={"clf": "1", "faq": "1"})
    make_release(engine, models={"clf": "1", "faq": "2"})
    rid = _start(engine, "clf", "2", bundle={"faq": "3"})
    release = rollback_env(engine, "prd", actor="a", reason="faq v2 answers badly")
    assert release.model_versions == first.model_versions
    assert get_rollout(engine, rid).status == "rolled_back"


def test_a_manual_start_request_opens_a_bundle(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    request = RolloutActionRequest(
        action="start", actor="ana", reason="embedder v2", env="prd", model_name="clf",
        candidate_version="2", bundle={"faq": "2"},
    )  # fmt: skip
    record, release = apply_rollout_action(
        engine, request, registry=_registry(), stages=STAGES, code_version="1", image_version="i"
    )
    assert release is None
    assert record.candidate_versions == {"clf": "2", "faq": "2"}
    with pytest.raises(ValidationError, match=r"bundle\.faq"):
        RolloutActionRequest(
            action="start", actor="ana", reason="r", env="prd", model_name="clf",
            candidate_version="2", bundle={"faq": "v2"},
        )  # fmt: skip


def test_env_rollback_never_removes_a_model(engine: Engine) -> None:
    """A first release of the classifier alone, then one with the retriever too: rolling
    back to the first would stop serving the retriever, so it is refused, and nothing is
    written."""
    from core.ledger import current_release, rollback_env
    from tests.factories import make_release

    make_release(engine, env="stg", models={"intent-classifier": "1"})
    both = make_release(engine, env="stg", models={"intent-classifier": "1", "faq-retriever": "1"})
    with pytest.raises(ConflictError, match="never removes a model"):
        rollback_env(engine, "stg", actor="ana", reason="try")
    assert current_release(engine, "stg") == both
