"""Online shadow: the candidate answers the same request off the user's path.

Shadow calls go through the request path's own micro-batcher (serving/batching.py). Jobs
linger until a candidate-arm request of the same version is queued, and up to `riders`
(4) of them ride along in its batch (`ride`): shadow work costs a few more texts in a
batched `predict` (~0.03 ms each) spread over the candidate's requests, instead of a
batch of its own that holds the model pool and the GIL for ~2 ms while the next requests
wait (the 1-connection tail in bench/router.py). Jobs that found no ride within
`linger_seconds` (0.2 s), or once `max_batch` have gathered (a canary at 1% has few
candidate requests to ride), are handed to the batcher together as one batch. A failing
input fails alone (the batcher re-runs a failed batch text by text).

- `submit` never blocks and never delays the user: the user's answer does not wait for
  the shadow's future. At most `limit` shadow calls are outstanding; past that a job is
  dropped and counted (router_shadow_dropped_total), so a slow candidate cannot pile up
  work.
- The latency of a shadow row is the span from the moment the job was queued to its
  answer (linger and batch included), not an amortised batch time; the canary analysis
  does not use it.
- `drain(timeout)` (at shutdown, before the model pool goes) hands the lingering jobs to
  the batcher at once and waits for the outstanding calls, so their rows are logged.

Only the classifier is shadowed (what /predict and /answer's classifier serve).
"""

from __future__ import annotations

import asyncio
import functools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import NamedTuple

from serving.batching import MicroBatcher, Reply, Work
from serving.model_cache import Predictor
from serving.traffic_log import error_text

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


class ShadowCalls:
    """Bounded, dropping shadow calls on the request path's micro-batcher; `work` is
    what a shadow asks of the candidate (the classifier's `serving.answering.classify`)."""

    def __init__(
        self,
        batcher: MicroBatcher,
        work: Callable[[str], Work],
        on_done: ShadowDone,
        *,
        limit: int = 256,
        linger_seconds: float = 0.2,
        max_batch: int = 64,
        riders: int = 4,
        on_drop: Callable[[ShadowJob], None] | None = None,
    ) -> None:
        if limit < 1 or max_batch < 1 or riders < 0:
            raise ValueError("limit and max_batch must be >= 1, riders >= 0")
        self._batcher = batcher
        self._work = work
        self._on_done = on_done
        self._on_drop = on_drop
        self._limit = limit
        self._linger = linger_seconds
        self._max_batch = max_batch
        self._riders = riders
        self._lingering: deque[tuple[ShadowJob, float]] = deque()
        self._flush_timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outstanding = 0
        self._idle = threading.Event()
        self._idle.set()
        self.dropped = 0
        self.completed = 0

    @property
    def pending(self) -> int:
        """Shadow calls queued or running."""
        return self._outstanding

    def submit(self, job: ShadowJob) -> bool:
        """Queue `job` on the batcher (from the event loop); False, counted, when `limit`
        calls are outstanding or the model pool is gone."""
        if self._outstanding >= self._limit or not self._batcher.running:
            self.dropped += 1
            if self._on_drop is not None:
                self._on_drop(job)
            return False
        self._outstanding += 1
        self._idle.clear()
        self._lingering.append((job, time.perf_counter()))
        if len(self._lingering) >= self._max_batch or self._linger <= 0:
            self._flush()
        elif self._flush_timer is None:
            self._loop = asyncio.get_running_loop()
            self._flush_timer = self._loop.call_later(self._linger, self._flush)
        return True

    def _flush(self) -> None:
        """Hand the lingering jobs to the batcher in one loop turn (one batch)."""
        if self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        jobs, self._lingering = self._lingering, deque()
        self._hand_over(jobs)

    def ride(self, predictor: Predictor) -> None:
        """Hand up to `riders` lingering jobs of `predictor`, from the front of the queue
        (O(riders)), to the batcher now, in the loop turn in which a candidate-arm request
        of that version was queued: they join its batch (~0.03 ms a text) instead of
        forming one of their own later, which would hold the model pool, and the GIL, for
        ~2 ms while the next requests wait."""
        riding: list[tuple[ShadowJob, float]] = []
        lingering = self._lingering
        while lingering and len(riding) < self._riders and lingering[0][0].predictor is predictor:
            riding.append(lingering.popleft())
        if not riding:
            return
        if not lingering and self._flush_timer is not None:
            self._flush_timer.cancel()
            self._flush_timer = None
        self._hand_over(riding)

    def _hand_over(self, jobs: Iterable[tuple[ShadowJob, float]]) -> None:
        """Queue `jobs` on the batcher in this loop turn (so they share a batch)."""
        for job, started in jobs:
            if not self._batcher.running:  # stopped meanwhile: logged as not run
                self._finish(job, started, None, "cancelled: the router stopped")
                continue
            future = self._batcher.submit(job.predictor, None, self._work(job.text))
            future.add_done_callback(functools.partial(self._done, job, started))

    def drain(self, timeout: float = 10.0) -> bool:
        """From another thread: hand the lingering jobs to the batcher now, then wait
        until no shadow call is outstanding, up to `timeout` seconds; True when none is."""
        loop = self._loop
        if self._lingering and loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._flush)
        return self._idle.wait(timeout)

    def _done(self, job: ShadowJob, started: float, future: asyncio.Future[Reply]) -> None:
        """Log the candidate's shadow answer (or why there is none)."""
        if future.cancelled():
            self._finish(job, started, None, "cancelled: the router stopped")
        elif (exc := future.exception()) is not None:
            self._finish(job, started, None, error_text(exc))
        else:
            self._finish(job, started, future.result()[1], None)

    def _finish(
        self, job: ShadowJob, started: float, output: str | None, error: str | None
    ) -> None:
        latency_ms = (time.perf_counter() - started) * 1000.0
        try:
            self._on_done(job, output, latency_ms, error)
        except Exception:
            log.exception("recording a shadow result failed")
        self.completed += 1
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()
