"""Shadow calls on the request path's micro-batcher (serving.shadow): batched with the
candidate's other work, bounded and dropping, failures isolated per input, drained at
shutdown. A real thread pool and event loop; the router over HTTP in test_router_api."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
from conftest import KeywordModel

from serving.answering import classify
from serving.batching import MicroBatcher
from serving.shadow import ShadowCalls, ShadowJob

Result = tuple[str, str | None, float, str | None]


def _job(model: KeywordModel, text: str, i: int) -> ShadowJob:
    return ShadowJob(model, text, f"r{i}", None, 1, "intent-classifier", model.version)


class CountingModel(KeywordModel):
    """Records each call's batch size; `release` (if given) holds every call back."""

    def __init__(self, version: str, release: threading.Event | None = None, **kw: object):
        super().__init__(version, **kw)  # type: ignore[arg-type]
        self.sizes: list[int] = []
        self.release = release

    def predict(self, texts: list[str]) -> list[str]:
        self.sizes.append(len(texts))
        if self.release is not None:
            self.release.wait(10)
        return super().predict(texts)


def _shadow(
    pool: ThreadPoolExecutor, results: list[Result], **kwargs: object
) -> tuple[MicroBatcher, ShadowCalls]:
    batcher = MicroBatcher(lambda: pool)
    shadow = ShadowCalls(
        batcher,
        classify,
        lambda job, out, ms, err: results.append((job.request_id, out, ms, err)),
        **kwargs,  # type: ignore[arg-type]
    )
    return batcher, shadow


async def _settle(shadow: ShadowCalls) -> None:
    while shadow.pending:
        await asyncio.sleep(0.005)


def test_failing_inputs_are_marked_alone_and_the_rest_answered() -> None:
    results: list[Result] = []
    model = KeywordModel("2", fail_on="bad")
    texts = ["refund", "bad input", "password", "another bad one", "crash"]

    async def scenario(shadow: ShadowCalls) -> None:
        for i, text in enumerate(texts):
            assert shadow.submit(_job(model, text, i))
        await _settle(shadow)

    with ThreadPoolExecutor(2) as pool:
        asyncio.run(scenario(_shadow(pool, results)[1]))
    by_id = {rid: (out, err) for rid, out, _ms, err in results}
    assert by_id["r0"] == ("billing", None)
    assert by_id["r1"][0] is None
    assert (by_id["r1"][1] or "").startswith("ValueError")
    assert by_id["r3"][0] is None
    assert by_id["r4"] == ("bug", None)
    assert all(ms > 0 for *_, ms, _err in results)


def test_shadow_texts_join_the_candidates_own_batch() -> None:
    """Shadow jobs and the candidate arm's requests of one version share one call."""
    results: list[Result] = []
    model = CountingModel("2")

    async def scenario(batcher: MicroBatcher, shadow: ShadowCalls) -> list[object]:
        for i in range(20):
            shadow.submit(_job(model, "refund", i))
        served = [batcher.submit(model, None, classify("password")) for _ in range(5)]
        answers = await asyncio.gather(*served)
        await _settle(shadow)
        return answers

    with ThreadPoolExecutor(2) as pool:
        answers = asyncio.run(scenario(*_shadow(pool, results, linger_seconds=0.0)))
    assert answers == [("account", "account")] * 5
    assert model.sizes == [25]  # one call for all of them
    assert len(results) == 20


def test_jobs_apart_in_time_linger_into_one_call() -> None:
    """At low load (one request at a time) shadow jobs still share one call."""
    results: list[Result] = []
    model = CountingModel("2")

    async def scenario(shadow: ShadowCalls) -> None:
        for i in range(5):
            shadow.submit(_job(model, "refund", i))
            await asyncio.sleep(0.01)
        await _settle(shadow)

    with ThreadPoolExecutor(2) as pool:
        asyncio.run(scenario(_shadow(pool, results, linger_seconds=0.2)[1]))
    assert model.sizes == [5]
    assert [r[1] for r in results] == ["billing"] * 5
    assert min(r[2] for r in results) >= 150  # each waited out (most of) the linger


def test_lingering_jobs_ride_in_the_next_candidate_request_batch_a_few_at_a_time() -> None:
    """One request at a time (1 connection): each candidate-arm request takes up to
    `riders` lingering shadow jobs of its version into its own call, so no shadow batch
    of its own holds the pool; jobs of another version stay behind."""
    results: list[Result] = []
    model, other = CountingModel("2"), CountingModel("3")

    async def scenario(batcher: MicroBatcher, shadow: ShadowCalls) -> list[object]:
        for i in range(5):
            shadow.submit(_job(model, "refund", i))
        shadow.submit(_job(other, "refund", 99))
        answers = []
        for _ in range(2):  # two candidate-arm requests, one after the other
            served = batcher.submit(model, None, classify("password"))
            shadow.ride(model)
            answers.append(await served)
        await _settle(shadow)
        return answers

    with ThreadPoolExecutor(2) as pool:
        answers = asyncio.run(scenario(*_shadow(pool, results, linger_seconds=0.1, riders=2)))
    assert answers == [("account", "account")] * 2
    assert model.sizes == [3, 3, 1]  # 1 request + 2 riders, twice; the rest after linger
    assert other.sizes == [1]
    assert sorted(r[0] for r in results) == ["r0", "r1", "r2", "r3", "r4", "r99"]


def test_drops_and_counts_past_the_limit_without_blocking() -> None:
    release = threading.Event()
    model = CountingModel("2", release=release)
    dropped: list[str] = []
    results: list[Result] = []

    async def scenario(shadow: ShadowCalls) -> list[bool]:
        # every submit returns while the model is held: none waits for a call
        accepted = [shadow.submit(_job(model, "x", i)) for i in range(10)]
        release.set()
        await _settle(shadow)
        return accepted

    with ThreadPoolExecutor(2) as pool:
        _batcher, shadow = _shadow(
            pool, results, limit=3, on_drop=lambda job: dropped.append(job.request_id)
        )
        accepted = asyncio.run(scenario(shadow))
    assert accepted == [True] * 3 + [False] * 7
    assert shadow.dropped == len(dropped) == 7
    assert len(results) == shadow.completed == 3


def test_drain_waits_for_outstanding_calls_from_another_thread() -> None:
    model = KeywordModel("2", delay_ms=200)
    results: list[Result] = []
    drained: list[bool] = []

    async def scenario(shadow: ShadowCalls) -> None:
        shadow.submit(_job(model, "refund", 0))
        waiter = threading.Thread(target=lambda: drained.append(shadow.drain(5.0)))
        waiter.start()
        await asyncio.sleep(0.01)
        assert not drained  # still running
        await _settle(shadow)
        await asyncio.to_thread(waiter.join, 5)

    with ThreadPoolExecutor(2) as pool:
        asyncio.run(scenario(_shadow(pool, results)[1]))
    assert drained == [True]
    assert results[0][1] == "billing"
    assert results[0][2] >= 200  # the span: queued to answered


def test_no_pool_means_dropped_not_queued() -> None:
    results: list[Result] = []
    shadow = ShadowCalls(MicroBatcher(lambda: None), classify, lambda *_: None)
    assert not shadow.submit(_job(KeywordModel("2"), "x", 0))
    assert shadow.dropped == 1
    with pytest.raises(ValueError, match="limit"):
        ShadowCalls(MicroBatcher(lambda: None), classify, lambda *_: None, limit=0)
    assert not results
