"""The vocabulary of the synthetic queries, read from `vocabulary.yaml` and checked on load.

The data file holds the phrasings per intent and era, the vague queries several intents
share, the slot values, fillers, channels, locales and the app-era marker words; every
weight is keyed by the name it weighs. `load_vocabulary` reads the copy packaged with
`core.synthetic` (importlib.resources, so it works from an installed wheel) and refuses a
file the generator could not use, naming what is wrong and where.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Any, Literal

import yaml

from core.errors import DataError

Era = Literal["classic", "modern"]
ERAS: tuple[Era, ...] = ("classic", "modern")
VOCABULARY_FILE = "vocabulary.yaml"
#: The slot every template may name without `slots` defining it (a prefix and a value).
AMOUNT_SLOT = "amount"
#: An ambiguous query owned by every intent says so with this word.
ALL_INTENTS = "all"
_SECTIONS = frozenset(
    {"intents", "ambiguous", "slots", "amounts", "fillers", "channels", "locales"}
    | {"modern_markers"}
)


class VocabularyError(DataError):
    """The vocabulary file is missing a part, or holds something the generator cannot use."""


@dataclass(frozen=True)
class Vocabulary:
    """Everything the generator draws from, in the file's order (the order is the data)."""

    intents: tuple[str, ...]
    #: Relative volume of each intent, in the order of `intents`.
    intent_weights: tuple[float, ...]
    phrasings: Mapping[str, Mapping[Era, tuple[str, ...]]]
    #: intent -> the vague queries it may ask, in the file's order.
    ambiguous: Mapping[str, tuple[str, ...]]
    slots: Mapping[str, tuple[str, ...]]
    amount_prefixes: tuple[str, ...]
    amount_values: tuple[int, ...]
    filler_prefixes: tuple[str, ...]
    filler_suffixes: tuple[str, ...]
    channels: tuple[str, ...]
    #: era -> relative volume of each channel, in the order of `channels`.
    channel_weights: Mapping[Era, tuple[float, ...]]
    locales: tuple[str, ...]
    locale_weights: tuple[float, ...]
    modern_markers: tuple[str, ...]


def _mapping(value: Any, where: str) -> dict[str, Any]:
    if not isinstance(value, dict) or not value:
        raise VocabularyError(f"{where}: expected a non-empty mapping, got {value!r}")
    return {str(key): item for key, item in value.items()}


