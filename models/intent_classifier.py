"""The `intent-classifier` model family: user query text -> banking intent.

A scikit-learn pipeline: our own `TextNormalizer` (models/text.py), TF-IDF features
(word n-grams, optionally character n-grams) and a logistic-regression classifier.
Hyper-parameters live in the frozen `IntentClassifierConfig`; `training_window_days`
trains on the last N days of the snapshot only, which matters because users' phrasing
drifts (see create_data.py).

`BASELINE_CONFIG` ("v1": all history, word unigrams) and `RECENT_CONFIG` ("v2": last 60
days, word + character n-grams) are the two configurations compared in
tests/models/test_intent_classifier.py; `RECENT_CONFIG` is the family default.

Test/demo-only knobs: `fault_rate` and `extra_latency_ms` wrap the pipeline in
`FaultyIntentClassifier`, which raises `InjectedFaultError` on a deterministic share of
inputs and sleeps per input. They exist so the router, shadow and canary code can be
exercised against REAL registered versions that fail or are slow. Never set them in a
production configuration.
"""

from __future__ import annotations

import hashlib
import time
from typing import Any, Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel, ConfigDict, Field
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.pipeline import FeatureUnion, Pipeline
from sklearn.svm import LinearSVC

from models import catalog
from models.text import TextNormalizer, as_text_list
from models.training import TrainingSplit, split_for_training

NAME = catalog.INTENT_CLASSIFIER

#: The labels this family predicts (the intents of the source table, see create_data.py).
INTENT_LABELS: tuple[str, ...] = (
    "check_balance",
    "transfer_money",
    "card_lost",
    "reset_password",
    "update_address",
    "open_account",
    "close_account",
    "dispute_charge",
    "loan_rates",
    "talk_to_agent",
)

#: The intent of a user who asks for a person: after an answer, a sign that it did not help
#: (the canary's hand-off rate, core.analysis).
HANDOFF_LABEL = catalog.HANDOFF_LABELS[NAME]

#: Fixed inputs whose predictions are recorded at registration and re-checked by
#: core.compat under every new image. Never edit an entry: add new ones at the end
#: only if you accept that older versions' golden digests stop being comparable.
GOLDEN_INPUTS: tuple[str, ...] = (
    "what is my checking balance",
    "how much is in my vacation pocket",
    "bal check on the pulse app",
    "transfer $250 to my landlord",
    "zap 20 to sam real quick",
    "i lost my debit card",
    "freeze my nova i think i dropped it",
    "I forgot my password!!",
    "face id stopped working",
    "i moved and need to update my address",
    "edit my addy to 12 elm street",
    "how do i open a new account",
    "sign me up for pulse",
    "i want to close my account",
    "delete my pulse profile",
    "there is a charge i do not recognize",
    "got double tapped at netflix",
    "what are your mortgage rates",
    "can i split 300 into 4",
    "let me talk to a human",
    "this bot is useless get me a real person",
    "Überweisung 50€ an Anna",
    "",
    "???",
    "plsssss help asap",
)


