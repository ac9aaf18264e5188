"""Calling the models of one request: each on the model pool, the candidates within their
timeout, the champions as fallback, and the traffic rows of every call on one clock.

A request names one call per model it uses (`Call`: the model, its plan, the arm its
routing state chose). `ModelCalls.serve` runs them all concurrently on one thread pool
(champion and candidate alike: the same hop, the same queue), then, for every candidate
group that failed, the champions of that group. A group is the models of one rollout in
the candidate arm: for a bundle all its members (one salt, so a user is in the candidate
arm for all of them or none), else one model. If any member of a group fails (error,
timeout, not loaded or state not ready), the whole group is answered by its champions.

Every row of the request is logged with the same latency: the endpoint span, from the
moment the request was parsed (`started`) to the moment its answer is ready (see
serving/__init__.py, "One clock"). Which arm a request goes to is decided before, in
`RouterService` (core.routing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, NamedTuple

from core.routing import Arm
from serving.batching import MicroBatcher, Work
from serving.metrics import RouterMetrics
from serving.model_cache import Predictor
from serving.rollout_state import ServingPlan
from serving.shadow import ShadowJob
from serving.traffic_log import ERROR_MAX, RequestFacts, TrafficLog, error_text, utc_now

# The request path logs under one name, whichever module it is in: operators and
# `sml demo` (cli/main.py) set the level of the router's per-request messages by it.
log = logging.getLogger("serving.service")

CANDIDATE_THREADS = 8
"""Threads of the model pool (kept under its former name: it runs both arms now)."""

CHAMPION_TIMEOUT_SECONDS = 30.0
"""The champion's deadline: a safety net (nothing to fall back to: past it the request
fails with 500), and the reason both arms share one code path: `asyncio.wait_for` with a
timeout costs an extra event-loop turn (Python 3.11), measurable under load, so the
champion is awaited exactly as the candidate is, only with a longer deadline."""


class ChampionError(Exception):
    """The champion itself failed on this input: there is nothing to fall back to."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the user gets back from /predict."""

    request_id: str
    intent: str
    model_version: str
    role: str


class Call(NamedTuple):
    """One model's part in a request: which model, under which plan, in which arm."""

    name: str
    plan: ServingPlan
    arm: Arm


@dataclass(frozen=True, slots=True)
class Served:
    """How one model answered a request: role champion, candidate or fallback."""

    name: str
    role: str
    version: str
    state_key: str | None
    value: Any


class _Failure(NamedTuple):
    """Why a call gave no answer: the error logged on its row, and the reason label of
    router_fallbacks_total (error, timeout or unavailable)."""

    error: str
    reason: str
    kind: str = "Exception"


_Outcome = tuple[Any, str] | _Failure


class _Row(NamedTuple):
    """One traffic row to log once the request's span is known."""

    call: Call
    role: str
    version: str
    state_key: str | None
    output: str | None
    error: str | None
    failed: bool


