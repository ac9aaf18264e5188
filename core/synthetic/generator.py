"""Deterministic synthetic banking-assistant queries that drift over time.

Row `index` of a seed is drawn from its own seeded RNG, so it is the same in every run
whatever the number of rows asked: a re-run inserts nothing twice and a larger count
only adds rows. Phrasings move from "classic" to "modern" (app-era) vocabulary over the
time range, so a model trained on recent rows beats one trained on old rows on recent
traffic. What is said comes from `vocabulary.yaml`; how it is drawn, from here.
"""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pandas as pd

from core.errors import DataError
from core.source import QUERY_COLUMNS
from core.synthetic.vocabulary import Era, Vocabulary, load_vocabulary

DEFAULT_ROWS = 6_000
DEFAULT_SEED = 42
DEFAULT_DAYS = 180
#: Share of rows that are a vague query several intents ask alike.
AMBIGUOUS_SHARE = 0.08
#: Share of rows whose stored label is wrong (as with any human-labelled data).
LABEL_NOISE = 0.02
KEYBOARD_NEIGHBOURS = "qwertyuiopasdfghjklzxcvbnm"


def modern_share(position: float) -> float:
    """Share of modern phrasings at `position` in the time range (0 = oldest, 1 = newest).

    None before 30% of the range, then rising linearly to 85% at the newest end.
    """
    return 0.0 if position < 0.3 else min(0.85, 0.85 * (position - 0.3) / 0.6)


def _fill(template: str, rng: random.Random, vocabulary: Vocabulary) -> str:
    # Every slot is drawn, used or not, so each row consumes the RNG the same way.
    values = {name: rng.choice(options) for name, options in vocabulary.slots.items()}
    values["amount"] = rng.choice(vocabulary.amount_prefixes) + str(
        rng.choice(vocabulary.amount_values)
    )
    return template.format(**values)


def _typo(word: str, rng: random.Random) -> str:
    if len(word) < 3:
        return word
    i = rng.randrange(len(word) - 1)
    kind = rng.randrange(4)
    if kind == 0:  # swap two neighbours
        return word[:i] + word[i + 1] + word[i] + word[i + 2 :]
    if kind == 1:  # drop a character
        return word[:i] + word[i + 1 :]
    if kind == 2:  # double a character
        return word[:i] + word[i] + word[i:]
    return word[:i] + rng.choice(KEYBOARD_NEIGHBOURS) + word[i + 1 :]  # fat finger


def add_noise(text: str, rng: random.Random, vocabulary: Vocabulary | None = None) -> str:
    """Make a clean phrasing look typed by a person: fillers, typos, casing, punctuation."""
    fillers = vocabulary if vocabulary is not None else load_vocabulary()
    words = [_typo(w, rng) if rng.random() < 0.06 else w for w in text.split()]
    if rng.random() < 0.25:
        words.insert(0, rng.choice(fillers.filler_prefixes) + rng.choice(["", ",", "!"]))
    if rng.random() < 0.3:
        words.append(rng.choice(fillers.filler_suffixes))
    out = " ".join(words)
    casing = rng.random()
    if casing < 0.25:
        out = out[:1].upper() + out[1:]
    elif casing < 0.3:
        out = out.upper()
    if rng.random() < 0.2 and not out.endswith(("?", "!")):
        out += rng.choice(["?", ".", "..."])
    return out


def query_id(seed: int, index: int) -> str:
    """The deterministic id of row `index` for `seed`."""
    return "q_" + hashlib.sha256(f"{seed}:{index}".encode()).hexdigest()[:16]


@dataclass(frozen=True)
class GeneratedQuery:
    """One synthetic row of the source table."""

    query_id: str
    text: str
    intent: str
    created_at: datetime
    channel: str
    locale: str


def generate_query(
    seed: int, index: int, end: datetime, days: int, vocabulary: Vocabulary | None = None
) -> GeneratedQuery:
    """Row `index` for `seed`: the same in every run, whatever the number of rows asked."""
    words = vocabulary if vocabulary is not None else load_vocabulary()
    rng = random.Random(f"stateful-ml:{seed}:{index}")
    # Volume grows over time: more rows near the end of the range.
    position = rng.random() ** 0.8
    created_at = end - timedelta(seconds=round((1.0 - position) * days * 86_400))
    intent = rng.choices(words.intents, weights=words.intent_weights)[0]
    era: Era = "modern" if rng.random() < modern_share(position) else "classic"
    if rng.random() < AMBIGUOUS_SHARE:
        template = rng.choice(words.ambiguous[intent])
    else:
        template = rng.choice(words.phrasings[intent][era])
    text = add_noise(_fill(template, rng, words), rng, words)
    if rng.random() < LABEL_NOISE:
        intent = rng.choice(words.intents)
    return GeneratedQuery(
        query_id=query_id(seed, index),
        text=text,
        intent=intent,
        created_at=created_at,
        channel=rng.choices(words.channels, weights=words.channel_weights[era])[0],
        locale=rng.choices(words.locales, weights=words.locale_weights)[0],
    )


def default_end() -> datetime:
    """The end of the generated time range: today's midnight UTC (stable within a day)."""
    now = datetime.now(UTC)
    return now.replace(hour=0, minute=0, second=0, microsecond=0)


def check_args(rows: int, days: int, end: datetime | None) -> datetime:
    """The generation's end as aware UTC (default: `default_end()`), arguments checked.

    Raises:
        DataError: rows < 0, days < 1 or a naive `end`.
    """
    if rows < 0:
        raise DataError(f"rows must be >= 0, got {rows}")
    if days < 1:
        raise DataError(f"days must be >= 1, got {days}")
    if end is None:
        return default_end()
    if end.tzinfo is None:
        raise DataError("end must be a timezone-aware datetime")
    return end.astimezone(UTC)


def generate_queries(
    rows: int,
    seed: int,
    end: datetime | None = None,
    days: int = DEFAULT_DAYS,
    vocabulary: Vocabulary | None = None,
) -> pd.DataFrame:
    """Generate `rows` synthetic queries over the `days` before `end`, deterministically.

    Columns: query_id, text, intent, created_at (aware UTC), channel, locale; sorted by
    created_at. `end` defaults to today's midnight UTC; `vocabulary` to the packaged one.

    Raises:
        DataError: rows < 0, days < 1 or a naive `end`.
        VocabularyError: the packaged vocabulary is unusable (see `load_vocabulary`).
    """
    end_utc = check_args(rows, days, end)
    words = vocabulary if vocabulary is not None else load_vocabulary()
    records = [generate_query(seed, i, end_utc, days, words).__dict__ for i in range(rows)]
    frame = pd.DataFrame.from_records(
        records, columns=[*QUERY_COLUMNS, "channel", "locale"], nrows=rows
    )
    frame["created_at"] = pd.to_datetime(frame["created_at"], utc=True).astype(
        "datetime64[ns, UTC]"
    )
    return frame.sort_values(["created_at", "query_id"], kind="stable").reset_index(drop=True)
