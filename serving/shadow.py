"""Online shadow: the candidate answers the same request off the user's path.

Shadow calls go through the request path's own micro-batcher (serving/batching.py): a
shadowed text joins the candidate version's next batch, with the canary's candidate-arm
requests of that version, so shadow work costs one more text in a batched `predict`
(~0.1 ms), not a call of its own; a failing input fails alone (the batcher re-runs a
failed batch text by text).

- `submit` never blocks and never delays the user: the user's answer does not wait for
  the shadow's future. At most `limit` shadow calls are outstanding; past that a job is
  dropped and counted (router_shadow_dropped_total), so a slow candidate cannot pile up
  work.
- The latency of a shadow row is measured as every other row's: the span from the moment
  the job was queued to its answer (the batcher's wait included), not an amortised batch
  time.
- `drain(timeout)` (at shutdown, before the model pool goes) waits for the outstanding
  calls so their rows are logged.

Only the classifier is shadowed (what /predict and /answer's classifier serve).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
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
        on_drop: Callable[[ShadowJob], None] | None = None,
    ) -> None:
        if limit < 1:
            raise ValueError("limit must be >= 1")
        self._batcher = batcher
        self._work = work
        self._on_done = on_done
        self._on_drop = on_drop
        self._limit = limit
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
        started = time.perf_counter()
        future = self._batcher.submit(job.predictor, None, self._work(job.text))
        self._outstanding += 1
        self._idle.clear()
        future.add_done_callback(lambda f: self._done(job, started, f))
        return True

    def drain(self, timeout: float = 10.0) -> bool:
        """Wait (from another thread) until no shadow call is outstanding, up to `timeout`
        seconds; True when none is."""
        return self._idle.wait(timeout)

    def _done(self, job: ShadowJob, started: float, future: asyncio.Future[Reply]) -> None:
        """Log the candidate's shadow answer (or why there is none)."""
        latency_ms = (time.perf_counter() - started) * 1000.0
        output: str | None = None
        error: str | None = None
        if future.cancelled():
            error = "cancelled: the router stopped"
        elif (exc := future.exception()) is not None:
            error = error_text(exc)
        else:
            output = future.result()[1]
        try:
            self._on_done(job, output, latency_ms, error)
        except Exception:
            log.exception("recording a shadow result failed")
        self.completed += 1
        self._outstanding -= 1
        if self._outstanding == 0:
            self._idle.set()
