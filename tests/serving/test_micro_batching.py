"""Micro-batching of the request path (serving.batching): the batcher on a real thread
pool, then the router over real HTTP with concurrent clients."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from conftest import (
    DictModelSource,
    KeywordModel,
    RouterFactory,
    count_traffic,
    open_canary,
    router_settings,
)
from sqlalchemy import Engine, select

from core.answer_index import AnswerIndex
from core.db import Traffic, session_scope
from serving.answering import classify
from serving.batching import MicroBatcher, Reply, Work, run_batch


@dataclass
class RecordingModel:
    """Upper-cases texts; records each call's batch; fails on texts holding `fail_on`
    (the whole batch raises, as a model does); each call sleeps `delay` seconds."""

    version: str = "1"
    fail_on: str | None = None
    delay: float = 0.0
    batches: list[list[str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def predict(self, texts: list[str]) -> list[str]:
        with self.lock:
            self.batches.append(list(texts))
        if self.delay:
            time.sleep(self.delay)
        if self.fail_on is not None and any(self.fail_on in t for t in texts):
            raise ValueError(f"cannot handle {self.fail_on!r}")
        return [t.upper() for t in texts]

    def predict_one(self, text: str) -> str:
        return self.predict([text])[0]


def _upper(predictor: Any, _index: AnswerIndex | None, texts: Sequence[str]) -> list[Reply]:
    return [(out, out) for out in predictor.predict(list(texts))]


def _work(text: str) -> Work:
    return Work("upper", text, _upper)


async def _gather(batcher: MicroBatcher, model: RecordingModel, texts: list[str]) -> list[Any]:
    futures = [batcher.submit(model, None, _work(t)) for t in texts]
    return await asyncio.gather(*futures, return_exceptions=True)


def _batcher(pool: Executor, **kwargs: Any) -> MicroBatcher:
    return MicroBatcher(lambda: pool, **kwargs)


def test_concurrent_works_share_one_call_and_each_gets_its_own_answer() -> None:
    model = RecordingModel()
    with ThreadPoolExecutor(2) as pool:
        batcher = _batcher(pool, max_batch=64)
        texts = [f"text {i}" for i in range(40)]
        results = asyncio.run(_gather(batcher, model, texts))
    assert results == [(t.upper(), t.upper()) for t in texts]
    assert model.batches == [texts]  # all queued in one loop turn: one call
    assert (batcher.stats.batches, batcher.stats.requests, batcher.stats.largest) == (1, 40, 40)


def test_batches_are_bounded_and_form_while_one_is_in_flight() -> None:
    model = RecordingModel(delay=0.05)

    async def scenario(batcher: MicroBatcher) -> list[Any]:
        first = batcher.submit(model, None, _work("alone"))
        await asyncio.sleep(0.01)  # the first batch is running now
        later = [batcher.submit(model, None, _work(f"t{i}")) for i in range(10)]
        return await asyncio.gather(first, *later)

    with ThreadPoolExecutor(2) as pool:
        results = asyncio.run(scenario(_batcher(pool, max_batch=4)))
    assert len(results) == 11
    # the idle key's first work went alone, at once; the rest queued behind it, <= 4 a call
    assert [len(b) for b in model.batches] == [1, 4, 4, 2]


def test_a_failing_input_fails_alone_and_the_others_are_answered() -> None:
    model = RecordingModel(fail_on="bad")
    texts = ["ok 1", "bad 2", "ok 3", "bad 4", "ok 5"]
    with ThreadPoolExecutor(2) as pool:
        results = asyncio.run(_gather(_batcher(pool), model, texts))
    assert [type(r).__name__ for r in results] == [
        "tuple", "ValueError", "tuple", "ValueError", "tuple",
    ]  # fmt: skip
    assert results[0] == ("OK 1", "OK 1")
    assert model.batches[0] == texts  # one batched try, then one call per text
    assert sorted(map(tuple, model.batches[1:])) == sorted((t,) for t in texts)


def test_run_batch_catches_a_wrong_count_of_answers() -> None:
    def short(_p: Any, _i: AnswerIndex | None, texts: Sequence[str]) -> list[Reply]:
        return [("x", "x")] if len(texts) > 1 else [(texts[0], texts[0])]

    outcomes = run_batch(short, RecordingModel(), None, ["a", "b"])
    assert [o.result() for o in outcomes] == [("a", "a"), ("b", "b")]


def test_a_caller_past_its_deadline_drops_only_its_own_answer() -> None:
    model = RecordingModel(delay=0.2)

    async def scenario(batcher: MicroBatcher) -> tuple[bool, Any]:
        impatient = batcher.submit(model, None, _work("impatient"))
        patient = batcher.submit(model, None, _work("patient"))
        try:
            await asyncio.wait_for(impatient, 0.02)
            timed_out = False
        except TimeoutError:
            timed_out = True
        return timed_out, await patient

    with ThreadPoolExecutor(2) as pool:
        timed_out, answer = asyncio.run(scenario(_batcher(pool)))
    assert timed_out
    assert answer == ("PATIENT", "PATIENT")


def test_linger_applies_only_under_concurrency() -> None:
    model = RecordingModel()

    async def one_at_a_time(batcher: MicroBatcher) -> float:
        started = time.perf_counter()
        for i in range(5):
            await batcher.submit(model, None, _work(f"t{i}"))
        return (time.perf_counter() - started) / 5

    with ThreadPoolExecutor(2) as pool:
        each = asyncio.run(one_at_a_time(_batcher(pool, max_wait_seconds=2.0)))
    assert each < 1.0  # a lone request never waits the 2 s linger
    assert [len(b) for b in model.batches] == [1] * 5


def test_versions_and_kinds_are_never_mixed_in_one_call() -> None:
    one, two = RecordingModel("1"), RecordingModel("2")

    async def scenario(batcher: MicroBatcher) -> list[Any]:
        futures = [
            batcher.submit(one, None, _work("a")),
            batcher.submit(two, None, _work("b")),
            batcher.submit(one, None, classify("c")),
            batcher.submit(one, None, _work("d")),
        ]
        return await asyncio.gather(*futures)

    with ThreadPoolExecutor(2) as pool:
        results = asyncio.run(scenario(_batcher(pool)))
    assert [r[1] for r in results] == ["A", "B", "C", "D"]
    assert sorted(one.batches) == [["a", "d"], ["c"]]
    assert two.batches == [["b"]]


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(lambda: None, max_batch=0)
    with pytest.raises(ValueError, match="max_wait"):
        MicroBatcher(lambda: None, max_wait_seconds=-1)


def _post_concurrently(url: str, texts: list[str], clients: int) -> list[httpx.Response]:
    """POST /predict for every text from `clients` threads at once (real HTTP)."""
    responses: list[httpx.Response | None] = [None] * len(texts)
    start = threading.Barrier(clients)

    def worker(offset: int) -> None:
        with httpx.Client(base_url=url, timeout=30) as client:
            start.wait()
            for i in range(offset, len(texts), clients):
                responses[i] = client.post(
                    "/predict", json={"text": texts[i], "user_id": f"user-{i}"}
                )

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(r is not None for r in responses)
    return [r for r in responses if r is not None]


def test_router_batches_concurrent_requests_and_isolates_a_failing_one(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    """16 clients at once on a 100% canary whose candidate raises on 'refund': every
    request answers 200, the refund ones by the champion (fallback rows), the others by
    the candidate; the candidate was called in batches of several requests."""
    rollout_id = open_canary(state_engine, "2", 100.0)
    candidate = KeywordModel("2", fail_on="refund", delay_ms=2.0)
    source = DictModelSource()
    source.add(KeywordModel("1"))
    source.add(candidate)
    router = run_router(
        router_settings(
            state_engine.url.render_as_string(hide_password=False),
            ROUTER_CANDIDATE_TIMEOUT_MS=5000,
        ),
        model_source=source,
    )
    texts = [("refund please" if i % 7 == 0 else f"password reset {i}") for i in range(160)]
    responses = _post_concurrently(router.url, texts, clients=16)
    assert [r.status_code for r in responses] == [200] * len(texts)
    roles = [r.json()["role"] for r in responses]
    assert roles == [("fallback" if "refund" in t else "candidate") for t in texts]
    assert {r.json()["intent"] for r in responses} == {"billing", "account"}
    stats = router.service.calls.batcher.stats
    assert stats.largest > 1  # concurrent requests shared calls
    assert stats.batches < stats.requests
    router.stop()
    refunds = sum("refund" in t for t in texts)
    assert count_traffic(state_engine, role="fallback", rollout_id=rollout_id) == refunds
    assert count_traffic(state_engine, role="candidate", rollout_id=rollout_id) == len(texts)
    with session_scope(state_engine) as session:
        errors = session.scalars(
            select(Traffic.error).where(Traffic.role == "candidate", Traffic.error.is_not(None))
        ).all()
    assert len(errors) == refunds
    assert all(e.startswith("ValueError") for e in errors)
