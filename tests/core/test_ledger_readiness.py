"""A version whose release state is not published takes no traffic.

Starting a rollout (shadow or canary, alone or in a bundle), promoting one, an env
rollback, an env promotion and a shadow evaluation each refuse with StateNotReadyError
naming the model, the version and the fix; each goes through once the state's
`release_states` row exists. `stateful` names the models that read state (the callers'
knowledge: here `faq`); with none named nothing is asked. SQLite and the real Postgres.
"""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from core.db import ReleaseStateRow, session_scope, utcnow
from core.errors import StateNotReadyError
from core.ledger import (
    current_release,
    get_rollout,
    promote,
    require_state_ready,
    rollback_env,
    routing_state,
    start_rollout,
)
from core.promotion import promote_release
from core.release_state import model_state_key
from core.shadow import resolve_subjects
from tests.core.memory_registry import MemoryRegistry
from tests.factories import make_release

STAGES = [1.0, 50.0, 100.0]
STATEFUL = frozenset({"faq"})
MISSING = r"release state not ready for faq v2 \(state [0-9a-f]{16}\).*build_release_state"


def publish_state(engine: Engine, model: str, version: str) -> str:
    """Publish the release state of one model version (its `release_states` row, which is
    what a finished build leaves); return its key."""
    key = model_state_key(model, version)
    with session_scope(engine) as session:
        session.add(
            ReleaseStateRow(
                key=key, backend=engine.dialect.name, location=f"release_state_{key}",
                model_versions={model: version}, rows=3, built_at=utcnow(), build_seconds=0.1,
            )
        )  # fmt: skip
    return key


def _start(engine: Engine, **kwargs: object) -> int:
    args: dict[str, object] = {
        "env": "prd",
        "model_name": "faq",
        "candidate_version": "2",
        "stages": STAGES,
        "actor": "alice",
        "reason": "new embedder",
        "stateful": STATEFUL,
    }
    args.update(kwargs)
    return start_rollout(engine, **args).id  # type: ignore[arg-type]


def test_require_state_ready_reads_nothing_without_stateful_models(engine: Engine) -> None:
    assert require_state_ready(engine, {"faq": "2", "clf": "2"}, ()) == {}
    key = publish_state(engine, "faq", "2")
    assert require_state_ready(engine, {"faq": "2", "clf": "2"}, STATEFUL) == {"faq": key}


@pytest.mark.parametrize("mode", ["shadow", "canary"])
def test_start_rollout_refuses_a_candidate_without_state(engine: Engine, mode: str) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    with pytest.raises(StateNotReadyError, match=MISSING):
        _start(engine, mode=mode)
    with pytest.raises(StateNotReadyError, match=MISSING):  # a member of a bundle too
        _start(engine, model_name="clf", bundle={"faq": "2"}, mode=mode)
    assert routing_state(engine, "prd")["faq"].mode == "champion_only"
    publish_state(engine, "faq", "2")
    rid = _start(engine, model_name="clf", bundle={"faq": "2"}, mode=mode)
    assert routing_state(engine, "prd")["faq"].rollout_id == rid


def test_promote_refuses_a_candidate_whose_state_is_gone(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    rid = _start(engine, model_name="clf", bundle={"faq": "2"}, stateful=())
    with pytest.raises(StateNotReadyError, match=MISSING):
        promote(
            engine, rid, actor="a", reason="ok", code_version="1", image_version="i",
            stateful=STATEFUL,
        )  # fmt: skip
    assert get_rollout(engine, rid).status == "canary"
    publish_state(engine, "faq", "2")
    _, release = promote(
        engine, rid, actor="a", reason="ok", code_version="1", image_version="i",
        stateful=STATEFUL,
    )  # fmt: skip
    assert release.model_versions == {"clf": "2", "faq": "2"}


def test_env_rollback_refuses_a_target_whose_state_is_gone(engine: Engine) -> None:
    first = make_release(engine, models={"clf": "1", "faq": "2"})
    make_release(engine, models={"clf": "1", "faq": "3"})
    with pytest.raises(StateNotReadyError, match=MISSING):
        rollback_env(engine, "prd", actor="a", reason="faq v3 answers badly", stateful=STATEFUL)
    current = current_release(engine, "prd")
    assert current is not None
    assert current.model_versions["faq"] == "3"
    publish_state(engine, "faq", "2")
    release = rollback_env(
        engine, "prd", actor="a", reason="faq v3 answers badly", stateful=STATEFUL
    )
    assert release.model_versions == first.model_versions


def test_env_promotion_refuses_a_version_without_state(engine: Engine) -> None:
    make_release(engine, env="stg", models={"clf": "1", "faq": "2"})
    make_release(engine, env="prd", models={"clf": "1", "faq": "1"})
    registry = MemoryRegistry({("clf", "1"): "sha-clf-1", ("faq", "2"): "sha-faq-2"})
    args = {"from_env": "stg", "to_env": "prd", "stages": STAGES, "actor": "a", "reason": "go"}
    with pytest.raises(StateNotReadyError, match=MISSING):
        promote_release(engine, registry, force=True, stateful=STATEFUL, **args)  # type: ignore[arg-type]
    assert routing_state(engine, "prd")["faq"].mode == "champion_only"
    publish_state(engine, "faq", "2")
    [rollout] = promote_release(engine, registry, stateful=STATEFUL, **args)  # type: ignore[arg-type]
    assert (rollout.model_name, rollout.candidate_version) == ("faq", "2")


def test_shadow_evaluation_refuses_a_candidate_without_state(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    registry = MemoryRegistry({("faq", "1"): "a", ("faq", "2"): "b"})
    registry.aliases[("faq", "prd-candidate")] = "2"
    with pytest.raises(StateNotReadyError, match=MISSING):
        resolve_subjects(
            engine, registry, env="prd", model_name="faq", candidate_version=None,
            stateful=STATEFUL,
        )  # fmt: skip
    publish_state(engine, "faq", "2")
    subjects = resolve_subjects(
        engine, registry, env="prd", model_name="faq", candidate_version=None, stateful=STATEFUL
    )
    assert (subjects.champion_version, subjects.candidate_version) == ("1", "2")


def test_shadow_subjects_of_a_bundle_member_come_from_its_bundle(engine: Engine) -> None:
    make_release(engine, models={"clf": "1", "faq": "1"})
    rid = _start(engine, model_name="clf", bundle={"faq": "2"}, mode="shadow", stateful=())
    subjects = resolve_subjects(
        engine, MemoryRegistry({}), env="prd", model_name="faq", candidate_version=None
    )
    assert subjects.rollout is not None
    assert (subjects.rollout.id, subjects.candidate_version) == (rid, "2")
