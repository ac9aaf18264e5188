"""Prefect tasks over `core.promotion`: one release travelling to the next environment.

Read (I/O, retried on transient errors), plan (pure: a refusal is an answer, never
retried) and apply (the ledger's `start_rollout` per model). Engines are opened by the
flow (`core.db.state_database`); the registry by `tasks.registry.open_registry`.
"""

from __future__ import annotations

from collections.abc import Sequence

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from core import promotion
from core.ledger import AliasRegistry, RolloutRecord
from core.promotion import PromotionFacts, PromotionPlan
from models import stateful_models
from tasks.policies import IO_TASK


@task(name="promotion-read", **IO_TASK)
def read_promotion(
    engine: Engine, registry: AliasRegistry, from_env: str, to_env: str
) -> PromotionFacts:
    """`core.promotion.read_promotion`: both releases, what completed upstream, digests."""
    return promotion.read_promotion(engine, registry, from_env=from_env, to_env=to_env)


@task(name="promotion-plan", cache_policy=NO_CACHE)
def plan_promotion(facts: PromotionFacts, *, force: bool, actor: str, reason: str) -> PromotionPlan:
    """`core.promotion.plan_promotion` (refused: a digest mismatch, or unproven unforced)."""
    return promotion.plan_promotion(
        facts.source, facts.target, facts.proven, facts.registry_digests,
        force=force, actor=actor, reason=reason,
    )  # fmt: skip


@task(name="promotion-apply", **IO_TASK)
def apply_promotion(
    engine: Engine, plan: PromotionPlan, registry: AliasRegistry, stages: Sequence[float]
) -> list[RolloutRecord]:
    """`core.promotion.apply_promotion`: one canary rollout per model in the plan's env."""
    return promotion.apply_promotion(
        engine, plan, stages=stages, registry=registry, stateful=stateful_models()
    )
