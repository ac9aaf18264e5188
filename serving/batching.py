"""Adaptive micro-batching of the request path: concurrent requests for the same model
version share one batched call.

What a request asks of a model is a `Work`: its text and a *batch function* that answers
many texts in one call (the classifier's `predict(texts)`, the retriever's `embed(texts)`
then one index search). `MicroBatcher.submit` queues the work under its key (the model
version, its state, the kind of work) and gives the future of its own answer:

- **adaptive, no added wait when idle**: the first request of an idle key is dispatched on
  the next event-loop turn, alone. While a key's batch runs on the model pool, requests for
  that key queue; when it returns, everything queued (up to `max_batch`) goes as the next
  batch. Batches grow with the load and nothing waits for a timer. `max_wait_seconds` (0
  by default) adds a linger before a batch, only when the previous batch held more than
  one request (i.e. under concurrency), and never beyond a full batch;
- **one batch in flight per key**: on a machine with few cores a second concurrent call
  of the same model only competes for the same CPU; different versions (champion and
  candidate) and different models run side by side on the pool;
- **per-request isolation**: a batch that raises (or returns the wrong number of answers)
  is re-run text by text on the same pool thread, so exactly the failing inputs get an
  exception and every other request its answer;
- **deadlines stay per request**: a caller that stops waiting (its timeout) cancels only
  its own future; the batch's other answers are delivered, the cancelled one dropped.

Measured in bench/router.py (docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

from core.answer_index import AnswerIndex
from serving.model_cache import Predictor

log = logging.getLogger("serving.service")

Reply = tuple[Any, str]
"""One text's reply: the value handed back to the caller, the output logged in traffic."""

BatchFn = Callable[[Predictor, AnswerIndex | None, Sequence[str]], Sequence[Reply]]
"""A model's work on many texts at once: (predictor, its state, texts) -> one answer each."""


@dataclass(frozen=True, slots=True)
class Work:
    """What a request asks of one model: `run` applied to `text`. Requests whose work has
    the same `kind` (and model version and state) are batched together, so `kind` must
    name everything `run` depends on besides the text (e.g. the retriever's k)."""

    kind: str
    text: str
    run: BatchFn

    def alone(self, predictor: Predictor, index: AnswerIndex | None) -> Reply:
        """This text's answer by a call of its own (no pool: the router is stopping)."""
        return run_batch(self.run, predictor, index, [self.text])[0].result()


@dataclass(slots=True)
class _Outcome:
    """One text's answer, or the exception its own call raised."""

    value: Reply | None = None
    error: BaseException | None = None

    def result(self) -> Reply:
        if self.error is not None:
            raise self.error
        assert self.value is not None
        return self.value


def run_batch(
    fn: BatchFn, predictor: Predictor, index: AnswerIndex | None, texts: Sequence[str]
) -> list[_Outcome]:
    """`fn` on all `texts` in one call; if that raises or miscounts, one call per text,
    each text keeping its own answer or exception. Runs on a pool thread; never raises."""
    try:
        answers = fn(predictor, index, texts)
        if len(answers) != len(texts):
            raise ValueError(f"{len(answers)} answers for {len(texts)} texts")
        return [_Outcome(value=a) for a in answers]
    except Exception as batch_error:
        if len(texts) == 1:
            return [_Outcome(error=batch_error)]
    outcomes = []
    for text in texts:
        try:
            outcomes.append(_Outcome(value=fn(predictor, index, [text])[0]))
        except Exception as exc:  # this input's own failure
            outcomes.append(_Outcome(error=exc))
    return outcomes


@dataclass(slots=True)
class _Queue:
    """The waiting requests of one key, and whether a drain task serves them."""

    predictor: Predictor
    index: AnswerIndex | None
    fn: BatchFn
    waiting: deque[tuple[str, asyncio.Future[Reply]]] = field(default_factory=deque)
    draining: bool = False
    last_size: int = 0


@dataclass(slots=True)
class BatchStats:
    """Counts since start: batches run, requests in them, the largest batch."""

    batches: int = 0
    requests: int = 0
    largest: int = 0


