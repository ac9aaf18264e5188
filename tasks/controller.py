"""Prefect tasks of the rollout controller: each wraps one call of `core.controller`.

Both retry only on transient database/MLflow errors: a tick is idempotent (every change
is a compare-and-set ledger transaction), and a refusal of the ledger (`ConflictError`,
a stale plan) is an answer (`conflict`), never retried.
"""

from __future__ import annotations

from prefect import task
from sqlalchemy import Engine

from config import Settings
from core import controller
from core.controller import ApprovalRequest, CanaryPolicy, NoAnswer, OperatorAnswer, TickOutcome
from core.ledger import AliasRegistry
from models import stateful_models
from tasks.policies import IO_TASK


@task(name="controller-reconcile", **IO_TASK)
def reconcile(
    engine: Engine,
    registry: AliasRegistry,
    policy: CanaryPolicy,
    env: str | None,
    settings: Settings,
) -> list[TickOutcome]:
    """`core.controller.reconcile`: one tick over the active rollouts of `env` (or all);
    a stage that needs an operator comes back `awaiting_approval` with its request."""
    return controller.reconcile(
        engine,
        policy,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
        env=env,
        registry=registry,
        stateful=stateful_models(),
    )


@task(name="controller-answer-approval", **IO_TASK)
def answer_approval(
    engine: Engine,
    registry: AliasRegistry,
    request: ApprovalRequest,
    answer: OperatorAnswer | NoAnswer,
    settings: Settings,
) -> TickOutcome:
    """`core.controller.answer_approval`: record the operator's answer and carry it out."""
    return controller.answer_approval(
        engine,
        request,
        answer,
        registry=registry,
        code_version=settings.CODE_VERSION,
        image_version=settings.IMAGE_VERSION,
    )
