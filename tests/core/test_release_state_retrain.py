"""Retrain's gate: a version of a model that reads state gets no role (no candidate
alias, no first release) before its state is published."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import Engine

from core.errors import StateNotReadyError
from core.ledger import current_release
from core.release_state import build_answer_index
from core.retrain import RetrainPlan, give_role
from tests.core.test_release_state import RETRIEVER, TfidfEmbedder, make_corpus
from tests.factories import make_registry

CORPUS = make_corpus(40)


@pytest.mark.slow
def test_give_role_refuses_a_stateful_version_until_its_state_is_published(
    engine: Engine, tmp_path: Path
) -> None:
    from config import get_settings

    registry = make_registry(tmp_path)
    embedder = TfidfEmbedder(CORPUS["text"], dims=4)
    info = registry.register(
        RETRIEVER, embedder, tags={"image_version": registry.image_version},
        params={}, metrics={}, golden_inputs=["where is my parcel"],
    )  # fmt: skip
    plan = RetrainPlan(RETRIEVER, registry.image_version, "resume", "champion", info.version, None)
    settings = get_settings()

    with pytest.raises(StateNotReadyError, match=rf"faq-retriever v{info.version} "):
        give_role(
            engine, registry, plan, info.version, None,
            settings=settings, actor="test", stateful={RETRIEVER},
        )  # fmt: skip
    assert current_release(engine, "dev") is None  # no first release without its state
    assert registry.get_version(RETRIEVER, info.version).aliases == []

    build_answer_index(
        engine, RETRIEVER, info.version, embedder, CORPUS, state_dir=tmp_path, chunk_rows=20
    )
    outcome = give_role(
        engine, registry, plan, info.version, None,
        settings=settings, actor="test", stateful={RETRIEVER},
    )  # fmt: skip

    assert outcome.action == "first_champion"
    release = current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {RETRIEVER: info.version}
