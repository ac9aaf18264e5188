"""`train`: fit a model family on a source snapshot and register it in MLflow.

    prefect deployment run 'train/prd' --param model_name=intent-classifier \
        --params '{"config": {"training_window_days": 30}}'

Loads a snapshot of the source table (hashed), fits the family's pipeline, evaluates on
a recent holdout, logs params, metrics, per-class accuracy, a confusion matrix and the
model (signature, input example, pinned requirements), registers a version tagged with
its lineage, and leaves a markdown summary. Bad data (empty table, one class, unknown
labels) fails the run with the reason and registers nothing.

The run holds the model's lock (`core.model_lock`, in the state database) from the read
to the alias, so a retrain of the same model never adopts a version this run is still
finishing; run as a subflow of a retrain (which holds it already), it does not wait.
`alias="candidate"` sets this environment's candidate alias (`<env>-candidate`); a version
of a family that reads release state gets its state built first (`build_release_state`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import flow, get_run_logger

from config import get_settings
from core.aliases import env_alias
from core.db import state_database
from core.registry import ModelVersionInfo
from flows.build_release_state import build_release_state
from models import get_family
from models.pipeline import assemble
from tasks.registry import open_registry, register_trained, set_alias
from tasks.retrain import model_lock_held
from tasks.training import (
    describe_snapshot,
    evaluate_model,
    fit_model,
    publish_training_report,
    read_snapshot,
    split_snapshot,
)


@flow(name="train")
def train(
    model_name: str = "intent-classifier",
    config: dict[str, Any] | None = None,
    alias: Literal["candidate"] | None = None,
    data_until: datetime | None = None,
) -> ModelVersionInfo:
    """Train and register one version of `model_name`.

    Args:
        model_name: a model family (models.FAMILIES).
        config: overrides of the family's default hyper-parameters.
        alias: `candidate` sets this environment's `<env>-candidate` on the new version
            (a champion moves only through the ledger).
        data_until: train on the snapshot as it was before this time (default: all rows).

    Raises:
        NotFoundError: unknown model family.
        DataError: the snapshot cannot be trained on (the message says why).
        ModelLockTimeout: another run of the model kept its lock for too long.
    """
    logger = get_run_logger()
    settings = get_settings()
    family = get_family(model_name)
    hyper = family.parse_config(config)
    # the lock only: training needs no ledger tables
    with (
        state_database(settings.database_url, ledger=False) as engine,
        model_lock_held(engine, model_name),
    ):
        # Extract
        frame = read_snapshot(settings, data_until)
        snapshot = describe_snapshot(frame, family)
        logger.info("snapshot %s: %d rows", snapshot.digest[:12], snapshot.rows)

        # Transform
        split = split_snapshot(frame, family, hyper)
        model = fit_model(split, family, hyper)
        evaluation = evaluate_model(model, split, family)
        trained = assemble(family, hyper, model, snapshot, split, evaluation)
        logger.info("holdout accuracy %.3f on %d rows", evaluation.accuracy, evaluation.rows)

        # Load
        registry = open_registry(settings)
        info = register_trained(registry, trained, family, settings.IMAGE_VERSION)
        if alias is not None:
            # a stateful version gets its state before it is a candidate (takes traffic)
            if family.state:
                build_release_state(model_name=model_name, version=info.version)
            role = env_alias(settings.ENVIRONMENT, alias)
            info = set_alias(registry, model_name, role, info.version)
        publish_training_report(info, trained)
        logger.info("registered %s v%s on image %s", info.name, info.version, info.image_version)
    return info
