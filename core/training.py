"""Training a model family on a source snapshot, and registering the result with lineage.

The steps are separate functions so Prefect tasks can wrap one each (flows/train.py):
`describe_snapshot` (validate + hash), `split_snapshot`, `fit_model`, `evaluate_model`,
`register_trained`. `train_family` chains the pure steps for tests and scripts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pandas as pd

from models import ModelFamily
from models.evaluation import Evaluation, confusion_matrix_png, evaluate
from models.training import TrainingSplit, snapshot_digest, validate_training_frame

if TYPE_CHECKING:
    from core.registry import ModelRegistry, ModelVersionInfo


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
    scorer = getattr(model, "clean_estimator", model)
    return evaluate(
        scorer, split.holdout["text"].tolist(), split.holdout["intent"].tolist(), family.labels
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


def lineage_tags(trained: TrainedModel, image_version: str) -> dict[str, str]:
    """The data lineage tags of a trained model (the registry adds the environment's)."""
    return {
        "image_version": image_version,
        "data_snapshot_hash": trained.snapshot.digest,
        "data_snapshot_rows": str(trained.snapshot.rows),
        "data_snapshot_range": (
            f"{trained.snapshot.first_at:%Y-%m-%dT%H:%M:%SZ}..{trained.snapshot.last_at:%Y-%m-%dT%H:%M:%SZ}"
        ),
        "training_window": trained.window,
        "training_window_days": str(getattr(trained.config, "training_window_days", "")),
        "training_rows": str(trained.train_rows),
        "holdout_accuracy": f"{trained.evaluation.accuracy:.4f}",
    }


def register_trained(
    registry: ModelRegistry,
    trained: TrainedModel,
    family: ModelFamily,
    *,
    image_version: str | None = None,
    name: str | None = None,
) -> ModelVersionInfo:
    """Register a trained model with its params, metrics, evaluation artifacts and lineage.

    `name` defaults to the family's name (tests register e.g. faulty variants elsewhere).

    Artifacts: `evaluation/confusion_matrix.png`, `evaluation/per_class_accuracy.json`,
    `evaluation/config.json`, plus the model and golden predictions (see the registry).
    """
    evaluation = trained.evaluation
    config_json = trained.config.model_dump_json(indent=2).encode()
    return registry.register(
        name or family.name,
        trained.model,
        tags=lineage_tags(trained, image_version or registry.image_version),
        params=family.params_of(trained.config),
        metrics={
            **evaluation.metrics(),
            "training_rows": float(trained.train_rows),
            "snapshot_rows": float(trained.snapshot.rows),
        },
        golden_inputs=list(family.golden_inputs),
        artifacts={
            "evaluation/confusion_matrix.png": confusion_matrix_png(evaluation),
            "evaluation/per_class_accuracy.json": evaluation.per_class_json(),
            "evaluation/config.json": config_json,
        },
        description=f"trained on {trained.window}, holdout accuracy {evaluation.accuracy:.1%}",
    )


def training_report_markdown(info: ModelVersionInfo, trained: TrainedModel) -> str:
    """A markdown summary of a training run (Prefect artifact, demo output)."""
    evaluation = trained.evaluation
    lines = [
        f"# {info.name} v{info.version}",
        "",
        f"- image `{info.image_version}`, code `{info.tags.get('code_version', '?')}`, "
        f"python {info.tags.get('python_version', '?')}, "
        f"scikit-learn {info.tags.get('pkg.scikit-learn', '?')}",
        f"- data snapshot `{trained.snapshot.digest[:12]}` ({trained.snapshot.rows} rows), "
        f"training window {trained.window} ({trained.train_rows} rows)",
        f"- holdout accuracy **{evaluation.accuracy:.1%}** on {evaluation.rows} recent rows",
        f"- artifact sha256 `{info.artifact_sha256[:16]}`, golden digest "
        f"`{info.golden_digest[:16]}`",
        f"- aliases: {', '.join(info.aliases) or 'none'}",
        "",
        "| intent | accuracy | support |",
        "|---|---:|---:|",
    ]
    for label in evaluation.labels:
        accuracy = evaluation.per_class_accuracy[label]
        shown = "n/a" if accuracy != accuracy else f"{accuracy:.1%}"  # NaN: no holdout rows
        lines.append(f"| {label} | {shown} | {evaluation.per_class_support[label]} |")
    return "\n".join(lines) + "\n"
