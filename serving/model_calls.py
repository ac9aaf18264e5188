"""Calling the models for one request: the champion inline, the candidate within its
timeout with the champion as fallback, and the record of every call.

Each call updates its cached metric children and logs exactly one traffic row (see
serving/__init__.py for the rows a request writes). Which arm a request goes to is
decided before, in `RouterService.predict` (core.routing).
"""

from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

from serving.metrics import RouterMetrics
from serving.rollout_state import ServingPlan
from serving.shadow import ShadowJob
from serving.traffic_log import ERROR_MAX, RequestFacts, TrafficLog, error_text, utc_now

# The request path logs under one name, whichever module it is in: operators and
# `sml demo` (cli/main.py) set the level of the router's per-request messages by it.
log = logging.getLogger("serving.service")

CANDIDATE_THREADS = 8


class ChampionError(Exception):
    """The champion itself failed on this input: there is nothing to fall back to."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the user gets back."""

    request_id: str
    intent: str
    model_version: str
    role: str


class _CandidateFailure(NamedTuple):
    """Why the candidate gave no answer: the error logged on its row, and the reason
    label of router_fallbacks_total (error, timeout or unavailable)."""

    error: str
    reason: str


class ModelCalls:
    """The model calls of the request path, with their metrics and traffic rows.

    `start()` creates the candidate thread pool, `stop()` drops it; without a pool every
    candidate request falls back to the champion.
    """

    def __init__(
        self, metrics: RouterMetrics, traffic: TrafficLog, *, candidate_timeout_ms: float
    ) -> None:
        """Candidate calls longer than `candidate_timeout_ms` fall back to the champion."""
        self._metrics = metrics
        self._traffic = traffic
        self._candidate_timeout_ms = candidate_timeout_ms
        self._candidate_timeout = candidate_timeout_ms / 1000.0
        self._pool: ThreadPoolExecutor | None = None

    def start(self) -> None:
        """Create the candidate thread pool."""
        self._pool = ThreadPoolExecutor(CANDIDATE_THREADS, thread_name_prefix="cand")

    def stop(self) -> None:
        """Drop the candidate thread pool without waiting for calls in flight."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def champion(
        self,
        plan: ServingPlan,
        request: RequestFacts,
        *,
        role: str = "champion",
        candidate_error: str | None = None,
    ) -> str:
        """Call the champion inline and log it in `role` (champion, or fallback with the
        candidate's error saying why).

        Raises:
            ChampionError: the champion raised on this input (logged as traffic).
        """
        state = plan.state
        version = state.champion_version
        series = self._metrics.series(state.model_name, version, role)
        started = time.perf_counter()
        try:
            output = plan.champion.predict_one(request.text)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            error = error_text(exc)
            series.errors.inc()
            self._traffic.record(
                request,
                role=role,
                version=version,
                output=None,
                latency_ms=elapsed * 1000.0,
                error=error,
            )
            log.error(
                "champion %s v%s failed on request %s: %s",
                state.model_name,
                version,
                request.request_id,
                error,
            )
            raise ChampionError(f"the model failed on this input ({type(exc).__name__})") from exc
        elapsed = time.perf_counter() - started
        series.requests.inc()
        series.latency.observe(elapsed)
        self._traffic.record(
            request,
            role=role,
            version=version,
            output=output,
            latency_ms=elapsed * 1000.0,
            error=candidate_error,
        )
        return output

    async def candidate(self, plan: ServingPlan, request: RequestFacts) -> Prediction:
        """The candidate answers, within ROUTER_CANDIDATE_TIMEOUT_MS; on an error, a timeout
        or an unloaded candidate the champion answers instead (role=fallback).

        Raises:
            ChampionError: the fallback champion raised too.
        """
        state = plan.state
        version = state.candidate_version or ""
        series = self._metrics.series(state.model_name, version, "candidate")
        outcome, elapsed = await self._attempt_candidate(plan, request.text)
        if not isinstance(outcome, _CandidateFailure):
            series.requests.inc()
            series.latency.observe(elapsed)
            self._traffic.record(
                request,
                role="candidate",
                version=version,
                output=outcome,
                latency_ms=elapsed * 1000.0,
                error=None,
            )
            return Prediction(request.request_id, outcome, version, "candidate")
        series.errors.inc()
        series.latency.observe(elapsed)
        self._metrics.fallbacks.labels(state.model_name, version, outcome.reason).inc()
        self._traffic.record(
            request,
            role="candidate",
            version=version,
            output=None,
            latency_ms=elapsed * 1000.0,
            error=outcome.error,
        )
        log.warning(
            "candidate %s v%s failed on request %s (%s); answered by champion v%s",
            state.model_name,
            version,
            request.request_id,
            outcome.error,
            state.champion_version,
        )
        output = self.champion(plan, request, role="fallback", candidate_error=outcome.error)
        return Prediction(request.request_id, output, state.champion_version, "fallback")

    async def _attempt_candidate(
        self, plan: ServingPlan, text: str
    ) -> tuple[str | _CandidateFailure, float]:
        """Run the candidate on the pool, bounded by the timeout: its answer or why there is
        none, and the seconds spent. Never raises: a failing candidate must never fail the
        user."""
        started = time.perf_counter()
        candidate = plan.candidate
        if candidate is None or self._pool is None:
            error = f"candidate not loaded: {plan.candidate_error or 'unavailable'}"[:ERROR_MAX]
            return _CandidateFailure(error, "unavailable"), time.perf_counter() - started
        loop = asyncio.get_running_loop()
        try:
            output = await asyncio.wait_for(
                loop.run_in_executor(self._pool, candidate.predict_one, text),
                self._candidate_timeout,
            )
        except TimeoutError:
            failure = _CandidateFailure(
                f"timeout after {self._candidate_timeout_ms:g} ms", "timeout"
            )
        except Exception as exc:  # the candidate failing must never fail the user
            failure = _CandidateFailure(error_text(exc), "error")
        else:
            return output, time.perf_counter() - started
        return failure, time.perf_counter() - started

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
