"""`tasks.chunk_runner.map_chunks` on the flow's own task runner (the Dask path is in
test_dask_chunks.py): results in chunk order, fixed parameters shared, and the chunks
handed to each run without Prefect walking their rows; the progress artifact that
follows the chunks, written at most once per interval."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast
from uuid import uuid4

import pytest
from prefect import flow, get_client, task
from prefect.cache_policies import NO_CACHE
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import unmapped

from config import get_settings
from tasks.chunk_runner import map_chunks
from tasks.reporting import start_progress

READS: list[str] = []


@dataclass
class WatchedRow:
    """A row that records every read of its text by anyone but the task."""

    text: str

    def __getattribute__(self, name: str) -> object:
        if name == "text":
            READS.append(name)
        return object.__getattribute__(self, name)


# NO_CACHE, as every chunk task has (tasks.policies.IO_TASK): a cache key would hash the
# inputs, reading each row once whatever the walk does
@task(cache_policy=NO_CACHE)
def count_rows(prefix: str, chunk: list[Any]) -> str:
    return f"{prefix}{len(chunk)}"


@flow
def map_in_a_flow(chunks: list[list[int]]) -> list[str]:
    return list(map_chunks(get_settings(), count_rows, {"prefix": unmapped("n="), "chunk": chunks}))


def test_map_chunks_in_a_flow_keeps_the_chunks_order() -> None:
    chunks = [list(range(i + 1)) for i in range(6)]
    assert map_in_a_flow(chunks) == [f"n={i + 1}" for i in range(6)]


def test_map_chunks_never_walks_the_rows() -> None:
    chunks = [[WatchedRow(f"row {i}.{j}") for j in range(i + 1)] for i in range(5)]
    parameters = {"prefix": unmapped("n="), "chunk": chunks}
    READS.clear()
    with ThreadPoolTaskRunner[Any]() as runner:  # what Prefect does with them unquoted
        assert [f.result() for f in runner.map(cast(Any, count_rows), parameters)] == [
            f"n={i + 1}" for i in range(5)
        ]
    assert len(READS) >= sum(len(c) for c in chunks)  # every row visited, at least once
    READS.clear()
    assert list(map_chunks(get_settings(), count_rows, parameters)) == [
        f"n={i + 1}" for i in range(5)
    ]
    assert READS == []


def test_a_failing_chunk_raises_its_error() -> None:
    @task
    def refuse_empty(chunk: list[int]) -> int:
        if not chunk:
            raise ValueError("an empty chunk")
        return sum(chunk)

    with pytest.raises(ValueError, match="an empty chunk"):
        list(map_chunks(get_settings(), refuse_empty, {"chunk": [[1], [], [2]]}))


def _progress_shown(key: str) -> float:
    with get_client(sync_client=True) as client:
        (artifact,) = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key]))
        )
    return float(cast(Any, artifact.data))


@flow
def advance_a_progress(key: str) -> list[float]:
    """What a flow's reader would see after each step (artifacts belong to a run)."""
    progress = start_progress(key, "chunks of a test", total=10)
    progress.every_seconds = 3600.0
    shown = [_progress_shown(key)]
    progress.advance(1)  # the first write is never held back
    shown.append(_progress_shown(key))
    for done in range(2, 10):  # within the interval: not written
        progress.advance(done)
    shown.append(_progress_shown(key))
    progress.advance(10)  # the end always is
    shown.append(_progress_shown(key))
    progress.every_seconds = 0.0
    progress.advance(5)
    shown.append(_progress_shown(key))
    return shown


def test_progress_is_written_at_most_once_per_interval_and_always_at_the_end() -> None:
    shown = advance_a_progress(f"progress-{uuid4().hex[:8]}")
    assert shown == pytest.approx([0.0, 10.0, 10.0, 100.0, 50.0])
