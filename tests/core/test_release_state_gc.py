"""Garbage collection of release states: the last K releases' states and active rollouts'
(lead and bundle members) stay, older ones and abandoned staging areas go, and a staging
area whose build is alive is never touched."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, update

from core.db import Rollout, session_scope
from core.ledger import start_rollout
from core.release_state import (
    build_answer_index,
    build_lock,
    collect_garbage,
    find_state,
    model_state_key,
    plan_chunks,
    prepare_staging,
    write_chunk,
)
from tests.core.test_release_state import RETRIEVER, TfidfEmbedder, make_corpus
from tests.factories import make_release

STATEFUL = {RETRIEVER}
CORPUS = make_corpus(60)
CLASSIFIER = "intent-classifier"


@pytest.fixture(scope="module")
def embedder() -> TfidfEmbedder:
    return TfidfEmbedder(CORPUS["text"], dims=8)


def _build(engine: Engine, state_dir: Path, embedder: TfidfEmbedder, model: str, v: str) -> str:
    state, _ = build_answer_index(
        engine, model, v, embedder, CORPUS, state_dir=state_dir, chunk_rows=30
    )
    return state.key


@pytest.fixture
def held_lock(engine: Engine) -> Iterator[str]:
    """A build of retriever v9 that is alive: its lock held by another thread."""
    key = model_state_key(RETRIEVER, "9")
    taken, done = threading.Event(), threading.Event()

    def hold() -> None:
        with build_lock(engine, key, timeout=5):
            taken.set()
            done.wait(30)

    thread = threading.Thread(target=hold)
    thread.start()
    assert taken.wait(10)
    yield key
    done.set()
    thread.join()


def _seed(engine: Engine, state_dir: Path, embedder: TfidfEmbedder) -> dict[str, str]:
    """States of retriever v1..v6 and of classifier v1; releases and a bundle rollout."""
    keys = {v: _build(engine, state_dir, embedder, RETRIEVER, v) for v in "123456"}
    keys["classifier"] = _build(engine, state_dir, embedder, CLASSIFIER, "1")
    for version in "1234":  # prd: v4 is in force, v3 before it
        make_release(engine, env="prd", models={CLASSIFIER: "1", RETRIEVER: version})
    make_release(engine, env="stg", models={CLASSIFIER: "1", RETRIEVER: "2"})
    rollout = start_rollout(
        engine, env="prd", model_name=CLASSIFIER, candidate_version="2",
        stages=[10.0, 100.0], actor="test", reason="bundle with retriever v5",
    )  # fmt: skip
    # the bundle member, as migration 0006 stores it (the ledger API that opens bundles
    # is another branch's work; the column and RolloutRecord.bundle are on main)
    with session_scope(engine) as session:
        session.execute(
            update(Rollout)
            .where(Rollout.id == rollout.id)
            .values(bundle={RETRIEVER: {"champion": "4", "candidate": "5"}})
        )
    return keys


def test_gc_keeps_recent_releases_and_active_rollouts_and_drops_the_rest(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder, held_lock: str
) -> None:
    state_dir = tmp_path / "states"
    keys = _seed(engine, state_dir, embedder)
    # an abandoned staging area (its build died) and one whose build is alive
    abandoned = prepare_staging(engine, model_state_key(RETRIEVER, "8"), state_dir=state_dir)
    write_chunk(engine, abandoned, plan_chunks(CORPUS, 30)[0], embedder)
    alive = prepare_staging(engine, held_lock, state_dir=state_dir)

    dry = collect_garbage(
        engine, keep_releases=2, stateful=STATEFUL, state_dir=state_dir, dry_run=True
    )
    assert sorted(dry.dropped) == sorted([keys["1"], keys["classifier"]])
    assert find_state(engine, keys["1"]) is not None  # a dry run drops nothing

    report = collect_garbage(engine, keep_releases=2, stateful=STATEFUL, state_dir=state_dir)

    # prd's last two (v3, v4), stg's (v2), the rollout's champion v4 and candidate v5,
    # and v6: newer than any release, a candidate whose rollout has not started yet
    assert sorted(report.kept) == sorted(keys[v] for v in "23456")
    assert sorted(report.dropped) == sorted([keys["1"], keys["classifier"]])
    assert report.orphans == [abandoned.location]
    assert report.busy == [alive.location]
    assert find_state(engine, keys["1"]) is None
    assert find_state(engine, keys["classifier"]) is None
    assert _areas(engine, state_dir) == sorted(
        [*(f"release_state_{keys[v]}" for v in "23456"), f"release_state_{held_lock}_staging"]
    )

    again = collect_garbage(engine, keep_releases=2, stateful=STATEFUL, state_dir=state_dir)
    assert again.dropped == again.orphans == []


def test_gc_keeps_one_release_per_env_at_least(engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="keep_releases must be >= 1"):
        collect_garbage(engine, keep_releases=0, stateful=STATEFUL, state_dir=tmp_path)


def _areas(engine: Engine, state_dir: Path) -> list[str]:
    """The state schemas (Postgres) or files (SQLite, without `.db`) that exist."""
    if engine.dialect.name == "postgresql":
        from sqlalchemy import text

        with engine.connect() as conn:
            return sorted(
                conn.execute(
                    text(
                        "SELECT schema_name FROM information_schema.schemata "
                        "WHERE schema_name LIKE 'release_state%'"
                    )
                ).scalars()
            )
    return sorted(p.name.removesuffix(".db") for p in state_dir.glob("*.db"))
