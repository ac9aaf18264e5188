"""What the router serves: rollout state polled from the ledger, with models loaded.

A background thread reads `core.ledger.routing_state` every ROUTER_POLL_SECONDS, loads the
versions it names (off the request path), then swaps in a new immutable `ServingPlan` per
model in one assignment. The request path only reads `poller.plans` (no lock, no I/O).

If the state database does not answer, the last known plans keep serving. If it has never
answered since start-up, there is no last known state: each model's environment champion
is served from its MLflow alias instead (serving/startup_fallback.py) until it does, and
every plan says where its state came from (`ServingPlan.source`). If a champion
cannot be loaded, the previous plan of that model keeps serving; if a candidate cannot be
loaded, its canary arm is answered by the champion as a fallback (the failure is logged as
traffic, so the canary analysis sees it).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.ledger.routing import RoutingState
from serving.model_cache import ModelCache, ModelLoadError, Predictor
from serving.startup_fallback import LEDGER, REGISTRY_ALIAS, StateSource, state_source

log = logging.getLogger(__name__)

StateReader = Callable[[], Mapping[str, RoutingState]]


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """How one model is served right now: its routing state and the loaded predictors.

    candidate_error says why a candidate named by the state is not loaded (None when it
    is loaded or when there is no candidate). source: where the state came from, the
    ledger or (before the state database first answered) the registry alias.
    """

    state: RoutingState
    champion: Predictor
    candidate: Predictor | None = None
    candidate_error: str | None = None
    source: StateSource = LEDGER


class RolloutStatePoller:
    """Keeps `plans` in step with the rollout state of the environment.

    `poll_once()` does one read-and-load (used at start-up and by tests); `start()` runs
    it every `poll_seconds` in a daemon thread until `stop()`. `read_alias_state` (the
    registry champion aliases) is read only while the ledger has never answered.
    `ledger_up` is True when the last read of the ledger succeeded (False until one has).
    """

    def __init__(
        self,
        read_state: StateReader,
        cache: ModelCache,
        models: list[str],
        *,
        poll_seconds: float = 1.0,
        on_poll_error: Callable[[BaseException], None] | None = None,
        read_alias_state: StateReader | None = None,
    ) -> None:
        self._read_state = read_state
        self._read_alias_state = read_alias_state
        self._cache = cache
        self._models = list(models)
        self._poll_seconds = poll_seconds
        self._on_poll_error = on_poll_error
        self.plans: Mapping[str, ServingPlan] = MappingProxyType({})
        self._last_states: dict[str, RoutingState] | None = None
        self._complete = False  # every named version loaded: nothing to retry
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing_since: float | None = None
        self._alias_failing = False
        self.last_success: float | None = None
        self.ledger_up = False
        self.source: StateSource | None = None  # of the plans in force (None: none yet)

    def start(self) -> None:
        """Start polling in the background (idempotent)."""
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="rollout-state-poller", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop polling; the current plans stay readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stop.is_set():
            started = time.monotonic()
            self.poll_once()
            self._stop.wait(max(0.0, self._poll_seconds - (time.monotonic() - started)))

    def poll_once(self) -> bool:
        """Read the state and rebuild the plans if it changed; False if the ledger read
        failed (the previous plans stay in force, or the registry alias serves if the
        ledger has never answered)."""
        try:
            states = dict(self._read_state())
        except Exception as exc:  # any failure to read: keep serving what we have
            self.ledger_up = False
            self._note_failure(exc)
            self._serve_alias_if_never_read()
            return False
        if self._failing_since is not None:
            log.warning(
                "rollout state readable again after %.1f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        self.ledger_up = True
        self.last_success = time.monotonic()
        if self.source == REGISTRY_ALIAS:
            log.warning("state database answered: following the ledger from now on")
        elif states == self._last_states and self._complete:
            return True
        self._apply(states, LEDGER)
        return True

    def _note_failure(self, exc: BaseException) -> None:
        """Log the start of an outage once, and count every failed read."""
        if self._failing_since is None:
            self._failing_since = time.monotonic()
            log.warning(
                "cannot read rollout state (%s); %s",
                type(exc).__name__,
                "serving the last known state"
                if self.last_success is not None
                else "no state read yet (nothing to serve from the ledger)",
            )
        if self._on_poll_error is not None:
            self._on_poll_error(exc)

    def _serve_alias_if_never_read(self) -> None:
        """Before the ledger's first answer, serve the registry's champion aliases."""
        source = state_source(
            ledger_answered=False,
            ledger_ever_answered=self.last_success is not None,
            has_alias_source=self._read_alias_state is not None,
        )
        if source != REGISTRY_ALIAS or self._read_alias_state is None:
            return
        try:
            states = dict(self._read_alias_state())
        except Exception as exc:  # the registry is down too: retry on the next poll
            if not self._alias_failing:
                log.error(
                    "cannot read the champion aliases either (%s: %s)", type(exc).__name__, exc
                )
            self._alias_failing = True
            return
        self._alias_failing = False
        if self.source is None:
            log.warning(
                "state database not answered yet: serving %s from the registry's "
                "champion aliases (read-only) until it does",
                ", ".join(f"{n} v{s.champion_version}" for n, s in sorted(states.items()))
                or "nothing (no alias set)",
            )
        if states == self._last_states and self._complete:
            return
        self._apply(states, REGISTRY_ALIAS)

    def _apply(self, states: dict[str, RoutingState], source: StateSource) -> None:
        """Load what the states name and swap the plans in; `source` says whence."""
        plans: dict[str, ServingPlan] = {}
        complete = True
        for name in self._models:
            state = states.get(name)
            if state is None:
                continue  # nothing released for this model in this env
            try:
                champion = self._cache.get(name, state.champion_version)
            except ModelLoadError as exc:
                complete = False
                previous = self.plans.get(name)
                if previous is not None:
                    log.error("%s; keeping %s v%s", exc, name, previous.champion.version)
                    plans[name] = previous
                continue
            candidate = None
            candidate_error = None
            if state.candidate_version and state.mode != "champion_only":
                try:
                    candidate = self._cache.get(name, state.candidate_version)
                except ModelLoadError as exc:
                    complete = False
                    candidate_error = str(exc)
            plans[name] = ServingPlan(state, champion, candidate, candidate_error, source)
            old = self.plans.get(name)
            if old is None or old.state != state:
                log.info(
                    "serving %s: champion v%s, mode %s%s",
                    name,
                    state.champion_version,
                    state.mode,
                    f", candidate v{state.candidate_version} at {state.percent:g}%"
                    if state.candidate_version
                    else "",
                )
        self.plans = MappingProxyType(plans)
        self.source = source
        self._last_states = states
        self._complete = complete
        keep = {(n, p.state.champion_version) for n, p in plans.items()}
        keep |= {
            (n, p.state.candidate_version)
            for n, p in plans.items()
            if p.candidate is not None and p.state.candidate_version
        }
        self._cache.retain(keep)
