"""`load-test` flow under the Prefect harness, with real registered versions served by real
`sml serve --pin` processes on loopback; and the load test as the step of shadow-evaluation
between a passing shadow gate and the canary.

The phases are short (1 s per phase and model) and the margins wide: these tests check
the wiring (reports, MLflow, ledger, the pipeline's decision); the gate's sensitivity is
tests/core/test_loadtest_routers.py's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import Engine, insert

from config import get_settings
from core import ledger
from core.db import Traffic, utcnow
from core.registry import ModelRegistry
from flows.load_test import load_test
from flows.shadow_evaluation import shadow_evaluation
from tests.factories import make_release, slow_config, train_and_register, training_frame

MODEL = "intent-classifier"

pytestmark = [pytest.mark.slow, pytest.mark.integration]


@pytest.fixture(autouse=True)
def short_load_test(monkeypatch: pytest.MonkeyPatch) -> None:
    """One round of 1 s per phase and model; margins wide enough for one such round."""
    for key, value in {
        "LOADTEST_PHASE_SECONDS": "1",
        "LOADTEST_ROUNDS": "1",
        "LOADTEST_P95_MARGIN": "2",
        "LOADTEST_THROUGHPUT_MARGIN": "0.75",
        "LOADTEST_QUERIES": "120",
    }.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()


@pytest.fixture
def registry() -> ModelRegistry:
    """The MLflow registry of the test's settings (what the flow opens)."""
    return ModelRegistry.from_settings(get_settings())


def _champion_traffic(engine: Engine, champion: str, rows: int = 200) -> list[str]:
    """Champion rows of the last hour (the production queries to replay); returns the
    texts, newest first."""
    frame = training_frame(seed=99).head(rows)
    now = utcnow()
    traffic = [
        {"request_id": f"q{i}", "ts": now - timedelta(minutes=50) + timedelta(seconds=i),
         "env": "dev", "user_id": f"u{i}", "rollout_id": None, "model_name": MODEL,
         "model_version": champion, "role": role, "input_text": text, "output": intent,
         "latency_ms": 3.0, "error": None}
        for i, (text, intent) in enumerate(zip(frame["text"], frame["intent"], strict=True))
        for role in ("champion", "shadow")
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Traffic), traffic)
    return list(reversed(frame["text"].tolist()))


def _release(engine: Engine, champion: str) -> None:
    make_release(
        engine, env="dev", models={MODEL: champion}, digests={MODEL: None},
        code_version="1", image_version="local", reason="champion",
    )  # fmt: skip


def _shadow_rollout(engine: Engine, candidate: str) -> int:
    return ledger.start_rollout(
        engine, env="dev", model_name=MODEL, candidate_version=candidate,
        stages=[1, 10, 25, 50, 100], mode="shadow", actor="test", reason="shadow first",
    ).id  # fmt: skip


def test_load_test_flow_reports_and_records_an_event_without_moving_the_rollout(
    state_db: Engine, registry: ModelRegistry
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    champion = train_and_register(registry, alias="dev-champion").version
    candidate = train_and_register(registry).version
    _release(state_db, champion)
    _champion_traffic(state_db, champion)
    rollout_id = _shadow_rollout(state_db, candidate)

    report = load_test(model_name=MODEL)

    # the most recent champion rows, the rollout's candidate against the release's champion
    assert (report.champion_version, report.candidate_version) == (champion, candidate)
    assert (report.query_source, report.queries) == ("traffic", 120)
    assert report.passed, report.gate.summary()
    for side in (report.champion, report.candidate):
        assert side["target_rate"].requests == 50  # 50 req/s for 1 s, open loop
        assert side["saturation"].throughput_rps
    # a load_test event with the figures; the rollout itself does not move
    rollout = ledger.get_rollout(state_db, rollout_id)
    assert rollout.status == "shadow"
    events = ledger.rollout_events(state_db, rollout_id)
    assert [e.kind for e in events] == ["start", "load_test"]
    assert events[-1].reason == "load-test: pass"
    # reports: Prefect artifacts, the plot, the MLflow run with report and plot
    with get_client(sync_client=True) as client:
        keys = [f"load-test-{MODEL}", f"load-test-{MODEL}-figures", f"load-test-{MODEL}-gate"]
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=keys))
        )
    assert {a.key for a in artifacts} == set(keys)
    plot = (
        Path(get_settings().reports_dir) / f"load-test-{MODEL}-v{candidate}/load-test-latency.png"
    )
    assert plot.stat().st_size > 0
    experiment = registry.client.get_experiment_by_name(registry.experiment)
    (run,) = registry.client.search_runs(
        [experiment.experiment_id], filter_string="tags.`sml.kind` = 'load_test'"
    )
    assert run.data.tags["sml.verdict"] == "pass"
    assert run.data.metrics["candidate_target_rate_requests"] == 50
    logged = {a.path for a in registry.client.list_artifacts(run.info.run_id, "load_test")}
    assert logged == {
        "load_test/load-test-report.md",
        "load_test/load-test-report.json",
        "load_test/load-test-latency.png",
    }


def test_shadow_evaluation_rolls_back_a_shadow_rollout_whose_load_test_fails(
    state_db: Engine, registry: ModelRegistry
) -> None:
    champion = train_and_register(registry, alias="dev-champion").version
    # the same model, 50 ms slower per request: it agrees with the champion on every
    # input (the shadow gate passes) but not under load
    slow = train_and_register(registry, config=slow_config(extra_latency_ms=50.0)).version
    _release(state_db, champion)
    _champion_traffic(state_db, champion)
    rollout_id = _shadow_rollout(state_db, slow)

    report = shadow_evaluation(model_name=MODEL, batch_size=100, latency_sample=10)

    assert report.passed, report.gate.summary()
    rollout = ledger.get_rollout(state_db, rollout_id)
    assert rollout.status == "rolled_back"
    events = ledger.rollout_events(state_db, rollout_id)
    assert [e.kind for e in events] == ["start", "shadow_evaluation", "load_test", "rollback"]
    assert events[2].figures["gate"]["passed"] is False
    reason = events[-1].reason or ""
    assert reason.startswith(f"shadow {MODEL} v{slow} vs v{champion}: pass; load-test: fail (")
    assert "p95_vs_champion" in reason