def _strings(value: Any, where: str, *, allow_empty_items: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not value:
        raise VocabularyError(f"{where}: expected a non-empty list, got {value!r}")
    for item in value:
        if not isinstance(item, str) or (not item and not allow_empty_items):
            raise VocabularyError(f"{where}: expected text, got {item!r}")
    return tuple(value)


def _weight(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise VocabularyError(f"{where}: expected a positive number, got {value!r}")
    return value


def _weights(value: Any, where: str) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """Names and their weights from a `name: weight` mapping, in the file's order."""
    named = _mapping(value, where)
    return tuple(named), tuple(_weight(w, f"{where}.{name}") for name, w in named.items())


def _intents(
    value: Any,
) -> tuple[tuple[str, ...], tuple[float, ...], dict[str, dict[Era, tuple[str, ...]]]]:
    """Intent names, weights and phrasings per era from the `intents` section."""
    weights: list[float] = []
    phrasings: dict[str, dict[Era, tuple[str, ...]]] = {}
    for intent, entry in _mapping(value, "intents").items():
        where = f"intents.{intent}"
        fields = _mapping(entry, where)
        unknown = sorted(set(fields) - {"weight", *ERAS})
        if unknown:
            raise VocabularyError(f"{where}: unknown key(s) {', '.join(unknown)}")
        if "weight" not in fields:
            raise VocabularyError(f"{where}: no weight (its relative volume)")
        weights.append(_weight(fields["weight"], f"{where}.weight"))
        phrasings[intent] = {era: _strings(fields.get(era), f"{where}.{era}") for era in ERAS}
    return tuple(phrasings), tuple(weights), phrasings


def _ambiguous(value: Any, intents: tuple[str, ...]) -> dict[str, tuple[str, ...]]:
    """intent -> the vague queries it may ask (each intent needs at least one)."""
    by_intent: dict[str, list[str]] = {intent: [] for intent in intents}
    for query, owners in _mapping(value, "ambiguous").items():
        where = f"ambiguous.{query!r}"
        named = intents if owners == ALL_INTENTS else _strings(owners, where)
        unknown = sorted(set(named) - set(intents))
        if unknown:
            raise VocabularyError(f"{where}: unknown intent(s) {', '.join(unknown)}")
        for intent in intents:  # file order of queries, whatever the owners' order
            if intent in named:
                by_intent[intent].append(query)
    lacking = [intent for intent, queries in by_intent.items() if not queries]
    if lacking:
        raise VocabularyError(f"ambiguous: no vague query for intent(s) {', '.join(lacking)}")
    return {intent: tuple(queries) for intent, queries in by_intent.items()}


def _check_templates(
    phrasings: Mapping[str, Mapping[Era, tuple[str, ...]]],
    ambiguous: Mapping[str, tuple[str, ...]],
    slots: Mapping[str, tuple[str, ...]],
) -> None:
    """Every `{slot}` a template names exists (`amount` is built in, not a slot)."""
    if AMOUNT_SLOT in slots:
        raise VocabularyError(f"slots.{AMOUNT_SLOT}: reserved, see the `amounts` section")
    known = {*slots, AMOUNT_SLOT}
    templates = {t for eras in phrasings.values() for ts in eras.values() for t in ts}
    templates |= {t for queries in ambiguous.values() for t in queries}
    for template in sorted(templates):
        try:
            named = {field for _, field, _, _ in string.Formatter().parse(template) if field}
        except ValueError as exc:
            raise VocabularyError(f"template {template!r}: {exc}") from None
        unknown = sorted(named - known)
        if unknown:
            raise VocabularyError(f"template {template!r}: unknown slot(s) {', '.join(unknown)}")


def _amounts(value: Any) -> tuple[tuple[str, ...], tuple[int, ...]]:
    amounts = _mapping(value, "amounts")
    prefixes = _strings(amounts.get("prefixes"), "amounts.prefixes", allow_empty_items=True)
    values = amounts.get("values")
    if not isinstance(values, list) or not values:
        raise VocabularyError(f"amounts.values: expected a non-empty list, got {values!r}")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in values):
        raise VocabularyError(f"amounts.values: expected positive whole numbers, got {values!r}")
    return prefixes, tuple(values)


def _channels(value: Any) -> tuple[tuple[str, ...], dict[Era, tuple[float, ...]]]:
    channels = _mapping(value, "channels")
    per_era: dict[Era, tuple[float, ...]] = {}
    for era in ERAS:
        per_era[era] = tuple(
            _weight(_mapping(weights, f"channels.{name}").get(era), f"channels.{name}.{era}")
            for name, weights in channels.items()
        )
    return tuple(channels), per_era


def _vocabulary(sections: dict[str, Any]) -> Vocabulary:
    """A checked `Vocabulary` from the document's sections (see `parse_vocabulary`)."""
    missing = sorted(_SECTIONS - set(sections))
    unknown = sorted(set(sections) - _SECTIONS)
    if missing or unknown:
        raise VocabularyError(
            f"sections: missing {', '.join(missing) or 'none'}; "
            f"unknown {', '.join(unknown) or 'none'}"
        )
    intents, intent_weights, phrasings = _intents(sections["intents"])
    ambiguous = _ambiguous(sections["ambiguous"], intents)
    slots = {
        name: _strings(values, f"slots.{name}")
        for name, values in _mapping(sections["slots"], "slots").items()
    }
    _check_templates(phrasings, ambiguous, slots)
    amount_prefixes, amount_values = _amounts(sections["amounts"])
    fillers = _mapping(sections["fillers"], "fillers")
    channels, channel_weights = _channels(sections["channels"])
    locales, locale_weights = _weights(sections["locales"], "locales")
    return Vocabulary(
        intents=intents,
        intent_weights=intent_weights,
        phrasings=phrasings,
        ambiguous=ambiguous,
        slots=slots,
        amount_prefixes=amount_prefixes,
        amount_values=amount_values,
        filler_prefixes=_strings(fillers.get("prefix"), "fillers.prefix"),
        filler_suffixes=_strings(fillers.get("suffix"), "fillers.suffix"),
        channels=channels,
        channel_weights=channel_weights,
        locales=locales,
        locale_weights=locale_weights,
        modern_markers=_strings(sections["modern_markers"], "modern_markers"),
    )


def parse_vocabulary(document: Any, source: str = VOCABULARY_FILE) -> Vocabulary:
    """A checked `Vocabulary` from the parsed YAML `document` (read from `source`).

    Raises:
        VocabularyError: a section is missing or unknown; an intent lacks a weight or an
            era's phrasings; a weight is not a positive number; a template names an
            unknown slot; an ambiguous query names an unknown intent, or an intent has
            none. The message starts with `source` and says where.
    """
    try:
        return _vocabulary(_mapping(document, "the document"))
    except VocabularyError as exc:
        raise VocabularyError(f"{source}: {exc}") from None


@lru_cache(maxsize=1)
def load_vocabulary() -> Vocabulary:
    """The vocabulary packaged with `core.synthetic`, checked (read once per process).

    Raises:
        VocabularyError: the file is not valid YAML or not a usable vocabulary.
    """
    text = resources.files("core.synthetic").joinpath(VOCABULARY_FILE).read_text(encoding="utf-8")
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise VocabularyError(f"{VOCABULARY_FILE}: not valid YAML ({exc})") from None
    return parse_vocabulary(document, VOCABULARY_FILE)
