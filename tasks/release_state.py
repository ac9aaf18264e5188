"""Prefect tasks of the release-state flows: each wraps one call of `core.release_state`.

The chunk writer is a mapped task: with DASK_SCHEDULER_ADDRESS set the chunks run on the
workers of that Dask cluster (prefect-dask, `tasks.chunk_runner`), each worker loading the
embedder version once and opening its own engine (`core.worker_resources`); else in the
flow's process. Tasks that touch the database, MLflow or the source retry on transient errors
only; tasks receiving an engine or a registry use `NO_CACHE`.
"""

from __future__ import annotations

from collections.abc import Collection, Iterator
from contextlib import contextmanager

import pandas as pd
from prefect import get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from config import Settings, get_settings
from core import release_state
from core.release_state import Chunk, GcReport, ReleaseState, StagingArea, model_state_key
from core.reporting import artifact_key
from core.worker_resources import worker_engine, worker_registry
from tasks.chunk_runner import map_chunks
from tasks.policies import IO_TASK
from tasks.reporting import start_progress

LOCK_TIMEOUT_SECONDS = 1800.0
"""How long a build waits for another build of the same model version."""


@contextmanager
def state_build_lock(engine: Engine, model_name: str, version: str) -> Iterator[None]:
    """The build lock of a version's state for a flow (from prepare to publish), so a
    second build waits and garbage collection leaves this build's staging alone.

    Raises:
        ModelLockTimeout: another build held it for LOCK_TIMEOUT_SECONDS.
    """
    key = model_state_key(model_name, version)
    with release_state.build_lock(engine, key, timeout=LOCK_TIMEOUT_SECONDS):
        yield


@task(name="state-find-published", **IO_TASK)
def find_published(engine: Engine, model_name: str, version: str) -> ReleaseState | None:
    """The published state of the version, or None (then it must be built)."""
    state = release_state.find_state(engine, model_state_key(model_name, version))
    if state is not None:
        get_run_logger().info("%s v%s: state %s already published", model_name, version, state.key)
    return state


@task(name="state-read-corpus", **IO_TASK)
def read_corpus(settings: Settings) -> pd.DataFrame:
    """`core.source.read_faq_answers`: the FAQ answer corpus (answer_id, intent, text)."""
    from core.source import read_faq_answers

    corpus: pd.DataFrame = read_faq_answers(settings)
    return corpus


@task(name="state-plan-chunks", cache_policy=NO_CACHE)
def plan_chunks(corpus: pd.DataFrame, chunk_rows: int) -> list[Chunk]:
    """`core.release_state.plan_chunks`: the corpus in chunks of `chunk_rows` rows."""
    chunks = release_state.plan_chunks(corpus, chunk_rows)
    get_run_logger().info("%d answers in %d chunks of %d", len(corpus), len(chunks), chunk_rows)
    return chunks


@task(name="state-prepare-staging", **IO_TASK)
def prepare_staging(
    engine: Engine, model_name: str, version: str, settings: Settings
) -> StagingArea:
    """`core.release_state.prepare_staging`: a clean staging area for the version."""
    key = model_state_key(model_name, version)
    return release_state.prepare_staging(
        engine, key, state_dir=release_state.state_dir_of(settings)
    )


@task(name="state-write-chunk", **IO_TASK)
def write_chunk(area: StagingArea, model_name: str, version: str, chunk: Chunk) -> int:
    """Embed one chunk and write it into the staging area (idempotent: a retry replaces
    the chunk's rows). Runs where it is mapped (a Dask worker or the flow's process):
    the embedder version is loaded there from this process's registry (digest-verified,
    then cached for the next chunk) and the engine opened there from its settings."""
    settings = get_settings()
    model = worker_registry(settings).load(model_name, version).model
    embedder = release_state.as_embedder(model, model_name, version)
    return release_state.write_chunk(worker_engine(settings), area, chunk, embedder)


@task(name="state-publish", **IO_TASK)
def publish(
    engine: Engine, area: StagingArea, model_name: str, version: str, rows: int
) -> ReleaseState:
    """`core.release_state.publish`: check the row count, rename, insert the row."""
    state = release_state.publish(
        engine, area, model_versions={model_name: version}, expected_rows=rows
    )
    get_run_logger().info(
        "published state %s of %s v%s: %d rows in %.1f s",
        state.key, model_name, version, state.rows, state.build_seconds,
    )  # fmt: skip
    return state


@task(name="state-collect-garbage", **IO_TASK)
def collect_garbage(
    engine: Engine, settings: Settings, stateful: Collection[str], dry_run: bool
) -> GcReport:
    """`core.release_state.collect_garbage` with Settings RELEASE_STATE_KEEP."""
    report = release_state.collect_garbage(
        engine,
        keep_releases=settings.RELEASE_STATE_KEEP,
        stateful=stateful,
        state_dir=release_state.state_dir_of(settings),
        dry_run=dry_run,
    )
    logger = get_run_logger()
    for key in report.dropped:
        logger.info("%s state %s", "would drop" if dry_run else "dropped", key)
    for location in report.orphans:
        logger.warning(
            "abandoned staging %s: %s", location, "kept (dry run)" if dry_run else "dropped"
        )
    for location in report.busy:
        logger.info("left %s: a build holds it", location)
    logger.info(report.describe())
    return report


def write_chunks(
    settings: Settings, area: StagingArea, model_name: str, version: str, chunks: list[Chunk]
) -> int:
    """Map `write_chunk` over the chunks (a plain function, not a task: the mapped runs
    are the tasks) on the Dask cluster at DASK_SCHEDULER_ADDRESS if set, else in this
    process; a progress artifact and the log follow them. Returns the rows written.
    """
    logger = get_run_logger()
    total = sum(len(chunk) for chunk in chunks)
    progress = start_progress(
        key=artifact_key("release-state", model_name, "progress"),
        description=f"answers embedded and written for {model_name} v{version}",
        total=total,
    )
    fixed = {"area": area, "model_name": model_name, "version": version}
    mapped = {**{name: unmapped(value) for name, value in fixed.items()}, "chunk": chunks}
    done = 0
    for rows in map_chunks(settings, write_chunk, mapped):
        done += rows
        progress.advance(done)
        logger.info("%d of %d answers written", done, total)
    return done
