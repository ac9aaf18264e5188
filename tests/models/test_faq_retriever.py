"""The faq-retriever family: embeddings, nearest-centroid labels, the older/newer
configurations on drifted data, and registration through the real MLflow registry."""

from __future__ import annotations

import pickle
from datetime import timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydantic import ValidationError

from core.errors import DataError
from core.synthetic import generate_faq_answers, load_vocabulary
from models import FAMILIES, get_family
from models.evaluation import evaluate
from models.faq_retriever import (
    GOLDEN_INPUTS,
    LABELS,
    NAME,
    OLDER_CONFIG,
    RECENT_CONFIG,
    FaqRetriever,
    FaqRetrieverConfig,
    hit_rate_at_k,
)
from models.pipeline import train_family
from models.registration import register_trained
from tests.factories import DATA_END, SEED, make_registry, train_and_register, training_frame

FAMILY = get_family(NAME)


@pytest.fixture(scope="module")
def corpus() -> pd.DataFrame:
    """The FAQ answer corpus create_data.py writes for the factories' seed and end."""
    return generate_faq_answers(SEED, end=DATA_END, days=180)


@pytest.fixture(scope="module")
def retriever() -> FaqRetriever:
    """A retriever of the default configuration, fitted on the small snapshot."""
    frame = training_frame()
    return FAMILY.fit(FAMILY.split(frame, RECENT_CONFIG).train, RECENT_CONFIG)


def test_family_is_registered_with_an_answer_index_state_and_the_vocabulary_labels() -> None:
    assert FAMILIES[NAME] is FAMILY
    assert FAMILY.state == "answer_index"
    assert FAMILY.default_config is RECENT_CONFIG
    assert set(LABELS) == set(load_vocabulary().intents)
    assert "models.faq_retriever" in FAMILY.source_modules
    assert len(FAMILY.source_hash()) == 64


def test_config_is_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        FaqRetrieverConfig(unknown_knob=1)
    with pytest.raises(ValidationError):
        RECENT_CONFIG.dims = 3  # type: ignore[misc]
    assert FAMILY.parse_config({"dims": 32}).dims == 32
    assert FAMILY.parse_config(None) is RECENT_CONFIG
    assert OLDER_CONFIG.training_window_days is None
    assert OLDER_CONFIG.dims < RECENT_CONFIG.dims


def test_recent_config_beats_the_older_one_on_recent_queries(corpus: pd.DataFrame) -> None:
    """hit@3 of the most recent days' queries against the generated FAQ corpus.

    Both configurations are fitted on the same snapshot and scored on the same recent
    holdout (same split seed). The older configuration is also scored as it was fitted
    90 days ago, before users' and answers' wording moved to the app era.
    """
    frame = training_frame(rows=4_000)
    recent_split = FAMILY.split(frame, RECENT_CONFIG)
    older_split = FAMILY.split(frame, OLDER_CONFIG)
    holdout = recent_split.holdout
    assert older_split.holdout["query_id"].tolist() == holdout["query_id"].tolist()
    then = frame[
        (frame["created_at"] < DATA_END - timedelta(days=90))
        & ~frame["query_id"].isin(holdout["query_id"])
    ]
    fitted = {
        "recent": FAMILY.fit(recent_split.train, RECENT_CONFIG),
        "older": FAMILY.fit(older_split.train, OLDER_CONFIG),
        "older, fitted 90 days ago": FAMILY.fit(then, OLDER_CONFIG),
    }
    texts, truth = holdout["text"].tolist(), holdout["intent"].tolist()
    hit = {name: hit_rate_at_k(model, holdout, corpus, 3) for name, model in fitted.items()}
    accuracy = {
        name: evaluate(model, texts, truth, LABELS).accuracy for name, model in fitted.items()
    }
    for name in fitted:
        print(f"{name}: hit@3 {hit[name]:.1%}, holdout accuracy {accuracy[name]:.1%}")

    assert len(holdout) > 200
    assert hit["recent"] >= 0.85
    assert hit["recent"] - hit["older"] >= 0.05
    assert hit["recent"] - hit["older, fitted 90 days ago"] >= 0.15
    assert accuracy["recent"] >= 0.85
    assert accuracy["recent"] - accuracy["older"] >= 0.05


def test_embed_is_float32_unit_rows_and_deterministic(retriever: FaqRetriever) -> None:
    texts = list(GOLDEN_INPUTS)

    vectors = retriever.embed(texts)

    assert vectors.dtype == np.float32
    assert vectors.shape == (len(texts), RECENT_CONFIG.dims)
    assert retriever.embedding_dims == RECENT_CONFIG.dims
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(vectors, retriever.embed(texts))
    # one text alone embeds as it does in a batch, and as a one-column frame (pyfunc)
    assert np.array_equal(retriever.embed(texts[4:5])[0], vectors[4])
    assert np.array_equal(retriever.embed(pd.DataFrame({"text": texts})), vectors)
    assert retriever.embed([]).shape == (0, RECENT_CONFIG.dims)


