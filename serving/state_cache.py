"""Loaded release states per model version: the answer index a retriever version reads.

A model whose family reads state (`models.ModelFamily.state`, e.g. the FAQ retriever's
`answer_index`) serves a version only together with that version's published state: the
key is `core.release_state.model_state_key(name, version)`, the state is found with
`find_state` (a row in `release_states` = complete and ready) and read into memory once
with `core.answer_index.load_answer_index`, by the poller thread, never on the request
path. Like the model cache, each key is loaded once; a state that is not published yet is
looked up again on the next poll (one indexed read), a state that fails to load is retried
after `retry_seconds`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Collection

from sqlalchemy import Engine

from core.answer_index import AnswerIndex, load_answer_index
from core.release_state import find_state, model_state_key

log = logging.getLogger(__name__)


class StateLoadError(Exception):
    """A version's state is not published yet, or cannot be read; the message says which
    and what to run."""


class StateCache:
    """The answer indexes of the stateful model versions a router serves; thread-safe."""

    def __init__(
        self, engine: Engine, stateful: Collection[str], *, retry_seconds: float = 30.0
    ) -> None:
        """`stateful`: the model names that read state (the others never touch `engine`)."""
        self._engine = engine
        self.stateful = frozenset(stateful)
        self._retry_seconds = retry_seconds
        self._loaded: dict[str, AnswerIndex] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: str) -> AnswerIndex | None:
        """The loaded state of `name` `version`, or None when the model reads no state.

        Raises:
            StateLoadError: the state is not published, or failed to load (now, or less
                than `retry_seconds` ago).
        """
        if name not in self.stateful:
            return None
        key = model_state_key(name, version)
        found = self._loaded.get(key)
        if found is not None:
            return found
        with self._lock:
            return self._load(name, version, key)

    def _load(self, name: str, version: str, key: str) -> AnswerIndex:
        """Find and read the state of `key` (under the lock)."""
        found = self._loaded.get(key)
        if found is not None:
            return found
        failed = self._failed.get(key)
        if failed is not None and time.monotonic() < failed[0]:
            raise StateLoadError(failed[1])
        try:
            state = find_state(self._engine, key)
        except Exception as exc:  # the state database is down: the next poll retries
            raise StateLoadError(
                f"release state {key} of {name} v{version} cannot be looked up: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        if state is None:
            raise StateLoadError(
                f"release state not ready for {name} v{version} (state {key}): a version "
                "takes no traffic before its state is built; run the build_release_state "
                "flow for it"
            )
        started = time.perf_counter()
        try:
            index = load_answer_index(self._engine, state)
        except Exception as exc:
            reason = (
                f"release state {key} of {name} v{version} at {state.location} cannot be "
                f"loaded: {type(exc).__name__}: {exc}"
            )
            self._failed[key] = (time.monotonic() + self._retry_seconds, reason)
            log.error(reason)
            raise StateLoadError(reason) from exc
        self._failed.pop(key, None)
        self._loaded[key] = index
        log.info(
            "loaded state %s of %s v%s (%d answers) in %.2f s",
            key,
            name,
            version,
            len(index),
            time.perf_counter() - started,
        )
        return index

    def loaded_keys(self) -> list[str]:
        """The state keys currently held."""
        return sorted(self._loaded)

    def retain(self, keep: set[str], *, spare: int = 2) -> None:
        """Drop states not in `keep`, except the `spare` most recently loaded others (so a
        rollback finds the previous version's state still in memory)."""
        with self._lock:
            others = [k for k in self._loaded if k not in keep]
            for key in others[: max(0, len(others) - spare)]:
                del self._loaded[key]
