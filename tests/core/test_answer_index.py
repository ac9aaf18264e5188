"""core.answer_index: vectors round-trip through a real SQLite state file; search is exact."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import MetaData, create_engine, insert

from core.answer_index import AnswerIndex, answer_index_table, encode_vector, load_answer_index
from core.errors import DataError


@dataclass(frozen=True)
class Where:
    key: str
    backend: str
    location: str


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def test_index_round_trips_through_a_sqlite_state_file(tmp_path: Path) -> None:
    vectors = _unit(np.random.default_rng(0).normal(size=(50, 8)))
    path = tmp_path / "release_state_x.db"
    engine = create_engine(f"sqlite:///{path}")
    table = answer_index_table(MetaData(), None)
    with engine.begin() as conn:
        table.create(conn)
        conn.execute(
            insert(table),
            [
                {"position": i, "answer_id": f"a{i}", "intent": f"i{i % 3}", "text": f"t{i}",
                 "vector": encode_vector(v)}
                for i, v in enumerate(vectors)
            ],
        )  # fmt: skip
    engine.dispose()
    index = load_answer_index(create_engine("sqlite://"), Where("x", "sqlite", str(path)))
    assert len(index) == 50
    assert index.dims == 8
    assert np.array_equal(index.vectors, vectors)
    best = index.top_k(vectors[[7, 31]], k=3)
    assert [hits[0].answer_id for hits in best] == ["a7", "a31"]
    assert best[0][0].score == pytest.approx(1.0, abs=1e-5)
    assert best[0][0].score >= best[0][1].score >= best[0][2].score


def test_search_matches_a_full_sort_and_refuses_other_widths() -> None:
    vectors = _unit(np.random.default_rng(1).normal(size=(200, 16)))
    index = AnswerIndex("k", [f"a{i}" for i in range(200)], ["x"] * 200, ["t"] * 200, vectors)
    queries = _unit(np.random.default_rng(2).normal(size=(5, 16)))
    for query, hits in zip(queries, index.top_k(queries, k=10), strict=True):
        expected = np.argsort(-(vectors @ query), kind="stable")[:10]
        assert [h.answer_id for h in hits] == [f"a{i}" for i in expected]
    with pytest.raises(DataError, match="16-dim"):
        index.top_k(np.ones((1, 4), dtype=np.float32), k=3)
    with pytest.raises(DataError, match="ragged"):
        AnswerIndex("k", ["a"], [], ["t"], vectors[:1])
