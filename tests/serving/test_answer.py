"""POST /answer over real HTTP on loopback: the classifier's intent and the retriever's
top-k answers from the answer index (release state) of the version serving each user;
bundles, independent rollouts, instant rollback, and candidates without state."""

from __future__ import annotations

import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from conftest import RouterFactory, router_settings, wait_until
from retrieval import (
    CLASSIFIER,
    CORPUS,
    QUERIES,
    RETRIEVER,
    STATEFUL,
    LoadedModels,
    TinyRetriever,
    publish_answer_index,
    tiny_classifier,
)
from sqlalchemy import Engine, func, select

from core.db import ReleaseStateRow, Rollout, Traffic, make_engine, session_scope, upgrade
from core.ledger import record_release, rollback_env, start_rollout
from core.release_state import model_state_key
from core.routing import in_candidate_arm

USERS = 2000


@dataclass(frozen=True)
class Fitted:
    """Real fitted models: two identical classifiers, an embedder and its upgrade."""

    classifier: object
    retriever_v1: TinyRetriever
    retriever_v2: TinyRetriever

    def source(self) -> LoadedModels:
        return (
            LoadedModels()
            .add(CLASSIFIER, "1", self.classifier)
            .add(CLASSIFIER, "2", self.classifier)
            .add(RETRIEVER, "1", self.retriever_v1)
            .add(RETRIEVER, "2", self.retriever_v2)
        )


@pytest.fixture(scope="module")
def fitted() -> Fitted:
    return Fitted(
        tiny_classifier(),
        TinyRetriever(dims=8).fit(CORPUS),
        TinyRetriever(dims=12, seed=3).fit(CORPUS),
    )


def release(engine: Engine, versions: dict[str, str]) -> None:
    record_release(
        engine,
        env="dev",
        code_version="0.1.0",
        image_version="test",
        model_versions=versions,
        artifact_digests=dict.fromkeys(versions, "sha256:test"),
        reason="test",
        actor="test",
    )


def open_rollout(
    engine: Engine,
    model: str,
    candidate: str,
    percent: float,
    *,
    bundle: dict[str, Any] | None = None,
) -> tuple[int, str]:
    """A canary of `model` at `percent` (with `bundle` members); (rollout id, salt)."""
    stages = sorted({percent, 100.0})
    record = start_rollout(
        engine,
        env="dev",
        model_name=model,
        candidate_version=candidate,
        stages=stages,
        actor="test",
        reason="test",
    )
    if bundle is not None:  # start_rollout has no bundle= yet: the row's column, as 0006 has it
        with session_scope(engine) as session:
            row = session.get(Rollout, record.id)
            assert row is not None
            row.bundle = bundle
    return record.id, record.salt


@pytest.fixture
def answer_db(db_url: str, tmp_path: Path) -> Iterator[tuple[Engine, Path]]:
    """A migrated state db (SQLite and Postgres) whose dev release serves classifier v1
    and retriever v1, with retriever v1's answer index published."""
    engine = make_engine(db_url)
    upgrade(engine)
    yield engine, tmp_path / "release_state"
    engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def _start(
    run_router: RouterFactory,
    engine: Engine,
    fitted: Fitted,
    *,
    wait_ready: bool = True,
    **settings: Any,
) -> Any:
    return run_router(
        # a loaded test machine must not turn a slow candidate call into a fallback here
        router_settings(
            _url(engine),
            MODELS=[CLASSIFIER, RETRIEVER],
            **{"ROUTER_CANDIDATE_TIMEOUT_MS": 5000.0, **settings},
        ),
        wait_ready=wait_ready,
        model_source=fitted.source(),
        stateful=STATEFUL,
        shadow_in_canary=False,
    )


def _traffic(engine: Engine) -> list[Traffic]:
    with session_scope(engine) as session:
        rows = session.scalars(select(Traffic).order_by(Traffic.id)).all()
        session.expunge_all()
        return list(rows)


