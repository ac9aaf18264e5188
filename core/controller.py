"""The canary reconciler: one tick over every active rollout, through the ledger.

`reconcile(engine, policy, ...)` is the controller's loop, the one copy that the tests,
the crash test and the `rollout-controller` flow run: finish promotions a crash left
half done, then for each active rollout plan (core.tick: the stage's figures in SQL and
`core.canary.decide`), and either apply the verdict through the ledger or, when the
policy wants an operator for a forward move, open an approval request (core.approval).
It is safe to run any number of times, including after a crash mid-tick: all state is in
the database and every change is a compare-and-set ledger transaction.

The decision (`decide`, `CanaryPolicy`, `Verdict`), the tick steps (`plan_rollout`,
`apply_plan`) and the approval steps stay importable from here.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection
from datetime import datetime, timedelta

from sqlalchemy import Engine

from core import ledger
from core.aliases import env_alias
from core.approval import (
    APPROVAL_ANSWERED,
    APPROVAL_REQUESTED,
    ApprovalRequest,
    Decision,
    NoAnswer,
    OperatorAnswer,
    answer_approval,
    approval_pending,
    approval_requests,
    open_approval,
    with_answers,
)
from core.canary import (
    P95_TAIL,
    TAU_RATE,
    TAU_TAIL,
    TESTS_PER_STAGE,
    Action,
    CanaryPolicy,
    Verdict,
    advance_gate,
    decide,
    sequential_tests,
)
from core.db import utcnow
from core.deploy_windows import DeployWindows
from core.tick import (
    CONTROLLER_ACTOR,
    Outcome,
    TickOutcome,
    TickPlan,
    apply_plan,
    log_verdict,
    plan_rollout,
)

__all__ = [
    "APPROVAL_ANSWERED",
    "APPROVAL_REQUESTED",
    "CONTROLLER_ACTOR",
    "P95_TAIL",
    "TAU_RATE",
    "TAU_TAIL",
    "TESTS_PER_STAGE",
    "Action",
    "ApprovalRequest",
    "CanaryPolicy",
    "Checkpoint",
    "Decision",
    "DeployWindows",
    "NoAnswer",
    "OperatorAnswer",
    "Outcome",
    "TickOutcome",
    "TickPlan",
    "Verdict",
    "advance_gate",
    "answer_approval",
    "apply_plan",
    "approval_pending",
    "approval_requests",
    "decide",
    "finish_promotions",
    "log_verdict",
    "open_approval",
    "plan_rollout",
    "reconcile",
    "sequential_tests",
    "with_answers",
]

Checkpoint = Callable[[str], None]

log = logging.getLogger(__name__)


def _noop(_point: str) -> None:
    return None


def reconcile(  # noqa: PLR0913 (keyword-only: the tick's settings and its test hooks)
    engine: Engine,
    policy: CanaryPolicy,
    *,
    code_version: str,
    image_version: str,
    env: str | None = None,
    registry: ledger.AliasRegistry | None = None,
    now: datetime | None = None,
    checkpoint: Checkpoint = _noop,
    stateful: Collection[str] = (),
    windows: DeployWindows | None = None,
) -> list[TickOutcome]:
    """One controller tick over every active rollout (of `env`, or all envs).

    A verdict that moves a rollout forward while `policy.require_approval` is on is not
    applied: the outcome is `awaiting_approval`, with an `ApprovalRequest` when this tick
    asked (answer it with `core.approval.answer_approval`). A forward move that would give
    traffic to a candidate of a model in `stateful` (the models that read release state,
    computed at the edges from the model families) whose state is not published is held
    with a `state_not_ready` event; outside the deploy `windows` (core.deploy_windows;
    None: always open) it is held with one `held_deploy_window` event per closed period
    and no operator is asked. Rollbacks are never held.

    Idempotent and crash-safe: all state is in the database, each change is one ledger
    transaction guarded by compare-and-set, so running it twice, concurrently, or again
    after being killed anywhere continues where the state is, without duplicate or lost
    events. `checkpoint(name)` is called at named points (`planned`, `applied`) so tests
    can stop a real process inside a tick.

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    outcomes = []
    if registry is not None:
        finish_promotions(engine, registry, env=env)
    for rollout in ledger.active_rollouts(engine, env):
        plan = plan_rollout(
            engine, rollout, policy, now=now or utcnow(), stateful=stateful, windows=windows
        )
        log_verdict(plan)
        checkpoint("planned")
        if plan.awaits_operator:
            outcome = open_approval(engine, plan)
        else:
            outcome = apply_plan(
                engine, plan, registry=registry,
                code_version=code_version, image_version=image_version,
            )  # fmt: skip
        checkpoint("applied")
        outcomes.append(outcome)
    return outcomes


def finish_promotions(
    engine: Engine,
    registry: ledger.AliasRegistry,
    *,
    env: str | None = None,
    within: timedelta = timedelta(hours=1),
) -> list[int]:
    """Move MLflow aliases of recent promotions that a crash left behind; idempotent.

    The ledger commits a promotion first and moves the aliases after; a controller killed
    in between leaves `<env>-champion` on the old version. For each rollout promoted within
    `within` whose candidates all still run in its env (no later rollback), set that env's
    `champion` -> candidate and `previous` -> old champion of each of its models (a
    bundle's members too) if they are not so already.
    Only the rollout's own env's aliases are compared and moved (`core.aliases.env_alias`),
    so two environments on one registry never flip each other's champion. Returns the ids
    of the rollouts repaired.
    """
    cutoff = utcnow() - within
    repaired = []
    for rollout in ledger.list_rollouts(engine, env, limit=50):
        if rollout.status != "promoted" or rollout.ended_at is None or rollout.ended_at < cutoff:
            continue
        release = ledger.current_release(engine, rollout.env)
        serving = release.model_versions if release else {}
        candidates = rollout.candidate_versions
        if any(serving.get(name) != version for name, version in candidates.items()):
            continue
        if _repair_aliases(registry, rollout):
            repaired.append(rollout.id)
    return repaired


def _repair_aliases(registry: ledger.AliasRegistry, rollout: ledger.RolloutRecord) -> bool:
    """Move `champion` and `previous` of every model of a promoted rollout (a bundle's
    members too) that a crash left behind; True if any moved."""
    moved = False
    champion_alias = env_alias(rollout.env, "champion")
    for name, candidate in rollout.candidate_versions.items():
        champion = registry.version_by_alias(name, champion_alias)
        if champion is not None and champion.version == candidate:
            continue
        registry.set_alias(name, champion_alias, candidate)
        registry.set_alias(
            name, env_alias(rollout.env, "previous"), rollout.champion_versions[name]
        )
        log.warning(
            "rollout #%s: %s alias of %s moved to v%s after an interrupted promotion",
            rollout.id, champion_alias, name, candidate,
        )  # fmt: skip
        moved = True
    return moved
