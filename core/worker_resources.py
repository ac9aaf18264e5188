"""What a chunk of work opens where it runs: the registry and the state database engine.

Chunked work (the shadow replay, the release-state build) runs as mapped tasks, in the
flow's process or on the workers of a Dask cluster (`DASK_SCHEDULER_ADDRESS`). What is
shipped to a worker is plain data: names, versions, chunks. Never a loaded model (a
pickle travels only from the registry's store, and is verified against its recorded
sha256 before it is unpickled: `core.artifacts`) and never an engine (a pool of live
connections and locks). Each process opens its own from its own settings (in a cluster,
Dask workers get the same ConfigMap and Secret as flow-run pods) and keeps them for the
next chunk: a model version loads once per worker, a pool is made once per database.
Thread-safe.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

from sqlalchemy import Engine

from config import Settings
from core.db import make_engine
from core.registry import ModelRegistry

ENGINES_KEPT = 4
"""Engines kept per process (one per database URL); the oldest is disposed beyond."""

_lock = threading.Lock()
_registries: dict[tuple[str, str, str, str], ModelRegistry] = {}
_engines: OrderedDict[str, Engine] = OrderedDict()


def worker_registry(settings: Settings) -> ModelRegistry:
    """The registry of these settings' MLflow store and model cache, one per process
    (its loaded versions stay cached for the next chunk). Opening connects to nothing."""
    key = (
        settings.MLFLOW_TRACKING_URI,
        str(settings.MODEL_CACHE_DIR),
        settings.MLFLOW_ARTIFACT_LOCATION,
        settings.MLFLOW_EXPERIMENT,
    )
    with _lock:
        registry = _registries.get(key)
        if registry is None:
            registry = _registries[key] = ModelRegistry.from_settings(settings)
        return registry


def worker_engine(settings: Settings) -> Engine:
    """The state database engine of these settings, one per database URL and process;
    nothing connects until it is used."""
    url = settings.database_url
    with _lock:
        engine = _engines.get(url)
        if engine is None:
            engine = _engines[url] = make_engine(url)
            while len(_engines) > ENGINES_KEPT:
                _, oldest = _engines.popitem(last=False)
                oldest.dispose()
        else:
            _engines.move_to_end(url)
        return engine