def test_answer_returns_intent_and_top_k_from_the_served_index(
    answer_db: tuple[Engine, Path], fitted: Fitted, run_router: RouterFactory
) -> None:
    engine, state_dir = answer_db
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    key = publish_answer_index(engine, "1", fitted.retriever_v1, state_dir)
    router = _start(run_router, engine, fitted)
    question, intent = QUERIES[0]
    body = router.client.post("/answer", json={"text": question, "user_id": "u1"}).json()
    index = router.service.plans()[RETRIEVER].champion_index
    expected = index.top_k(fitted.retriever_v1.embed([question]), 3)[0]
    assert body["intent"] == intent
    assert [a["answer_id"] for a in body["answers"]] == [a.answer_id for a in expected]
    assert body["answers"][0]["answer_id"].startswith("refund")
    assert body["answers"][0]["score"] == pytest.approx(expected[0].score)
    assert body["served"] == {
        CLASSIFIER: {"version": "1", "role": "champion", "state_key": None},
        RETRIEVER: {"version": "1", "role": "champion", "state_key": key},
    }
    five = router.client.post("/answer", json={"text": question, "k": 5}).json()
    assert len(five["answers"]) == 5
    for bad in ({"text": question, "k": 11}, {"text": question, "k": 0}, {"text": ""}):
        assert router.client.post("/answer", json=bad).status_code == 422
    assert router.client.post("/answer", json={"text": "x" * 2001}).status_code == 422
    assert router.client.post("/predict", json={"text": question}).json()["intent"] == intent
    assert "/answer" in router.client.get("/openapi.json").json()["paths"]
    router.stop()
    rows = [r for r in _traffic(engine) if r.request_id == body["request_id"]]
    by_model = {r.model_name: r for r in rows}
    assert len(rows) == 2
    assert (by_model[CLASSIFIER].model_version, by_model[CLASSIFIER].role) == ("1", "champion")
    assert by_model[CLASSIFIER].state_key is None
    assert by_model[CLASSIFIER].output == intent
    assert (by_model[RETRIEVER].model_version, by_model[RETRIEVER].state_key) == ("1", key)
    assert by_model[RETRIEVER].output == ",".join(a.answer_id for a in expected)
    # one clock: both rows of a request carry the same endpoint span
    assert by_model[CLASSIFIER].latency_ms == by_model[RETRIEVER].latency_ms > 0


def test_answer_is_404_without_a_retriever_and_503_before_its_state(
    sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    only_classifier = run_router(
        router_settings(sqlite_url, MODELS=[CLASSIFIER]),
        model_source=fitted.source(),
        stateful=STATEFUL,
    )
    missing = only_classifier.client.post("/answer", json={"text": "refund"})
    assert missing.status_code == 404
    assert "faq-retriever" in missing.json()["detail"]
    only_classifier.stop()
    router = _start(run_router, engine, fitted, wait_ready=False)
    time.sleep(0.6)  # a few polls: the retriever's state is not published
    not_ready = router.client.post("/answer", json={"text": "refund"})
    assert not_ready.status_code == 503
    assert "faq-retriever (with its release state)" in not_ready.json()["detail"]
    assert router.client.get("/ready").status_code == 503
    assert router.client.post("/predict", json={"text": "refund"}).status_code == 200
    publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path / "state")
    wait_until(router.service.is_ready, timeout=10)
    assert router.client.post("/answer", json={"text": "refund"}).status_code == 200
    router.stop()
    engine.dispose()


def _routed(role: str) -> str:
    """The arm routing chose for a served role: a fallback was routed to the candidate."""
    return "candidate" if role == "fallback" else role


def _roles(router: Any, users: list[str]) -> dict[str, tuple[str, str]]:
    """Per user, the arm routing chose for (classifier, retriever) in one /answer (16
    clients at once: loopback round trips, not the router, bound a sequential loop).

    A candidate call that misses its deadline on a loaded machine is answered by the
    champion (role "fallback"); routing still chose the candidate, so that is the arm
    reported. Fallbacks are the exception: more than 1% of users fails the test."""

    def one(user: str) -> tuple[tuple[str, str], bool]:
        body = router.client.post("/answer", json={"text": "where is my refund", "user_id": user})
        served = body.json()["served"]
        for model in (CLASSIFIER, RETRIEVER):  # the candidate arm is version 2, and only it
            assert (served[model]["version"] == "2") == (served[model]["role"] == "candidate")
        classifier, retriever = (_routed(served[m]["role"]) for m in (CLASSIFIER, RETRIEVER))
        fell_back = "fallback" in (served[CLASSIFIER]["role"], served[RETRIEVER]["role"])
        return (classifier, retriever), fell_back

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(one, users))
    assert sum(fell_back for _, fell_back in answers) <= len(users) // 100, "too many fallbacks"
    return dict(zip(users, (arms for arms, _ in answers), strict=True))


def test_bundle_canary_serves_each_user_one_consistent_pair(
    sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path)
    key2 = publish_answer_index(engine, "2", fitted.retriever_v2, tmp_path)
    rollout_id, salt = open_rollout(
        engine, RETRIEVER, "2", 30.0, bundle={CLASSIFIER: {"champion": "1", "candidate": "2"}}
    )
    router = _start(run_router, engine, fitted)
    users = [f"user-{i}" for i in range(USERS)]
    roles = _roles(router, users)
    again = _roles(router, users[:300])
    router.stop()
    assert all(again[u] == roles[u] for u in again)  # sticky
    assert {r for pair in roles.values() for r in pair} == {"champion", "candidate"}
    assert all(c == r for c, r in roles.values()), "a user saw a mixed pair"
    share = sum(c == "candidate" for c, _ in roles.values()) / USERS
    assert 0.27 <= share <= 0.33
    assert all((roles[u][0] == "candidate") == in_candidate_arm(salt, u, 30.0) for u in users)
    rows = [r for r in _traffic(engine) if r.role == "candidate"]
    assert {r.rollout_id for r in rows} == {rollout_id}
    assert {(r.model_name, r.model_version, r.state_key) for r in rows} == {
        (CLASSIFIER, "2", None),
        (RETRIEVER, "2", key2),
    }
    engine.dispose()


