"""Chunked flows on a real Dask cluster (prefect-dask) vs in process, same rows.

A `distributed.LocalCluster` of 2 worker processes on loopback is started after the
test's settings are in the environment (the workers inherit them, as Dask workers in a
cluster get the ConfigMap and Secret). With DASK_SCHEDULER_ADDRESS pointing at it, the
shadow replay's chunks and the release-state build's chunks run on the workers: each
worker loads the model versions from the registry (digest-verified) and opens its own
engine; the figures equal the in-process run's on the same rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any

import numpy as np
import pytest
from sqlalchemy import Engine, insert

from config import get_settings
from core.db import Feedback, Traffic, make_engine, upgrade, utcnow
from core.registry import ModelRegistry
from core.shadow import ShadowReport
from tests.factories import faulty_config, make_release, train_and_register, training_frame

MODEL = "intent-classifier"
ROWS = 300

pytestmark = pytest.mark.slow


@contextmanager
def dask_cluster(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A 2-process LocalCluster on 127.0.0.1 (workers started now, with the current
    environment), DASK_SCHEDULER_ADDRESS pointing at it; a client to watch its tasks."""
    from distributed import Client, LocalCluster

    with (
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            host="127.0.0.1",
            dashboard_address=None,
        ) as cluster,
        Client(cluster) as client,
    ):
        monkeypatch.setenv("DASK_SCHEDULER_ADDRESS", cluster.scheduler_address)
        get_settings.cache_clear()
        yield client
    monkeypatch.delenv("DASK_SCHEDULER_ADDRESS")
    get_settings.cache_clear()


def _log_traffic(engine: Engine, champion: str) -> None:
    """ROWS champion requests of the last hour; every third one labelled."""
    frame = training_frame(seed=77).head(ROWS)
    now = utcnow()
    traffic, feedback = [], []
    for i, (text, intent) in enumerate(zip(frame["text"], frame["intent"], strict=True)):
        ts = now - timedelta(minutes=40) + timedelta(seconds=i)
        traffic.append(
            {"request_id": f"d{i}", "ts": ts, "env": "dev", "user_id": f"u{i}",
             "rollout_id": None, "model_name": MODEL, "model_version": champion,
             "role": "champion", "input_text": text, "output": intent, "latency_ms": 3.0,
             "error": None}
        )  # fmt: skip
        if i % 3 == 0:
            feedback.append({"request_id": f"d{i}", "ts": ts, "kind": "label", "value": intent})
    with engine.begin() as conn:
        conn.execute(insert(Traffic), traffic)
        conn.execute(insert(Feedback), feedback)


def _figures(report: ShadowReport) -> dict[str, Any]:
    """Every figure of a report but the timings (which differ run to run)."""
    figures = report.as_dict()
    timed = ("champion_latency_ms", "candidate_latency_ms", "replay_rows_per_second", "gate")
    for name in timed:
        figures.pop(name)
    return figures


def test_shadow_evaluation_on_a_dask_cluster_gives_the_in_process_figures(
    state_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import get_task_stream

    from flows.shadow_evaluation import shadow_evaluation

    registry = ModelRegistry.from_settings(get_settings())
    champion = train_and_register(registry, alias="dev-champion").version
    # a candidate that raises on ~30% of inputs: replay bisects batches on the workers
    candidate = train_and_register(registry, config=faulty_config(0.3)).version
    make_release(
        state_db, env="dev", models={MODEL: champion}, digests={MODEL: None},
        code_version="1", image_version="local", reason="champion",
    )  # fmt: skip
    _log_traffic(state_db, champion)
    run = {
        "model_name": MODEL, "candidate_version": candidate, "batch_size": 40,
        "latency_sample": 10, "start_canary": False, "log_mlflow": False, "load_test": False,
    }  # fmt: skip

    in_process = shadow_evaluation(**run)
    with dask_cluster(monkeypatch) as client:
        with get_task_stream(client) as stream:
            on_dask = shadow_evaluation(**run)
        workers = {t["worker"] for t in stream.data if "replay_chunk" in str(t["key"])}
        tasks_run = sum("replay_chunk" in str(t["key"]) for t in stream.data)

    assert _figures(on_dask) == _figures(in_process)
    assert on_dask.requests == ROWS
    assert on_dask.replayed_requests == ROWS
    assert on_dask.candidate_error.count > 0  # the faulty inputs found on the workers
    assert on_dask.accuracy is not None
    assert 0 < on_dask.accuracy.champion.n <= -(-ROWS // 3)  # labelled, both answered
    assert tasks_run == -(-ROWS // 40)  # one Dask task per chunk
    assert workers  # the chunks ran on the cluster's workers, not here


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_build_release_state_on_a_dask_cluster_publishes_the_in_process_index(
    backend: str, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
) -> None:
    from distributed import get_task_stream

    from core.answer_index import load_answer_index
    from core.release_state import find_state, model_state_key
    from flows.build_release_state import build_release_state
    from models import FAMILIES
    from tests.core.test_release_state import RETRIEVER, TfidfEmbedder, make_corpus

    if backend == "postgres":  # the workers inherit this URL and open their own engines
        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_url"))
        get_settings.cache_clear()
    settings = get_settings()
    engine = make_engine(settings.database_url)
    upgrade(engine)
    corpus = make_corpus(250)
    source = make_engine(settings.source_database_url)
    corpus.assign(created_at=utcnow()).to_sql("faq_answers", source, index=False)
    source.dispose()
    registry = ModelRegistry.from_settings(settings, families=FAMILIES)
    embedder = TfidfEmbedder(corpus["text"])
    versions = [
        registry.register(
            RETRIEVER, embedder, tags={"image_version": registry.image_version}, params={},
            metrics={}, golden_inputs=["where is my parcel"],
        ).version
        for _ in range(2)
    ]  # fmt: skip

    in_process = build_release_state(model_name=RETRIEVER, version=versions[0], chunk_rows=40)
    with dask_cluster(monkeypatch) as client, get_task_stream(client) as stream:
        on_dask = build_release_state(model_name=RETRIEVER, version=versions[1], chunk_rows=40)

    written = [t for t in stream.data if "write_chunk" in str(t["key"])]
    assert len(written) == -(-len(corpus) // 40)  # one Dask task per chunk
    assert on_dask == find_state(engine, model_state_key(RETRIEVER, versions[1]))
    assert on_dask.rows == in_process.rows == len(corpus)
    mine, theirs = load_answer_index(engine, in_process), load_answer_index(engine, on_dask)
    assert theirs.answer_ids == mine.answer_ids
    np.testing.assert_array_equal(theirs.vectors, mine.vectors)
    engine.dispose()
