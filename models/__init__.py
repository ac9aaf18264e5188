"""Model families: how each model is built, trained and checked (`models.families`), and
what the rest of the product knows of them without the estimators (`models.catalog`).

`from models import FAMILIES` (or `get_family`, `ModelFamily`, `INTENT_CLASSIFIER`,
`FAQ_RETRIEVER`) loads the families, and with them scikit-learn, on first use (PEP 562);
`stateful_models` and `handoff_labels` come from the catalog and load nothing heavy, so
the rollout controller's flow runs start without scikit-learn.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib import import_module
from typing import TYPE_CHECKING, Any

from models.catalog import handoff_labels, stateful_models

if TYPE_CHECKING:
    from models.families import (
        FAMILIES,
        FAQ_RETRIEVER,
        INTENT_CLASSIFIER,
        ModelFamily,
        get_family,
    )

_FAMILY_NAMES = frozenset(
    {"FAMILIES", "FAQ_RETRIEVER", "INTENT_CLASSIFIER", "ModelFamily", "get_family"}
)


class _FamiliesOnUse(Mapping[str, Any]):
    """`FAMILIES`, imported at its first read."""

    @staticmethod
    def _families() -> Mapping[str, Any]:
        families: Mapping[str, Any] = import_module("models.families").FAMILIES
        return families

    def __getitem__(self, name: str) -> Any:
        return self._families()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._families())

    def __len__(self) -> int:
        return len(self._families())


def families_on_use() -> Mapping[str, Any]:
    """The families as a mapping that imports them (and scikit-learn) when first read:
    for a registry opened by a flow that may never register or judge a version."""
    return _FamiliesOnUse()


def __getattr__(name: str) -> Any:
    """A name of `models.families`, imported now (AttributeError for any other)."""
    if name in _FAMILY_NAMES:
        return getattr(import_module("models.families"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "FAMILIES",
    "FAQ_RETRIEVER",
    "INTENT_CLASSIFIER",
    "ModelFamily",
    "families_on_use",
    "get_family",
    "handoff_labels",
    "stateful_models",
]