def test_independent_rollouts_hash_each_user_per_rollout(
    sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path)
    publish_answer_index(engine, "2", fitted.retriever_v2, tmp_path)
    _, salt_c = open_rollout(engine, CLASSIFIER, "2", 50.0)
    _, salt_r = open_rollout(engine, RETRIEVER, "2", 50.0)
    router = _start(run_router, engine, fitted)
    users = [f"user-{i}" for i in range(USERS)]
    roles = _roles(router, users)
    again = _roles(router, users[:300])
    router.stop()
    assert all(again[u] == roles[u] for u in again)  # sticky per model
    for user, (c, r) in roles.items():
        assert (c == "candidate") == in_candidate_arm(salt_c, user, 50.0)
        assert (r == "candidate") == in_candidate_arm(salt_r, user, 50.0)
    joint = {
        pair: sum(v == pair for v in roles.values()) / USERS
        for pair in [(a, b) for a in ("champion", "candidate") for b in ("champion", "candidate")]
    }
    assert all(0.21 <= share <= 0.29 for share in joint.values()), joint  # ~ independent
    engine.dispose()


@pytest.mark.parametrize("bundle", [True, False], ids=["bundle", "retriever-alone"])
def test_candidate_retriever_without_state_never_answers(
    bundle: bool, sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    key1 = publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path)  # v2: none
    if bundle:
        rollout_id, _ = open_rollout(
            engine, CLASSIFIER, "2", 100.0, bundle={RETRIEVER: {"champion": "1", "candidate": "2"}}
        )
    else:
        rollout_id, _ = open_rollout(engine, RETRIEVER, "2", 100.0)
    router = _start(run_router, engine, fitted)
    plan = router.service.plans()[RETRIEVER]
    assert plan.candidate is None
    assert plan.candidate_error is not None
    assert "release state not ready for faq-retriever v2" in plan.candidate_error
    ready = router.client.get("/ready").json()["models"][RETRIEVER]
    assert ready["candidate_loaded"] is False
    bodies = [
        router.client.post("/answer", json={"text": q, "user_id": f"u{i}"}).json()
        for i, (q, _) in enumerate(QUERIES)
    ]
    router.stop()
    for body in bodies:
        assert body["served"][RETRIEVER] == {"version": "1", "role": "fallback", "state_key": key1}
        assert body["served"][CLASSIFIER]["role"] == ("fallback" if bundle else "champion")
    rows = _traffic(engine)
    lead = CLASSIFIER if bundle else RETRIEVER
    failed = [r for r in rows if r.role == "candidate"]
    assert len(failed) == len(QUERIES)
    assert {(r.model_name, r.model_version, r.rollout_id) for r in failed} == {
        (lead, "2", rollout_id)
    }
    assert all(r.output is None and "release state not ready" in r.error for r in failed)
    if bundle:  # the lead's row names the failing member
        assert all(r.error.startswith("faq-retriever v2: candidate not loaded") for r in failed)
    fallbacks = [r for r in rows if r.role == "fallback"]
    assert len(fallbacks) == len(QUERIES) * (2 if bundle else 1)
    assert all(r.model_version == "1" and r.output and r.error for r in fallbacks)
    engine.dispose()


def test_rollback_after_an_embedder_upgrade_serves_the_old_answers_within_2s(
    answer_db: tuple[Engine, Path], fitted: Fitted, run_router: RouterFactory
) -> None:
    engine, state_dir = answer_db
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    key1 = publish_answer_index(engine, "1", fitted.retriever_v1, state_dir)
    router = _start(run_router, engine, fitted, ROUTER_POLL_SECONDS=1.0)
    questions = [q for q, _ in QUERIES]

    def ask() -> list[dict[str, Any]]:
        return [router.client.post("/answer", json={"text": q}).json() for q in questions]

    def state_key_of(question: str) -> str:
        body = router.client.post("/answer", json={"text": question}).json()
        return str(body["served"][RETRIEVER]["state_key"])

    def strip(bodies: list[dict[str, Any]]) -> list[Any]:
        return [(b["intent"], b["answers"], b["served"]) for b in bodies]

    before = ask()
    # the embedder upgrade: v2 with its own state (built before it is released)
    key2 = publish_answer_index(engine, "2", fitted.retriever_v2, state_dir)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "2"})
    wait_until(lambda: ask()[0]["served"][RETRIEVER]["state_key"] == key2, timeout=10)
    during = ask()
    assert strip(during) != strip(before)
    with session_scope(engine) as session:
        states_before = session.scalar(select(func.count()).select_from(ReleaseStateRow))
    started = time.monotonic()
    rollback_env(engine, "dev", actor="test", reason="embedder upgrade answers worse")
    wait_until(lambda: state_key_of(questions[0]) == key1, timeout=10)
    seconds = time.monotonic() - started
    after = ask()
    router.stop()
    print(f"\nrollback to the old answers on {engine.dialect.name}: {seconds:.3f} s")
    assert strip(after) == strip(before)  # the previous answers, scores and all
    # the next state poll serves it (no rebuild, counted below); the slack over the poll
    # interval is for a loaded machine (the suite runs in parallel)
    assert seconds < 4.0
    with session_scope(engine) as session:  # no rebuild: the old state was already there
        assert session.scalar(select(func.count()).select_from(ReleaseStateRow)) == states_before
    assert model_state_key(RETRIEVER, "1") == key1


