"""The shadow executor: batched, bounded, dropping; failures isolated per input."""

from __future__ import annotations

import threading
import time

from conftest import KeywordModel, wait_until

from serving.shadow import ShadowExecutor, ShadowJob


def _job(model: KeywordModel, text: str, i: int) -> ShadowJob:
    return ShadowJob(model, text, f"r{i}", None, 1, "intent-classifier", model.version)


def test_shadow_batch_failure_marks_only_failing_inputs() -> None:
    results: list[tuple[str, str | None, str | None]] = []
    executor = ShadowExecutor(
        lambda job, out, _ms, err: results.append((job.request_id, out, err)),
        workers=1,
        linger_seconds=0.2,
    )
    executor.start()
    model = KeywordModel("2", fail_on="bad")
    texts = ["refund", "bad input", "password", "another bad one", "crash"]
    for i, text in enumerate(texts):
        assert executor.submit(_job(model, text, i))
    wait_until(lambda: len(results) == 5)
    executor.close()
    by_id = {rid: (out, err) for rid, out, err in results}
    assert by_id["r0"] == ("billing", None)
    assert by_id["r1"][0] is None
    assert "ValueError" in (by_id["r1"][1] or "")
    assert by_id["r3"][0] is None
    assert by_id["r4"] == ("bug", None)


def test_shadow_runs_queued_jobs_as_one_batch() -> None:
    calls: list[int] = []

    class CountingModel(KeywordModel):
        def predict(self, texts: list[str]) -> list[str]:
            calls.append(len(texts))
            return super().predict(texts)

    done = threading.Event()
    results: list[str | None] = []

    def on_done(_job: ShadowJob, out: str | None, _ms: float, _err: str | None) -> None:
        results.append(out)
        if len(results) == 20:
            done.set()

    executor = ShadowExecutor(on_done, workers=1, linger_seconds=0.5, max_batch=64)
    executor.start()
    model = CountingModel("2")
    for i in range(20):
        executor.submit(_job(model, "refund", i))
    assert done.wait(10)
    executor.close()
    assert sum(calls) == 20
    assert len(calls) <= 3  # batched, not one call per job


def test_shadow_drops_and_counts_when_full_without_blocking() -> None:
    release = threading.Event()

    class BlockingModel(KeywordModel):
        def predict(self, texts: list[str]) -> list[str]:
            release.wait(10)
            return super().predict(texts)

    dropped: list[str] = []
    executor = ShadowExecutor(
        lambda *_: None,
        workers=1,
        queue_size=2,
        max_batch=1,
        linger_seconds=0.0,
        on_drop=lambda job: dropped.append(job.request_id),
    )
    executor.start()
    model = BlockingModel("2")
    started = time.perf_counter()
    accepted = [executor.submit(_job(model, "x", i)) for i in range(10)]
    assert time.perf_counter() - started < 0.5
    # one in the worker, two queued; the other seven dropped
    wait_until(lambda: executor.dropped >= 7)
    assert accepted.count(True) <= 3
    assert executor.dropped == len(dropped) == accepted.count(False)
    release.set()
    executor.close()
