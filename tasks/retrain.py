"""Prefect tasks of retrain-on-image-change: each wraps one call of `core.retrain`.

All three talk to MLflow (and the last to the state database) and retry only on
transient errors; `NotFoundError`, `ConflictError` and other `SmlError`s are answers.
"""

from __future__ import annotations

from prefect import get_run_logger, task

from config import Settings
from core import retrain
from core.registry import ModelRegistry
from core.retrain import RetrainOutcome, RetrainPlan
from tasks.policies import IO_TASK

ACTOR = "retrain_on_image_change"


@task(name="retrain-plan-model", **IO_TASK)
def plan_model(registry: ModelRegistry, model_name: str, image_version: str) -> RetrainPlan:
    """`core.retrain.plan_retrain` on the versions registered for the image and the
    champion: up to date, resume an unfinished version, or train."""
    plan = retrain.plan_retrain(
        model_name,
        image_version,
        registry.list_versions(model_name, image_version=image_version),
        registry.version_by_alias(model_name, "champion"),
    )
    logger = get_run_logger()
    # an earlier run registered a version, then stopped before giving it its role
    level = logger.warning if plan.step == "resume" else logger.info
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
    registry: ModelRegistry,
    settings: Settings,
    plan: RetrainPlan,
    version: str,
    verdict: str | None,
) -> RetrainOutcome:
    """`core.retrain.give_role`: `candidate`, or first `champion` with its first release."""
    return retrain.give_role(registry, plan, version, verdict, settings=settings, actor=ACTOR)
