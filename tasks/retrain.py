"""Prefect tasks of retrain-on-image-change: each wraps one call of `core.retrain`.

They talk to MLflow and the state database and retry only on transient errors;
`NotFoundError`, `ConflictError` and other `SmlError`s are answers. The flow holds the
model's lock (`model_lock_held`) around plan, train and role.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from prefect import get_run_logger, task
from sqlalchemy import Engine

from config import Settings
from core import retrain
from core.model_lock import model_lock
from core.registry import ModelRegistry
from core.repair import repair_env
from core.retrain import RetrainOutcome, RetrainPlan
from models import stateful_models
from tasks.policies import IO_TASK

ACTOR = "retrain_on_image_change"
LOCK_TIMEOUT_SECONDS = 1800.0
"""How long a run waits for another retrain or train of the same model."""


@contextmanager
def model_lock_held(engine: Engine, model_name: str) -> Iterator[None]:
    """`core.model_lock.model_lock` for a flow, saying in the run's log when it waits.

    Raises:
        ModelLockTimeout: another run held the lock for LOCK_TIMEOUT_SECONDS.
    """
    logger = get_run_logger()

    def waiting() -> None:
        logger.info("another run of %s holds its lock: waiting for it", model_name)

    with model_lock(engine, model_name, timeout=LOCK_TIMEOUT_SECONDS, on_wait=waiting):
        yield


@task(name="retrain-plan-model", **IO_TASK)
def plan_model(
    engine: Engine, registry: ModelRegistry, settings: Settings, model_name: str, image: str
) -> RetrainPlan:
    """`core.retrain.plan_model` in this environment, from its ledger and the versions
    registered for the image: up to date, resume an existing version, or train."""
    plan = retrain.plan_model(engine, registry, model_name, image, env=settings.ENVIRONMENT)
    logger = get_run_logger()
    # a version with no role here: another environment's run trained it (a first release
    # here, expected), or an earlier run of this one died before giving it its role
    level = logger.warning if plan.step == "resume" and plan.role != "champion" else logger.info
    level(plan.describe())
    return plan


@task(name="retrain-judge-champion", **IO_TASK)
def judge_champion(registry: ModelRegistry, plan: RetrainPlan) -> str | None:
    """`core.retrain.judge_champion`: the champion's verdict under this image (recorded
    as version tags), None without a champion."""
    report = retrain.judge_champion(registry, plan)
    if report is None:
        return None
    get_run_logger().info(
        "champion %s v%s under %s: %s (%s)",
        report.name, report.version, report.image_version, report.verdict, report.reason,
    )  # fmt: skip
    return report.verdict


@task(name="retrain-give-role", **IO_TASK)
def give_role(
    engine: Engine,
    registry: ModelRegistry,
    settings: Settings,
    plan: RetrainPlan,
    version: str,
    verdict: str | None,
) -> RetrainOutcome:
    """`core.retrain.give_role`: `<env>-candidate`, or a first release then `<env>-champion`
    (refused for a stateful version whose state is not published)."""
    return retrain.give_role(
        engine, registry, plan, version, verdict,
        settings=settings, actor=ACTOR, stateful=stateful_models(),
    )  # fmt: skip


@task(name="retrain-mirror-ledger", **IO_TASK)
def mirror_ledger(
    engine: Engine, registry: ModelRegistry, settings: Settings, model_name: str
) -> list[str]:
    """`core.repair.repair_env` for one model: its aliases in this env follow the ledger
    (finishes a run that crashed after recording a release, before its alias)."""
    fixes = repair_env(engine, registry, settings.ENVIRONMENT, models=[model_name])
    logger = get_run_logger()
    for fix in fixes:
        logger.warning("repaired %s", fix.describe())
    return [fix.describe() for fix in fixes]
