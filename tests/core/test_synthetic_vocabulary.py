"""core.synthetic.vocabulary and .faq: the packaged data files load, and broken ones are
refused clearly."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml

from core.synthetic.faq import load_faq_corpus, parse_faq_corpus
from core.synthetic.vocabulary import (
    ERAS,
    VocabularyError,
    load_vocabulary,
    parse_vocabulary,
)


@pytest.fixture
def document() -> dict[str, Any]:
    """The packaged vocabulary as parsed YAML, a copy each test may break."""
    from importlib import resources

    text = resources.files("core.synthetic").joinpath("vocabulary.yaml").read_text("utf-8")
    return copy.deepcopy(yaml.safe_load(text))


def test_load_vocabulary_has_every_intent_with_a_named_weight_and_both_eras() -> None:
    vocabulary = load_vocabulary()

    assert len(vocabulary.intents) == 10
    assert len(vocabulary.intent_weights) == len(vocabulary.intents)
    assert all(weight > 0 for weight in vocabulary.intent_weights)
    for intent in vocabulary.intents:
        assert all(vocabulary.phrasings[intent][era] for era in ERAS)
        assert "help" in vocabulary.ambiguous[intent]
    assert set(vocabulary.channel_weights) == set(ERAS)
    assert "pulse" in vocabulary.modern_markers


def test_parse_vocabulary_weights_follow_the_intent_names_not_their_position(
    document: dict[str, Any],
) -> None:
    intents = document["intents"]
    swapped = {name: intents[name] for name in reversed(list(intents))}

    vocabulary = parse_vocabulary({**document, "intents": swapped})
    weights = dict(zip(vocabulary.intents, vocabulary.intent_weights, strict=True))

    assert weights["check_balance"] == 18
    assert weights["close_account"] == 4


def test_parse_vocabulary_intent_without_weight_is_refused(document: dict[str, Any]) -> None:
    del document["intents"]["card_lost"]["weight"]

    with pytest.raises(VocabularyError, match=r"vocabulary\.yaml: intents\.card_lost: no weight"):
        parse_vocabulary(document)


def test_parse_vocabulary_nonpositive_weight_is_refused(document: dict[str, Any]) -> None:
    document["locales"]["en-GB"] = 0

    with pytest.raises(VocabularyError, match=r"locales\.en-GB: expected a positive number"):
        parse_vocabulary(document)


def test_parse_vocabulary_intent_without_modern_phrasings_is_refused(
    document: dict[str, Any],
) -> None:
    document["intents"]["loan_rates"]["modern"] = []

    with pytest.raises(VocabularyError, match=r"intents\.loan_rates\.modern: expected a non-empty"):
        parse_vocabulary(document)


def test_parse_vocabulary_unknown_slot_in_a_template_is_refused(document: dict[str, Any]) -> None:
    document["intents"]["transfer_money"]["modern"].append("zap {amount} to {pet}")

    with pytest.raises(VocabularyError, match=r"\{pet\}': unknown slot\(s\) pet"):
        parse_vocabulary(document)


def test_parse_vocabulary_ambiguous_query_of_an_unknown_intent_is_refused(
    document: dict[str, Any],
) -> None:
    document["ambiguous"]["about my card"].append("buy_crypto")

    with pytest.raises(VocabularyError, match=r"unknown intent\(s\) buy_crypto"):
        parse_vocabulary(document)


def test_parse_vocabulary_intent_without_a_vague_query_is_refused(
    document: dict[str, Any],
) -> None:
    del document["ambiguous"]["help"]

    with pytest.raises(VocabularyError, match=r"no vague query for intent\(s\) .*loan_rates"):
        parse_vocabulary(document)


def test_parse_vocabulary_missing_or_unknown_section_is_named(document: dict[str, Any]) -> None:
    del document["slots"]
    document["phrasings"] = {}

    with pytest.raises(VocabularyError, match="missing slots; unknown phrasings"):
        parse_vocabulary(document)


def test_parse_vocabulary_channel_without_an_era_weight_is_refused(
    document: dict[str, Any],
) -> None:
    del document["channels"]["chat"]["modern"]

    with pytest.raises(VocabularyError, match=r"channels\.chat\.modern: expected a positive"):
        parse_vocabulary(document)


# --- the FAQ answer corpus (faq_answers.yaml) ------------------------------------------


@pytest.fixture
def faq_document() -> dict[str, Any]:
    """The packaged FAQ corpus as parsed YAML, a copy each test may break."""
    from importlib import resources

    text = resources.files("core.synthetic").joinpath("faq_answers.yaml").read_text("utf-8")
    return copy.deepcopy(yaml.safe_load(text))


def test_load_faq_corpus_has_answers_in_both_eras_for_every_intent() -> None:
    corpus = load_faq_corpus()

    assert tuple(corpus.answers) == load_vocabulary().intents
    for answers in corpus.answers.values():
        assert len(answers) >= 3
        assert all(eras[era] for eras in answers.values() for era in ERAS)
    texts = [entry.text.lower() for entry in corpus.entries()]
    assert len(texts) == len(set(texts))


def test_parse_faq_corpus_intent_without_answers_is_refused(faq_document: dict[str, Any]) -> None:
    del faq_document["answers"]["card_lost"]

    with pytest.raises(
        VocabularyError, match=r"faq_answers\.yaml: answers: .*missing card_lost; unknown none"
    ):
        parse_faq_corpus(faq_document)


def test_parse_faq_corpus_unknown_intent_is_refused(faq_document: dict[str, Any]) -> None:
    faq_document["answers"]["buy_crypto"] = {"how": {"classic": ["x"], "modern": ["y"]}}

    with pytest.raises(VocabularyError, match=r"missing none; unknown buy_crypto"):
        parse_faq_corpus(faq_document)


def test_parse_faq_corpus_answer_without_modern_wordings_is_refused(
    faq_document: dict[str, Any],
) -> None:
    del faq_document["answers"]["loan_rates"]["mortgage"]["modern"]

    with pytest.raises(VocabularyError, match=r"answers\.loan_rates\.mortgage\.modern: expected"):
        parse_faq_corpus(faq_document)


def test_parse_faq_corpus_unknown_key_or_empty_wording_is_refused(
    faq_document: dict[str, Any],
) -> None:
    broken = copy.deepcopy(faq_document)
    broken["answers"]["loan_rates"]["mortgage"]["future"] = ["soon"]
    with pytest.raises(VocabularyError, match=r"answers\.loan_rates\.mortgage: unknown key"):
        parse_faq_corpus(broken)

    faq_document["answers"]["loan_rates"]["mortgage"]["classic"].append("  ")
    with pytest.raises(VocabularyError, match=r"mortgage\.classic: expected text"):
        parse_faq_corpus(faq_document)


def test_parse_faq_corpus_duplicate_wording_is_refused(faq_document: dict[str, Any]) -> None:
    first = faq_document["answers"]["check_balance"]["see_balance"]["classic"][0]
    faq_document["answers"]["talk_to_agent"]["call_us"]["modern"].append(first.upper())

    with pytest.raises(
        VocabularyError, match=r"talk_to_agent\.call_us\.modern: .* is already in answers\.check"
    ):
        parse_faq_corpus(faq_document)


def test_parse_faq_corpus_unknown_section_is_named(faq_document: dict[str, Any]) -> None:
    with pytest.raises(VocabularyError, match=r"expected only `answers`; unknown extras"):
        parse_faq_corpus({**faq_document, "extras": {}})
