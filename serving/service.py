"""The router service: its parts wired together, their lifecycle, readiness, and the
entry of the request path (route, predict, shadow). No I/O here.

Everything slow happens elsewhere: rollout state and model loads in the poller thread
(serving/rollout_state.py), shadow predictions on the micro-batcher (serving/shadow.py),
database writes in the traffic writer thread (core/traffic/). A request reads one
immutable plan, hashes its routing key, calls one model through the micro-batcher (two on
a candidate failure: serving/model_calls.py), appends its traffic rows to the writer's
buffer (serving/traffic_log.py) and updates cached metric children.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping
from functools import partial
from typing import Any

from sqlalchemy import Engine

from config import Settings
from core.db import make_engine
from core.ledger.routing import routing_state
from core.routing import Route, choose_route, routing_key
from core.traffic import TrafficWriter
from serving.answering import (
    AnswerResult,
    ModelNotServedError,
    answer_models,
    classify,
    retrieve,
)
from serving.metrics import RouterMetrics
from serving.model_cache import ModelCache, ModelSource
from serving.model_calls import CANDIDATE_THREADS, Call, ChampionError, ModelCalls, Prediction
from serving.request_ids import next_request_id
from serving.rollout_state import RolloutStatePoller, ServingPlan, StateReader
from serving.shadow import ShadowCalls, ShadowJob
from serving.startup_fallback import REGISTRY_ALIAS, AliasSource, StateSource, alias_states
from serving.state_cache import StateCache
from serving.traffic_log import RequestFacts, TrafficLog, utc_now

# ChampionError, Prediction and CANDIDATE_THREADS live in serving.model_calls; still
# importable from here, where the router's request path used to hold them.
__all__ = [
    "CANDIDATE_THREADS",
    "AnswerResult",
    "ChampionError",
    "ModelNotServedError",
    "NotReadyError",
    "Prediction",
    "RouterService",
    "router_engine",
]


log = logging.getLogger(__name__)


class NotReadyError(Exception):
    """No champion is loaded yet for the requested model (the router is not ready)."""


class RouterService:
    """One router: poller, model pool and micro-batcher, shadow calls, traffic writer, metrics.

    Build with `from_settings`, then `start()`; `stop()` flushes the traffic buffer.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        model_source: ModelSource,
        engine: Engine,
        state_reader: StateReader | None = None,
        alias_source: AliasSource | None = None,
        shadow_in_canary: bool = True,
        stateful: Collection[str] = (),
        record_traffic: bool = True,
    ) -> None:
        """Wire the parts; nothing starts before `start()`. `state_reader`: default, the
        ledger's routing state of ENVIRONMENT on `engine`; `alias_source`: champion aliases
        serve until the ledger first answers; `stateful`: the models served with their
        release state (from the families: serving.app); `record_traffic=False`: no rows."""
        self.settings = settings
        self.stateful = frozenset(stateful)
        self.env = settings.ENVIRONMENT
        self.models = list(settings.MODELS)
        self.primary_model = self.models[0]
        self.engine = engine
        self.shadow_in_canary = shadow_in_canary
        self.metrics = RouterMetrics()
        self.writer = TrafficWriter(
            engine,
            spill_dir=settings.TRAFFIC_SPILL_DIR,
            batch_size=settings.TRAFFIC_BATCH_SIZE,
            flush_seconds=settings.TRAFFIC_FLUSH_SECONDS,
            buffer_max=settings.TRAFFIC_BUFFER_MAX,
        )
        self.writer.on_flush = lambda _n, seconds: self.metrics.traffic_flushes.observe(seconds)
        self.traffic = TrafficLog(self.writer, self.env, enabled=record_traffic)
        self.calls = ModelCalls(self.metrics, self.traffic, **_call_limits(settings))
        self.cache = ModelCache(model_source)
        reader = state_reader or (lambda: routing_state(engine, self.env))
        self.poller = RolloutStatePoller(
            reader,
            self.cache,
            self.models,
            poll_seconds=settings.ROUTER_POLL_SECONDS,
            on_poll_error=lambda _exc: self.metrics.state_poll_errors.inc(),
            read_alias_state=None
            if alias_source is None
            else lambda: alias_states(alias_source, self.env, self.models),
            states=StateCache(engine, self.stateful) if self.stateful else None,
        )
        self.shadow = ShadowCalls(
            self.calls.batcher,
            classify,
            self.calls.record_shadow,
            limit=settings.ROUTER_SHADOW_QUEUE,
            linger_seconds=settings.ROUTER_SHADOW_LINGER_MS / 1000.0,
            max_batch=settings.ROUTER_BATCH_MAX,
            on_drop=lambda job: self.metrics.shadow_dropped.labels(job.model_name).inc(),
        )
        self.calls.on_candidate_call = self.shadow.ride
        self._register_gauges()

    def _register_gauges(self) -> None:
        """Gauges read at scrape time: buffers, spill, shadow queue, readiness, database."""
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
            "router_traffic_database_up",
            "1 when the state database answered the last rollout-state read and the last "
            "traffic write did not fail (0 until it first answers)",
            self._db_up,
        )
        m.gauge_per_label(
            "router_serving_from_registry_alias",
            "1 while a model is served from its MLflow champion alias because the state "
            "database has not answered since start-up",
            "model",
            {name: partial(self._from_alias, name) for name in self.models},
        )

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        model_source: ModelSource | None = None,
        engine: Engine | None = None,
        state_reader: StateReader | None = None,
        alias_source: AliasSource | None = None,
        shadow_in_canary: bool = True,
        stateful: Collection[str] = (),
        record_traffic: bool = True,
    ) -> RouterService:
        """Build a router; defaults: the model registry of `settings` (as the model source
        and, when no model source is given, as the alias source), an engine on
        DATABASE_URL with short connect timeouts (an outage is noticed in seconds)."""
        if model_source is None:
            from core.registry import ModelRegistry

            registry = ModelRegistry.from_settings(settings)
            model_source = registry
            alias_source = alias_source or registry
        if engine is None:
            engine = router_engine(settings.database_url)
        return cls(
            settings,
            model_source=model_source,
            engine=engine,
            state_reader=state_reader,
            alias_source=alias_source,
            shadow_in_canary=shadow_in_canary,
            stateful=stateful,
            record_traffic=record_traffic,
        )

    # --- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start the model pool, the writer and the poller (first poll right away)."""
        self.calls.start()
        self.writer.start()
        self.poller.start()

    def stop(self) -> None:
        """Stop polling, finish shadow work, flush traffic (to the DB or the spill file)."""
        self.poller.stop()
        if not self.shadow.drain(10.0):
            log.warning("stopping with %d shadow calls unfinished", self.shadow.pending)
        self.calls.stop()
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

    def state_source(self) -> StateSource | None:
        """Where the plans in force came from: the ledger, the registry alias, or None."""
        return self.poller.source

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
        started = time.perf_counter()  # the request is parsed: the clock of every arm
        name = model or self.primary_model
        plan = self._plan_of(name)
        request = self._facts(text, user_id, request_id, plan)
        route = self._route(plan, user_id, request.request_id)
        served = await self.calls.serve(
            [Call(name, plan, route.arm)], request, {name: classify(text)}, started
        )
        self._shadow(plan, route, request)
        one = served[name]
        return Prediction(request.request_id, one.value, one.version, one.role)

    async def answer(
        self,
        text: str,
        *,
        user_id: str | None = None,
        request_id: str | None = None,
        k: int | None = None,
    ) -> AnswerResult:
        """The intent (classifier) and the top-k answers (retriever, over the answer index
        of the version serving this user), each model routed by its own rollout state.

        Raises:
            ModelNotServedError: MODELS lacks a classifier or a retriever.
            NotReadyError: a champion (or its state) is not loaded yet.
            ChampionError: a champion raised on this input (logged as traffic).
        """
        started = time.perf_counter()
        classifier, retriever = answer_models(self.models, self.stateful)
        plans = {name: self._plan_of(name) for name in (classifier, retriever)}
        request = self._facts(text, user_id, request_id, plans[classifier])
        routes = {n: self._route(p, user_id, request.request_id) for n, p in plans.items()}
        work = {
            classifier: classify(text),
            retriever: retrieve(text, k or self.settings.ANSWER_TOP_K),
        }
        calls = [Call(n, plans[n], routes[n].arm) for n in (classifier, retriever)]
        served = await self.calls.serve(calls, request, work, started)
        self._shadow(plans[classifier], routes[classifier], request)
        return AnswerResult(
            request.request_id, served[classifier].value, served[retriever].value, served
        )

    def _facts(
        self, text: str, user_id: str | None, request_id: str | None, plan: ServingPlan
    ) -> RequestFacts:
        """What the rows of one request share (each call sets its own model and rollout)."""
        return RequestFacts(
            request_id=request_id or next_request_id(),
            ts=utc_now(),
            user_id=user_id,
            text=text,
            rollout_id=plan.state.rollout_id,
            model_name=plan.state.model_name,
        )

    def _route(self, plan: ServingPlan, user_id: str | None, request_id: str) -> Route:
        """The arm of this request for the model of `plan` (hashed under its rollout)."""
        return choose_route(
            plan.state, routing_key(user_id, request_id), shadow_in_canary=self.shadow_in_canary
        )

    def _shadow(self, plan: ServingPlan, route: Route, request: RequestFacts) -> None:
        """Queue the candidate's shadow answer when the route asks for one (never blocks)."""
        if not route.shadow or plan.candidate is None or route.arm != "champion":
            return
        state = plan.state
        self.shadow.submit(
            ShadowJob(
                predictor=plan.candidate,
                text=request.text,
                request_id=request.request_id,
                user_id=request.user_id,
                rollout_id=state.rollout_id,
                model_name=state.model_name,
                version=state.candidate_version or plan.candidate.version,
            )
        )

    def _plan_of(self, name: str) -> ServingPlan:
        """The plan serving model `name`.

        Raises:
            ModelNotServedError: `name` is not in MODELS.
            NotReadyError: no champion of it is loaded yet.
        """
        plan = self.poller.plans.get(name)
        if plan is None:
            if name not in self.models:
                raise ModelNotServedError(
                    f"model {name!r} is not served here; expected one of {', '.join(self.models)}"
                )
            what = " (with its release state)" if name in self.stateful else ""
            raise NotReadyError(f"no champion of {name}{what} is loaded yet")
        return plan

    def feedback(self, request_id: str, kind: str, value: str) -> None:
        """Buffer one feedback row (written in batches with the traffic)."""
        self.traffic.feedback(request_id, kind, value)

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
        # the writer alone starts out "up" and only learns otherwise by writing; the
        # poller's reads are a real check every ROUTER_POLL_SECONDS
        return 1.0 if self.poller.ledger_up and self.writer.stats().database_up else 0.0

    def _from_alias(self, name: str) -> float:
        plan = self.poller.plans.get(name)
        return 1.0 if plan is not None and plan.source == REGISTRY_ALIAS else 0.0


def _call_limits(settings: Settings) -> dict[str, Any]:
    """The model calls' limits from the settings: candidate timeout, batch size, linger."""
    return {
        "candidate_timeout_ms": settings.ROUTER_CANDIDATE_TIMEOUT_MS,
        "batch_max": settings.ROUTER_BATCH_MAX,
        "batch_wait_ms": settings.ROUTER_BATCH_WAIT_MS,
    }


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
