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

A model that reads release state (the retriever's answer index) is served with each
version's published state, loaded here too (serving/state_cache.py): a champion whose
state is not published counts as not loadable (previous plan, or not ready), a candidate
whose state is not published as not loaded (candidate_error says so; its arm falls back).
States live in the state database: while it has never answered (registry-alias start-up),
a model that reads state is not served (/answer answers 503) until it does.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from core.answer_index import AnswerIndex
from core.ledger.routing import RoutingState
from serving.model_cache import ModelCache, ModelLoadError, Predictor
from serving.startup_fallback import LEDGER, REGISTRY_ALIAS, StateSource, state_source
from serving.state_cache import StateCache, StateLoadError

log = logging.getLogger(__name__)

StateReader = Callable[[], Mapping[str, RoutingState]]


@dataclass(frozen=True, slots=True)
class ServingPlan:
    """How one model is served right now: its routing state and the loaded predictors.

    candidate_error says why a candidate named by the state is not loaded (None when it
    is loaded or when there is no candidate). source: where the state came from, the
    ledger or (before the state database first answered) the registry alias.
    champion_index / candidate_index: for a model that reads state, the loaded answer
    index of each version (its `key` is the version's state key); None otherwise. A
    candidate counts as loaded only with its state.
    """

    state: RoutingState
    champion: Predictor
    candidate: Predictor | None = None
    candidate_error: str | None = None
    source: StateSource = LEDGER
    champion_index: AnswerIndex | None = None
    candidate_index: AnswerIndex | None = None

    @property
    def champion_state_key(self) -> str | None:
        """The release state the champion reads (None: it reads none)."""
        return None if self.champion_index is None else self.champion_index.key

    @property
    def candidate_state_key(self) -> str | None:
        """The release state the loaded candidate reads (None: none, or not loaded)."""
        return None if self.candidate_index is None else self.candidate_index.key


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
        states: StateCache | None = None,
    ) -> None:
        """`states`: where the versions of models that read state get it (None: no model
        reads state)."""
        self._read_state = read_state
        self._states = states
        self._reported: dict[str, str] = {}  # per model, the load failure last logged
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
            plan, loaded = self._plan(name, state, source)
            complete = complete and loaded
            if plan is None:
                continue
            plans[name] = plan
            old = self.plans.get(name)
            if plan.state == state and (old is None or old.state != state):
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
        self._retain(plans)

    def _plan(
        self, name: str, state: RoutingState, source: StateSource
    ) -> tuple[ServingPlan | None, bool]:
        """The plan of `name` under `state` and whether everything it names is loaded.

        A champion (model or state) that cannot be loaded keeps the previous plan of the
        model (None if there is none); a candidate that cannot be loaded leaves the plan
        without a candidate, candidate_error saying why.
        """
        try:
            champion, champion_index = self._load(name, state.champion_version)
        except (ModelLoadError, StateLoadError) as exc:
            previous = self.plans.get(name)
            if self._reported.get(name) != str(exc):  # once per cause, not once per poll
                self._reported[name] = str(exc)
                if previous is not None:
                    log.error("%s; keeping %s v%s", exc, name, previous.champion.version)
                else:
                    log.error("%s; %s is not served until it is", exc, name)
            return previous, False
        self._reported.pop(name, None)
        candidate = candidate_index = candidate_error = None
        if state.candidate_version and state.mode != "champion_only":
            try:
                candidate, candidate_index = self._load(name, state.candidate_version)
            except (ModelLoadError, StateLoadError) as exc:
                candidate_error = str(exc)
        plan = ServingPlan(
            state, champion, candidate, candidate_error, source, champion_index, candidate_index
        )
        return plan, candidate_error is None

    def _load(self, name: str, version: str) -> tuple[Predictor, AnswerIndex | None]:
        """A version's predictor, and its state when the model reads state.

        Raises:
            ModelLoadError: the version cannot be loaded.
            StateLoadError: its state is not published or cannot be read.
        """
        predictor = self._cache.get(name, version)
        index = None if self._states is None else self._states.get(name, version)
        return predictor, index

    def _retain(self, plans: Mapping[str, ServingPlan]) -> None:
        """Let the caches drop what no plan serves (they keep a few spares)."""
        keep = {(n, p.state.champion_version) for n, p in plans.items()}
        keep |= {
            (n, p.state.candidate_version)
            for n, p in plans.items()
            if p.candidate is not None and p.state.candidate_version
        }
        self._cache.retain(keep)
        if self._states is not None:
            self._states.retain(
                {i.key for p in plans.values() for i in (p.champion_index, p.candidate_index) if i}
            )
