"""What a trained model is registered with: lineage tags, params, metrics, artifacts, report.

`register_trained` hands a `TrainedModel` to any `Registrar` (`core.registry.ModelRegistry`
is one) with everything it should record. The registrar and the registered version are
described here as protocols, so this package imports nothing of the registry: `models`
is a leaf, and the arrow goes one way (tasks and tests pass the real registry in).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from models import ModelFamily
from models.evaluation import confusion_matrix_png
from models.pipeline import TrainedModel

_Info = TypeVar("_Info")
_Info_co = TypeVar("_Info_co", covariant=True)


class Registrar(Protocol[_Info_co]):
    """Registers a fitted model as a new version (`core.registry.ModelRegistry.register`)."""

    @property
    def image_version(self) -> str:
        """The running image version (the default lineage of a new version)."""
        ...

    def register(
        self,
        name: str,
        model: Any,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        golden_inputs: Sequence[str],
        artifacts: Mapping[str, bytes] | None = None,
        description: str = "",
    ) -> _Info_co:
        """Log `model` and register it as a new version of `name`; return the version."""
        ...


class RegisteredVersion(Protocol):
    """What the training report reads of a registered version (`ModelVersionInfo`).

    Read-only properties, so a frozen dataclass satisfies it.
    """

    @property
    def name(self) -> str: ...
    @property
    def version(self) -> str: ...
    @property
    def image_version(self) -> str: ...
    @property
    def tags(self) -> Mapping[str, str]: ...
    @property
    def aliases(self) -> Sequence[str]: ...
    @property
    def artifact_sha256(self) -> str: ...
    @property
    def golden_digest(self) -> str: ...


def lineage_tags(trained: TrainedModel, image_version: str) -> dict[str, str]:
    """The data lineage tags of a trained model (the registry adds the environment's)."""
    snapshot = trained.snapshot
    return {
        "image_version": image_version,
        "data_snapshot_hash": snapshot.digest,
        "data_snapshot_rows": str(snapshot.rows),
        "data_snapshot_range": (
            f"{snapshot.first_at:%Y-%m-%dT%H:%M:%SZ}..{snapshot.last_at:%Y-%m-%dT%H:%M:%SZ}"
        ),
        "training_window": trained.window,
        # a family whose config has no training window records an empty value
        "training_window_days": str(getattr(trained.config, "training_window_days", "")),
        "training_rows": str(trained.train_rows),
        "holdout_accuracy": f"{trained.evaluation.accuracy:.4f}",
    }


def evaluation_artifacts(trained: TrainedModel) -> dict[str, bytes]:
    """The run artifacts of a training: confusion matrix, per-class accuracy, config."""
    evaluation = trained.evaluation
    return {
        "evaluation/confusion_matrix.png": confusion_matrix_png(evaluation),
        "evaluation/per_class_accuracy.json": evaluation.per_class_json(),
        "evaluation/config.json": trained.config.model_dump_json(indent=2).encode(),
    }


def register_trained(
    registrar: Registrar[_Info],
    trained: TrainedModel,
    family: ModelFamily,
    *,
    image_version: str | None = None,
    name: str | None = None,
) -> _Info:
    """Register a trained model with its params, metrics, evaluation artifacts and lineage.

    `name` defaults to the family's name (tests register e.g. faulty variants elsewhere);
    `image_version` to the registrar's.

    Artifacts: `evaluation/confusion_matrix.png`, `evaluation/per_class_accuracy.json`,
    `evaluation/config.json`, plus the model and golden predictions (see the registry).

    Raises:
        whatever the registrar raises (e.g. an MLflow error, which may be transient).
    """
    evaluation = trained.evaluation
    return registrar.register(
        name or family.name,
        trained.model,
        tags=lineage_tags(trained, image_version or registrar.image_version),
        params=family.params_of(trained.config),
        metrics={
            **evaluation.metrics(),
            "training_rows": float(trained.train_rows),
            "snapshot_rows": float(trained.snapshot.rows),
        },
        golden_inputs=list(family.golden_inputs),
        artifacts=evaluation_artifacts(trained),
        description=f"trained on {trained.window}, holdout accuracy {evaluation.accuracy:.1%}",
    )
