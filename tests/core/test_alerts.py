"""Rollout alerts on real rows (SQLite and Postgres): one Prefect event per transition
(captured by Prefect's own AssertingEventsClient), one webhook POST per rollback and
promotion to a real HTTP receiver on loopback, and a receiver that is down or hangs delays
no tick."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from prefect.events.clients import AssertingEventsClient
from prefect.events.worker import EventsWorker
from sqlalchemy import Engine

from config import load_settings
from core import alerts, ledger, notify
from core.controller import CanaryPolicy, TickOutcome, reconcile
from tasks.controller import announce
from tests.core.test_controller import BETTER, BROKEN, MODEL, VERSIONS, _feed, _later, _start

TOKEN = "s3cret-hook-token-9921"


class Receiver:
    """A real HTTP server on loopback recording every JSON POST; `hang` keeps requests
    waiting until `release()`."""

    def __init__(self, *, hang: bool = False) -> None:
        self.bodies: list[dict] = []
        self.arrived = threading.Event()
        self.released = threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                receiver.bodies.append(body)
                receiver.arrived.set()
                if hang:
                    receiver.released.wait(30)
                self.send_response(200)
                self.end_headers()

            def log_message(self, *_args: object) -> None:
                return None

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_port}/hook?token={TOKEN}"

    def release(self) -> None:
        self.released.set()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def refused_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/hook?token={TOKEN}"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


@pytest.fixture
def prefect_events(monkeypatch: pytest.MonkeyPatch) -> Iterator[EventsWorker]:
    """Prefect's `asserting_events_worker` fixture: emitted events are recorded in memory."""
    worker = EventsWorker.instance(AssertingEventsClient)
    monkeypatch.setattr(EventsWorker, "instance", lambda *_: worker)
    yield worker
    worker.drain()


def emitted(worker: EventsWorker) -> list:
    worker.drain()
    client = worker._client
    assert isinstance(client, AssertingEventsClient)
    return list(client.events)


@pytest.fixture
def policy() -> CanaryPolicy:
    base = CanaryPolicy.from_settings(load_settings())
    return dataclasses.replace(base, bake_seconds=60.0, min_samples=50)


def tick(engine: Engine, policy: CanaryPolicy, now: datetime, url: str | None) -> TickOutcome:
    """What the controller task does: mark, reconcile, announce."""
    seqs = alerts.marks(engine)
    [outcome] = reconcile(engine, policy, now=now, **VERSIONS)
    announce(engine, seqs, url)
    return outcome


def test_controller_run_announces_every_transition_and_pages_rollback_and_promotion(
    engine: Engine, policy: CanaryPolicy, receiver: Receiver, prefect_events: EventsWorker
) -> None:
    first = _start(engine, policy)
    for index, size in enumerate([6_000, 700, 300, 200, 120]):
        current = _feed(engine, first.id, BETTER, size, seed=index)
        tick(engine, policy, _later(current), receiver.url)
    second = ledger.start_rollout(
        engine, env="dev", model_name=MODEL, candidate_version="3",
        stages=policy.stages, actor="test", reason="canary v3",
    )  # fmt: skip
    current = _feed(engine, second.id, BROKEN, 6_000, seed=7)
    assert tick(engine, policy, _later(current), receiver.url).outcome == "rolled_back"
    notify.drain(timeout=30)

    assert [b["event"] for b in receiver.bodies] == [
        "stateful-ml.rollout.promote",
        "stateful-ml.rollout.rollback",
    ]
    events = emitted(prefect_events)
    assert [e.event for e in events] == [
        *["stateful-ml.rollout.advance"] * 4,
        "stateful-ml.rollout.promote",
        "stateful-ml.rollout.rollback",
    ]
    rollback = events[-1]
    assert rollback.resource.id == f"stateful-ml.rollout.{second.id}"
    roles = {(r.role, r.id) for r in rollback.related}
    assert ("environment", "stateful-ml.environment.dev") in roles
    assert ("model", f"stateful-ml.model.{MODEL}") in roles
    assert ("candidate", f"stateful-ml.model.{MODEL}.version.3") in roles
    assert ("champion", f"stateful-ml.model.{MODEL}.version.2") in roles
    assert rollback.payload["to_status"] == "rolled_back"
    assert rollback.payload["figures"]["verdict"]["action"] == "rollback"
    assert rollback.payload["figures"]["figures"]["candidate"]["error_rate"] > 0.2
    assert receiver.bodies[1]["payload"] == rollback.payload