class MicroBatcher:
    """Gathers concurrent works of the same key into one call on `pool` (see module doc).

    Use from one event loop (the router's); `pool` is read at each batch, so the router
    can create and drop it (start/stop) without rebuilding the batcher.
    """

    def __init__(
        self,
        pool: Callable[[], Executor | None],
        *,
        max_batch: int = 64,
        max_wait_seconds: float = 0.0,
    ) -> None:
        if max_batch < 1:
            raise ValueError("max_batch must be >= 1")
        if max_wait_seconds < 0:
            raise ValueError("max_wait_seconds must be >= 0")
        self._pool = pool
        self._max_batch = max_batch
        self._max_wait = max_wait_seconds
        self._queues: dict[tuple[int, int, str], _Queue] = {}
        self._drains: set[asyncio.Task[None]] = set()  # held: the loop keeps weak refs
        self.stats = BatchStats()

    def submit(
        self, predictor: Predictor, index: AnswerIndex | None, work: Work
    ) -> asyncio.Future[Reply]:
        """Queue `work` for `predictor` (with its state `index`), to be batched with the
        concurrent works of the same key: the future of its answer (or of the exception its
        own call raised). Cancelling the future drops only this work. Call it from the
        running event loop, while the pool exists."""
        key = (id(predictor), id(index), work.kind)
        queue = self._queues.get(key)
        if queue is None:
            queue = self._queues[key] = _Queue(predictor, index, work.run)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Reply] = loop.create_future()
        queue.waiting.append((work.text, future))
        if not queue.draining:
            queue.draining = True
            task = loop.create_task(self._drain(key, queue))
            self._drains.add(task)
            task.add_done_callback(self._drains.discard)
        return future

    @property
    def running(self) -> bool:
        """True while the model pool exists (between the router's start and stop)."""
        return self._pool() is not None

    @property
    def waiting(self) -> int:
        """Requests queued for a batch, all keys."""
        return sum(len(q.waiting) for q in self._queues.values())

    async def _drain(self, key: tuple[int, int, str], queue: _Queue) -> None:
        """Run the key's queued works, a batch at a time, until none is left."""
        try:
            while queue.waiting:
                if self._max_wait and queue.last_size > 1 and len(queue.waiting) < self._max_batch:
                    await asyncio.sleep(self._max_wait)
                batch = self._take(queue)
                if batch:
                    await self._run(queue, batch)
        except Exception:  # a bug here must not strand the waiting requests
            log.exception("micro-batch drain failed")
            for _text, future in queue.waiting:
                if not future.done():
                    future.set_exception(RuntimeError("the batch could not be run"))
            queue.waiting.clear()
        finally:
            queue.draining = False
            if not queue.waiting:
                self._queues.pop(key, None)

    def _take(self, queue: _Queue) -> list[tuple[str, asyncio.Future[Reply]]]:
        """Up to max_batch queued works whose caller still waits."""
        batch: list[tuple[str, asyncio.Future[Reply]]] = []
        while queue.waiting and len(batch) < self._max_batch:
            text, future = queue.waiting.popleft()
            if not future.done():  # a caller past its deadline is skipped
                batch.append((text, future))
        return batch

    async def _run(self, queue: _Queue, batch: list[tuple[str, asyncio.Future[Reply]]]) -> None:
        """One call for `batch` on the pool; each caller gets its own outcome."""
        texts = [text for text, _future in batch]
        pool = self._pool()
        if pool is None:
            outcomes = [_Outcome(error=RuntimeError("the router is stopping"))] * len(batch)
        else:
            loop = asyncio.get_running_loop()
            outcomes = await loop.run_in_executor(
                pool, run_batch, queue.fn, queue.predictor, queue.index, texts
            )
        queue.last_size = len(batch)
        self.stats.batches += 1
        self.stats.requests += len(batch)
        self.stats.largest = max(self.stats.largest, len(batch))
        for (_text, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # its caller stopped waiting meanwhile
                continue
            if outcome.error is not None:
                future.set_exception(outcome.error)
            else:
                future.set_result(outcome.result())
