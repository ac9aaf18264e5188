"""Release state: a retriever version's answer index, built in chunks, published by one
rename plus its row, and found through the release pointer."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine, text

from core.answer_index import load_answer_index
from core.errors import DataError, NotFoundError, StateNotReadyError
from core.ledger import rollback_env
from core.release_state import (
    build_answer_index,
    find_state,
    model_state_key,
    plan_chunks,
    prepare_staging,
    publish,
    require_ready,
    state_for_release,
    validate_identifier,
    write_chunk,
)
from tests.factories import make_release

RETRIEVER = "faq-retriever"
STATEFUL = {RETRIEVER}
INTENTS = ("billing", "shipping", "returns", "account", "password", "delivery")
WORDS = [
    "refund",
    "invoice",
    "charge",
    "card",
    "parcel",
    "courier",
    "track",
    "return",
    "label",
    "login",
    "reset",
    "email",
    "address",
    "order",
    "late",
    "damaged",
    "missing",
    "account",
    "delete",
    "password",
    "change",
    "payment",
    "plan",
]


def make_corpus(rows: int, seed: int = 0) -> pd.DataFrame:
    """A deterministic FAQ corpus: answer_id, intent, text (a few words per answer)."""
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(WORDS), size=(rows, 8))
    return pd.DataFrame(
        {
            "answer_id": [f"a{i:06d}" for i in range(rows)],
            "intent": [INTENTS[i % len(INTENTS)] for i in range(rows)],
            "text": [" ".join(WORDS[j] for j in row) + f" #{i}" for i, row in enumerate(picks)],
        }
    )


class TfidfEmbedder:
    """A small real embedder: TF-IDF -> TruncatedSVD -> unit rows (as the retriever)."""

    def __init__(self, texts: Sequence[str], dims: int = 16, seed: int = 0) -> None:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.pipeline import make_pipeline

        self.pipeline = make_pipeline(
            TfidfVectorizer(), TruncatedSVD(n_components=dims, random_state=seed)
        ).fit(list(texts))

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        from sklearn.preprocessing import normalize

        return normalize(self.pipeline.transform(list(texts))).astype(np.float32)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """An intent per text (what a registry records as golden predictions)."""
        return [INTENTS[int(np.argmax(v)) % len(INTENTS)] for v in self.embed(texts)]


CORPUS = make_corpus(300)


@pytest.fixture(scope="module")
def embedder() -> TfidfEmbedder:
    return TfidfEmbedder(CORPUS["text"])


def test_build_answer_index_publishes_exactly_the_embedders_vectors(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    seen: list[tuple[int, int]] = []
    state, built = build_answer_index(
        engine, RETRIEVER, "3", embedder, CORPUS, state_dir=tmp_path, chunk_rows=64,
        progress=lambda done, total: seen.append((done, total)),
    )  # fmt: skip

    assert built
    assert state.key == model_state_key(RETRIEVER, "3")
    assert state.rows == len(CORPUS)
    assert state.model_versions == {RETRIEVER: "3"}
    assert seen == [(min(n, 300), 300) for n in (64, 128, 192, 256, 300)]
    index = load_answer_index(engine, state)
    assert index.answer_ids == CORPUS["answer_id"].tolist()
    assert index.intents == CORPUS["intent"].tolist()
    assert index.texts == CORPUS["text"].tolist()
    np.testing.assert_array_equal(index.vectors, embedder.embed(CORPUS["text"].tolist()))

    again, built_again = build_answer_index(
        engine, RETRIEVER, "3", embedder, CORPUS, state_dir=tmp_path, chunk_rows=64
    )
    assert not built_again
    assert again == state


def test_nothing_is_readable_before_publish_then_require_ready_passes(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    key = model_state_key(RETRIEVER, "4")
    chunks = plan_chunks(CORPUS, 100)
    area = prepare_staging(engine, key, state_dir=tmp_path)
    for chunk in chunks:
        write_chunk(engine, area, chunk, embedder)
    write_chunk(engine, area, chunks[1], embedder)  # a retried chunk replaces itself

    assert find_state(engine, key) is None
    with pytest.raises(StateNotReadyError, match=r"faq-retriever v4 .*sml state build"):
        require_ready(engine, {RETRIEVER: "4", "intent-classifier": "2"}, STATEFUL)

    state = publish(engine, area, model_versions={RETRIEVER: "4"}, expected_rows=len(CORPUS))

    assert require_ready(engine, {RETRIEVER: "4", "intent-classifier": "2"}, STATEFUL) == {
        RETRIEVER: key
    }
    assert len(load_answer_index(engine, state)) == len(CORPUS)
    assert state.build_seconds >= 0


def test_texts_with_tabs_newlines_backslashes_and_unicode_round_trip(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    odd = CORPUS.iloc[:5].copy()
    odd.loc[0, "text"] = "tab\there\nnew line \\N backslash \\x00 é 中文 \r end"
    odd.loc[1, "answer_id"] = "id with\ttab"
    state, _ = build_answer_index(
        engine, RETRIEVER, "7", embedder, odd, state_dir=tmp_path, chunk_rows=2
    )
    index = load_answer_index(engine, state)
    assert index.texts == odd["text"].tolist()
    assert index.answer_ids == odd["answer_id"].tolist()


def test_publish_refuses_a_staging_index_with_a_missing_chunk(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    key = model_state_key(RETRIEVER, "5")
    chunks = plan_chunks(CORPUS, 100)
    area = prepare_staging(engine, key, state_dir=tmp_path)
    for chunk in chunks[:-1]:
        write_chunk(engine, area, chunk, embedder)

    with pytest.raises(DataError, match=r"holds 200 rows, the corpus 300"):
        publish(engine, area, model_versions={RETRIEVER: "5"}, expected_rows=len(CORPUS))
    assert find_state(engine, key) is None


def test_concurrent_builds_of_one_version_build_it_once(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    results: list[bool] = []

    def build() -> None:
        _, built = build_answer_index(
            engine, RETRIEVER, "6", embedder, CORPUS, state_dir=tmp_path, chunk_rows=50
        )
        results.append(built)

    threads = [threading.Thread(target=build) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(results) == [False, True]


def test_state_for_release_follows_the_release_pointer_without_rebuilding(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    v1, _ = build_answer_index(
        engine, RETRIEVER, "1", embedder, CORPUS, state_dir=tmp_path, chunk_rows=100
    )
    first = make_release(engine, models={"intent-classifier": "1", RETRIEVER: "1"})
    v2, _ = build_answer_index(
        engine, RETRIEVER, "2", embedder, CORPUS.iloc[:120], state_dir=tmp_path, chunk_rows=100
    )
    make_release(engine, models={"intent-classifier": "1", RETRIEVER: "2"})
    assert state_for_release(engine, "prd", stateful=STATEFUL) == {RETRIEVER: v2}

    rollback_env(engine, "prd", actor="test", reason="v2 answers worse")

    assert state_for_release(engine, "prd", stateful=STATEFUL) == {RETRIEVER: v1}
    assert state_for_release(engine, "prd", at=first.created_at, stateful=STATEFUL) == {
        RETRIEVER: v1
    }
    assert state_for_release(engine, "prd", stateful=set()) == {}


def test_state_of_a_release_never_built_names_the_fix(engine: Engine) -> None:
    make_release(engine, models={"intent-classifier": "1", RETRIEVER: "9"})
    fix = r"faq-retriever v9 has no built state .*--model faq-retriever --version 9"
    with pytest.raises(NotFoundError, match=fix):
        state_for_release(engine, "prd", stateful=STATEFUL)
    with pytest.raises(NotFoundError, match="nothing was released in stg"):
        state_for_release(engine, "stg", stateful=STATEFUL)


@pytest.mark.postgres
def test_postgres_state_lives_in_its_own_schema_and_staging_is_gone(
    postgres_url: str, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    from core.db import make_engine, upgrade

    engine = make_engine(postgres_url)
    upgrade(engine)
    state, _ = build_answer_index(
        engine, RETRIEVER, "1", embedder, CORPUS, state_dir=tmp_path, chunk_rows=100
    )
    with engine.connect() as conn:
        schemas = set(
            conn.execute(
                text(
                    "SELECT schema_name FROM information_schema.schemata "
                    "WHERE schema_name LIKE 'release_state_%'"
                )
            ).scalars()
        )
    assert schemas == {state.location} == {f"release_state_{state.key}"}
    assert not list(tmp_path.iterdir())  # nothing on disk for a Postgres state
    engine.dispose()


def test_sqlite_state_is_one_file_and_staging_is_gone(
    sqlite_url: str, tmp_path: Path, embedder: TfidfEmbedder
) -> None:
    from core.db import make_engine, upgrade

    engine = make_engine(sqlite_url)
    upgrade(engine)
    state_dir = tmp_path / "states"
    state, _ = build_answer_index(
        engine, RETRIEVER, "1", embedder, CORPUS, state_dir=state_dir, chunk_rows=100
    )
    assert [p.name for p in state_dir.iterdir()] == [f"release_state_{state.key}.db"]
    assert state.location == str(state_dir / f"release_state_{state.key}.db")
    engine.dispose()


@pytest.mark.parametrize(
    "name",
    ["Release_State", "release_state_x; DROP TABLE traffic", "1abc", "a" * 64, "", "x-y", 'a"b'],
)
def test_validate_identifier_refuses_unsafe_schema_names(name: str) -> None:
    with pytest.raises(DataError, match="refusing SQL identifier"):
        validate_identifier(name)


@pytest.mark.parametrize(
    ("corpus", "message"),
    [
        (CORPUS[["answer_id", "text"]], r"lacks columns \['intent'\]"),
        (CORPUS.iloc[:0], "empty corpus"),
        (pd.concat([CORPUS.iloc[:3], CORPUS.iloc[:1]]), r"repeats answer ids \['a000000'\]"),
    ],
)
def test_build_refuses_an_unusable_corpus(
    engine: Engine, tmp_path: Path, embedder: TfidfEmbedder, corpus: pd.DataFrame, message: str
) -> None:
    with pytest.raises(DataError, match=message):
        build_answer_index(
            engine, RETRIEVER, "1", embedder, corpus, state_dir=tmp_path, chunk_rows=10
        )
    assert find_state(engine, model_state_key(RETRIEVER, "1")) is None


def test_build_refuses_an_embedder_returning_the_wrong_shape(
    engine: Engine, tmp_path: Path
) -> None:
    class Broken:
        def embed(self, texts: Sequence[str]) -> np.ndarray:
            return np.zeros((len(texts) - 1, 4), dtype=np.float32)

    with pytest.raises(DataError, match=r"shape \(9, 4\) for 10 texts"):
        build_answer_index(
            engine, RETRIEVER, "1", Broken(), CORPUS, state_dir=tmp_path, chunk_rows=10
        )
    assert find_state(engine, model_state_key(RETRIEVER, "1")) is None
