"""Online shadow: the candidate answers the same request off the hot path.

A fixed set of worker threads (ROUTER_SHADOW_WORKERS) takes jobs from a bounded queue
(ROUTER_SHADOW_QUEUE). `submit` never blocks: when the queue is full the job is dropped
and counted, so shadow work can never slow a user down. Results go to a callback (the
router logs them as role=shadow traffic).

Workers collect jobs for up to `linger_seconds` after the first one (at most `max_batch`)
and run them as ONE `predict(texts)` call per model version: a scikit-learn pipeline
costs about the same for one text as for dozens, so batching makes shadow work nearly
free next to the request path (measured in bench/router.py). A batch that raises is
re-run text by text, so a candidate failing on some inputs gets exactly those rows marked
with the error. The latency recorded per shadow row is the batch time divided by its size
(amortised). Memory is bounded by queue_size + workers x max_batch jobs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

from serving.model_cache import Predictor

log = logging.getLogger(__name__)


class ShadowJob(NamedTuple):
    """One request to replay through the candidate."""

    predictor: Predictor
    text: str
    request_id: str
    user_id: str | None
    rollout_id: int | None
    model_name: str
    version: str


# (job, output or None, latency in ms, error or None)
ShadowDone = Callable[[ShadowJob, str | None, float, str | None], None]


class ShadowExecutor:
    """Bounded, dropping executor for shadow predictions."""

    def __init__(
        self,
        on_done: ShadowDone,
        *,
        workers: int = 2,
        queue_size: int = 256,
        max_batch: int = 64,
        linger_seconds: float = 0.2,
        on_drop: Callable[[ShadowJob], None] | None = None,
    ) -> None:
        self._on_done = on_done
        self._on_drop = on_drop
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=queue_size)
        self._workers = workers
        self._max_batch = max_batch
        self._linger = linger_seconds
        self._threads: list[threading.Thread] = []
        self.dropped = 0
        self.completed = 0

    def start(self) -> None:
        """Start the worker threads (idempotent)."""
        if self._threads:
            return
        for i in range(self._workers):
            thread = threading.Thread(target=self._work, name=f"shadow-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def submit(self, job: ShadowJob) -> bool:
        """Queue a job; False (and counted) when the queue is full."""
        try:
            self._queue.put_nowait(job)
        except queue.Full:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(job)
            return False
        return True

    @property
    def pending(self) -> int:
        """Jobs waiting in the queue."""
        return self._queue.qsize()

    def close(self, timeout: float = 10.0) -> None:
        """Finish queued jobs (up to `timeout`), then stop the workers."""
        deadline = time.monotonic() + timeout
        for _ in self._threads:
            try:
                self._queue.put(None, timeout=max(0.01, deadline - time.monotonic()))
            except queue.Full:
                break
        for thread in self._threads:
            thread.join(max(0.01, deadline - time.monotonic()))
        self._threads.clear()

    def _work(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            jobs = [first]
            stop = False
            deadline = time.monotonic() + self._linger
            while len(jobs) < self._max_batch:
                remaining = deadline - time.monotonic()
                try:
                    job = (
                        self._queue.get(timeout=remaining)
                        if remaining > 0
                        else self._queue.get_nowait()
                    )
                except queue.Empty:
                    break
                if job is None:
                    stop = True
                    break
                jobs.append(job)
            groups: dict[int, list[ShadowJob]] = {}
            for job in jobs:
                groups.setdefault(id(job.predictor), []).append(job)
            for group in groups.values():
                try:
                    self._run_group(group)
                except Exception:  # keep the worker alive whatever happens
                    log.exception("shadow batch failed")
            if stop:
                return

    def _run_group(self, jobs: list[ShadowJob]) -> None:
        """One batched call for jobs of the same predictor; per text if the batch raises."""
        predictor = jobs[0].predictor
        started = time.perf_counter()
        results: list[tuple[str | None, float, str | None]]
        try:
            outputs = predictor.predict([job.text for job in jobs])
            if len(outputs) != len(jobs):
                raise ValueError(f"{len(outputs)} predictions for {len(jobs)} texts")
            each_ms = (time.perf_counter() - started) * 1000.0 / len(jobs)
            results = [(out, each_ms, None) for out in outputs]
        except Exception:  # find which inputs fail: one call each
            results = []
            for job in jobs:
                one_started = time.perf_counter()
                try:
                    out: str | None = predictor.predict_one(job.text)
                    error = None
                except Exception as exc:  # a failing candidate is data, not a crash
                    out, error = None, f"{type(exc).__name__}: {exc}"[:1000]
                results.append((out, (time.perf_counter() - one_started) * 1000.0, error))
        for job, (out, latency_ms, error) in zip(jobs, results, strict=True):
            try:
                self._on_done(job, out, latency_ms, error)
            except Exception:
                log.exception("recording a shadow result failed")
            self.completed += 1
