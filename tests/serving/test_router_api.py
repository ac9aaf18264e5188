"""The router over real HTTP on loopback: modes, fallback, limits, feedback, readiness."""

from __future__ import annotations

import gc
import logging
import threading
import time

import pytest
from conftest import (
    MODEL,
    DictModelSource,
    KeywordModel,
    RouterFactory,
    count_traffic,
    open_canary,
    open_shadow,
    release,
    router_settings,
    wait_until,
)
from sqlalchemy import Engine, select

from core.db import Feedback, Traffic, session_scope
from core.ledger import get_rollout, rollback
from core.ledger.routing import RoutingState
from core.routing import in_candidate_arm


def _source(*models: KeywordModel) -> DictModelSource:
    source = DictModelSource()
    for m in models:
        source.add(m)
    return source


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_predict_champion_only_answers_and_logs_one_row(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    response = router.client.post("/predict", json={"text": "I want a refund", "user_id": "u1"})
    assert response.status_code == 200
    body = response.json()
    assert body["intent"] == "billing"
    assert body["model_version"] == "1"
    assert body["role"] == "champion"
    router.stop()
    with session_scope(state_engine) as session:
        row = session.scalars(select(Traffic)).one()
    assert (row.request_id, row.role, row.model_version, row.user_id, row.env) == (
        body["request_id"],
        "champion",
        "1",
        "u1",
        "dev",
    )
    assert row.input_text == "I want a refund"
    assert row.output == "billing"
    assert row.rollout_id is None
    assert row.latency_ms >= 0


def test_predict_canary_routes_each_user_to_a_sticky_arm(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    rollout_id = open_canary(state_engine, "2", 50.0)
    salt = get_rollout(state_engine, rollout_id).salt
    router = run_router(
        router_settings(_url(state_engine)),
        model_source=_source(KeywordModel("1"), KeywordModel("2")),
        shadow_in_canary=False,
    )
    users = [f"user-{i}" for i in range(60)]
    for _ in range(2):
        for user in users:
            body = router.client.post("/predict", json={"text": "crash", "user_id": user}).json()
            expected = "candidate" if in_candidate_arm(salt, user, 50.0) else "champion"
            assert body["role"] == expected
            assert body["model_version"] == ("2" if expected == "candidate" else "1")
    router.stop()
    n_candidate = sum(in_candidate_arm(salt, u, 50.0) for u in users)
    assert count_traffic(state_engine, role="candidate", rollout_id=rollout_id) == 2 * n_candidate
    assert count_traffic(state_engine, role="champion") == 2 * (60 - n_candidate)
    assert count_traffic(state_engine, role="shadow") == 0


def test_a_canary_candidate_request_carries_the_shadow_jobs_waiting_for_it(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    """Over HTTP, one request at a time: a champion-arm request's shadow job waits (up to
    ROUTER_SHADOW_LINGER_MS) and rides in the next candidate-arm request's batch, so the
    candidate is called once per request with both texts, never for a shadow batch alone."""
    rollout_id = open_canary(state_engine, "2", 50.0)
    salt = get_rollout(state_engine, rollout_id).salt
    users = [f"user-{i}" for i in range(200)]
    on_champion = [u for u in users if not in_candidate_arm(salt, u, 50.0)][:10]
    on_candidate = [u for u in users if in_candidate_arm(salt, u, 50.0)][:10]
    candidate = BatchSizes("2")
    router = run_router(
        router_settings(_url(state_engine), ROUTER_SHADOW_LINGER_MS=5_000),
        model_source=_source(KeywordModel("1"), candidate),
    )
    for champion_user, candidate_user in zip(on_champion, on_candidate, strict=True):
        for user, role in ((champion_user, "champion"), (candidate_user, "candidate")):
            body = router.client.post("/predict", json={"text": "crash", "user_id": user})
            assert body.json()["role"] == role
    wait_until(lambda: router.service.shadow.completed == 10)
    router.stop()
    assert candidate.sizes == [2] * 10  # each: its own text and the waiting shadow text
    assert count_traffic(state_engine, role="shadow", model_version="2") == 10
    assert count_traffic(state_engine, role="candidate", rollout_id=rollout_id) == 10


class BatchSizes(KeywordModel):
    """Records the number of texts of each batched call."""

    def __init__(self, version: str) -> None:
        super().__init__(version)
        self.sizes: list[int] = []

    def predict(self, texts: list[str]) -> list[str]:
        self.sizes.append(len(texts))
        return super().predict(texts)


def test_predict_shadow_mode_logs_candidate_as_shadow(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    open_shadow(state_engine, "2")
    champion, candidate = KeywordModel("1"), KeywordModel("2", fail_on="boom")
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(champion, candidate)
    )
    texts = ["refund please", "boom goes the app", "password reset"]
    for text in texts:
        body = router.client.post("/predict", json={"text": text}).json()
        assert body["role"] == "champion"
    wait_until(lambda: router.service.shadow.completed == 3)
    router.stop()
    assert count_traffic(state_engine, role="champion") == 3
    assert count_traffic(state_engine, role="shadow", model_version="2") == 3
    with session_scope(state_engine) as session:
        failed = session.scalars(select(Traffic).where(Traffic.error.is_not(None))).one()
    assert failed.role == "shadow"
    assert failed.error.startswith("ValueError")


def test_predict_candidate_that_raises_falls_back_to_champion(
    state_engine: Engine, run_router: RouterFactory, caplog: pytest.LogCaptureFixture
) -> None:
    rollout_id = open_canary(state_engine, "2", 100.0)
    router = run_router(
        router_settings(_url(state_engine)),
        model_source=_source(KeywordModel("1"), KeywordModel("2", fail_on="refund")),
    )
    with caplog.at_level(logging.WARNING, logger="serving.service"):
        bodies = [
            router.client.post("/predict", json={"text": t, "user_id": f"u{i}"})
            for i, t in enumerate(["refund now", "crash again", "my refund", "password"])
        ]
    assert [b.status_code for b in bodies] == [200] * 4
    assert [b.json()["role"] for b in bodies] == ["fallback", "candidate", "fallback", "candidate"]
    assert bodies[0].json()["intent"] == "billing"
    assert bodies[0].json()["model_version"] == "1"
    metrics = router.client.get("/metrics").text
    assert 'router_fallbacks_total{model="intent-classifier",reason="error",version="2"} 2.0' in (
        metrics
    )
    assert sum("answered by champion" in r.getMessage() for r in caplog.records) == 2
    router.stop()
    # one candidate row per request (errors set on the failed ones) + a fallback row each
    assert count_traffic(state_engine, role="candidate", rollout_id=rollout_id) == 4
    assert count_traffic(state_engine, role="fallback", rollout_id=rollout_id) == 2
    with session_scope(state_engine) as session:
        rows = session.scalars(
            select(Traffic).where(Traffic.request_id == bodies[0].json()["request_id"])
        ).all()
    by_role = {r.role: r for r in rows}
    assert by_role["candidate"].error.startswith("ValueError")
    assert by_role["candidate"].output is None
    assert by_role["fallback"].output == "billing"
    assert by_role["fallback"].model_version == "1"


def test_predict_candidate_timeout_falls_back_to_champion(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    open_canary(state_engine, "2", 100.0)
    router = run_router(
        router_settings(_url(state_engine), ROUTER_CANDIDATE_TIMEOUT_MS=50),
        model_source=_source(
            KeywordModel("1"), KeywordModel("2", hold=(held := threading.Event()))
        ),
    )
    body = router.client.post("/predict", json={"text": "refund"}).json()
    # answered while the candidate call is still held: the user did not wait for it
    assert body["role"] == "fallback"
    assert not held.is_set()
    held.set()
    router.stop()
    with session_scope(state_engine) as session:
        row = session.scalars(select(Traffic).where(Traffic.role == "candidate")).one()
    assert row.error == "timeout after 50 ms"


def test_predict_candidate_that_cannot_load_falls_back(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    open_canary(state_engine, "3", 100.0)  # v3 is not in the model source
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    body = router.client.post("/predict", json={"text": "refund"}).json()
    assert (body["role"], body["model_version"]) == ("fallback", "1")
    ready = router.client.get("/ready").json()
    assert ready["models"][MODEL]["candidate_loaded"] is False
    router.stop()
    with session_scope(state_engine) as session:
        row = session.scalars(select(Traffic).where(Traffic.role == "candidate")).one()
    assert row.error.startswith("candidate not loaded")


@pytest.mark.parametrize(
    ("payload", "where", "message"),
    [
        ({"text": "x" * 2001}, "text", "text is 2001 characters; the limit is 2000"),
        ({"text": ""}, "text", "at least 1 character"),
        ({"text": "hi", "user_id": "bad id with spaces"}, "user_id", "match pattern"),
        ({"text": "hi", "user_id": "u" * 129}, "user_id", "match pattern"),
        ({"text": "hi", "request_id": "r/1"}, "request_id", "match pattern"),
        ({"text": "hi", "model": "nope"}, "model", "not served here"),
        ({"text": "hi", "extra": 1}, "extra", "Extra inputs"),
    ],
)
def test_predict_rejects_bad_input_with_422(
    state_engine: Engine,
    run_router: RouterFactory,
    payload: dict[str, object],
    where: str,
    message: str,
) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    response = router.client.post("/predict", json=payload)
    assert response.status_code == 422
    detail = response.json()["detail"][0]
    assert detail["loc"][-1] == where
    assert message in detail["msg"]


def test_predict_rejects_oversized_body_with_422(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = run_router(
        router_settings(_url(state_engine), ROUTER_MAX_BODY_BYTES=1024, ROUTER_MAX_TEXT_CHARS=5000),
        model_source=_source(KeywordModel("1")),
    )
    response = router.client.post("/predict", json={"text": "x" * 2000})
    assert response.status_code == 422
    assert "the limit is 1024 bytes" in response.json()["detail"][0]["msg"]

    def chunks():  # no Content-Length: chunked transfer encoding
        yield b'{"text": "'
        yield b"y" * 2000
        yield b'"}'

    chunked = router.client.post(
        "/predict", content=chunks(), headers={"content-type": "application/json"}
    )
    assert chunked.status_code == 422
    small = router.client.post(
        "/predict",
        content=iter([b'{"text": ', b'"a refund"}']),
        headers={"content-type": "application/json"},
    )
    assert small.status_code == 200
    assert small.json()["intent"] == "billing"


def test_feedback_is_written_and_validated(state_engine: Engine, run_router: RouterFactory) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    rid = router.client.post("/predict", json={"text": "refund", "request_id": "req-1"}).json()[
        "request_id"
    ]
    assert rid == "req-1"
    ok = router.client.post(
        "/feedback", json={"request_id": rid, "kind": "thumbs", "value": "down"}
    )
    assert ok.status_code == 202
    label = router.client.post(
        "/feedback", json={"request_id": rid, "kind": "label", "value": "billing"}
    )
    assert label.status_code == 202
    bad = router.client.post(
        "/feedback", json={"request_id": rid, "kind": "thumbs", "value": "meh"}
    )
    assert bad.status_code == 422
    assert "Input should be 'up', 'down'" in bad.json()["detail"][0]["msg"]
    assert (
        router.client.post(
            "/feedback", json={"request_id": rid, "kind": "stars", "value": "5"}
        ).status_code
        == 422
    )
    router.stop()
    with session_scope(state_engine) as session:
        rows = session.scalars(select(Feedback).order_by(Feedback.id)).all()
    assert [(r.request_id, r.kind, r.value) for r in rows] == [
        ("req-1", "thumbs", "down"),
        ("req-1", "label", "billing"),
    ]


def test_ready_only_once_champion_loaded(state_engine: Engine, run_router: RouterFactory) -> None:
    source = _source(KeywordModel("1"))
    source.gate.clear()  # hold the model load back
    router = run_router(router_settings(_url(state_engine)), model_source=source, wait_ready=False)
    assert router.client.get("/health").json() == {"status": "ok"}
    not_ready = router.client.get("/ready")
    assert not_ready.status_code == 503
    assert "no champion loaded for intent-classifier" in not_ready.json()["reason"]
    assert router.client.post("/predict", json={"text": "hi"}).status_code == 503
    source.gate.set()
    wait_until(lambda: router.client.get("/ready").status_code == 200)
    assert router.client.get("/ready").json()["models"][MODEL]["champion_version"] == "1"


def test_rollback_is_served_after_the_next_state_poll(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    rollout_id = open_canary(state_engine, "2", 100.0)
    router = run_router(
        router_settings(_url(state_engine), ROUTER_POLL_SECONDS=1.0),
        model_source=_source(KeywordModel("1"), KeywordModel("2")),
    )
    assert router.client.post("/predict", json={"text": "a"}).json()["model_version"] == "2"
    rollback(state_engine, rollout_id, actor="test", reason="test")
    took = wait_until(
        lambda: router.client.post("/predict", json={"text": "a"}).json()["model_version"] == "1",
        timeout=10,
    )
    # the router polls every second; the slack is for a loaded machine (the suite runs
    # in parallel), still well short of a router that missed the change for good
    assert took < 4.0


def test_state_db_unreachable_keeps_last_state(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    fail = threading.Event()
    from core.ledger import routing_state

    def reader() -> dict[str, RoutingState]:
        if fail.is_set():
            raise ConnectionError("state database unreachable")
        return routing_state(state_engine, "dev")

    router = run_router(
        router_settings(_url(state_engine)),
        model_source=_source(KeywordModel("1"), KeywordModel("2")),
        state_reader=reader,
    )
    fail.set()
    release(state_engine, "2")  # a change the router cannot see while the read fails
    time.sleep(0.6)
    responses = [router.client.post("/predict", json={"text": "a"}) for _ in range(5)]
    assert all(r.status_code == 200 and r.json()["model_version"] == "1" for r in responses)
    assert "router_state_poll_errors_total" in router.client.get("/metrics").text
    fail.clear()
    wait_until(
        lambda: router.client.post("/predict", json={"text": "a"}).json()["model_version"] == "2"
    )


def test_shadow_dropped_and_counted_when_saturated(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    open_shadow(state_engine, "2")
    router = run_router(
        router_settings(_url(state_engine), ROUTER_SHADOW_QUEUE=1),
        model_source=_source(
            KeywordModel("1"), KeywordModel("2", hold=(held := threading.Event()))
        ),
    )
    # the first shadow call is held until the end: ten answers arrive meanwhile, so
    # shadow work never blocks a user, and the nine that found the queue full were dropped
    for _ in range(10):
        assert router.client.post("/predict", json={"text": "a"}).status_code == 200
    dropped = router.service.shadow.dropped
    assert dropped == 9
    held.set()
    metrics = router.client.get("/metrics").text
    assert f'router_shadow_dropped_total{{model="intent-classifier"}} {float(dropped)}' in metrics
    router.stop()
    assert count_traffic(state_engine, role="shadow") == 10 - dropped
    assert count_traffic(state_engine, role="champion") == 10


def test_metrics_expose_requests_latency_and_traffic_gauges(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    for _ in range(3):
        router.client.post("/predict", json={"text": "refund"})
    text = router.client.get("/metrics").text
    assert (
        'router_predictions_total{model="intent-classifier",role="champion",version="1"} 3.0'
        in (text)
    )
    assert 'router_model_latency_seconds_count{model="intent-classifier",role="champion",' in text
    for gauge in (
        "router_traffic_buffer_rows",
        "router_traffic_spill_rows",
        "router_traffic_spill_bytes",
        "router_shadow_queue_jobs",
        "router_ready 1.0",
    ):
        assert gauge in text


def test_router_has_no_endpoint_that_changes_rollout_state(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    paths = router.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, ops in paths.items() for method in ops}
    assert routes == {
        ("POST", "/predict"),
        ("POST", "/answer"),
        ("POST", "/feedback"),
        ("GET", "/health"),
        ("GET", "/ready"),
        ("GET", "/metrics"),
    }


def test_a_running_router_keeps_its_startup_objects_out_of_the_collector(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = run_router(
        router_settings(_url(state_engine)), model_source=_source(KeywordModel("1"))
    )
    assert gc.get_freeze_count() > 10_000  # modules, the app, settings: not walked again
    assert router.client.post("/predict", json={"text": "a refund"}).status_code == 200
    router.stop()
    assert gc.get_freeze_count() == 0  # a stopped router's objects can be collected again
