"""Fixtures for router tests: a migrated state db with a release, model sources, a running
router on a free loopback port."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import Engine, func, select

from config import Settings, load_settings
from core.db import Traffic, make_engine, session_scope, upgrade
from core.ledger import record_release, set_stage, start_rollout
from serving.app import create_app
from serving.server import serve_in_thread
from serving.service import RouterService

if TYPE_CHECKING:
    from core.registry import ModelRegistry

MODEL = "intent-classifier"
FAULT_RATE = 0.3
INTENTS = {"refund": "billing", "invoice": "billing", "password": "account", "crash": "bug"}


@dataclass
class KeywordModel:
    """A small deterministic text classifier standing in for a registered model in unit
    tests of the request path (the registry-backed tests use real registered versions).

    fail_on: inputs containing this substring raise ValueError. delay_ms: added latency.
    hold: while set, each call waits for `hold.release` (an Event): a test that needs "the
    user did not wait for this call" then proves it without a clock.
    """

    version: str
    fail_on: str | None = None
    delay_ms: float = 0.0
    calls: int = 0
    hold: threading.Event | None = None

    def predict_one(self, text: str) -> str:
        self.calls += 1
        if self.hold is not None:
            assert self.hold.wait(60), "a held model call was never released"
        if self.delay_ms:
            time.sleep(self.delay_ms / 1000.0)
        if self.fail_on is not None and self.fail_on in text:
            raise ValueError(f"cannot handle input containing {self.fail_on!r}")
        lowered = text.lower()
        for word, intent in INTENTS.items():
            if word in lowered:
                return intent
        return "other"

    def predict(self, texts: list[str]) -> list[str]:
        return [self.predict_one(t) for t in texts]


@dataclass
class DictModelSource:
    """Model versions by (name, version); `gate` lets a test hold loads back."""

    models: dict[tuple[str, str], KeywordModel] = field(default_factory=dict)
    gate: threading.Event = field(default_factory=threading.Event)
    loads: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.gate.set()

    def add(self, model: KeywordModel, name: str = MODEL) -> KeywordModel:
        self.models[(name, model.version)] = model
        return model

    def load(self, name: str, version: str) -> KeywordModel:
        self.gate.wait(30)
        self.loads.append((name, version))
        try:
            return self.models[(name, version)]
        except KeyError:
            raise LookupError(f"{name} v{version} is not registered") from None


@pytest.fixture
def state_engine(sqlite_url: str) -> Iterator[Engine]:
    """A migrated SQLite state db whose current dev release has intent-classifier v1."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, "1")
    yield engine
    engine.dispose()


def release(engine: Engine, version: str, env: str = "dev") -> None:
    """Record a release with `version` as the champion of the primary model."""
    record_release(
        engine,
        env=env,
        code_version="0.1.0",
        image_version="test",
        model_versions={MODEL: version},
        artifact_digests={MODEL: "sha256:test"},
        reason="test",
        actor="test",
    )


def open_canary(engine: Engine, candidate: str, percent: float, env: str = "dev") -> int:
    """Start a canary of `candidate` and move it to `percent`; return the rollout id."""
    stages = sorted({percent, 100.0}) if percent < 100 else [100.0]
    record = start_rollout(
        engine,
        env=env,
        model_name=MODEL,
        candidate_version=candidate,
        stages=stages,
        actor="test",
        reason="test",
    )
    if record.percent != percent:
        set_stage(engine, record.id, stage_index=0, stages=stages, actor="test", reason="test")
    return record.id


def open_shadow(engine: Engine, candidate: str, env: str = "dev") -> int:
    """Start a shadow rollout of `candidate`; return its id."""
    record = start_rollout(
        engine,
        env=env,
        model_name=MODEL,
        candidate_version=candidate,
        stages=[10.0, 100.0],
        mode="shadow",
        actor="test",
        reason="test",
    )
    return record.id


def router_settings(database_url: str, **overrides: object) -> Settings:
    """Settings for a test router: fast polling and flushing."""
    values: dict[str, object] = {
        "DATABASE_URL": database_url,
        "ROUTER_POLL_SECONDS": 0.2,
        "TRAFFIC_FLUSH_SECONDS": 0.1,
    }
    values.update(overrides)
    return load_settings(**values)


@dataclass
class RunningRouter:
    """A router served over real HTTP on loopback; `stop()` shuts it down (flushing its
    traffic), as a SIGTERM would."""

    url: str
    client: httpx.Client
    app: FastAPI
    _server: AbstractContextManager[str]
    stopped: bool = False

    @property
    def service(self) -> RouterService:
        service: RouterService = self.app.state.service
        return service

    def stop(self) -> None:
        if not self.stopped:
            self.stopped = True
            self.client.close()
            self._server.__exit__(None, None, None)


RouterFactory = Callable[..., RunningRouter]


@pytest.fixture
def run_router() -> Iterator[RouterFactory]:
    """Start routers (real uvicorn, free port); all are stopped at teardown."""
    started: list[RunningRouter] = []

    def start(settings: Settings, *, wait_ready: bool = True, **kwargs: Any) -> RunningRouter:
        app = create_app(settings, **kwargs)
        server = serve_in_thread(app)
        url = server.__enter__()
        running = RunningRouter(url, httpx.Client(base_url=url, timeout=30), app, server)
        started.append(running)
        if wait_ready:
            assert running.service.wait_ready(60), "router not ready"
        return running

    yield start
    for running in reversed(started):
        running.stop()


def count_traffic(engine: Engine, **where: object) -> int:
    """Rows in traffic matching column == value filters."""
    query = select(func.count()).select_from(Traffic)
    for column, value in where.items():
        query = query.where(getattr(Traffic, column) == value)
    with session_scope(engine) as session:
        return int(session.scalar(query) or 0)


def wait_until(predicate: Callable[[], bool], timeout: float = 20.0) -> float:
    """Poll until `predicate()`; return the seconds it took. Fails the test on timeout."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"condition not reached within {timeout} s")
        time.sleep(0.02)
    return time.monotonic() - started


@pytest.fixture
def spill_dir(isolated_settings: Path) -> Path:
    """Where the test router spills traffic."""
    return isolated_settings / "spill"


@dataclass(frozen=True)
class RegisteredVersions:
    """Real registered versions (MLflow sqlite store) shared by the router tests."""

    registry_dir: Path
    champion: str
    faulty: str
    slow: str
    texts: list[str]

    def registry(self) -> ModelRegistry:
        """A fresh registry object (its own cache of loaded models) on the shared store."""
        from factories import make_registry

        return make_registry(self.registry_dir)


@pytest.fixture(scope="session")
def registered_versions(tmp_path_factory: pytest.TempPathFactory) -> RegisteredVersions:
    """Train and register once per session: a clean champion, a candidate that raises on
    ~FAULT_RATE of inputs, and a candidate that takes 300 ms per input."""
    from factories import (
        faulty_config,
        make_registry,
        slow_config,
        train_and_register,
        training_frame,
    )

    root = tmp_path_factory.mktemp("registry")
    registry = make_registry(root)
    champion = train_and_register(registry, alias="champion").version
    faulty = train_and_register(registry, config=faulty_config(FAULT_RATE)).version
    slow = train_and_register(registry, config=slow_config(300.0)).version
    texts = list(dict.fromkeys(training_frame(400)["text"].tolist()))[:120]
    return RegisteredVersions(root, champion, faulty, slow, texts)
