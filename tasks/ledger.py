"""Prefect tasks over `core.ledger`: each wraps one ledger call.

Retries only for transient database/MLflow errors (`core.transient`); a refusal
(`ConflictError`, `NotFoundError`) is an answer, never retried. Tasks that receive an
engine or a registry use `NO_CACHE`: clients are not hashable inputs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from prefect import task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from config import Settings
from core import ledger
from core.ledger import AliasRegistry, ReleaseRecord, RolloutRecord, VerdictFn
from tasks.policies import IO_TASK

if TYPE_CHECKING:
    from core.registry import ModelRegistry


@task(name="ledger-open-state-database", **IO_TASK)
def open_state_database(settings: Settings) -> Engine:
    """An engine on the state database, checked to answer and to hold the ledger tables."""
    from core.db import make_engine, wait_for_database
    from core.db.engine import table_names
    from core.errors import SmlError

    engine = make_engine(settings.database_url)
    wait_for_database(engine, timeout=10)
    if not {"releases", "rollouts", "rollout_events"} <= table_names(engine):
        raise SmlError("the state database has no ledger tables yet: run `sml db upgrade`")
    return engine


@task(name="ledger-open-registry", cache_policy=NO_CACHE)
def open_registry(settings: Settings) -> ModelRegistry:
    """The MLflow registry of these settings."""
    from core.registry import ModelRegistry

    return ModelRegistry.from_settings(settings)


@task(name="ledger-start-rollout", **IO_TASK)
def start_rollout_task(
    engine: Engine, registry: AliasRegistry | None, **kwargs: Any
) -> RolloutRecord:
    """`core.ledger.start_rollout`."""
    return ledger.start_rollout(engine, registry=registry, **kwargs)


@task(name="ledger-pause", **IO_TASK)
def pause_task(engine: Engine, rollout_id: int, actor: str, reason: str) -> RolloutRecord:
    """`core.ledger.pause`."""
    return ledger.pause(engine, rollout_id, actor=actor, reason=reason)


@task(name="ledger-resume", **IO_TASK)
def resume_task(engine: Engine, rollout_id: int, actor: str, reason: str) -> RolloutRecord:
    """`core.ledger.resume`."""
    return ledger.resume(engine, rollout_id, actor=actor, reason=reason)


@task(name="ledger-abort", **IO_TASK)
def abort_task(engine: Engine, rollout_id: int, actor: str, reason: str) -> RolloutRecord:
    """`core.ledger.abort`."""
    return ledger.abort(engine, rollout_id, actor=actor, reason=reason)


@task(name="ledger-set-stage", **IO_TASK)
def set_stage_task(
    engine: Engine, rollout_id: int, stage_index: int, actor: str, reason: str
) -> RolloutRecord:
    """`core.ledger.set_stage` (within the stages the rollout was started with)."""
    return ledger.set_stage(engine, rollout_id, stage_index=stage_index, actor=actor, reason=reason)


@task(name="ledger-promote", **IO_TASK)
def promote_task(
    engine: Engine,
    rollout_id: int,
    actor: str,
    reason: str,
    registry: AliasRegistry | None,
    code_version: str,
    image_version: str,
) -> tuple[RolloutRecord, ReleaseRecord]:
    """`core.ledger.promote` (release + MLflow aliases)."""
    return ledger.promote(
        engine,
        rollout_id,
        actor=actor,
        reason=reason,
        registry=registry,
        code_version=code_version,
        image_version=image_version,
    )


@task(name="ledger-rollback-rollout", **IO_TASK)
def rollback_rollout_task(
    engine: Engine, rollout_id: int, actor: str, reason: str, registry: AliasRegistry | None
) -> RolloutRecord:
    """`core.ledger.rollback` (the candidate tagged with why in MLflow)."""
    return ledger.rollback(engine, rollout_id, actor=actor, reason=reason, registry=registry)


@task(name="ledger-rollback-env", **IO_TASK)
def rollback_env_task(
    engine: Engine,
    env: str,
    to_tag: str | None,
    actor: str,
    reason: str,
    force: bool,
    registry: AliasRegistry | None,
    verdict_fn: VerdictFn | None,
    image_version: str | None,
) -> ReleaseRecord:
    """`core.ledger.rollback_env` (refused when the target is judged broken)."""
    return ledger.rollback_env(
        engine,
        env,
        to_tag=to_tag,
        actor=actor,
        reason=reason,
        force=force,
        registry=registry,
        verdict_fn=verdict_fn,
        image_version=image_version,
    )


@task(name="ledger-report", cache_policy=NO_CACHE)
def report_task(key: str, markdown: str, description: str) -> None:
    """Leave a markdown artifact in the flow run (what was done, to what)."""
    create_markdown_artifact(key=key, markdown=markdown, description=description)