class ModelCalls:
    """The model calls of the request path, with their metrics and traffic rows.

    `start()` creates the model pool, `stop()` drops it; without a pool champions are
    called inline and every candidate request falls back to the champion.
    """

    def __init__(
        self,
        metrics: RouterMetrics,
        traffic: TrafficLog,
        *,
        candidate_timeout_ms: float,
        batch_max: int = 64,
        batch_wait_ms: float = 0.0,
    ) -> None:
        """Candidate calls longer than `candidate_timeout_ms` fall back to the champion;
        concurrent calls of one model version are batched (serving.batching: at most
        `batch_max` per call, lingering `batch_wait_ms` only under concurrency)."""
        self._metrics = metrics
        self._traffic = traffic
        self._candidate_timeout = candidate_timeout_ms / 1000.0
        self._pool: ThreadPoolExecutor | None = None
        self.batcher = MicroBatcher(
            lambda: self._pool, max_batch=batch_max, max_wait_seconds=batch_wait_ms / 1000.0
        )
        # Called with the predictor of each candidate-arm call, in the loop turn its work is
        # queued: the online shadow hands it lingering jobs of that version (ShadowCalls.ride)
        self.on_candidate_call: Callable[[Predictor], None] | None = None

    def start(self) -> None:
        """Create the model pool."""
        self._pool = ThreadPoolExecutor(CANDIDATE_THREADS, thread_name_prefix="model")

    def stop(self) -> None:
        """Drop the model pool without waiting for calls in flight."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    async def serve(
        self,
        calls: Sequence[Call],
        request: RequestFacts,
        work: Mapping[str, Work],
        started: float,
    ) -> dict[str, Served]:
        """Answer every call of `request`; log one row per model used (two for a model
        whose candidate failed) with the endpoint span since `started` (perf_counter).

        Raises:
            ChampionError: a champion raised (its row is logged with the error).
        """
        calls = sorted(calls, key=lambda c: not _is_lead(c))  # a bundle's rows: lead first
        first = await _each(self._attempt(c, work[c.name]) for c in calls)
        outcomes = dict(zip((c.name for c in calls), first, strict=True))
        failed, reporters = _failed_groups(calls, outcomes)
        fallback_calls = [c for c in calls if c.name in failed]
        second = await _each(
            self._attempt(c._replace(arm="champion"), work[c.name]) for c in fallback_calls
        )
        fallbacks = dict(zip((c.name for c in fallback_calls), second, strict=True))
        rows, served, champion_failure = _rows(calls, outcomes, (failed, reporters), fallbacks)
        latency = time.perf_counter() - started
        for row in rows:
            self._log_row(request, row, latency)
        self._log_failures(request, calls, failed, reporters)
        if champion_failure is not None:
            raise ChampionError(f"the model failed on this input ({champion_failure.kind})")
        return served

    async def _attempt(self, call: Call, work: Work) -> tuple[Any, str] | _Failure:
        """Run one model's work on the pool, bounded by its deadline (the candidate's
        timeout, or the champion's safety net): its value and output, or why there is
        none. Both arms take exactly the same path. Never raises."""
        plan = call.plan
        if call.arm == "candidate":
            predictor, index = plan.candidate, plan.candidate_index
            timeout = self._candidate_timeout
        else:
            predictor, index = plan.champion, plan.champion_index
            timeout = CHAMPION_TIMEOUT_SECONDS
        if predictor is None or (self._pool is None and call.arm == "candidate"):
            error = f"candidate not loaded: {plan.candidate_error or 'unavailable'}"[:ERROR_MAX]
            return _Failure(error, "unavailable")
        try:
            if self._pool is None:  # stopped: nothing to hop to
                return work.alone(predictor, index)
            future = self.batcher.submit(predictor, index, work)
            if call.arm == "candidate" and self.on_candidate_call is not None:
                self.on_candidate_call(predictor)  # shadow texts join this batch
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return _Failure(f"timeout after {timeout * 1000.0:g} ms", "timeout", "TimeoutError")
        except Exception as exc:  # a failing model is logged as traffic, not a crash here
            return _Failure(error_text(exc), "error", type(exc).__name__)

    def _log_row(self, request: RequestFacts, row: _Row, latency: float) -> None:
        """Metrics and the traffic row of one model call."""
        call = row.call
        series = self._metrics.series(call.name, row.version, row.role)
        if row.failed:
            series.errors.inc()
        else:
            series.requests.inc()
        series.latency.observe(latency)
        self._traffic.record(
            request._replace(rollout_id=call.plan.state.rollout_id, model_name=call.name),
            role=row.role,
            version=row.version,
            output=row.output,
            latency_ms=latency * 1000.0,
            error=row.error,
            state_key=row.state_key,
        )

    def _log_failures(
        self,
        request: RequestFacts,
        calls: Sequence[Call],
        failed: Mapping[str, _Failure],
        reporters: set[str],
    ) -> None:
        """Count each fallback; log each failed group once, and each champion error."""
        for call in calls:
            failure = failed.get(call.name)
            if failure is None:
                continue
            state = call.plan.state
            version = state.candidate_version or ""
            self._metrics.fallbacks.labels(call.name, version, failure.reason).inc()
            if call.name in reporters:
                log.warning(
                    "candidate %s v%s failed on request %s (%s); answered by champion v%s",
                    call.name,
                    version,
                    request.request_id,
                    failure.error,
                    state.champion_version,
                )

    def record_shadow(
        self, job: ShadowJob, output: str | None, latency_ms: float, error: str | None
    ) -> None:
        """Shadow executor callback: log the candidate's shadow answer (role=shadow)."""
        series = self._metrics.series(job.model_name, job.version, "shadow")
        if error is None:
            series.requests.inc()
        else:
            series.errors.inc()
        series.latency.observe(latency_ms / 1000.0)
        request = RequestFacts(
            request_id=job.request_id,
            ts=utc_now(),
            user_id=job.user_id,
            text=job.text,
            rollout_id=job.rollout_id,
            model_name=job.model_name,
        )
        self._traffic.record(
            request,
            role="shadow",
            version=job.version,
            output=output,
            latency_ms=latency_ms,
            error=error,
        )


