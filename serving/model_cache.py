"""Loaded models per (name, version), behind a small `ModelSource` protocol.

In production the source is `core.registry.ModelRegistry` (digest verified before
unpickling, cached per version). Tests and benchmarks may pass any object with a
`load(name, version)` method. The cache loads each version once, and remembers a failed
load for `retry_seconds` so a broken version is not re-downloaded on every poll.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Protocol, runtime_checkable

log = logging.getLogger(__name__)


@runtime_checkable
class Predictor(Protocol):
    """A loaded model version: what the router calls on the request path."""

    @property
    def version(self) -> str:
        """The registered version this predictor is."""
        ...

    def predict(self, texts: list[str]) -> list[str]:
        """One label per text."""
        ...

    def predict_one(self, text: str) -> str:
        """The label of one text."""
        ...


class ModelSource(Protocol):
    """Where model versions come from (the registry in production)."""

    def load(self, name: str, version: str) -> Predictor:
        """Load one version; raises if it cannot be loaded or fails verification."""
        ...


class ModelLoadError(Exception):
    """A version could not be loaded; the message says which and why."""


class ModelCache:
    """Loads each (name, version) once; thread-safe; failures retried after a delay."""

    def __init__(self, source: ModelSource, *, retry_seconds: float = 30.0) -> None:
        self._source = source
        self._retry_seconds = retry_seconds
        self._loaded: dict[tuple[str, str], Predictor] = {}
        self._failed: dict[tuple[str, str], tuple[float, str]] = {}
        self._lock = threading.Lock()

    def get(self, name: str, version: str) -> Predictor:
        """The predictor of `name` `version`, loading it on first use.

        Raises:
            ModelLoadError: the load failed now, or failed less than `retry_seconds` ago.
        """
        key = (name, version)
        found = self._loaded.get(key)
        if found is not None:
            return found
        with self._lock:
            found = self._loaded.get(key)
            if found is not None:
                return found
            failed = self._failed.get(key)
            if failed is not None and time.monotonic() < failed[0]:
                raise ModelLoadError(failed[1])
            started = time.perf_counter()
            try:
                predictor = self._source.load(name, version)
            except Exception as exc:
                reason = f"{name} v{version} cannot be loaded: {type(exc).__name__}: {exc}"
                self._failed[key] = (time.monotonic() + self._retry_seconds, reason)
                log.error(reason)
                raise ModelLoadError(reason) from exc
            self._failed.pop(key, None)
            self._loaded[key] = predictor
            log.info("loaded %s v%s in %.2f s", name, version, time.perf_counter() - started)
            return predictor

    def loaded_versions(self) -> list[tuple[str, str]]:
        """(name, version) pairs currently held."""
        return sorted(self._loaded)

    def retain(self, keep: set[tuple[str, str]], *, spare: int = 2) -> None:
        """Drop versions not in `keep`, except the `spare` most recently loaded others
        (so a quick rollback finds the previous champion still in memory)."""
        with self._lock:
            others = [k for k in self._loaded if k not in keep]
            for key in others[: max(0, len(others) - spare)]:
                del self._loaded[key]
