"""Prefect tasks for training: each wraps one call of `models.pipeline` / `core.source`.

Only the source read does I/O and retries, and only on transient errors; a `DataError`
(empty table, one class, unknown labels) fails at once with its message.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pandas as pd
from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE

from config import Settings
from core.registry import ModelVersionInfo
from core.reporting import training_report_markdown
from models import ModelFamily, pipeline
from models.evaluation import Evaluation
from models.training import TrainingSplit
from tasks.policies import IO_TASK


@task(name="train-read-snapshot", **IO_TASK)
def read_snapshot(settings: Settings, until: datetime | None = None) -> pd.DataFrame:
    """The source table's rows (before `until`, if given), validated by the reader."""
    from core.source import read_queries

    return read_queries(settings, until=until)


@task(name="train-describe-snapshot", cache_policy=NO_CACHE)
def describe_snapshot(frame: pd.DataFrame, family: ModelFamily) -> pipeline.SnapshotInfo:
    """`models.pipeline.describe_snapshot`: validate for the family and hash."""
    return pipeline.describe_snapshot(frame, family)


@task(name="train-split-snapshot", cache_policy=NO_CACHE)
def split_snapshot(frame: pd.DataFrame, family: ModelFamily, config: Any) -> TrainingSplit:
    """`models.pipeline.split_snapshot`: training window and recent holdout."""
    return pipeline.split_snapshot(frame, family, config)


@task(name="train-fit-model", cache_policy=NO_CACHE)
def fit_model(split: TrainingSplit, family: ModelFamily, config: Any) -> Any:
    """`models.pipeline.fit_model`."""
    return pipeline.fit_model(split, family, config)


@task(name="train-evaluate-model", cache_policy=NO_CACHE)
def evaluate_model(model: Any, split: TrainingSplit, family: ModelFamily) -> Evaluation:
    """`models.pipeline.evaluate_model` on the holdout."""
    return pipeline.evaluate_model(model, split, family)


@task(name="train-publish-report", cache_policy=NO_CACHE)
def publish_training_report(info: ModelVersionInfo, trained: pipeline.TrainedModel) -> str:
    """Leave the training summary as a Prefect markdown artifact; return the markdown."""
    markdown = training_report_markdown(info, trained)
    create_markdown_artifact(
        markdown=markdown,
        key=f"train-{info.name}".lower().replace("_", "-").replace(".", "-"),
        description=f"{info.name} v{info.version}: holdout accuracy "
        f"{trained.evaluation.accuracy:.1%}",
    )
    return markdown
