"""The `faq-retriever` model family: an embedder of user queries and FAQ answers.

A `FaqRetriever` embeds texts into a small dense space: our own `TextNormalizer`
(models/text.py), TF-IDF features (word n-grams, optionally character n-grams), a
TruncatedSVD projection and L2 normalisation, all fitted on the training queries. The
serving index embeds the FAQ answer corpus (the `faq_answers` source table) with the same
version and answers a query with its nearest answers by cosine (`embed` gives unit rows,
so cosine is a dot product). `predict` gives the intent whose centroid (the mean
embedding of that intent's training queries) is nearest: a label per text, so holdout
accuracy, golden predictions and `core.compat` work as for the classifier.

Users' phrasing drifts (see create_data.py) and so do the answers' wordings: an embedder
fitted on old queries has never seen the new terms ("zap", "nova", "pocket") and places
new queries and new answers badly. `OLDER_CONFIG` (all history, word unigrams, fewer
dimensions) and `RECENT_CONFIG` (last 60 days, word + character n-grams; the family
default) are compared in tests/models/test_faq_retriever.py with `hit_rate_at_k`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, clone
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline

from core.errors import DataError
from models import catalog
from models.intent_classifier import INTENT_LABELS
from models.text import TextNormalizer, as_text_list
from models.training import TrainingSplit, split_for_training

NAME = catalog.FAQ_RETRIEVER

#: The labels `predict` gives (the intents of the source tables, see create_data.py).
LABELS: tuple[str, ...] = INTENT_LABELS

#: Fixed inputs whose predictions (nearest intent) are recorded at registration and
#: re-checked by core.compat under every new image. Never edit an entry: add new ones at
#: the end only if you accept that older versions' golden digests stop being comparable.
GOLDEN_INPUTS: tuple[str, ...] = (
    "how do i check my balance",
    "whats my pocket looking like",
    "how much can i spend this week",
    "how do i send money to a friend",
    "zap 50 to priya",
    "wire money abroad",
    "my debit card was stolen",
    "lock my nova asap",
    "how do i reset my password",
    "otp never arrives",
    "passkey not working",
    "change the address on file",
    "update my addy",
    "open a savings account for my child",
    "create a new vault",
    "close the joint account",
    "cancel nova premium",
    "unauthorized charge on my statement",
    "sus netflix thing in my feed",
    "current home loan interest rates",
    "bnpl fees",
    "speak to a representative",
    "the chatbot doesnt get it",
    "",
    "???",
)


class FaqRetrieverConfig(BaseModel):
    """Hyper-parameters of the FAQ retriever (frozen, unknown keys refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    training_window_days: int | None = Field(
        default=60,
        ge=1,
        description="fit on the last N days of the snapshot (None = all history)",
    )
    analyzer: Literal["word", "word+char"] = Field(
        default="word+char", description="word n-grams, or word + character n-grams"
    )
    word_ngram_max: int = Field(default=2, ge=1, le=3, description="longest word n-gram")
    char_ngram_max: int = Field(
        default=5, ge=3, le=6, description="longest character n-gram (from 2, word-bounded)"
    )
    min_df: int = Field(default=1, ge=1)
    max_features: int | None = Field(default=50_000, ge=100)
    sublinear_tf: bool = True
    dims: int = Field(
        default=128, ge=2, le=1_024, description="embedding dimensions (TruncatedSVD)"
    )
    holdout_days: int = Field(
        default=21, ge=1, description="the holdout comes from the last N days"
    )
    holdout_fraction: float = Field(default=0.5, gt=0, lt=1)
    seed: int = 0


#: An older configuration: all history, word unigrams, 64 dimensions.
OLDER_CONFIG = FaqRetrieverConfig(
    training_window_days=None, analyzer="word", word_ngram_max=1, dims=64
)
#: The recent configuration (the family default): last 60 days, word + char n-grams.
RECENT_CONFIG = FaqRetrieverConfig()


def build_features(config: FaqRetrieverConfig) -> Pipeline:
    """The unfitted sparse feature pipeline of `config`: normalizer, then TF-IDF."""
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, config.word_ngram_max),
        min_df=config.min_df,
        max_features=config.max_features,
        sublinear_tf=config.sublinear_tf,
        token_pattern=r"(?u)<num>|\b\w+\b",  # noqa: S106 - a regex, not a password
    )
    features: BaseEstimator = word
    if config.analyzer == "word+char":
        char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, config.char_ngram_max),
            min_df=config.min_df,
            max_features=config.max_features,
            sublinear_tf=config.sublinear_tf,
        )
        features = FeatureUnion([("word", word), ("char", char)])
    return Pipeline([("normalize", TextNormalizer()), ("features", features)])


