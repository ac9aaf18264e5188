"""Building the answer index of a retriever version: prepare, write chunks, publish.

The steps are separate functions so a flow can map `write_chunk` over the chunks across
workers (flows/build_release_state.py); `build_answer_index` runs the same steps in one
process (the CLI, the benchmark), overlapping embedding and writing where that pays.
Nothing is readable before `publish`; a build killed at any point leaves only a staging
area, which the next build of the key drops first and garbage collection removes once no
live build holds the key's lock.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd
from sqlalchemy import Engine

from core.release_state.chunks import Chunk, Embedder, chunk_rows_of, embed_chunk, plan_chunks
from core.release_state.keys import ReleaseState, find_state, model_state_key
from core.release_state.staging import (
    POSTGRES,
    StagingArea,
    build_lock,
    copy_payload,
    prepare_staging,
    publish,
    write_copy,
    write_rows,
)

Progress = Callable[[int, int], None]
"""progress(done_rows, total_rows), called after each chunk is written."""
LOCK_TIMEOUT_SECONDS = 1800.0
"""How long a build waits for another build of the same state key."""


def write_vectors(engine: Engine, area: StagingArea, chunk: Chunk, vectors: np.ndarray) -> int:
    """Write one embedded chunk into the staging index (replacing its positions)."""
    return write_rows(engine, area, chunk.start, chunk.stop, chunk_rows_of(chunk, vectors))


def write_chunk(engine: Engine, area: StagingArea, chunk: Chunk, embedder: Embedder) -> int:
    """Embed one chunk and write it into the staging index; idempotent (a chunk written
    twice is there once). Returns the rows written.

    Raises:
        DataError: the embedder returned a wrong shape or non-finite values.
    """
    return write_vectors(engine, area, chunk, embed_chunk(embedder, chunk))


def _write_all(
    engine: Engine,
    area: StagingArea,
    chunks: list[Chunk],
    embedder: Embedder,
    progress: Progress | None,
) -> int:
    """Embed and write every chunk, chunk i written by a second thread while chunk i+1 is
    embedded. This thread embeds and encodes (pure Python and numpy: the GIL); the writer
    mostly waits on the database with the GIL released (Postgres parses the COPY in its
    own process; SQLite steps its B-tree outside the GIL)."""
    total, done = sum(len(c) for c in chunks), 0
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="state-writer") as writer:
        pending: Future[int] | None = None
        for chunk in chunks:
            rows = chunk_rows_of(chunk, embed_chunk(embedder, chunk))
            if pending is not None:
                done += pending.result()
                _report(progress, done, total)
            if area.backend == POSTGRES:
                payload = copy_payload(rows)
                pending = writer.submit(write_copy, engine, area, chunk.start, chunk.stop, payload)
            else:
                pending = writer.submit(write_rows, engine, area, chunk.start, chunk.stop, rows)
        if pending is not None:
            done += pending.result()
            _report(progress, done, total)
    return done


def _report(progress: Progress | None, done: int, total: int) -> None:
    if progress is not None:
        progress(done, total)


def build_answer_index(
    engine: Engine,
    model_name: str,
    version: str,
    embedder: Embedder,
    corpus: pd.DataFrame,
    *,
    state_dir: Path,
    chunk_rows: int,
    progress: Progress | None = None,
) -> tuple[ReleaseState, bool]:
    """The published answer index of `model_name` v`version`, built from `corpus`
    (columns answer_id, intent, text) unless it exists; returns (state, built).

    Holds the key's build lock throughout: a concurrent build of the same version waits,
    then finds it published.

    Raises:
        DataError: an unusable corpus or embedder output; nothing is published.
        ModelLockTimeout: another build of the version held its lock for too long.
    """
    key = model_state_key(model_name, version)
    with build_lock(engine, key, timeout=LOCK_TIMEOUT_SECONDS):
        existing = find_state(engine, key)
        if existing is not None:
            return existing, False
        started = time.perf_counter()
        chunks = plan_chunks(corpus, chunk_rows)
        area = prepare_staging(engine, key, state_dir=state_dir)
        written = _write_all(engine, area, chunks, embedder, progress)
        state = publish(
            engine,
            area,
            model_versions={model_name: str(version)},
            expected_rows=written,
            build_seconds=time.perf_counter() - started,
        )
    return state, True


def build_report_markdown(state: ReleaseState, built: bool) -> str:
    """The markdown a build leaves (a Prefect artifact): what was built, where, how fast."""
    models = ", ".join(f"{m} v{v}" for m, v in sorted(state.model_versions.items()))
    rate = state.rows / state.build_seconds if state.build_seconds > 0 else float("inf")
    verdict = "built and published" if built else "already published: reused, nothing built"
    return "\n".join(
        [
            f"# Release state {state.key}",
            "",
            f"{models}: {verdict}.",
            "",
            "| field | value |",
            "|---|---|",
            f"| rows | {state.rows:,} |",
            f"| build seconds | {state.build_seconds:.2f} |",
            f"| rows per second | {rate:,.0f} |",
            f"| backend | {state.backend} |",
            f"| location | `{state.location}` |",
            f"| published at | {state.built_at:%Y-%m-%d %H:%M:%S} UTC |",
        ]
    )
