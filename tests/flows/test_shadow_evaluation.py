"""`shadow-evaluation` flow with real models in a real MLflow store, under the harness.

Traffic of the champion is logged (with some true labels as feedback), then replayed in
chunks through champion and candidate. A good candidate passes and starts the canary; a
faulty one (raises on 30% of inputs) fails with its failed thresholds listed and its
shadow rollout is rolled back. Reports land as Prefect artifacts and an MLflow run.
When the candidate's online shadow rows cover all or half of the sample, only the rest
is replayed and the report counts both sources.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from sqlalchemy import Engine, insert

from config import get_settings
from core import ledger
from core.db import Feedback, Traffic, utcnow
from core.registry import ModelRegistry
from flows.shadow_evaluation import shadow_evaluation
from tests.factories import faulty_config, make_release, train_and_register, training_frame

MODEL = "intent-classifier"
# a short pre-canary load test: 1 s per phase and model, margins wide enough for one round
SHORT_LOAD_TEST = {
    "LOADTEST_PHASE_SECONDS": "1",
    "LOADTEST_ROUNDS": "1",
    "LOADTEST_P95_MARGIN": "2",
    "LOADTEST_THROUGHPUT_MARGIN": "0.75",
}

pytestmark = pytest.mark.slow


@pytest.fixture
def registry() -> ModelRegistry:
    """The MLflow registry of the test's settings (what the flow opens)."""
    return ModelRegistry.from_settings(get_settings())


def _log_traffic(engine: Engine, champion: str, rows: int = 400) -> None:
    """Champion traffic of the last hour on fresh texts; every other request labelled."""
    frame = training_frame(seed=99).head(rows)
    now = utcnow()
    traffic, feedback = [], []
    for i, (text, intent) in enumerate(zip(frame["text"], frame["intent"], strict=True)):
        ts = now - timedelta(minutes=50) + timedelta(seconds=i)
        traffic.append(
            {"request_id": f"q{i}", "ts": ts, "env": "dev", "user_id": f"u{i}",
             "rollout_id": None, "model_name": MODEL, "model_version": champion,
             "role": "champion", "input_text": text, "output": intent, "latency_ms": 3.0,
             "error": None}
        )  # fmt: skip
        if i % 2 == 0:
            feedback.append({"request_id": f"q{i}", "ts": ts, "kind": "label", "value": intent})
    with engine.begin() as conn:
        conn.execute(insert(Traffic), traffic)
        conn.execute(insert(Feedback), feedback)