def _unit_rows(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rows scaled to length 1, and a mask of the rows that were zero (left as zero)."""
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    zero = norms[:, 0] < 1e-12
    return matrix / np.where(zero[:, None], 1.0, norms), zero


class FaqRetriever(BaseEstimator):
    """An embedder fitted on query texts, with one centroid per intent.

    Fitted attributes: `features_` (the TF-IDF pipeline), `svd_`, `classes_` (intent
    labels, sorted), `centroids_` (one unit row per class) and `fallback_` (the unit
    mean embedding of the training texts: what a text without any known term embeds as,
    so every row `embed` returns has length 1).
    """

    def __init__(self, features: Any = None, dims: int = 128, seed: int = 0) -> None:
        self.features = features
        self.dims = dims
        self.seed = seed

    def fit(self, texts: Any, labels: Any) -> FaqRetriever:
        """Fit the features and the projection on `texts`; average each label's rows."""
        items = as_text_list(texts)
        truth = np.asarray([str(label) for label in labels], dtype=object)
        self.features_ = clone(self.features).fit(items)
        sparse = self.features_.transform(items)
        dims = max(1, min(self.dims, sparse.shape[1] - 1, len(items) - 1))
        self.svd_ = TruncatedSVD(n_components=dims, random_state=self.seed).fit(sparse)
        embedded, _ = _unit_rows(self.svd_.transform(sparse))
        mean, zero = _unit_rows(embedded.mean(axis=0, keepdims=True))
        self.fallback_ = np.eye(1, dims)[0] if zero[0] else mean[0]
        self.classes_ = np.unique(truth)
        centroids = np.vstack([embedded[truth == label].mean(axis=0) for label in self.classes_])
        self.centroids_, _ = _unit_rows(centroids)
        return self

    @property
    def embedding_dims(self) -> int:
        """The width of the rows `embed` returns (`dims`, or fewer on a tiny training set)."""
        return int(self.svd_.n_components)

    def embed(self, texts: Sequence[str] | Any) -> np.ndarray:
        """Embed texts: float32, shape (n, dims), every row of length 1, deterministic."""
        items = as_text_list(texts)
        if not items:
            return np.zeros((0, self.embedding_dims), dtype=np.float32)
        unit, zero = _unit_rows(self.svd_.transform(self.features_.transform(items)))
        unit[zero] = self.fallback_
        return np.ascontiguousarray(unit, dtype=np.float32)

    def predict(self, texts: Sequence[str] | Any) -> list[str]:
        """The intent of the nearest centroid (cosine) for each text."""
        vectors = self.embed(texts).astype(np.float64)
        if not len(vectors):
            return []
        nearest = np.argmax(vectors @ self.centroids_.T, axis=1)
        return [str(self.classes_[i]) for i in nearest]

    def __sklearn_tags__(self) -> Any:
        """Declare string input, as the text pipelines do."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


def split(frame: pd.DataFrame, config: FaqRetrieverConfig) -> TrainingSplit:
    """Split a validated snapshot into training window and recent holdout per `config`.

    The same split as the classifier's (models.training): with the same seed, both
    families and every configuration are evaluated on the same recent rows.

    Raises:
        DataError: the window holds no rows or a single class.
    """
    return split_for_training(
        frame,
        window_days=config.training_window_days,
        holdout_days=config.holdout_days,
        holdout_fraction=config.holdout_fraction,
        seed=config.seed,
    )


def fit(train: pd.DataFrame, config: FaqRetrieverConfig) -> FaqRetriever:
    """Fit a retriever for `config` on the `text`/`intent` columns of `train`."""
    retriever = FaqRetriever(build_features(config), dims=config.dims, seed=config.seed)
    return retriever.fit(train["text"].astype(str).tolist(), train["intent"].astype(str).tolist())


def params_of(config: FaqRetrieverConfig) -> dict[str, Any]:
    """The config as flat MLflow params (None shown as the string 'None')."""
    return {key: ("None" if value is None else value) for key, value in config.model_dump().items()}


def hit_rate_at_k(
    retriever: FaqRetriever, queries: pd.DataFrame, corpus: pd.DataFrame, k: int
) -> float:
    """Share of `queries` whose top `k` corpus answers (by cosine) include their intent.

    `queries` and `corpus` need `text` and `intent` columns (the corpus: the
    `faq_answers` table as `core.source.read_faq_answers` returns it). Ties keep the
    corpus order. The serving index answers with the same search.

    Raises:
        DataError: k < 1, or no queries or no answers.
    """
    if k < 1:
        raise DataError(f"k must be >= 1, got {k}")
    if queries.empty or corpus.empty:
        raise DataError("hit rate needs at least one query and one answer")
    scores = retriever.embed(queries["text"].tolist()) @ retriever.embed(corpus["text"].tolist()).T
    top = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    intents = corpus["intent"].astype(str).to_numpy()[top]
    truth = queries["intent"].astype(str).to_numpy()[:, None]
    return float((intents == truth).any(axis=1).mean())
