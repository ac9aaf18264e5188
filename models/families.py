"""Model families: how each model is built, trained and checked (golden inputs).

`FAMILIES` maps a registered model name to its `ModelFamily`; flows iterate over
`Settings.MODELS` and look each one up with `get_family`. What a family reads when it
serves (`state`) and its hand-off label come from `models.catalog`, which the controller
and the router read without importing the estimators (scikit-learn) defined here.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
from pydantic import BaseModel

from core.errors import NotFoundError
from models import catalog, faq_retriever, intent_classifier
from models.training import TrainingSplit


@dataclass(frozen=True)
class ModelFamily:
    """Everything the flows need to know to train and check one model family."""

    name: str
    config_type: type[BaseModel]
    default_config: BaseModel
    labels: tuple[str, ...]
    golden_inputs: tuple[str, ...]
    source_modules: tuple[str, ...]
    split: Callable[[pd.DataFrame, Any], TrainingSplit]
    fit: Callable[[pd.DataFrame, Any], Any]
    params_of: Callable[[Any], dict[str, Any]]
    state: str | None = None
    """The kind of release state a version of this family reads when it serves (for
    example `answer_index`: core.release_state builds it), or None: it reads none."""
    handoff_label: str | None = None
    """The output that means the user asked for a person (the canary's hand-off rate:
    a user's next query classified so), or None: this family declares none."""

    def parse_config(self, values: BaseModel | dict[str, Any] | None) -> Any:
        """A validated config of this family: the default, a dict of overrides, or as given.

        Raises:
            pydantic.ValidationError: an override is unknown or out of range.
        """
        if values is None:
            return self.default_config
        if isinstance(values, self.config_type):
            return values
        data = values.model_dump() if isinstance(values, BaseModel) else dict(values)
        return self.config_type.model_validate({**self.default_config.model_dump(), **data})

    def source_hash(self) -> str:
        """sha256 over the source files of this family's modules (what a pickle depends on)."""
        digest = hashlib.sha256()
        for module in sorted(self.source_modules):
            spec = importlib.util.find_spec(module)
            if spec is None or spec.origin is None:
                raise NotFoundError(f"module {module} of model family {self.name} not found")
            with open(spec.origin, "rb") as handle:
                digest.update(module.encode() + b"\0" + handle.read() + b"\0")
        return digest.hexdigest()


INTENT_CLASSIFIER = ModelFamily(
    name=intent_classifier.NAME,
    config_type=intent_classifier.IntentClassifierConfig,
    default_config=intent_classifier.RECENT_CONFIG,
    labels=intent_classifier.INTENT_LABELS,
    golden_inputs=intent_classifier.GOLDEN_INPUTS,
    source_modules=("models.intent_classifier", "models.text"),
    split=intent_classifier.split,
    fit=intent_classifier.fit,
    params_of=intent_classifier.params_of,
    handoff_label=catalog.HANDOFF_LABELS.get(intent_classifier.NAME),
    state=catalog.STATE_KINDS.get(intent_classifier.NAME),
)

FAQ_RETRIEVER = ModelFamily(
    name=faq_retriever.NAME,
    config_type=faq_retriever.FaqRetrieverConfig,
    default_config=faq_retriever.RECENT_CONFIG,
    labels=faq_retriever.LABELS,
    golden_inputs=faq_retriever.GOLDEN_INPUTS,
    # what its pickle and module import of ours: a change to any of them is a new source
    source_modules=(
        "models.faq_retriever",
        "models.intent_classifier",
        "models.text",
        "models.training",
    ),
    split=faq_retriever.split,
    fit=faq_retriever.fit,
    params_of=faq_retriever.params_of,
    handoff_label=catalog.HANDOFF_LABELS.get(faq_retriever.NAME),
    state=catalog.STATE_KINDS.get(faq_retriever.NAME),
)

FAMILIES: dict[str, ModelFamily] = {
    INTENT_CLASSIFIER.name: INTENT_CLASSIFIER,
    FAQ_RETRIEVER.name: FAQ_RETRIEVER,
}


def get_family(name: str) -> ModelFamily:
    """The family registered as `name`.

    Raises:
        NotFoundError: naming the known families.
    """
    try:
        return FAMILIES[name]
    except KeyError:
        raise NotFoundError(
            f"unknown model family {name!r}: known families are {', '.join(sorted(FAMILIES))}"
        ) from None


__all__ = [
    "FAMILIES",
    "FAQ_RETRIEVER",
    "INTENT_CLASSIFIER",
    "ModelFamily",
    "get_family",
]
