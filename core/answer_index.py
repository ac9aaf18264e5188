"""The FAQ answer index: release state of a retriever version, and its nearest-answer search.

A retriever version embeds the FAQ answer corpus once; the vectors live in the table
`answer_index` of that version's release state (core.release_state: its own Postgres
schema, or its own SQLite file). A router loads the whole index of each retriever version
it serves into memory once (a few thousand rows x a few hundred float32), off the request
path, and answers a query with one matrix product: its unit vector against every answer's.

Vectors are stored as raw little-endian float32 bytes (`encode_vector`): compact, exact,
and the same on both backends.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from sqlalchemy import (
    Column,
    Connection,
    Engine,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    select,
)

from core.errors import DataError

TABLE = "answer_index"
VECTOR_DTYPE = np.dtype("<f4")


class StateLocation(Protocol):
    """Where a built release state lives (`core.release_state.ReleaseState` is one)."""

    @property
    def key(self) -> str: ...

    @property
    def backend(self) -> str: ...

    @property
    def location(self) -> str: ...


def answer_index_table(metadata: MetaData, schema: str | None) -> Table:
    """The `answer_index` table in `schema` (a validated identifier; None on SQLite)."""
    return Table(
        TABLE,
        metadata,
        Column("position", Integer, primary_key=True, autoincrement=False),
        Column("answer_id", String(64), nullable=False, unique=True),
        Column("intent", String(128), nullable=False),
        Column("text", Text, nullable=False),
        Column("vector", LargeBinary, nullable=False),
        schema=schema,
    )


def encode_vector(vector: np.ndarray) -> bytes:
    """One embedding as little-endian float32 bytes."""
    return np.ascontiguousarray(vector, dtype=VECTOR_DTYPE).tobytes()


@dataclass(frozen=True, slots=True)
class Answer:
    """One retrieved answer and its cosine similarity to the query."""

    answer_id: str
    intent: str
    text: str
    score: float


class AnswerIndex:
    """The embedded corpus of one retriever version, searchable in memory."""

    def __init__(
        self,
        key: str,
        answer_ids: Sequence[str],
        intents: Sequence[str],
        texts: Sequence[str],
        vectors: np.ndarray,
    ) -> None:
        """`vectors`: (n, d) float32, one unit row per answer, in the order of the ids.

        Raises:
            DataError: the sizes disagree or the index is empty.
        """
        if not len(answer_ids) or not (len(answer_ids) == len(intents) == len(texts)):
            raise DataError(f"answer index {key}: empty or ragged ({len(answer_ids)} ids)")
        if vectors.ndim != 2 or vectors.shape[0] != len(answer_ids):
            raise DataError(
                f"answer index {key}: {vectors.shape} vectors for {len(answer_ids)} answers"
            )
        self.key = key
        self.answer_ids = list(answer_ids)
        self.intents = list(intents)
        self.texts = list(texts)
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)

    def __len__(self) -> int:
        return len(self.answer_ids)

    @property
    def dims(self) -> int:
        """The embedding width the index was built with."""
        return int(self.vectors.shape[1])

    def top_k(self, query_vectors: np.ndarray, k: int) -> list[list[Answer]]:
        """The `k` most similar answers of each query vector, best first.

        Raises:
            DataError: the query vectors' width differs from the index's (a retriever
                version searching another version's index).
        """
        queries = np.atleast_2d(np.asarray(query_vectors, dtype=np.float32))
        if queries.shape[1] != self.dims:
            raise DataError(
                f"answer index {self.key} holds {self.dims}-dim vectors, "
                f"got queries of {queries.shape[1]} dims"
            )
        scores = queries @ self.vectors.T
        k = max(1, min(k, len(self)))
        top = np.argpartition(-scores, k - 1, axis=1)[:, :k]
        results: list[list[Answer]] = []
        for row, picks in zip(scores, top, strict=True):
            ordered = picks[np.argsort(-row[picks], kind="stable")]
            results.append(
                [
                    Answer(self.answer_ids[i], self.intents[i], self.texts[i], float(row[i]))
                    for i in ordered
                ]
            )
        return results


@contextmanager
def open_state(engine: Engine, state: StateLocation) -> Iterator[tuple[Connection, Table]]:
    """A connection to where `state` lives, and its answer_index table.

    On Postgres the state is a schema of the state database (`location`, validated by
    core.release_state before it was published); on SQLite, its own database file.
    """
    if state.backend == "postgresql":
        with engine.connect() as conn:
            yield conn, answer_index_table(MetaData(), state.location)
        return
    source = create_engine(f"sqlite:///{state.location}")
    try:
        with source.connect() as conn:
            yield conn, answer_index_table(MetaData(), None)
    finally:
        source.dispose()


def load_answer_index(engine: Engine, state: StateLocation) -> AnswerIndex:
    """Read the whole answer index of a published state into memory.

    Raises:
        DataError: the index is empty or its vectors have mixed widths.
    """
    with open_state(engine, state) as (conn, table):
        rows = conn.execute(
            select(table.c.answer_id, table.c.intent, table.c.text, table.c.vector).order_by(
                table.c.position
            )
        ).all()
    if not rows:
        raise DataError(f"answer index {state.key} at {state.location} is empty")
    widths = {len(r.vector) for r in rows}
    if len(widths) != 1:
        raise DataError(f"answer index {state.key}: vectors of mixed widths {sorted(widths)}")
    vectors = np.frombuffer(b"".join(r.vector for r in rows), dtype=VECTOR_DTYPE)
    return AnswerIndex(
        state.key,
        [r.answer_id for r in rows],
        [r.intent for r in rows],
        [r.text for r in rows],
        vectors.reshape(len(rows), -1),
    )
