"""What /predict and /answer ask of each model, run on the model pool.

- the classifier (a model that reads no state): `predict_one(text)` -> the intent;
- the retriever (a model that reads state, e.g. `faq-retriever`): `embed([text])`, then
  the top-k answers of the answer index of the version serving the user
  (`core.answer_index.AnswerIndex.top_k`). Its traffic row's output is the answer ids,
  best first, comma-separated (cut to the column width); its state_key names the index.

A registry version (`core.artifacts.LoadedModel`) wraps the fitted object in `.model`:
the retriever's `embed` is called on it; a predictor with its own `embed` (tests,
benchmarks) is called directly.
"""

from __future__ import annotations

import functools
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from core.answer_index import Answer, AnswerIndex
from core.artifacts import LoadedModel
from core.errors import DataError
from serving.batching import BatchFn, Reply, Work
from serving.model_cache import Predictor
from serving.model_calls import Served


@runtime_checkable
class Embedder(Protocol):
    """A model that maps texts to unit vectors (the retriever)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised float32 row per text."""
        ...


class ModelNotServedError(Exception):
    """The requested model is not one this environment ships (a client error)."""


@dataclass(frozen=True, slots=True)
class AnswerResult:
    """What /answer gives back: the intent, the top answers, and who served each."""

    request_id: str
    intent: str
    answers: list[Answer]
    served: dict[str, Served]


def answer_models(models: Sequence[str], stateful: Collection[str]) -> tuple[str, str]:
    """(classifier, retriever) of an environment: the first model of MODELS that reads no
    state, and the first that does.

    Raises:
        ModelNotServedError: MODELS lacks one of them.
    """
    classifier = next((m for m in models if m not in stateful), None)
    retriever = next((m for m in models if m in stateful), None)
    if classifier is None or retriever is None:
        missing = "a retriever (a model that reads state)" if retriever is None else "a classifier"
        raise ModelNotServedError(
            f"/answer needs {missing}, and this router serves MODELS={','.join(models)}; "
            "add faq-retriever (with its answer index built) and intent-classifier to MODELS"
        )
    return classifier, retriever


def embed(predictor: Predictor, texts: Sequence[str]) -> np.ndarray:
    """The embeddings of `texts` by a retriever version.

    Raises:
        DataError: the version is not an embedder (a classifier named as the retriever).
    """
    if isinstance(predictor, Embedder):
        return predictor.embed(texts)
    if isinstance(predictor, LoadedModel) and isinstance(predictor.model, Embedder):
        return predictor.model.embed(texts)
    raise DataError(f"version {predictor.version} has no embed(): it is not a retriever")


def _classify(
    predictor: Predictor, _index: AnswerIndex | None, texts: Sequence[str]
) -> list[Reply]:
    """The classifier's batch: one intent per text (value and logged output)."""
    return [(intent, intent) for intent in predictor.predict(list(texts))]


def classify(text: str) -> Work:
    """The classifier's work for `text`: its intent."""
    return Work("classify", text, _classify)


@functools.cache
def _retriever(k: int) -> BatchFn:
    """The retriever's batch for `k` answers: one `embed` of the texts, one index search."""

    def run(predictor: Predictor, index: AnswerIndex | None, texts: Sequence[str]) -> list[Reply]:
        if index is None:
            raise DataError(f"version {predictor.version} is served without its answer index")
        found = index.top_k(embed(predictor, texts), k)
        return [(answers, ",".join(a.answer_id for a in answers)) for answers in found]

    return run


def retrieve(text: str, k: int) -> Work:
    """The retriever's work for `text`: its `k` best answers in the version's index."""
    return Work(f"retrieve:{k}", text, _retriever(k))
