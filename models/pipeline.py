"""Training a model family on a source snapshot: validate, split, fit, evaluate.

The steps are separate functions so Prefect tasks can wrap one each (flows/train.py):
`describe_snapshot` (validate + hash), `split_snapshot`, `fit_model`, `evaluate_model`,
then `assemble` bundles their results. `train_family` chains them for tests and scripts.
Registering the result is `models.registration`. Nothing here reads a database or MLflow.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import pandas as pd

from models import ModelFamily
from models.evaluation import Evaluation, evaluate
from models.training import TrainingSplit, snapshot_digest, validate_training_frame


@dataclass(frozen=True)
class SnapshotInfo:
    """A validated data snapshot: size, content hash and time range."""

    rows: int
    digest: str
    first_at: datetime
    last_at: datetime
    classes: int


@dataclass(frozen=True)
class TrainedModel:
    """A fitted model with everything needed to register it."""

    family: str
    config: Any
    model: Any
    snapshot: SnapshotInfo
    window: str
    train_rows: int
    evaluation: Evaluation


def describe_snapshot(frame: pd.DataFrame, family: ModelFamily) -> SnapshotInfo:
    """Validate a snapshot for `family` and hash it.

    Raises:
        DataError: empty, missing columns, unknown labels, empty texts or one class.
    """
    validate_training_frame(frame, family.labels)
    created = pd.to_datetime(frame["created_at"], utc=True)
    return SnapshotInfo(
        rows=len(frame),
        digest=snapshot_digest(frame),
        first_at=created.min().to_pydatetime(),
        last_at=created.max().to_pydatetime(),
        classes=int(frame["intent"].nunique()),
    )


def split_snapshot(frame: pd.DataFrame, family: ModelFamily, config: Any) -> TrainingSplit:
    """The training window and recent holdout of `config`.

    Raises:
        DataError: the window holds no rows or one class.
    """
    return family.split(frame, config)


def fit_model(split: TrainingSplit, family: ModelFamily, config: Any) -> Any:
    """Fit the family's estimator on the training part of `split`."""
    return family.fit(split.train, config)


def evaluate_model(model: Any, split: TrainingSplit, family: ModelFamily) -> Evaluation:
    """Score `model` on the holdout (test/demo faulty models: their clean pipeline)."""
    # A faulty test/demo model wraps its real pipeline as `clean_estimator`: the holdout
    # measures what was learned, not the injected faults.
    scorer = getattr(model, "clean_estimator", model)
    return evaluate(
        scorer, split.holdout["text"].tolist(), split.holdout["intent"].tolist(), family.labels
    )


def assemble(
    family: ModelFamily,
    config: Any,
    model: Any,
    snapshot: SnapshotInfo,
    split: TrainingSplit,
    evaluation: Evaluation,
) -> TrainedModel:
    """Bundle the results of the training steps."""
    return TrainedModel(
        family=family.name,
        config=config,
        model=model,
        snapshot=snapshot,
        window=split.window_label,
        train_rows=len(split.train),
        evaluation=evaluation,
    )


def train_family(frame: pd.DataFrame, family: ModelFamily, config: Any) -> TrainedModel:
    """Validate, split, fit and evaluate in one call (what the train flow does step by step).

    Raises:
        DataError: see `describe_snapshot` and `split_snapshot`.
    """
    snapshot = describe_snapshot(frame, family)
    split = split_snapshot(frame, family, config)
    model = fit_model(split, family, config)
    return assemble(family, config, model, snapshot, split, evaluate_model(model, split, family))
