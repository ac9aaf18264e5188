"""The build-release-state flow under a real Prefect API: the corpus from the source
table, a retriever version loaded from the real registry (digest-verified), chunks mapped
as tasks, published once; a second run reuses it."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sqlalchemy import Engine

from core.answer_index import load_answer_index
from core.release_state import find_state, model_state_key
from tests.core.test_release_state import RETRIEVER, TfidfEmbedder, make_corpus

CORPUS = make_corpus(300)


@pytest.fixture
def faq_source() -> pd.DataFrame:
    """The source table `faq_answers` (answer_id, intent, text, created_at) with 300 rows."""
    from config import get_settings
    from core.db import make_engine, utcnow

    engine = make_engine(get_settings().source_database_url)
    CORPUS.assign(created_at=utcnow()).to_sql("faq_answers", engine, index=False)
    engine.dispose()
    return CORPUS


@pytest.fixture
def retriever_version() -> tuple[str, TfidfEmbedder]:
    """A retriever version registered in the real registry (the flows' settings)."""
    from config import get_settings
    from core.registry import ModelRegistry
    from models import FAMILIES

    registry = ModelRegistry.from_settings(get_settings(), families=FAMILIES)
    embedder = TfidfEmbedder(CORPUS["text"])
    info = registry.register(
        RETRIEVER, embedder, tags={"image_version": registry.image_version},
        params={}, metrics={}, golden_inputs=["where is my parcel", "reset my password"],
    )  # fmt: skip
    return info.version, embedder


@pytest.mark.slow
def test_build_release_state_flow_publishes_the_versions_answer_index_once(
    state_db: Engine, faq_source: pd.DataFrame, retriever_version: tuple[str, TfidfEmbedder]
) -> None:
    from flows.build_release_state import build_release_state

    version, embedder = retriever_version

    state = build_release_state(model_name=RETRIEVER, version=version, chunk_rows=64)

    assert state == find_state(state_db, model_state_key(RETRIEVER, version))
    assert state.rows == len(faq_source)
    index = load_answer_index(state_db, state)
    expected = faq_source.sort_values("answer_id")
    assert index.answer_ids == expected["answer_id"].tolist()
    np.testing.assert_array_equal(index.vectors, embedder.embed(expected["text"].tolist()))

    again = build_release_state(model_name=RETRIEVER, version=version)
    assert again == state  # published already: nothing rebuilt


@pytest.mark.slow
def test_build_release_state_flow_refuses_a_model_that_embeds_nothing(
    state_db: Engine, faq_source: pd.DataFrame
) -> None:
    from config import get_settings
    from core.errors import DataError
    from core.registry import ModelRegistry
    from flows.build_release_state import build_release_state
    from models import FAMILIES
    from tests.factories import train_and_register

    registry = ModelRegistry.from_settings(get_settings(), families=FAMILIES)
    info = train_and_register(registry)

    with pytest.raises(DataError, match="has no embed"):
        build_release_state(model_name=info.name, version=info.version)
    assert find_state(state_db, model_state_key(info.name, info.version)) is None
