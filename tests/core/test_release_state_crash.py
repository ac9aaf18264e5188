"""A state build SIGKILLed halfway leaves nothing a reader could see; the next build
starts clean and completes with exactly a fresh build's index; garbage collection leaves
no abandoned staging area. A real process, a real SIGKILL, SQLite and Postgres."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine, text

from core.answer_index import load_answer_index
from core.release_state import (
    build_answer_index,
    collect_garbage,
    file_for,
    find_state,
    model_state_key,
    staging_file_for,
    staging_schema_for,
)
from tests.core.test_release_state import RETRIEVER, TfidfEmbedder, make_corpus

ROOT = Path(__file__).resolve().parents[2]
ROWS, CHUNK_ROWS = 3_000, 50
# a builder whose embedder takes 50 ms per chunk (as a larger model would): 60 chunks, ~3 s
BUILDER = """
import sys, time
from pathlib import Path
from core.db import make_engine
from core.release_state import build_answer_index
from tests.core.test_release_state import TfidfEmbedder, make_corpus

class SlowEmbedder(TfidfEmbedder):
    def embed(self, texts):
        time.sleep(0.05)
        return super().embed(texts)

url, state_dir, version, rows, chunk_rows = sys.argv[1:6]
corpus = make_corpus(int(rows))
build_answer_index(
    make_engine(url), "faq-retriever", version, SlowEmbedder(corpus["text"]), corpus,
    state_dir=Path(state_dir), chunk_rows=int(chunk_rows),
)
"""


def _staged_rows(engine: Engine, key: str, state_dir: Path) -> int:
    """Rows in the staging index of `key` so far (0 before it exists)."""
    try:
        if engine.dialect.name == "postgresql":
            with engine.connect() as conn:
                table = f"{staging_schema_for(key)}.answer_index"
                return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())
        con = sqlite3.connect(staging_file_for(state_dir, key))
        try:
            return int(con.execute("SELECT count(*) FROM answer_index").fetchone()[0])
        finally:
            con.close()
    except Exception:  # not created yet: the builder is still starting
        return 0


def _kill_halfway(engine: Engine, state_dir: Path, version: str) -> int:
    """Start a build of `version` in a process, SIGKILL it once some chunks are written;
    return the rows it had staged."""
    url = engine.url.render_as_string(hide_password=False)
    args = [url, str(state_dir), version, str(ROWS), str(CHUNK_ROWS)]
    builder = subprocess.Popen([sys.executable, "-c", BUILDER, *args], cwd=ROOT)
    key = model_state_key(RETRIEVER, version)
    deadline = time.monotonic() + 120
    try:
        while (staged := _staged_rows(engine, key, state_dir)) < 5 * CHUNK_ROWS:
            assert builder.poll() is None, "the builder ended before it could be killed"
            assert time.monotonic() < deadline, "the builder staged nothing in 120 s"
            time.sleep(0.05)
        os.kill(builder.pid, signal.SIGKILL)
    finally:
        builder.wait(timeout=30)
    assert builder.returncode == -signal.SIGKILL
    assert 0 < staged < ROWS
    return staged


def _areas(engine: Engine, state_dir: Path) -> list[str]:
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            query = (
                "SELECT schema_name FROM information_schema.schemata "
                "WHERE schema_name LIKE 'release_state%' ORDER BY 1"
            )
            return list(conn.execute(text(query)).scalars())
    return sorted(p.name.removesuffix(".db") for p in state_dir.glob("*.db"))


@pytest.mark.slow
def test_a_build_killed_halfway_leaves_nothing_readable_and_the_next_build_completes(
    engine: Engine, tmp_path: Path
) -> None:
    state_dir = tmp_path / "states"
    corpus = make_corpus(ROWS)
    embedder = TfidfEmbedder(corpus["text"])
    key = model_state_key(RETRIEVER, "1")

    # Given a build of v1 killed halfway
    _kill_halfway(engine, state_dir, "1")

    # Then nothing is published: no row, no final schema/file; only the staging area
    assert find_state(engine, key) is None
    assert _areas(engine, state_dir) == [f"release_state_{key}_staging"]
    assert not file_for(state_dir, key).exists()

    # When the next build runs, it starts clean and completes like a fresh build
    state, built = build_answer_index(
        engine, RETRIEVER, "1", embedder, corpus, state_dir=state_dir, chunk_rows=500
    )
    assert built
    index = load_answer_index(engine, state)
    assert index.answer_ids == corpus["answer_id"].tolist()
    np.testing.assert_array_equal(index.vectors, embedder.embed(corpus["text"].tolist()))
    assert _areas(engine, state_dir) == [f"release_state_{key}"]

    # And a build of v2 killed halfway is an orphan garbage collection removes
    _kill_halfway(engine, state_dir, "2")
    report = collect_garbage(engine, keep_releases=1, stateful={RETRIEVER}, state_dir=state_dir)
    assert len(report.orphans) == 1
    assert report.busy == []
    assert _areas(engine, state_dir) == [f"release_state_{key}"]
    assert find_state(engine, model_state_key(RETRIEVER, "2")) is None
