"""A corpus cut into chunks: the unit a state build embeds and writes (and maps across
workers), each owning a range of positions so writing it again replaces only itself."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import pandas as pd

from core.answer_index import VECTOR_DTYPE
from core.errors import DataError

CORPUS_COLUMNS = ("answer_id", "intent", "text")


@runtime_checkable
class Embedder(Protocol):
    """What a state build needs of a model version: unit vectors for texts (the FAQ
    retriever's `embed`)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def as_embedder(model: object, name: str, version: str) -> Embedder:
    """`model` (a loaded version's estimator) as an Embedder.

    Raises:
        DataError: it has no `embed(texts)`: the model reads no state.
    """
    if not isinstance(model, Embedder):
        raise DataError(
            f"{name} v{version} ({type(model).__name__}) has no embed(texts): only a model "
            "that reads state (a retriever) has an answer index to build"
        )
    return model


@dataclass(frozen=True, slots=True)
class Chunk:
    """Rows `start` .. `start + len(answer_ids)` of a corpus, with everything needed to
    embed and write them (so a chunk can be shipped to another worker as is)."""

    index: int
    start: int
    answer_ids: tuple[str, ...]
    intents: tuple[str, ...]
    texts: tuple[str, ...]

    @property
    def stop(self) -> int:
        """One past the last position of the chunk."""
        return self.start + len(self.answer_ids)

    def __len__(self) -> int:
        return len(self.answer_ids)


def check_corpus(corpus: pd.DataFrame) -> pd.DataFrame:
    """The corpus as strings, validated: the columns a state build needs, some rows, and
    one row per answer_id.

    Raises:
        DataError: missing columns, an empty corpus, or duplicate answer ids.
    """
    missing = [c for c in CORPUS_COLUMNS if c not in corpus.columns]
    if missing:
        raise DataError(f"cannot build an answer index: the corpus lacks columns {missing}")
    if corpus.empty:
        raise DataError("cannot build an answer index from an empty corpus (faq_answers)")
    frame = corpus.loc[:, list(CORPUS_COLUMNS)].astype(str)
    duplicated = frame["answer_id"][frame["answer_id"].duplicated()].unique().tolist()
    if duplicated:
        raise DataError(f"the corpus repeats answer ids {duplicated[:5]}: one row per answer")
    return frame.reset_index(drop=True)


def plan_chunks(corpus: pd.DataFrame, chunk_rows: int) -> list[Chunk]:
    """Cut the corpus (in its order: the order is the index's positions) into chunks of
    at most `chunk_rows` rows.

    Raises:
        DataError: the corpus is unusable (`check_corpus`), or chunk_rows < 1.
    """
    if chunk_rows < 1:
        raise DataError(f"chunk_rows must be >= 1, got {chunk_rows}")
    frame = check_corpus(corpus)
    ids, intents, texts = (frame[c].tolist() for c in CORPUS_COLUMNS)
    return [
        Chunk(
            index=number,
            start=start,
            answer_ids=tuple(ids[start : start + chunk_rows]),
            intents=tuple(intents[start : start + chunk_rows]),
            texts=tuple(texts[start : start + chunk_rows]),
        )
        for number, start in enumerate(range(0, len(frame), chunk_rows))
    ]


def embed_chunk(embedder: Embedder, chunk: Chunk) -> np.ndarray:
    """The chunk's texts embedded: (rows, dims) float32.

    Raises:
        DataError: the embedder returned the wrong shape or non-finite values.
    """
    vectors = np.asarray(embedder.embed(list(chunk.texts)), dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(chunk):
        raise DataError(
            f"the embedder returned an array of shape {vectors.shape} for {len(chunk)} texts "
            f"(chunk {chunk.index}): expected (texts, dims)"
        )
    if not np.isfinite(vectors).all():
        raise DataError(f"the embedder returned non-finite values for chunk {chunk.index}")
    return vectors


def chunk_rows_of(chunk: Chunk, vectors: np.ndarray) -> list[tuple[int, str, str, str, bytes]]:
    """The chunk as pre-encoded `answer_index` rows (position, answer_id, intent, text,
    vector bytes: `core.answer_index.encode_vector`'s little-endian float32, sliced from
    one buffer), ready for one executemany or COPY."""
    block = np.ascontiguousarray(vectors, dtype=VECTOR_DTYPE)
    width = block.shape[1] * block.itemsize
    blob = block.tobytes()
    encoded = [blob[at : at + width] for at in range(0, len(blob), width)]
    return list(
        zip(
            range(chunk.start, chunk.stop),
            chunk.answer_ids,
            chunk.intents,
            chunk.texts,
            encoded,
            strict=True,
        )
    )