def test_shadow_evaluation_good_candidate_passes_and_starts_canary(
    state_db: Engine, registry: ModelRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in SHORT_LOAD_TEST.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    champion = train_and_register(registry, alias="dev-champion").version
    # a retrain of the same data and config (what an image bump usually produces)
    candidate = train_and_register(registry, alias="dev-candidate").version
    make_release(
        state_db,
        env="dev",
        models={MODEL: champion},
        digests={MODEL: None},
        code_version="1",
        image_version="local",
        reason="champion",
    )
    _log_traffic(state_db, champion)

    report = shadow_evaluation(model_name=MODEL, batch_size=64, latency_sample=30)  # load test on

    assert report.passed, report.gate.summary()
    assert (report.champion_version, report.candidate_version) == (champion, candidate)
    assert report.requests == 400
    assert report.accuracy is not None
    assert report.accuracy.champion.n == 200
    assert report.agreement.value is not None
    assert report.agreement.value > 0.8
    (rollout,) = ledger.active_rollouts(state_db, "dev")
    assert (rollout.candidate_version, rollout.status, rollout.stage_index) == (
        candidate,
        "canary",
        0,
    )
    events = ledger.rollout_events(state_db, rollout.id)
    # the pre-canary load test (real pinned routers) passed before the canary started
    assert [e.kind for e in events] == ["start", "shadow_evaluation", "load_test"]
    assert events[-1].reason == "load-test: pass"
    out = Path(get_settings().reports_dir) / f"shadow-{MODEL}-v{candidate}"
    assert (out / "shadow-latency.png").stat().st_size > 0
    assert (out / "shadow-agreement.png").stat().st_size > 0
    with get_client(sync_client=True) as prefect:  # the Prefect report shows the plots
        key = ArtifactFilterKey(any_=[f"shadow-{MODEL}-plots"])
        plots = prefect.read_artifacts(artifact_filter=ArtifactFilter(key=key))
    assert any((out / "shadow-latency.png").resolve().as_uri() in str(a.data) for a in plots)
    runs = registry.client.search_runs(
        [registry.client.get_experiment_by_name(registry.experiment).experiment_id],
        filter_string="tags.`sml.kind` = 'shadow_evaluation'",
    )
    assert len(runs) == 1
    assert runs[0].data.metrics["agreement"] == pytest.approx(report.agreement.value)
    assert runs[0].data.metrics["replayed_requests"] == 400  # no online shadow rows logged
    assert runs[0].data.metrics["online_requests"] == 0
    artifacts = {a.path for a in registry.client.list_artifacts(runs[0].info.run_id, "shadow")}
    assert "shadow/shadow-latency.png" in artifacts
    assert "shadow/shadow-report.md" in artifacts


def test_shadow_evaluation_faulty_candidate_fails_and_rolls_back_shadow_rollout(
    state_db: Engine, registry: ModelRegistry
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    champion = train_and_register(registry, alias="dev-champion").version
    faulty = train_and_register(registry, config=faulty_config(0.3)).version
    make_release(
        state_db,
        env="dev",
        models={MODEL: champion},
        digests={MODEL: None},
        code_version="1",
        image_version="local",
        reason="champion",
    )
    _log_traffic(state_db, champion)
    rollout = ledger.start_rollout(
        state_db,
        env="dev",
        model_name=MODEL,
        candidate_version=faulty,
        stages=[1, 10, 25, 50, 100],
        mode="shadow",
        actor="test",
        reason="shadow first",
    )

    report = shadow_evaluation(model_name=MODEL, batch_size=100, latency_sample=20)

    assert not report.passed
    failed = {c.name for c in report.gate.failed}
    assert "candidate_error_rate" in failed
    assert report.candidate_error.value == pytest.approx(0.3, abs=0.08)
    assert report.champion_error.value == 0.0
    final = ledger.get_rollout(state_db, rollout.id)
    assert final.status == "rolled_back"
    kinds = [e.kind for e in ledger.rollout_events(state_db, rollout.id)]
    assert kinds == ["start", "shadow_evaluation", "rollback"]

    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"shadow-{MODEL}"]))
        )
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"shadow-{MODEL}-progress"]))
        )
    assert any("Verdict: FAIL" in str(a.data) for a in artifacts)
    assert progress
    assert float(progress[-1].data) == pytest.approx(100.0)


def _log_online_shadow(
    engine: Engine, registry: ModelRegistry, candidate: str, every: int, rows: int = 400
) -> int:
    """The candidate's online shadow rows (as the router logs them: role shadow, the
    champion row's request_id) on every `every`-th request of `_log_traffic`; returns how
    many."""
    frame = training_frame(seed=99).head(rows)
    texts = list(frame["text"])
    outputs = registry.load(MODEL, candidate).predict(texts)
    now = utcnow()
    shadow = [
        {"request_id": f"q{i}", "ts": now - timedelta(minutes=50) + timedelta(seconds=i),
         "env": "dev", "user_id": f"u{i}", "rollout_id": None, "model_name": MODEL,
         "model_version": candidate, "role": "shadow", "input_text": texts[i],
         "output": outputs[i], "latency_ms": 7.0, "error": None}
        for i in range(0, rows, every)
    ]  # fmt: skip
    with engine.begin() as conn:
        conn.execute(insert(Traffic), shadow)
    return len(shadow)


@pytest.mark.parametrize("every", [1, 2], ids=["all-online", "half-online"])
def test_shadow_evaluation_uses_online_shadow_rows_and_replays_the_rest(
    state_db: Engine, registry: ModelRegistry, every: int
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey

    champion = train_and_register(registry, alias="dev-champion").version
    candidate = train_and_register(registry, alias="dev-candidate").version
    make_release(
        state_db, env="dev", models={MODEL: champion}, digests={MODEL: None},
        code_version="1", image_version="local", reason="champion",
    )  # fmt: skip
    _log_traffic(state_db, champion)
    online = _log_online_shadow(state_db, registry, candidate, every)

    report = shadow_evaluation(
        model_name=MODEL, batch_size=64, latency_sample=20, log_mlflow=False, load_test=False
    )

    assert (report.online_requests, report.replayed_requests) == (online, 400 - online)
    assert report.requests == 400
    assert report.online_latency is not None
    assert len(report.candidate_latency) == 3  # the gated latency: single requests timed
    assert report.candidate_latency["p95"] is not None
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"shadow-{MODEL}"]))
        )
        progress = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[f"shadow-{MODEL}-progress"]))
        )
    expected = f"{online} from online shadow rows, {400 - online} replayed"
    assert any(expected in str(a.data) for a in artifacts)
    assert float(progress[-1].data) == pytest.approx(100.0)
