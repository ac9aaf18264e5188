"""A rollback reaches a RUNNING router over real HTTP on loopback within seconds.

Real registered versions (MLflow sqlite store in a temp dir), the real router app
(`serving.app.create_app`) under uvicorn on a free port with the production poll
interval (ROUTER_POLL_SECONDS=1), on SQLite and on the real Postgres. The time measured
is from the ledger's commit returning to the first /predict that answers a canary user
with the champion version. The issue asks for 2 s; the assertion allows 5 s for CI noise,
and the measured figures are printed (run with -s to see them).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from sqlalchemy import Engine

from config import load_settings
from core.ledger import promote, record_release, rollback, rollback_env, start_rollout
from core.ledger.verdicts import compat_verdict_fn
from serving.app import create_app
from serving.server import serve_in_thread
from tests.factories import make_registry, train_and_register

MODEL = "intent-classifier"
BOUND_SECONDS = 5.0


def _wait(predicate: Callable[[], bool], timeout: float) -> float:
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not reached within {timeout} s")
        time.sleep(0.01)
    return time.monotonic() - started


@pytest.mark.slow
@pytest.mark.integration
def test_rollback_reaches_running_router_over_http(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    registry = make_registry(tmp_path)
    v1 = train_and_register(registry, alias="dev-champion").version
    v2 = train_and_register(registry, alias="dev-candidate").version
    record_release(
        engine,
        env="dev",
        code_version="1.0",
        image_version=registry.image_version,
        model_versions={MODEL: v1},
        artifact_digests={MODEL: registry.get_version(MODEL, v1).artifact_sha256},
        reason="first",
        actor="test",
    )
    rid = start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version=v2,
        stages=[50.0, 100.0],
        actor="test",
        reason="canary",
    ).id
    settings = load_settings(DATABASE_URL=db_url, ENVIRONMENT="dev")
    assert settings.ROUTER_POLL_SECONDS == 1.0  # the production default, not a test speed-up
    app = create_app(settings, model_source=registry)

    with serve_in_thread(app) as url, httpx.Client(base_url=url, timeout=10) as client:
        assert app.state.service.wait_ready(60)

        def served(user: str) -> tuple[str, str]:
            response = client.post("/predict", json={"text": "refund my order", "user_id": user})
            response.raise_for_status()
            body = response.json()
            return body["model_version"], body["role"]

        # a user the canary sends to the candidate (the candidate loads on first use)
        users = [f"user-{i}" for i in range(200)]
        canary_user: list[str] = []

        def find_canary_user() -> bool:
            canary_user[:] = [u for u in users[:40] if served(u) == (v2, "candidate")][:1]
            return bool(canary_user)

        _wait(find_canary_user, 60)
        user = canary_user[0]

        # 1. roll the rollout back: the champion serves the canary user again
        rollback(engine, rid, actor="oncall", reason="error rate breach")
        rollout_seconds = _wait(lambda: served(user) == (v1, "champion"), 30)

        # 2. promote v2 through a new rollout, then roll the env back to v1
        rid2 = start_rollout(
            engine,
            env="dev",
            model_name=MODEL,
            candidate_version=v2,
            stages=[50.0, 100.0],
            actor="test",
            reason="again",
        ).id
        promote(engine, rid2, actor="test", reason="ok", code_version="1.0", image_version="x")
        _wait(lambda: served(user) == (v2, "champion"), 30)
        rollback_env(
            engine,
            "dev",
            actor="oncall",
            reason="v2 misroutes refunds",
            verdict_fn=compat_verdict_fn(registry, registry.image_version, record=False),
        )
        env_seconds = _wait(lambda: served(user) == (v1, "champion"), 30)

    print(
        f"\nrollback -> router ({engine.dialect.name}, poll 1 s): "
        f"rollout rollback {rollout_seconds:.2f} s, env rollback {env_seconds:.2f} s"
    )
    assert rollout_seconds < BOUND_SECONDS
    assert env_seconds < BOUND_SECONDS
