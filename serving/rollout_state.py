"""What the router serves: rollout state polled from the ledger, with models loaded.

A background thread reads `core.ledger.routing_state` every ROUTER_POLL_SECONDS, loads the
versions it names (off the request path), then swaps in a new immutable `ServingPlan` per
model in one assignment. The request path only reads `poller.plans` (no lock, no I/O).

If the state database does not answer, the last known plans keep serving. If a champion
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

log = logging.getLogger(__name__)

StateReader = Callable[[], Mapping[str, RoutingState]]


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """How one model is served right now: its routing state and the loaded predictors.

    candidate_error says why a candidate named by the state is not loaded (None when it
    is loaded or when there is no candidate).
    """

    state: RoutingState
    champion: Predictor
    candidate: Predictor | None = None
    candidate_error: str | None = None


class RolloutStatePoller:
    """Keeps `plans` in step with the rollout state of the environment.

    `poll_once()` does one read-and-load (used at start-up and by tests); `start()` runs
    it every `poll_seconds` in a daemon thread until `stop()`.
    """

    def __init__(
        self,
        read_state: StateReader,
        cache: ModelCache,
        models: list[str],
        *,
        poll_seconds: float = 1.0,
        on_poll_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self._read_state = read_state
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
        self.last_success: float | None = None

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
        """Read the state and rebuild the plans if it changed; False if the read failed
        (the previous plans stay in force)."""
        try:
            states = dict(self._read_state())
        except Exception as exc:  # any failure to read: keep serving what we have
            if self._failing_since is None:
                self._failing_since = time.monotonic()
                log.warning(
                    "cannot read rollout state (%s); serving the last known state",
                    type(exc).__name__,
                )
            if self._on_poll_error is not None:
                self._on_poll_error(exc)
            return False
        if self._failing_since is not None:
            log.warning(
                "rollout state readable again after %.1f s",
                time.monotonic() - self._failing_since,
            )
            self._failing_since = None
        self.last_success = time.monotonic()
        if states == self._last_states and self._complete:
            return True
        self._apply(states)
        return True

    def _apply(self, states: dict[str, RoutingState]) -> None:
        """Load what the states name and swap the plans in."""
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
            plans[name] = ServingPlan(state, champion, candidate, candidate_error)
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
        self._last_states = states
        self._complete = complete
        keep = {(n, p.state.champion_version) for n, p in plans.items()}
        keep |= {
            (n, p.state.candidate_version)
            for n, p in plans.items()
            if p.candidate is not None and p.state.candidate_version
        }
        self._cache.retain(keep)