def test_the_start_event_of_a_rollout_is_announced_too(
    engine: Engine, policy: CanaryPolicy, prefect_events: EventsWorker
) -> None:
    rollout = _start(engine, policy)

    found = announce(engine, {rollout.id: 0}, None)

    assert [a.event for a in found] == ["stateful-ml.rollout.start"]
    assert [e.event for e in emitted(prefect_events)] == ["stateful-ml.rollout.start"]
    assert found[0].payload["candidate_versions"] == {MODEL: "2"}


def _rollback_tick_seconds(engine: Engine, policy: CanaryPolicy, url: str | None, n: int) -> float:
    """Start a rollout of version `n`, feed a breach, time the tick that rolls it back."""
    rollout = ledger.start_rollout(
        engine, env="dev", model_name=MODEL, candidate_version=str(n),
        stages=policy.stages, actor="test", reason=f"canary v{n}",
    )  # fmt: skip
    current = _feed(engine, rollout.id, BROKEN, 6_000, seed=n)
    started = time.perf_counter()
    outcome = tick(engine, policy, _later(current), url)
    elapsed = time.perf_counter() - started
    assert outcome.outcome == "rolled_back"
    return elapsed


def test_a_receiver_down_or_hanging_delays_no_tick(
    engine: Engine, policy: CanaryPolicy, prefect_events: EventsWorker, caplog
) -> None:
    hanging = Receiver(hang=True)
    first = _start(engine, policy)
    ledger.abort(engine, first.id, actor="test", reason="make room")
    try:
        none = _rollback_tick_seconds(engine, policy, None, 3)
        down = _rollback_tick_seconds(engine, policy, refused_url(), 4)
        hung = _rollback_tick_seconds(engine, policy, hanging.url, 5)
        assert hanging.arrived.wait(30)  # the POST reached the receiver, which hangs
        print(f"rollback tick: no webhook {none:.3f} s, refused {down:.3f} s, hangs {hung:.3f} s")
        # a tick that waited on the POST would take its 5 s timeout; the slack below it
        # is for a loaded machine (the suite runs in parallel)
        assert down < none + notify.TIMEOUT_SECONDS - 2.0
        assert hung < none + notify.TIMEOUT_SECONDS - 2.0
    finally:
        hanging.release()
        notify.drain(timeout=60)
        hanging.close()
    assert [b["event"] for b in hanging.bodies] == ["stateful-ml.rollout.rollback"]
    assert TOKEN not in caplog.text


def test_a_receiver_that_stays_down_gets_bounded_retries(caplog) -> None:
    started = time.perf_counter()
    delivered = notify.post_in_background(
        refused_url(), {"event": "x"}, attempts=3, timeout=1.0, backoff=0.05
    ).result(timeout=30)
    elapsed = time.perf_counter() - started

    print(f"3 refused attempts given up after {elapsed:.2f} s")
    assert delivered is False
    assert "not delivered after 3 attempts" in caplog.text
    assert TOKEN not in caplog.text


def test_a_receiver_that_fails_once_gets_the_post_on_retry() -> None:
    calls: list[int] = []

    class Flaky(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            calls.append(1)
            self.send_response(503 if len(calls) == 1 else 200)
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_port}/"
        assert notify.post_in_background(url, {"event": "x"}, backoff=0.05).result(30)
    finally:
        server.shutdown()
        server.server_close()
    assert len(calls) == 2
