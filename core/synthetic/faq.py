"""The FAQ answer corpus: answers per intent in older and newer wordings, and its rows.

`faq_answers.yaml` holds, for every intent of the vocabulary, several answers, each in
"classic" wordings (written before the app era) and "modern" ones (written after it, with
the new terms the drifted queries use). `load_faq_corpus` reads the packaged copy and
refuses a file that does not fit the vocabulary, naming what is wrong and where.
`generate_faq_answers` turns it into the rows of the `faq_answers` source table:
deterministic for a seed (ids and timestamps come from the seed and the entry's names),
classic wordings dated in the first 30% of the time range, modern ones after it (when
the queries start to drift, see `generator.modern_share`).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml

from core.errors import DataError
from core.synthetic.vocabulary import ERAS, Era, Vocabulary, VocabularyError, load_vocabulary

FAQ_FILE = "faq_answers.yaml"
#: The columns of the generated rows (and of the table), in this order.
FAQ_COLUMNS: tuple[str, ...] = ("answer_id", "intent", "text", "created_at")
#: Where in the time range (0 = oldest, 1 = newest) each era's answers were written.
ERA_POSITIONS: Mapping[Era, tuple[float, float]] = {"classic": (0.0, 0.3), "modern": (0.3, 0.9)}


@dataclass(frozen=True)
class FaqEntry:
    """One wording of one answer."""

    intent: str
    answer: str
    era: Era
    index: int
    text: str


@dataclass(frozen=True)
class FaqCorpus:
    """intent -> answer name -> era -> wordings, in the file's order."""

    answers: Mapping[str, Mapping[str, Mapping[Era, tuple[str, ...]]]]

    def entries(self) -> list[FaqEntry]:
        """Every wording, in the file's order (intent, answer, era, index)."""
        return [
            FaqEntry(intent, answer, era, index, text)
            for intent, answers in self.answers.items()
            for answer, eras in answers.items()
            for era in ERAS
            for index, text in enumerate(eras[era])
        ]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise VocabularyError(f"{where}: expected a non-empty mapping, got {value!r}")
    return {str(key): item for key, item in value.items()}


def _wordings(value: Any, where: str) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise VocabularyError(f"{where}: expected a non-empty list of wordings, got {value!r}")
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise VocabularyError(f"{where}: expected text, got {item!r}")
    return tuple(item.strip() for item in value)


def _answer(value: Any, where: str) -> dict[Era, tuple[str, ...]]:
    fields = _mapping(value, where)
    unknown = sorted(set(fields) - set(ERAS))
    if unknown:
        raise VocabularyError(f"{where}: unknown key(s) {', '.join(unknown)}")
    return {era: _wordings(fields.get(era), f"{where}.{era}") for era in ERAS}


def _check_unique(corpus: FaqCorpus) -> None:
    seen: dict[str, str] = {}
    for entry in corpus.entries():
        where = f"answers.{entry.intent}.{entry.answer}.{entry.era}"
        key = entry.text.lower()
        if key in seen:
            raise VocabularyError(f"{where}: {entry.text!r} is already in {seen[key]}")
        seen[key] = where


def _corpus(document: Any, intents: tuple[str, ...]) -> FaqCorpus:
    sections = _mapping(document, "the document")
    if set(sections) != {"answers"}:
        unknown = sorted(set(sections) - {"answers"})
        raise VocabularyError(
            f"sections: expected only `answers`; unknown {', '.join(unknown) or 'none'}"
        )
    by_intent = _mapping(sections["answers"], "answers")
    missing = [intent for intent in intents if intent not in by_intent]
    unknown = sorted(set(by_intent) - set(intents))
    if missing or unknown:
        raise VocabularyError(
            f"answers: intents must be the vocabulary's; missing {', '.join(missing) or 'none'}; "
            f"unknown {', '.join(unknown) or 'none'}"
        )
    answers = {
        intent: {
            name: _answer(entry, f"answers.{intent}.{name}")
            for name, entry in _mapping(by_intent[intent], f"answers.{intent}").items()
        }
        for intent in intents
    }
    corpus = FaqCorpus(answers)
    _check_unique(corpus)
    return corpus


def parse_faq_corpus(
    document: Any, vocabulary: Vocabulary | None = None, source: str = FAQ_FILE
) -> FaqCorpus:
    """A checked `FaqCorpus` from the parsed YAML `document` (read from `source`).

    Its intents are ordered as the vocabulary's (`vocabulary` defaults to the packaged one).

    Raises:
        VocabularyError: a section is unknown; an intent of the vocabulary has no answers
            or an unknown intent has some; an answer lacks an era's wordings or has an
            unknown key; a wording is empty or appears twice. The message starts with
            `source` and says where.
    """
    words = vocabulary if vocabulary is not None else load_vocabulary()
    try:
        return _corpus(document, words.intents)
    except VocabularyError as exc:
        raise VocabularyError(f"{source}: {exc}") from None


@lru_cache(maxsize=1)
def load_faq_corpus() -> FaqCorpus:
    """The FAQ corpus packaged with `core.synthetic`, checked (read once per process).

    Raises:
        VocabularyError: the file is not valid YAML or does not fit the vocabulary.
    """
    text = resources.files("core.synthetic").joinpath(FAQ_FILE).read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VocabularyError(f"{FAQ_FILE}: not valid YAML ({exc})") from None
    return parse_faq_corpus(document, source=FAQ_FILE)


def answer_id(seed: int, entry: FaqEntry) -> str:
    """The deterministic id of one wording for `seed` (from its names, not its position)."""
    key = f"{seed}:{entry.intent}:{entry.answer}:{entry.era}:{entry.index}"
    return "a_" + hashlib.sha256(key.encode()).hexdigest()[:16]


def _created_at(seed: int, entry: FaqEntry, end: datetime, days: int) -> datetime:
    rng = random.Random(f"stateful-ml-faq:{seed}:{entry.intent}:{entry.answer}:{entry.era}")
    low, high = ERA_POSITIONS[entry.era]
    position = rng.uniform(low, high)
    for _ in range(entry.index):  # later wordings of an answer were written later
        position = rng.uniform(position, high)
    return end - timedelta(seconds=round((1.0 - position) * days * 86_400))


def generate_faq_answers(
    seed: int,
    end: datetime,
    days: int,
    corpus: FaqCorpus | None = None,
) -> pd.DataFrame:
    """The rows of the `faq_answers` table for `seed`, over the `days` before `end`.

    Columns: answer_id, intent, text, created_at (aware UTC); sorted by created_at, then
    answer_id. `corpus` defaults to the packaged one.

    Raises:
        DataError: days < 1 or a naive `end`.
        VocabularyError: the packaged corpus is unusable (see `load_faq_corpus`).
    """
    if days < 1:
        raise DataError(f"days must be >= 1, got {days}")
    if end.tzinfo is None:
        raise DataError("end must be a timezone-aware datetime")
    end_utc = end.astimezone(UTC)
    answers = corpus if corpus is not None else load_faq_corpus()
    records = [
        (answer_id(seed, e), e.intent, e.text, _created_at(seed, e, end_utc, days))
        for e in answers.entries()
    ]
    frame = pd.DataFrame.from_records(records, columns=list(FAQ_COLUMNS))
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    return frame.sort_values(["created_at", "answer_id"], kind="stable").reset_index(drop=True)