def test_text_without_a_known_term_embeds_as_the_mean_query(retriever: FaqRetriever) -> None:
    vectors = retriever.embed(["", "???", "§§§"])

    assert np.array_equal(vectors[0], vectors[1])
    assert np.array_equal(vectors[0], vectors[2])
    assert np.linalg.norm(vectors[0]) == pytest.approx(1.0, abs=1e-5)


def test_predict_gives_family_labels_for_every_golden_input(retriever: FaqRetriever) -> None:
    predictions = retriever.predict(list(GOLDEN_INPUTS))

    assert len(predictions) == len(GOLDEN_INPUTS)
    assert set(predictions) <= set(LABELS)
    assert retriever.predict(["i lost my debit card", "zap 20 to sam"]) == [
        "card_lost",
        "transfer_money",
    ]
    assert retriever.predict([]) == []


def test_two_fits_with_the_same_seed_give_identical_embeddings_and_golden_predictions() -> None:
    train = FAMILY.split(training_frame(), RECENT_CONFIG).train

    first, second = FAMILY.fit(train, RECENT_CONFIG), FAMILY.fit(train, RECENT_CONFIG)

    assert first.predict(list(GOLDEN_INPUTS)) == second.predict(list(GOLDEN_INPUTS))
    assert np.array_equal(first.embed(GOLDEN_INPUTS), second.embed(GOLDEN_INPUTS))
    copy = pickle.loads(pickle.dumps(first))
    assert np.array_equal(copy.embed(GOLDEN_INPUTS), first.embed(GOLDEN_INPUTS))


def test_hit_rate_grows_with_k_and_is_complete_over_the_whole_corpus(
    retriever: FaqRetriever, corpus: pd.DataFrame
) -> None:
    queries = training_frame().tail(300)

    rates = [hit_rate_at_k(retriever, queries, corpus, k) for k in (1, 3, 10)]

    assert rates == sorted(rates)
    assert 0.0 < rates[0] <= rates[-1] <= 1.0
    assert hit_rate_at_k(retriever, queries, corpus, len(corpus)) == 1.0


def test_hit_rate_refuses_a_bad_k_or_empty_inputs(
    retriever: FaqRetriever, corpus: pd.DataFrame
) -> None:
    queries = training_frame().tail(5)

    with pytest.raises(DataError, match="k must be >= 1"):
        hit_rate_at_k(retriever, queries, corpus, 0)
    with pytest.raises(DataError, match="at least one query and one answer"):
        hit_rate_at_k(retriever, queries.iloc[:0], corpus, 3)
    with pytest.raises(DataError, match="at least one query and one answer"):
        hit_rate_at_k(retriever, queries, corpus.iloc[:0], 3)


def test_registered_like_the_classifier_loads_back_identical_and_is_compat_identical(
    tmp_path: Path,
) -> None:
    from core.compat import check_version

    registry = make_registry(tmp_path)
    trained = train_family(training_frame(), FAMILY, RECENT_CONFIG)
    info = register_trained(registry, trained, FAMILY)
    classifier = train_and_register(registry)

    assert set(info.tags) == set(classifier.tags)
    assert info.tags["training_window_days"] == "60"
    assert info.golden_digest
    assert info.artifact_sha256
    loaded = registry.load(NAME, info.version)  # digest verified before unpickling
    assert isinstance(loaded.model, FaqRetriever)
    assert np.array_equal(loaded.model.embed(GOLDEN_INPUTS), trained.model.embed(GOLDEN_INPUTS))
    assert loaded.predict(list(GOLDEN_INPUTS)) == trained.model.predict(list(GOLDEN_INPUTS))
    inputs, golden = registry.golden_predictions(NAME, info.version)
    assert (inputs, golden) == (list(GOLDEN_INPUTS), trained.model.predict(list(GOLDEN_INPUTS)))
    assert check_version(registry, NAME, info.version).verdict == "identical"
    # under another image it is unpickled in a fresh interpreter and reproduces its goldens
    report = check_version(registry, NAME, info.version, image_version="next-image")
    assert (report.verdict, report.golden_checked) == ("compatible", len(GOLDEN_INPUTS))


def test_a_tiny_training_set_gets_fewer_dimensions_and_still_unit_rows() -> None:
    train = training_frame().head(12)

    tiny = FAMILY.fit(train, RECENT_CONFIG)
    vectors = tiny.embed(["check my balance", ""])

    assert tiny.embedding_dims <= 11
    assert vectors.shape == (2, tiny.embedding_dims)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert set(tiny.predict(list(GOLDEN_INPUTS))) <= set(train["intent"])
