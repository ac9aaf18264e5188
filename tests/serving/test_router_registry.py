"""The router on REAL registered versions (MLflow sqlite store, digest-verified loads):
a candidate that raises on some inputs, a slow candidate, a tampered candidate."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import (
    FAULT_RATE,
    MODEL,
    RegisteredVersions,
    RouterFactory,
    count_traffic,
    open_canary,
    release,
    router_settings,
)
from sqlalchemy import Engine, select

from core.db import Traffic, make_engine, session_scope, upgrade
from core.registry import ModelRegistry

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture
def versions(registered_versions: RegisteredVersions) -> RegisteredVersions:
    """The session's registered versions."""
    return registered_versions


@pytest.fixture
def registry(versions: RegisteredVersions) -> ModelRegistry:
    """A fresh registry object (own cache of loaded models) on the shared store."""
    return versions.registry()


@pytest.fixture
def state(sqlite_url: str, versions: RegisteredVersions) -> Iterator[Engine]:
    """A state db whose dev release serves the registered champion."""
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, versions.champion)
    yield engine
    engine.dispose()


def _url(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=False)


def test_candidate_raising_on_some_inputs_fails_no_request(
    state: Engine,
    versions: RegisteredVersions,
    registry: ModelRegistry,
    run_router: RouterFactory,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from models.intent_classifier import would_fail

    rollout_id = open_canary(state, versions.faulty, 100.0)
    router = run_router(router_settings(_url(state)), model_source=registry)
    with caplog.at_level(logging.WARNING, logger="serving.service"):
        responses = [
            router.client.post("/predict", json={"text": t, "user_id": f"u{i}"})
            for i, t in enumerate(versions.texts)
        ]
    assert [r.status_code for r in responses] == [200] * len(responses)
    expected_fallbacks = sum(would_fail(t, FAULT_RATE) for t in versions.texts)
    assert expected_fallbacks > 10  # the knob really bites on this input set
    for text, response in zip(versions.texts, responses, strict=True):
        body = response.json()
        if would_fail(text, FAULT_RATE):
            assert (body["role"], body["model_version"]) == ("fallback", versions.champion)
        else:
            assert (body["role"], body["model_version"]) == ("candidate", versions.faulty)
        assert body["intent"]
    metrics = router.client.get("/metrics").text
    counted = (
        f'router_fallbacks_total{{model="{MODEL}",reason="error",'
        f'version="{versions.faulty}"}} {float(expected_fallbacks)}'
    )
    assert counted in metrics
    logged = [r for r in caplog.records if "answered by champion" in r.getMessage()]
    assert len(logged) == expected_fallbacks
    assert "InjectedFaultError" in logged[0].getMessage()
    router.stop()
    assert count_traffic(state, role="candidate", rollout_id=rollout_id) == len(versions.texts)
    assert count_traffic(state, role="fallback", rollout_id=rollout_id) == expected_fallbacks
    with session_scope(state) as session:
        errors = session.scalars(
            select(Traffic.error).where(Traffic.role == "candidate", Traffic.error.is_not(None))
        ).all()
    assert len(errors) == expected_fallbacks
    assert all(e.startswith("InjectedFaultError") for e in errors)


def test_slow_candidate_times_out_to_champion(
    state: Engine, versions: RegisteredVersions, registry: ModelRegistry, run_router: RouterFactory
) -> None:
    open_canary(state, versions.slow, 100.0)
    router = run_router(
        router_settings(_url(state), ROUTER_CANDIDATE_TIMEOUT_MS=100), model_source=registry
    )
    bodies = [router.client.post("/predict", json={"text": t}).json() for t in versions.texts[:5]]
    assert {b["role"] for b in bodies} == {"fallback"}
    assert 'reason="timeout"' in router.client.get("/metrics").text
    router.stop()
    assert count_traffic(state, role="candidate", error="timeout after 100 ms") == 5


def test_tampered_candidate_is_refused_and_champion_answers(
    state: Engine, versions: RegisteredVersions, registry: ModelRegistry, run_router: RouterFactory
) -> None:
    from urllib.parse import urlparse

    # tamper with the copy in the MLflow artifact store: a damaged local cache copy alone
    # is healed by downloading it again, the store's copy is what the digest protects
    source = registry.get_version(MODEL, versions.faulty).source
    pickle_path = Path(urlparse(source).path or source) / "model.pkl"
    original = pickle_path.read_bytes()
    # earlier tests in this module loaded (and verified) it: a fresh process would not have it
    registry.forget(MODEL, versions.faulty)
    registry.artifact_path(MODEL, versions.faulty).unlink()
    pickle_path.write_bytes(original + b"tampered")
    try:
        open_canary(state, versions.faulty, 100.0)
        router = run_router(router_settings(_url(state)), model_source=registry)
        body = router.client.post("/predict", json={"text": versions.texts[0]}).json()
        assert (body["role"], body["model_version"]) == ("fallback", versions.champion)
        ready = router.client.get("/ready").json()
        assert ready["ready"] is True
        assert ready["models"][MODEL]["candidate_loaded"] is False
        router.stop()
        with session_scope(state) as session:
            error = session.scalars(select(Traffic.error).where(Traffic.role == "candidate")).one()
        assert "DigestMismatchError" in error
    finally:
        pickle_path.write_bytes(original)
