"""The gc-release-state flow under a real Prefect API: RELEASE_STATE_KEEP from Settings,
the stateful families from models.FAMILIES, a report artifact."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.release_state import (
    build_answer_index,
    find_state,
    model_state_key,
    prepare_staging,
    state_dir_of,
)
from tests.core.test_release_state import TfidfEmbedder, make_corpus
from tests.factories import make_release

CORPUS = make_corpus(40)


@pytest.mark.slow
def test_gc_flow_drops_states_past_the_retention_and_abandoned_staging(
    state_db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    from config import get_settings
    from flows.gc_release_state import gc_release_state

    monkeypatch.setenv("RELEASE_STATE_KEEP", "1")
    get_settings.cache_clear()
    state_dir: Path = state_dir_of(get_settings())
    embedder = TfidfEmbedder(CORPUS["text"], dims=4)
    # a model that reads no state (models.FAMILIES: the classifier) keeps nothing
    old, _ = build_answer_index(
        state_db, "intent-classifier", "1", embedder, CORPUS, state_dir=state_dir, chunk_rows=20
    )
    make_release(state_db, models={"intent-classifier": "1"})
    abandoned = prepare_staging(state_db, model_state_key("x", "1"), state_dir=state_dir)

    dry = gc_release_state(dry_run=True)
    assert dry.dropped == [old.key]
    assert find_state(state_db, old.key) is not None

    report = gc_release_state()

    assert report.dropped == [old.key]
    assert report.orphans == [abandoned.location]
    assert find_state(state_db, old.key) is None
    assert list(state_dir.iterdir()) == []
