"""The router's request path: route, predict, fall back, shadow, log. No I/O here.

Everything slow happens elsewhere: rollout state and model loads in the poller thread
(serving/rollout_state.py), shadow predictions on the shadow executor, database writes in
the traffic writer thread (core/traffic.py). A request reads one immutable plan, hashes
its routing key, calls one model (two on a candidate failure), appends its traffic rows
to the writer's buffer and updates cached metric children.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import Engine

from config import Settings
from core.db import make_engine
from core.ledger.routing import routing_state
from core.routing import choose_route, routing_key
from core.traffic import FeedbackRecord, TrafficRecord, TrafficWriter
from serving.metrics import RouterMetrics
from serving.model_cache import ModelCache, ModelSource
from serving.rollout_state import RolloutStatePoller, ServingPlan, StateReader
from serving.shadow import ShadowExecutor, ShadowJob

log = logging.getLogger(__name__)

# Column limits of the traffic table (core/db/models.py).
_OUTPUT_MAX = 128
_VERSION_MAX = 32
_ERROR_MAX = 1000
CANDIDATE_THREADS = 8


class ModelNotServedError(Exception):
    """The requested model is not one this environment ships (a client error)."""


class NotReadyError(Exception):
    """No champion is loaded yet for the requested model (the router is not ready)."""


class ChampionError(Exception):
    """The champion itself failed on this input: there is nothing to fall back to."""


@dataclass(frozen=True, slots=True)
class Prediction:
    """What the user gets back."""

    request_id: str
    intent: str
    model_version: str
    role: str


def _now() -> datetime:
    return datetime.now(UTC)


def _error_text(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:_ERROR_MAX]


class RouterService:
    """One router: its poller, shadow executor, candidate pool, traffic writer and metrics.

    Build with `from_settings`, then `start()`; `stop()` flushes the traffic buffer.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_source: ModelSource,
        engine: Engine,
        state_reader: StateReader | None = None,
        shadow_in_canary: bool = True,
        shadow_max_batch: int = 64,
    ) -> None:
        self.settings = settings
        self.env = settings.ENVIRONMENT
        self.models = list(settings.MODELS)
        self.primary_model = self.models[0]
        self.engine = engine
        self.shadow_in_canary = shadow_in_canary
        self._candidate_timeout = settings.ROUTER_CANDIDATE_TIMEOUT_MS / 1000.0
        self.metrics = RouterMetrics()
        self.writer = TrafficWriter(
            engine,
            spill_dir=settings.TRAFFIC_SPILL_DIR,
            batch_size=settings.TRAFFIC_BATCH_SIZE,
            flush_seconds=settings.TRAFFIC_FLUSH_SECONDS,
            buffer_max=settings.TRAFFIC_BUFFER_MAX,
        )
        self.writer.on_flush = lambda _n, seconds: self.metrics.traffic_flushes.observe(seconds)
        self.cache = ModelCache(model_source)
        reader = state_reader or (lambda: routing_state(engine, self.env))
        self.poller = RolloutStatePoller(
            reader,
            self.cache,
            self.models,
            poll_seconds=settings.ROUTER_POLL_SECONDS,
            on_poll_error=lambda _exc: self.metrics.state_poll_errors.inc(),
        )
        self.shadow = ShadowExecutor(
            self._record_shadow,
            workers=settings.ROUTER_SHADOW_WORKERS,
            queue_size=settings.ROUTER_SHADOW_QUEUE,
            max_batch=shadow_max_batch,
            on_drop=lambda job: self.metrics.shadow_dropped.labels(job.model_name).inc(),
        )
        self._candidate_pool: ThreadPoolExecutor | None = None
        m = self.metrics
        m.gauge("router_traffic_buffer_rows", "Traffic rows waiting in memory", self._buffered)
        m.gauge(
            "router_traffic_spill_rows",
            "Traffic rows in spill files, not yet replayed",
            self._spill_rows,
        )
        m.gauge("router_traffic_spill_bytes", "Bytes in the spill dir", self._spill_bytes)
        m.gauge("router_shadow_queue_jobs", "Shadow jobs waiting", self._shadow_pending)
        m.gauge("router_ready", "1 when every model has its champion loaded", self._ready_value)
        m.gauge(
            "router_traffic_database_up", "1 when the last traffic write succeeded", self._db_up
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model_source: ModelSource | None = None,
        engine: Engine | None = None,
        state_reader: StateReader | None = None,
        shadow_in_canary: bool = True,
        shadow_max_batch: int = 64,
    ) -> RouterService:
        """Build a router; defaults: the model registry of `settings`, an engine on
        DATABASE_URL with short connect timeouts (an outage is noticed in seconds)."""
        if model_source is None:
            from core.registry import ModelRegistry

            model_source = ModelRegistry.from_settings(settings)
        if engine is None:
            engine = router_engine(settings.database_url)
        return cls(
            settings,
            model_source=model_source,
            engine=engine,
            state_reader=state_reader,
            shadow_in_canary=shadow_in_canary,
            shadow_max_batch=shadow_max_batch,
        )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer, the shadow workers and the poller (first poll right away)."""
        self._candidate_pool = ThreadPoolExecutor(CANDIDATE_THREADS, thread_name_prefix="cand")
        self.writer.start()
        self.shadow.start()
        self.poller.start()

    def stop(self) -> None:
        """Stop polling, finish shadow work, flush traffic (to the DB or the spill file)."""
        self.poller.stop()
        self.shadow.close()
        if self._candidate_pool is not None:
            self._candidate_pool.shutdown(wait=False, cancel_futures=True)
        self.writer.close()

    def wait_ready(self, timeout: float = 30.0) -> bool:
        """Block until ready (every model's champion loaded) or `timeout`; True if ready."""
        deadline = time.monotonic() + timeout
        while not self.is_ready():
            if time.monotonic() > deadline:
                return False
            time.sleep(0.02)
        return True

    # --- readiness ------------------------------------------------------------------------
    def is_ready(self) -> bool:
        """True once every model this environment ships has a champion loaded."""
        plans = self.poller.plans
        return all(name in plans for name in self.models)

    def plans(self) -> Mapping[str, ServingPlan]:
        """The plans in force (for /ready and tests)."""
        return self.poller.plans

    # --- request path ---------------------------------------------------------------------
    async def predict(
        self,
        text: str,
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        model: str | None = None,
    ) -> Prediction:
        """Answer one request under the model's current rollout state.

        Raises:
            ModelNotServedError: `model` is not in MODELS.
            NotReadyError: no champion loaded yet for the model.
            ChampionError: the champion raised on this input (logged as traffic).
        """
        name = model or self.primary_model
        plan = self.poller.plans.get(name)
        if plan is None:
            if name not in self.models:
                raise ModelNotServedError(
                    f"model {name!r} is not served here; expected one of {', '.join(self.models)}"
                )
            raise NotReadyError(f"no champion of {name} is loaded yet")
        rid = request_id or uuid.uuid4().hex
        ts = _now()
        state = plan.state
        route = choose_route(
            state, routing_key(user_id, rid), shadow_in_canary=self.shadow_in_canary
        )
        if route.arm == "candidate":
            return await self._predict_candidate(plan, text, user_id, rid, ts)
        version = state.champion_version
        output = self._call_champion(plan, text, user_id, rid, ts, "champion", None)
        if route.shadow and plan.candidate is not None:
            self.shadow.submit(
                ShadowJob(
                    plan.candidate,
                    text,
                    rid,
                    user_id,
                    state.rollout_id,
                    name,
                    state.candidate_version or plan.candidate.version,
                )
            )
        return Prediction(rid, output, version, "champion")

    def _call_champion(
        self,
        plan: ServingPlan,
        text: str,
        user_id: str | None,
        rid: str,
        ts: datetime,
        role: str,
        candidate_error: str | None,
    ) -> str:
        """Call the champion inline and log it in `role` (champion or fallback)."""
        state = plan.state
        version = state.champion_version
        series = self.metrics.series(state.model_name, version, role)
        started = time.perf_counter()
        try:
            output = plan.champion.predict_one(text)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            error = _error_text(exc)
            series.errors.inc()
            self.writer.enqueue(
                TrafficRecord(
                    rid,
                    ts,
                    self.env,
                    user_id,
                    state.rollout_id,
                    state.model_name,
                    version[:_VERSION_MAX],
                    role,
                    text,
                    None,
                    elapsed * 1000.0,
                    error,
                )
            )
            log.error(
                "champion %s v%s failed on request %s: %s", state.model_name, version, rid, error
            )
            raise ChampionError(f"the model failed on this input ({type(exc).__name__})") from exc
        elapsed = time.perf_counter() - started
        series.requests.inc()
        series.latency.observe(elapsed)
        self.writer.enqueue(
            TrafficRecord(
                rid,
                ts,
                self.env,
                user_id,
                state.rollout_id,
                state.model_name,
                version[:_VERSION_MAX],
                role,
                text,
                output[:_OUTPUT_MAX],
                elapsed * 1000.0,
                candidate_error,
            )
        )
        return output

    async def _predict_candidate(
        self, plan: ServingPlan, text: str, user_id: str | None, rid: str, ts: datetime
    ) -> Prediction:
        """The candidate answers, within ROUTER_CANDIDATE_TIMEOUT_MS; on an error, a timeout
        or an unloaded candidate the champion answers instead (role=fallback)."""
        state = plan.state
        name = state.model_name
        version = state.candidate_version or ""
        series = self.metrics.series(name, version, "candidate")
        candidate = plan.candidate
        started = time.perf_counter()
        error: str
        reason: str
        if candidate is None or self._candidate_pool is None:
            error = f"candidate not loaded: {plan.candidate_error or 'unavailable'}"[:_ERROR_MAX]
            reason = "unavailable"
        else:
            loop = asyncio.get_running_loop()
            try:
                output = await asyncio.wait_for(
                    loop.run_in_executor(self._candidate_pool, candidate.predict_one, text),
                    self._candidate_timeout,
                )
            except TimeoutError:
                error = f"timeout after {self.settings.ROUTER_CANDIDATE_TIMEOUT_MS:g} ms"
                reason = "timeout"
            except Exception as exc:  # the candidate failing must never fail the user
                error = _error_text(exc)
                reason = "error"
            else:
                elapsed = time.perf_counter() - started
                series.requests.inc()
                series.latency.observe(elapsed)
                self.writer.enqueue(
                    TrafficRecord(
                        rid,
                        ts,
                        self.env,
                        user_id,
                        state.rollout_id,
                        name,
                        version[:_VERSION_MAX],
                        "candidate",
                        text,
                        output[:_OUTPUT_MAX],
                        elapsed * 1000.0,
                        None,
                    )
                )
                return Prediction(rid, output, version, "candidate")
        elapsed = time.perf_counter() - started
        series.errors.inc()
        series.latency.observe(elapsed)
        self.metrics.fallbacks.labels(name, version, reason).inc()
        self.writer.enqueue(
            TrafficRecord(
                rid,
                ts,
                self.env,
                user_id,
                state.rollout_id,
                name,
                version[:_VERSION_MAX],
                "candidate",
                text,
                None,
                elapsed * 1000.0,
                error,
            )
        )
        log.warning(
            "candidate %s v%s failed on request %s (%s); answered by champion v%s",
            name,
            version,
            rid,
            error,
            state.champion_version,
        )
        output = self._call_champion(plan, text, user_id, rid, ts, "fallback", error)
        return Prediction(rid, output, state.champion_version, "fallback")

    def _record_shadow(
        self, job: ShadowJob, output: str | None, latency_ms: float, error: str | None
    ) -> None:
        """Shadow executor callback: log the candidate's shadow answer (role=shadow)."""
        series = self.metrics.series(job.model_name, job.version, "shadow")
        if error is None:
            series.requests.inc()
        else:
            series.errors.inc()
        series.latency.observe(latency_ms / 1000.0)
        self.writer.enqueue(
            TrafficRecord(
                job.request_id,
                _now(),
                self.env,
                job.user_id,
                job.rollout_id,
                job.model_name,
                job.version[:_VERSION_MAX],
                "shadow",
                job.text,
                output[:_OUTPUT_MAX] if output is not None else None,
                latency_ms,
                error,
            )
        )

    def feedback(self, request_id: str, kind: str, value: str) -> None:
        """Buffer one feedback row (written in batches with the traffic)."""
        self.writer.enqueue(FeedbackRecord(request_id, _now(), kind, value))

    # --- gauges (read at scrape time) ---------------------------------------------------
    def _buffered(self) -> float:
        return float(self.writer.buffered)

    def _spill_rows(self) -> float:
        return float(self.writer.spill_pending)

    def _spill_bytes(self) -> float:
        return float(self.writer.spill_bytes())

    def _shadow_pending(self) -> float:
        return float(self.shadow.pending)

    def _ready_value(self) -> float:
        return 1.0 if self.is_ready() else 0.0

    def _db_up(self) -> float:
        return 1.0 if self.writer.stats().database_up else 0.0


def router_engine(url: str) -> Engine:
    """An engine for the router: on Postgres, a 3 s connect timeout and TCP keepalives so
    a dead database is noticed quickly (the writer then spills, the poller keeps state)."""
    from sqlalchemy.engine import make_url

    if make_url(url).get_backend_name() == "postgresql":
        return make_engine(
            url,
            connect_args={
                "connect_timeout": 3,
                "keepalives": 1,
                "keepalives_idle": 5,
                "keepalives_interval": 2,
                "keepalives_count": 2,
            },
            pool_size=4,
        )
    return make_engine(url)
