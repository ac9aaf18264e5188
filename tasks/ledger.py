"""Prefect tasks over `core.ledger`: the manual actions an operator asks for.

Retries only for transient database/MLflow errors (`core.transient`); a refusal
(`ConflictError`, `NotFoundError`) is an answer, never retried. Engines are opened by the
flows (`core.db.state_database`, disposed when the flow's block ends); the registry by
`tasks.registry.open_registry`.
"""

from __future__ import annotations

from prefect import get_run_logger, task
from sqlalchemy import Engine

from config import Settings, get_settings
from core import alerts, manual_actions
from core.ledger import AliasRegistry, ReleaseRecord, RolloutRecord
from core.manual_actions import RollbackRequest, RolloutActionRequest
from core.registry import ModelRegistry
from models import stateful_models
from tasks.controller import announce, send, webhook_url
from tasks.policies import IO_TASK


@task(name="ledger-rollout-action", **IO_TASK)
def apply_rollout_action(
    engine: Engine,
    registry: AliasRegistry | None,
    request: RolloutActionRequest,
    settings: Settings,
) -> RolloutRecord:
    """`core.manual_actions.apply_rollout_action` (a start gets CANARY_STAGES; a promote
    records its release with this run's code and image versions)."""
    record, release = manual_actions.apply_rollout_action(
        engine,
        request,
        registry=registry,
        stages=settings.CANARY_STAGES,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
        stateful=stateful_models(),
    )
    if release is not None:
        get_run_logger().info("%s release %s", release.env, release.tag)
    # each manual action writes exactly one event: announce it like the controller's
    announce(engine, {record.id: record.event_seq - 1}, webhook_url(settings))
    return record


@task(name="ledger-rollback-env", **IO_TASK)
def rollback_env(
    engine: Engine, registry: ModelRegistry, request: RollbackRequest, image_version: str
) -> ReleaseRecord:
    """`core.manual_actions.rollback_env` (refused when the target is judged broken); the
    rollback is announced (`stateful-ml.release.rollback`, and the webhook if set)."""
    release = manual_actions.rollback_env(
        engine, request, registry=registry, image_version=image_version, stateful=stateful_models()
    )
    send(alerts.env_rollback_alert(release), webhook_url(get_settings()))
    return release