class IntentClassifierConfig(BaseModel):
    """Hyper-parameters of the intent classifier (frozen, unknown keys refused)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    training_window_days: int | None = Field(
        default=60,
        ge=1,
        description="train on the last N days of the snapshot (None = all history)",
    )
    word_ngram_max: int = Field(default=2, ge=1, le=3, description="longest word n-gram")
    char_ngrams: bool = Field(
        default=False, description="add character n-grams (2-5, word-bounded)"
    )
    min_df: int = Field(default=1, ge=1)
    max_features: int | None = Field(default=50_000, ge=100)
    sublinear_tf: bool = True
    C: float = Field(default=1.0, gt=0, description="inverse regularization strength")
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = Field(default=2_000, ge=100)
    holdout_days: int = Field(
        default=21, ge=1, description="the holdout comes from the last N days"
    )
    holdout_fraction: float = Field(default=0.5, gt=0, lt=1)
    seed: int = 0
    # --- test/demo-only knobs (see module docstring) -------------------------------
    fault_rate: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="TEST/DEMO ONLY: share of inputs on which predict raises",
    )
    extra_latency_ms: float = Field(
        default=0.0, ge=0, le=10_000, description="TEST/DEMO ONLY: sleep per input in predict"
    )

    @property
    def is_faulty(self) -> bool:
        """True when a test/demo-only fault knob is set."""
        return self.fault_rate > 0 or self.extra_latency_ms > 0


#: "v1": every day of history, word unigrams only.
BASELINE_CONFIG = IntentClassifierConfig(
    training_window_days=None, word_ngram_max=1, char_ngrams=False, C=1.0, class_weight=None
)
#: "v2": recent data only, word + character n-grams (the family default).
RECENT_CONFIG = IntentClassifierConfig()


class InjectedFaultError(RuntimeError):
    """Raised by `FaultyIntentClassifier` on the inputs its `fault_rate` selects."""


def would_fail(text: str, fault_rate: float) -> bool:
    """Whether an input is one a faulty model with `fault_rate` raises on (deterministic)."""
    if fault_rate <= 0:
        return False
    bucket = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "big") / 2**32
    return bucket < fault_rate


class FaultyIntentClassifier(ClassifierMixin, BaseEstimator):
    """TEST/DEMO ONLY: a pipeline that raises on some inputs and sleeps per input.

    `predict` sleeps `extra_latency_ms` per input, then raises `InjectedFaultError` if any
    input is selected by `would_fail(text, fault_rate)`; otherwise it predicts like the
    wrapped pipeline.
    """

    def __init__(
        self, pipeline: Any = None, fault_rate: float = 0.0, extra_latency_ms: float = 0.0
    ) -> None:
        self.pipeline = pipeline
        self.fault_rate = fault_rate
        self.extra_latency_ms = extra_latency_ms

    def fit(self, texts: Any, labels: Any) -> FaultyIntentClassifier:
        """Fit a clone of the wrapped pipeline."""
        self.pipeline_ = clone(self.pipeline).fit(as_text_list(texts), labels)
        self.classes_ = self.pipeline_.classes_
        return self

    def predict(self, texts: Any) -> np.ndarray:
        """Predict, after the injected latency; raise on selected inputs."""
        items = as_text_list(texts)
        if self.extra_latency_ms > 0:
            time.sleep(self.extra_latency_ms * len(items) / 1000.0)
        failing = [text for text in items if would_fail(text, self.fault_rate)]
        if failing:
            raise InjectedFaultError(
                f"injected fault on {len(failing)} of {len(items)} input(s) "
                f"(fault_rate={self.fault_rate})"
            )
        return self.pipeline_.predict(items)

    @property
    def clean_estimator(self) -> Any:
        """The fitted pipeline without injected faults (holdout scoring uses it)."""
        return self.pipeline_

    def __sklearn_tags__(self) -> Any:
        """Declare string input, as the wrapped pipeline does."""
        tags = super().__sklearn_tags__()
        tags.input_tags.string = True
        tags.input_tags.two_d_array = False
        return tags


def build_pipeline(config: IntentClassifierConfig) -> BaseEstimator:
    """An unfitted estimator for `config` (a Pipeline, wrapped if a fault knob is set)."""
    word = TfidfVectorizer(
        analyzer="word",
        ngram_range=(1, config.word_ngram_max),
        min_df=config.min_df,
        max_features=config.max_features,
        sublinear_tf=config.sublinear_tf,
        token_pattern=r"(?u)<num>|\b\w+\b",  # noqa: S106 - a regex, not a password
    )
    features: BaseEstimator = word
    if config.char_ngrams:
        char = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(2, 5),
            min_df=config.min_df,
            max_features=config.max_features,
            sublinear_tf=config.sublinear_tf,
        )
        features = FeatureUnion([("word", word), ("char", char)])
    pipeline = Pipeline(
        [
            ("normalize", TextNormalizer()),
            ("features", features),
            (
                "classify",
                LinearSVC(
                    C=config.C,
                    class_weight=config.class_weight,
                    max_iter=config.max_iter,
                    random_state=config.seed,
                ),
            ),
        ]
    )
    if config.is_faulty:
        return FaultyIntentClassifier(
            pipeline, fault_rate=config.fault_rate, extra_latency_ms=config.extra_latency_ms
        )
    return pipeline


def split(frame: pd.DataFrame, config: IntentClassifierConfig) -> TrainingSplit:
    """Split a validated snapshot into training window and recent holdout per `config`.

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


def fit(train: pd.DataFrame, config: IntentClassifierConfig) -> BaseEstimator:
    """Fit the pipeline for `config` on the `text`/`intent` columns of `train`."""
    model = build_pipeline(config)
    model.fit(train["text"].astype(str).tolist(), train["intent"].astype(str).to_numpy())
    return model


def params_of(config: IntentClassifierConfig) -> dict[str, Any]:
    """The config as flat MLflow params (None shown as the string 'None')."""
    return {key: ("None" if value is None else value) for key, value in config.model_dump().items()}
