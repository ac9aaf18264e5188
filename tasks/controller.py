"""Prefect tasks of the rollout controller: each wraps one call of `core.controller`.

Database reads and ledger writes retry only on transient errors; a refusal of the ledger
(`ConflictError`, a stale plan) is an answer (`conflict`), never retried.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from sqlalchemy import Engine

from core import controller, ledger
from core.controller import CanaryPolicy, TickOutcome, TickPlan
from core.ledger import AliasRegistry, RolloutRecord
from tasks.policies import IO_TASK


@task(name="controller-active-rollouts", **IO_TASK)
def active_rollouts(engine: Engine, env: str | None) -> list[RolloutRecord]:
    """`core.ledger.active_rollouts`: what the tick looks at."""
    return ledger.active_rollouts(engine, env)


@task(name="controller-finish-promotions", **IO_TASK)
def finish_promotions(engine: Engine, registry: AliasRegistry, env: str | None) -> list[int]:
    """`core.controller.finish_promotions`: aliases a crash left behind."""
    return controller.finish_promotions(engine, registry, env=env)


@task(name="controller-plan-rollout", **IO_TASK)
def plan_rollout(
    engine: Engine, rollout: RolloutRecord, policy: CanaryPolicy, now: datetime
) -> TickPlan:
    """`core.controller.plan_rollout`: stage figures in SQL and the decision."""
    plan = controller.plan_rollout(engine, rollout, policy, now=now)
    controller.log_verdict(plan)
    return plan


@task(name="controller-apply-plan", **IO_TASK)
def apply_plan(
    engine: Engine,
    plan: TickPlan,
    registry: AliasRegistry | None,
    code_version: str,
    image_version: str,
    approved: bool = False,
    actor: str = controller.CONTROLLER_ACTOR,
) -> TickOutcome:
    """`core.controller.apply_plan`: carry the decision out through the ledger."""
    return controller.apply_plan(
        engine,
        plan,
        actor=actor,
        registry=registry,
        code_version=code_version,
        image_version=image_version,
        approved=approved,
    )


@task(name="controller-approval-pending", **IO_TASK)
def approval_pending(engine: Engine, rollout: RolloutRecord, timeout_seconds: float) -> bool:
    """`core.controller.approval_pending`: was an operator already asked for this stage?"""
    return controller.approval_pending(engine, rollout, timeout_seconds=timeout_seconds)


@task(name="controller-record-event", **IO_TASK)
def record_event(
    engine: Engine,
    rollout_id: int,
    kind: str,
    actor: str,
    reason: str | None = None,
    figures: dict[str, Any] | None = None,
) -> ledger.EventRecord:
    """`core.ledger.record_event`: an approval request or answer, with its figures."""
    return ledger.record_event(
        engine, rollout_id, kind=kind, actor=actor, reason=reason, figures=figures
    )


@task(name="controller-operator-rollback", **IO_TASK)
def operator_rollback(
    engine: Engine, rollout_id: int, registry: AliasRegistry | None, actor: str, reason: str
) -> RolloutRecord:
    """`core.ledger.rollback` on an operator's answer."""
    return ledger.rollback(engine, rollout_id, actor=actor, reason=reason, registry=registry)


@task(name="controller-operator-abort", **IO_TASK)
def operator_abort(engine: Engine, rollout_id: int, actor: str, reason: str) -> RolloutRecord:
    """`core.ledger.abort` on an operator's answer."""
    return ledger.abort(engine, rollout_id, actor=actor, reason=reason)
