"""Holdout evaluation of a fitted classifier: accuracy, per-class accuracy, confusion matrix."""

from __future__ import annotations

import io
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix


@dataclass(frozen=True)
class Evaluation:
    """How a model did on a holdout, per class and overall."""

    rows: int
    accuracy: float
    labels: tuple[str, ...]
    per_class_accuracy: dict[str, float]
    per_class_support: dict[str, int]
    confusion: tuple[tuple[int, ...], ...]

    def metrics(self) -> dict[str, float]:
        """Flat MLflow metrics: overall accuracy, holdout size, accuracy per class."""
        out = {"holdout_accuracy": self.accuracy, "holdout_rows": float(self.rows)}
        out.update({f"accuracy.{label}": acc for label, acc in self.per_class_accuracy.items()})
        return out

    def per_class_json(self) -> bytes:
        """Per-class accuracy and support as a JSON document (an MLflow artifact)."""
        rows = [
            {
                "label": label,
                "accuracy": self.per_class_accuracy[label],
                "support": self.per_class_support[label],
            }
            for label in self.labels
        ]
        return json.dumps({"accuracy": self.accuracy, "classes": rows}, indent=2).encode()


def evaluate(
    model: Any, texts: Sequence[str], truth: Sequence[str], labels: Sequence[str]
) -> Evaluation:
    """Predict `texts` with `model` and compare with `truth`.

    Per-class accuracy is the share of a class's rows predicted as that class (recall);
    classes without holdout rows get NaN accuracy and support 0.
    """
    truth_arr = np.asarray(list(truth), dtype=object)
    predicted = np.asarray(model.predict(list(texts)), dtype=object)
    label_list = list(labels)
    per_class: dict[str, float] = {}
    support: dict[str, int] = {}
    for label in label_list:
        mask = truth_arr == label
        support[label] = int(mask.sum())
        per_class[label] = float((predicted[mask] == label).mean()) if mask.any() else float("nan")
    matrix = (
        confusion_matrix(truth_arr, predicted, labels=label_list)
        if len(truth_arr)
        else (np.zeros((len(label_list), len(label_list)), dtype=int))
    )
    accuracy = float((predicted == truth_arr).mean()) if len(truth_arr) else float("nan")
    return Evaluation(
        rows=len(truth_arr),
        accuracy=accuracy,
        labels=tuple(label_list),
        per_class_accuracy=per_class,
        per_class_support=support,
        confusion=tuple(tuple(int(v) for v in row) for row in matrix),
    )


def confusion_matrix_png(evaluation: Evaluation, title: str = "holdout confusion matrix") -> bytes:
    """Render the confusion matrix as a PNG (no global pyplot state is touched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    matrix = np.asarray(evaluation.confusion)
    size = max(4.0, 0.55 * len(evaluation.labels) + 2)
    figure = Figure(figsize=(size + 1, size))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(evaluation.labels))
    axes.set_xticks(list(ticks), evaluation.labels, rotation=60, ha="right", fontsize=8)
    axes.set_yticks(list(ticks), evaluation.labels, fontsize=8)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(f"{title} (accuracy {evaluation.accuracy:.1%})")
    threshold = matrix.max() / 2 if matrix.size and matrix.max() else 0
    for i, row in enumerate(matrix):
        for j, value in enumerate(row):
            if value:
                color = "white" if value > threshold else "black"
                axes.text(j, i, str(value), ha="center", va="center", fontsize=7, color=color)
    figure.tight_layout()
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()
