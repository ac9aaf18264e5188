"""The intent-classifier family: pipeline, configs, the v1/v2 situation, fault knobs."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError
from sklearn.pipeline import Pipeline

from models import FAMILIES, get_family
from models.evaluation import confusion_matrix_png, evaluate
from models.intent_classifier import (
    BASELINE_CONFIG,
    GOLDEN_INPUTS,
    INTENT_LABELS,
    RECENT_CONFIG,
    FaultyIntentClassifier,
    InjectedFaultError,
    IntentClassifierConfig,
    build_pipeline,
    would_fail,
)
from models.text import TextNormalizer
from tests.factories import DATA_END, training_frame

FAMILY = get_family("intent-classifier")


def test_labels_match_the_source_data_intents() -> None:
    from core.synthetic import load_vocabulary

    assert set(INTENT_LABELS) == set(load_vocabulary().intents)


def test_build_pipeline_starts_with_our_normalizer() -> None:
    pipeline = build_pipeline(RECENT_CONFIG)
    assert isinstance(pipeline, Pipeline)
    assert isinstance(pipeline.steps[0][1], TextNormalizer)


def test_config_is_frozen_and_strict() -> None:
    with pytest.raises(ValidationError):
        IntentClassifierConfig(unknown_knob=1)
    with pytest.raises(ValidationError):
        RECENT_CONFIG.C = 3.0  # type: ignore[misc]
    assert FAMILY.parse_config({"C": 0.5}).C == 0.5
    assert FAMILY.parse_config(None) is RECENT_CONFIG


def test_recent_config_beats_baseline_trained_before_the_drift_on_recent_data() -> None:
    """The "v1 85% / v2 92%" situation, on the synthetic data.

    v1 is the BASELINE config (all history, word unigrams) as trained 90 days ago, before
    users' phrasing moved to the new app vocabulary; v2 is the RECENT config (last 60 days,
    word bigrams) trained now. Both are scored on the same recent holdout.
    """
    frame = training_frame(rows=4_000)
    split = FAMILY.split(frame, RECENT_CONFIG)
    texts, truth = split.holdout["text"].tolist(), split.holdout["intent"].tolist()
    history = FAMILY.split(frame, BASELINE_CONFIG)  # same seed: the same holdout rows
    assert history.holdout["query_id"].tolist() == split.holdout["query_id"].tolist()
    v1_rows = history.train[history.train["created_at"] < DATA_END - timedelta(days=90)]
    v1 = evaluate(FAMILY.fit(v1_rows, BASELINE_CONFIG), texts, truth, INTENT_LABELS)
    v2 = evaluate(FAMILY.fit(split.train, RECENT_CONFIG), texts, truth, INTENT_LABELS)
    assert len(texts) > 200
    assert v1.accuracy < 0.89
    assert v2.accuracy > 0.90
    assert v2.accuracy - v1.accuracy > 0.03


def test_model_predicts_every_golden_input_and_known_labels_only() -> None:
    frame = training_frame()
    model = FAMILY.fit(FAMILY.split(frame, RECENT_CONFIG).train, RECENT_CONFIG)
    predictions = model.predict(list(GOLDEN_INPUTS))
    assert len(predictions) == len(GOLDEN_INPUTS)
    assert set(predictions) <= set(INTENT_LABELS)
    assert model.predict(["i lost my debit card"])[0] == "card_lost"


def test_evaluation_reports_per_class_accuracy_and_confusion_png() -> None:
    frame = training_frame()
    split = FAMILY.split(frame, RECENT_CONFIG)
    model = FAMILY.fit(split.train, RECENT_CONFIG)
    evaluation = evaluate(
        model, split.holdout["text"].tolist(), split.holdout["intent"].tolist(), INTENT_LABELS
    )
    assert sum(map(sum, evaluation.confusion)) == evaluation.rows
    assert set(evaluation.per_class_accuracy) == set(INTENT_LABELS)
    assert evaluation.metrics()["holdout_accuracy"] == evaluation.accuracy
    assert confusion_matrix_png(evaluation).startswith(b"\x89PNG")


def test_would_fail_selects_a_stable_share_of_inputs() -> None:
    texts = [f"query number {i}" for i in range(2_000)]
    share = sum(would_fail(t, 0.2) for t in texts) / len(texts)
    assert 0.15 < share < 0.25
    assert [would_fail(t, 0.2) for t in texts[:50]] == [would_fail(t, 0.2) for t in texts[:50]]
    assert not any(would_fail(t, 0.0) for t in texts)


def test_faulty_config_wraps_pipeline_and_raises_on_selected_inputs() -> None:
    config = IntentClassifierConfig(fault_rate=0.5)
    frame = training_frame()
    model = FAMILY.fit(frame, config)
    assert isinstance(model, FaultyIntentClassifier)
    texts = [f"check my balance {i}" for i in range(20)]
    ok = [t for t in texts if not would_fail(t, 0.5)]
    assert list(model.predict(ok)) == ["check_balance"] * len(ok)
    bad = next(t for t in texts if would_fail(t, 0.5))
    with pytest.raises(InjectedFaultError, match="injected fault on 1 of 1"):
        model.predict([bad])


def test_families_registry_lists_both_families_and_their_state() -> None:
    assert list(FAMILIES) == ["intent-classifier", "faq-retriever"]
    assert {name: family.state for name, family in FAMILIES.items()} == {
        "intent-classifier": None,
        "faq-retriever": "answer_index",
    }
    assert len(FAMILY.source_hash()) == 64
    from core.errors import NotFoundError

    with pytest.raises(NotFoundError, match="unknown model family 'nope'"):
        get_family("nope")
