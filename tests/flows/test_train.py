"""The `train` flow under the real Prefect test harness, with a real MLflow sqlite store."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from sqlalchemy import insert

from config import get_settings
from core.errors import DataError
from core.registry import ModelRegistry
from tests.factories import DATA_END

pytestmark = pytest.mark.slow

LINEAGE_TAGS = (
    "image_version",
    "code_version",
    "python_version",
    "pkg.scikit-learn",
    "family_source_hash",
    "data_snapshot_hash",
    "training_window",
    "artifact_sha256",
    "golden_digest",
)


def _fill_source(rows: int = 1_500) -> None:
    from core.synthetic import create_source_table

    create_source_table(get_settings().source_database_url, rows=rows, seed=7, end=DATA_END)


def _write_source(frame: pd.DataFrame) -> None:
    from core.db import make_engine
    from core.source import source_table
    from core.synthetic import ensure_source_table

    engine = make_engine(get_settings().source_database_url)
    ensure_source_table(engine, reset=True)
    records = frame.assign(channel="web", locale="en-US").to_dict("records")
    if records:
        with engine.begin() as conn:
            conn.execute(insert(source_table()), records)
    engine.dispose()


def _registry() -> ModelRegistry:
    return ModelRegistry.from_settings(get_settings())


def _markdown_artifact(key: str) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    # the harness is shared by the session: other flows wrote this key before, newest wins
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    assert found, f"no artifact {key}"
    return str(found[0].data)


def test_train_registers_version_with_every_tag_and_report(monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.train import train

    monkeypatch.setenv("IMAGE_VERSION", "img-train")
    get_settings.cache_clear()
    _fill_source()
    monkeypatch.setenv("ENVIRONMENT", "dev")
    get_settings.cache_clear()
    info = train(model_name="intent-classifier", alias="candidate")
    assert info.version == "1"
    assert info.aliases == ["dev-candidate"]  # this environment's candidate
    assert [tag for tag in LINEAGE_TAGS if not info.tags.get(tag)] == []
    assert info.image_version == "img-train"
    registry = _registry()
    run = registry.client.get_run(info.run_id)
    assert run.data.metrics["holdout_accuracy"] > 0.8
    assert "accuracy.card_lost" in run.data.metrics
    evaluation = {a.path for a in registry.client.list_artifacts(info.run_id, "evaluation")}
    assert {
        "evaluation/confusion_matrix.png",
        "evaluation/per_class_accuracy.json",
        "evaluation/config.json",
    } <= evaluation
    assert Path(info.source, "MLmodel").exists()
    report = _markdown_artifact("train-intent-classifier")
    assert f"intent-classifier v{info.version}" in report
    assert "| card_lost |" in report


@pytest.mark.parametrize(
    ("make_frame", "message"),
    [
        (lambda f: f.iloc[0:0], "training data is empty"),
        (lambda f: f[f["intent"] == "card_lost"], "single class"),
        (
            lambda f: f.assign(intent=f["intent"].replace("card_lost", "buy_crypto")),
            "unknown label",
        ),
    ],
    ids=["empty-table", "one-class", "unknown-labels"],
)
def test_train_bad_source_data_fails_and_registers_nothing(make_frame, message: str) -> None:
    from flows.train import train
    from tests.factories import training_frame

    _write_source(make_frame(training_frame(rows=600)))
    with pytest.raises(DataError, match=message):
        train(model_name="intent-classifier")
    assert _registry().list_models() == []


def test_retry_policy_retries_transient_errors_only() -> None:
    from prefect import flow, task

    from tasks.policies import retry_if_transient

    attempts: list[str] = []

    @task(retries=2, retry_delay_seconds=0, retry_condition_fn=retry_if_transient)
    def flaky(kind: str) -> str:
        attempts.append(kind)
        if kind == "transient" and attempts.count(kind) == 1:
            raise ConnectionResetError("database connection reset")
        if kind == "data":
            raise DataError("training data is empty")
        return "ok"

    @flow
    def run(kind: str) -> str:
        return flaky(kind)

    assert run("transient") == "ok"
    assert attempts.count("transient") == 2
    with pytest.raises(DataError):
        run("data")
    assert attempts.count("data") == 1


def test_train_waits_for_the_models_lock(monkeypatch: pytest.MonkeyPatch) -> None:
    import threading

    from core.db import make_engine
    from core.model_lock import ModelLockTimeout, model_lock
    from flows.train import train

    _fill_source(600)
    monkeypatch.setattr("tasks.retrain.LOCK_TIMEOUT_SECONDS", 1.0)
    engine = make_engine(get_settings().database_url)
    held, done = threading.Event(), threading.Event()

    def other_run() -> None:  # another process's retrain of the model, in a thread
        with model_lock(engine, "intent-classifier", timeout=5):
            held.set()
            done.wait(30)

    thread = threading.Thread(target=other_run)
    thread.start()
    try:
        held.wait(5)
        with pytest.raises(ModelLockTimeout, match="held its lock"):
            train(model_name="intent-classifier")
    finally:
        done.set()
        thread.join(10)
        engine.dispose()
    assert _registry().list_models() == []
