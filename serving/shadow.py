"""Online shadow: the candidate answers the same request off the hot path.

A fixed set of worker threads (ROUTER_SHADOW_WORKERS) takes jobs from a bounded queue
(ROUTER_SHADOW_QUEUE). `submit` never blocks: when the queue is full the job is dropped
and counted, so shadow work can never slow a user down. Results go to a callback (the
router logs them as role=shadow traffic).
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
        on_drop: Callable[[ShadowJob], None] | None = None,
    ) -> None:
        self._on_done = on_done
        self._on_drop = on_drop
        self._queue: queue.Queue[ShadowJob | None] = queue.Queue(maxsize=queue_size)
        self._workers = workers
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
            job = self._queue.get()
            if job is None:
                return
            started = time.perf_counter()
            output: str | None = None
            error: str | None = None
            try:
                output = job.predictor.predict_one(job.text)
            except Exception as exc:  # a failing candidate is data, not a crash
                error = f"{type(exc).__name__}: {exc}"[:1000]
            latency_ms = (time.perf_counter() - started) * 1000.0
            try:
                self._on_done(job, output, latency_ms, error)
            except Exception:
                log.exception("recording a shadow result failed")
            self.completed += 1
