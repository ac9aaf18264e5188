"""Text normalization shared by the model families (our own scikit-learn transformer).

`TextNormalizer` sits at the head of every text pipeline. It is our own code pickled
inside each model artifact *by reference*: changing or removing it in a new image is
exactly the kind of change that can break or silently alter an old model, which is what
`core.compat` detects.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

_WHITESPACE = re.compile(r"\s+")
_DIGITS = re.compile(r"\d+(?:[.,]\d+)*")
_CURRENCY = re.compile(r"[$€£]")
_PUNCTUATION = re.compile(r"[^\w\s<>]")
_REPEATS = re.compile(r"(.)\1{2,}")


def normalize_text(
    text: str,
    *,
    lowercase: bool = True,
    strip_accents: bool = True,
    replace_numbers: bool = True,
    squeeze_repeats: bool = True,
) -> str:
    """Normalize one query: case, accents, amounts, punctuation, repeated letters, spaces.

    Amounts and numbers become the token `<num>` so "send $25" and "send 40" look alike
    to the vectorizer; "plssss" becomes "pls" so elongated typing does not split the
    vocabulary.
    """
    out = text
    if strip_accents:
        out = unicodedata.normalize("NFKD", out)
        out = "".join(ch for ch in out if not unicodedata.combining(ch))
    if lowercase:
        out = out.lower()
    if replace_numbers:
        out = _CURRENCY.sub(" ", out)
        out = _DIGITS.sub(" <num> ", out)
    out = _PUNCTUATION.sub(" ", out)
    if squeeze_repeats:
        out = _REPEATS.sub(r"\1", out)
    return _WHITESPACE.sub(" ", out).strip()


def as_text_list(texts: Any) -> list[str]:
    """Turn what a pipeline may receive into a list of strings.

    Accepts a sequence of strings, a 1-D array, a pandas Series, or a one-column
    DataFrame (what MLflow's pyfunc passes). `None` becomes the empty string.
    """
    if hasattr(texts, "columns") and hasattr(texts, "iloc"):  # a DataFrame
        if len(texts.columns) != 1:
            column = "text" if "text" in texts.columns else texts.columns[0]
            texts = texts[column]
        else:
            texts = texts.iloc[:, 0]
    if isinstance(texts, str):
        raise TypeError("expected a sequence of texts, got a single string")
    items: Iterable[Any] = texts.tolist() if hasattr(texts, "tolist") else texts
    return ["" if item is None else str(item) for item in items]


class TextNormalizer(TransformerMixin, BaseEstimator):
    """A stateless scikit-learn transformer applying `normalize_text` to every input.

    Parameters mirror `normalize_text`; they are constructor arguments so they show up in
    `get_params()` and are logged with the model's hyper-parameters.
    """

    def __init__(
        self,
        lowercase: bool = True,
        strip_accents: bool = True,
        replace_numbers: bool = True,
        squeeze_repeats: bool = True,
    ) -> None:
        self.lowercase = lowercase
        self.strip_accents = strip_accents
        self.replace_numbers = replace_numbers
        self.squeeze_repeats = squeeze_repeats

    def fit(self, texts: Any, y: Any = None) -> TextNormalizer:  # noqa: ARG002 (scikit-learn API)
        """Nothing to learn; present for the scikit-learn API."""
        return self

    def transform(self, texts: Any) -> np.ndarray:
        """Return the normalized texts as a 1-D object array."""
        return np.array(
            [
                normalize_text(
                    text,
                    lowercase=self.lowercase,
                    strip_accents=self.strip_accents,
                    replace_numbers=self.replace_numbers,
                    squeeze_repeats=self.squeeze_repeats,
                )
                for text in as_text_list(texts)
            ],
            dtype=object,
        )

    def __sklearn_tags__(self) -> Any:
        """Declare string input so scikit-learn's validation does not expect numbers."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