async def _each(attempts: Iterable[Awaitable[_Outcome]]) -> list[_Outcome]:
    """Await the attempts concurrently; one alone is awaited directly (no task to create:
    /predict's one call pays no scheduling it does not need, whichever its arm)."""
    pending = list(attempts)
    if len(pending) == 1:
        return [await pending[0]]
    return list(await asyncio.gather(*pending))


def _is_lead(call: Call) -> bool:
    """True when `call`'s model leads its rollout (or is a rollout of one model)."""
    lead = call.plan.state.lead_model
    return lead is None or lead == call.name


def _group_of(call: Call) -> int | str:
    """The candidate group of a call: its rollout (a bundle shares one), else the model."""
    rollout_id = call.plan.state.rollout_id
    return call.name if rollout_id is None else rollout_id


def _failed_groups(
    calls: Sequence[Call], outcomes: Mapping[str, tuple[Any, str] | _Failure]
) -> tuple[dict[str, _Failure], set[str]]:
    """{model: the failure that sends it to its champion} for every member of a candidate
    group in which some member failed, and the models whose row reports each group's
    failure (the group's first member in the request, lead first). For a group of several
    models the error names the failing model (the first failure, lead first)."""
    candidates = [c for c in calls if c.arm == "candidate"]
    groups: dict[int | str, list[Call]] = {}
    for call in sorted(candidates, key=lambda c: not _is_lead(c)):
        groups.setdefault(_group_of(call), []).append(call)
    failed: dict[str, _Failure] = {}
    reporters: set[str] = set()
    for members in groups.values():
        first = next(((c, o) for c in members if isinstance(o := outcomes[c.name], _Failure)), None)
        if first is None:
            continue
        call, failure = first
        if len(members) > 1:
            version = call.plan.state.candidate_version
            error = f"{call.name} v{version}: {failure.error}"[:ERROR_MAX]
            failure = failure._replace(error=error)
        failed |= {c.name: failure for c in members}
        reporters.add(members[0].name)
    return failed, reporters


def _rows(
    calls: Sequence[Call],
    outcomes: Mapping[str, tuple[Any, str] | _Failure],
    failures: tuple[Mapping[str, _Failure], set[str]],
    fallbacks: Mapping[str, tuple[Any, str] | _Failure],
) -> tuple[list[_Row], dict[str, Served], _Failure | None]:
    """The rows to log, what each model served, and the first champion failure (if any).

    A failed candidate group: its reporting member logs a `candidate` row with the error,
    then every member a `fallback` row (the champion's answer, error = why)."""
    failed, reporters = failures
    rows: list[_Row] = []
    served: dict[str, Served] = {}
    champion_failure: _Failure | None = None
    for call in calls:
        state, plan = call.plan.state, call.plan
        failure = failed.get(call.name)
        if call.arm == "candidate" and failure is None:
            role, version, key = (
                "candidate",
                state.candidate_version or "",
                plan.candidate_state_key,
            )
            outcome, why = outcomes[call.name], None
        else:
            if failure is not None and call.name in reporters:
                rows.append(
                    _Row(call, "candidate", state.candidate_version or "",
                         plan.candidate_state_key, None, failure.error, failed=True)
                )  # fmt: skip
            role = "champion" if failure is None else "fallback"
            version, key = state.champion_version, plan.champion_state_key
            outcome = outcomes[call.name] if failure is None else fallbacks[call.name]
            why = None if failure is None else failure.error
        if isinstance(outcome, _Failure):
            rows.append(_Row(call, role, version, key, None, outcome.error, failed=True))
            champion_failure = champion_failure or outcome
            continue
        value, output = outcome
        rows.append(_Row(call, role, version, key, output, why, failed=False))
        served[call.name] = Served(call.name, role, version, key, value)
    return rows, served, champion_failure