class FaultyClassifier:
    """A real fitted classifier that raises on inputs containing "boom" (a broken build)."""

    def __init__(self, model: Any) -> None:
        self.model = model

    def predict(self, texts: list[str]) -> list[str]:
        if any("boom" in t for t in texts):
            raise ValueError("cannot handle this input")
        return list(self.model.predict(texts))


def test_bundle_falls_back_as_a_whole_when_one_member_fails(
    sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    key1 = publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path)
    key2 = publish_answer_index(engine, "2", fitted.retriever_v2, tmp_path)
    rollout_id, _ = open_rollout(  # the embedder leads; the retrained classifier is broken
        engine, RETRIEVER, "2", 100.0, bundle={CLASSIFIER: {"champion": "1", "candidate": "2"}}
    )
    source = fitted.source().add(CLASSIFIER, "2", FaultyClassifier(fitted.classifier))
    router = run_router(
        router_settings(sqlite_url, MODELS=[CLASSIFIER, RETRIEVER]),
        model_source=source,
        stateful=STATEFUL,
    )
    good = router.client.post("/answer", json={"text": "refund please", "user_id": "a"}).json()
    bad = router.client.post("/answer", json={"text": "boom refund", "user_id": "b"}).json()
    router.stop()
    assert {m: s["role"] for m, s in good["served"].items()} == {
        CLASSIFIER: "candidate",
        RETRIEVER: "candidate",
    }
    assert good["served"][RETRIEVER]["state_key"] == key2
    assert bad["served"] == {  # the pair of champions, never a mixed pair
        CLASSIFIER: {"version": "1", "role": "fallback", "state_key": None},
        RETRIEVER: {"version": "1", "role": "fallback", "state_key": key1},
    }
    rows = [r for r in _traffic(engine) if r.request_id == bad["request_id"]]
    assert [(r.model_name, r.role, r.model_version) for r in rows] == [
        (RETRIEVER, "candidate", "2"),  # the lead's row speaks for the bundle request
        (RETRIEVER, "fallback", "1"),
        (CLASSIFIER, "fallback", "1"),
    ]
    assert rows[0].error.startswith("intent-classifier v2: ValueError: cannot handle")
    assert rows[0].output is None
    assert all(r.error == rows[0].error and r.output for r in rows[1:])
    assert {r.rollout_id for r in rows} == {rollout_id}
    assert len({r.latency_ms for r in rows}) == 1  # one clock: the request's span


def test_a_released_champion_without_state_leaves_the_previous_plan_serving(
    sqlite_url: str, tmp_path: Path, fitted: Fitted, run_router: RouterFactory
) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, {CLASSIFIER: "1", RETRIEVER: "1"})
    key1 = publish_answer_index(engine, "1", fitted.retriever_v1, tmp_path)
    router = _start(run_router, engine, fitted)
    release(engine, {CLASSIFIER: "2", RETRIEVER: "2"})  # v2's state was never built
    wait_until(lambda: router.service.plans()[CLASSIFIER].state.champion_version == "2")
    time.sleep(0.5)  # more polls: the retriever stays on v1
    body = router.client.post("/answer", json={"text": "where is my refund"}).json()
    assert body["served"][CLASSIFIER]["version"] == "2"
    assert body["served"][RETRIEVER] == {"version": "1", "role": "champion", "state_key": key1}
    key2 = publish_answer_index(engine, "2", fitted.retriever_v2, tmp_path)
    wait_until(lambda: router.service.plans()[RETRIEVER].champion_state_key == key2)
    body = router.client.post("/answer", json={"text": "where is my refund"}).json()
    assert body["served"][RETRIEVER] == {"version": "2", "role": "champion", "state_key": key2}
    router.stop()
    engine.dispose()
