"""`rollout-controller`: the canary reconciler, scheduled every minute.

Each run looks at every active rollout (of `env`, or all): it computes the current
stage's figures as SQL in the database, decides with always-valid sequential tests
(core.controller, docs/statistics.md), and rolls back, advances or promotes through the
ledger. It is safe to run any number of times, concurrently or after a crash: all state
is in the database and every change is a compare-and-set ledger transaction.

With CANARY_REQUIRE_APPROVAL, a stage that is ready to move waits for an operator: the
run pauses with a `StageDecision` form in the Prefect UI (approve, hold, rollback,
abort; who and why), or from code:

    prefect.flow_runs.resume_flow_run(run_id, run_input={"decision": "approve",
                                                         "actor": "ana", "reason": "ok"})

Later ticks do not ask again while a request is open (until it times out).
"""

from __future__ import annotations

from typing import Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from config import get_settings
from core.controller import (
    APPROVAL_ANSWERED,
    APPROVAL_REQUESTED,
    CONTROLLER_ACTOR,
    CanaryPolicy,
    TickOutcome,
    TickPlan,
)
from core.db import utcnow
from core.errors import ConflictError
from tasks.controller import (
    active_rollouts,
    apply_plan,
    approval_pending,
    finish_promotions,
    operator_abort,
    operator_rollback,
    plan_rollout,
    record_event,
)
from tasks.ledger import open_registry, open_state_database


class StageDecision(RunInput):
    """An operator's answer to a stage that is ready to move (the UI builds a form)."""

    decision: Literal["approve", "hold", "rollback", "abort"] = Field(
        "approve", description="approve: advance/promote now; hold: ask again next tick"
    )
    actor: str = Field("operator", min_length=1, max_length=128, description="who decides")
    reason: str = Field("approved in the Prefect UI", min_length=1, description="why")


def _evidence(plan: TickPlan) -> dict[str, object]:
    assert plan.figures is not None
    assert plan.verdict is not None
    return {"figures": plan.figures.as_dict(), "verdict": plan.verdict.as_dict()}


@flow(name="rollout-controller")
def rollout_controller(
    env: str | None = None,
    approval_timeout_seconds: int | None = None,
    approval_poll_seconds: int = 10,
) -> list[TickOutcome]:
    """One tick of the canary controller over every active rollout of `env` (or all).

    approval_timeout_seconds defaults to CANARY_APPROVAL_TIMEOUT_SECONDS.
    """
    logger = get_run_logger()
    settings = get_settings()
    policy = CanaryPolicy.from_settings(settings)
    timeout = approval_timeout_seconds or settings.CANARY_APPROVAL_TIMEOUT_SECONDS
    versions = {"code_version": settings.CODE_VERSION, "image_version": settings.IMAGE_VERSION}

    # Extract
    engine = open_state_database(settings)
    registry = open_registry(settings)
    finish_promotions(engine, registry, env)
    rollouts = active_rollouts(engine, env)

    # Transform + Load, one rollout at a time
    outcomes: list[TickOutcome] = []
    for rollout in rollouts:
        plan = plan_rollout(engine, rollout, policy, utcnow())
        action = plan.needs_approval_for
        if not (policy.require_approval and action):
            outcomes.append(apply_plan(engine, plan, registry, **versions))
            continue
        if approval_pending(engine, rollout, timeout):
            outcomes.append(
                TickOutcome(rollout.id, "awaiting_approval", "operator asked already",
                            rollout.stage_index)
            )  # fmt: skip
            continue
        record_event(
            engine, rollout.id, APPROVAL_REQUESTED, CONTROLLER_ACTOR,
            f"ready to {action}: {'; '.join(plan.verdict.reasons if plan.verdict else ())}",
            _evidence(plan),
        )  # fmt: skip
        logger.info("rollout #%s ready to %s: waiting for an operator", rollout.id, action)
        try:
            answer = pause_flow_run(
                wait_for_input=StageDecision.with_initial_data(
                    description=f"Rollout #{rollout.id} ({rollout.model_name} "
                    f"v{rollout.candidate_version}, {rollout.percent:g}%) is ready to {action}.",
                    decision="approve",
                ),
                timeout=timeout,
                poll_interval=approval_poll_seconds,
                key=f"rollout-{rollout.id}-stage-{rollout.stage_index}-{rollout.event_seq}",
            )
        except Exception as exc:  # FlowPauseTimeout or a refused pause: nobody answered
            record_event(engine, rollout.id, APPROVAL_ANSWERED, CONTROLLER_ACTOR,
                         f"no answer: {type(exc).__name__}")  # fmt: skip
            outcomes.append(
                TickOutcome(rollout.id, "held", "no operator answer", rollout.stage_index)
            )
            continue
        record_event(
            engine, rollout.id, APPROVAL_ANSWERED, answer.actor,
            f"{answer.decision}: {answer.reason}", {"decision": answer.decision},
        )  # fmt: skip
        try:
            match answer.decision:
                case "approve":
                    fresh = plan_rollout(engine, rollout, policy, utcnow())
                    outcomes.append(apply_plan(engine, fresh, registry, approved=True, **versions))
                case "rollback":
                    operator_rollback(engine, rollout.id, registry, answer.actor, answer.reason)
                    outcomes.append(TickOutcome(rollout.id, "rolled_back", answer.reason,
                                                rollout.stage_index))  # fmt: skip
                case "abort":
                    operator_abort(engine, rollout.id, answer.actor, answer.reason)
                    outcomes.append(TickOutcome(rollout.id, "skipped", f"aborted: {answer.reason}",
                                                rollout.stage_index))  # fmt: skip
                case _:
                    outcomes.append(TickOutcome(rollout.id, "held", answer.reason,
                                                rollout.stage_index))  # fmt: skip
        except ConflictError as exc:
            outcomes.append(TickOutcome(rollout.id, "conflict", str(exc), rollout.stage_index))

    # Report
    lines = [
        "# rollout-controller tick",
        "",
        "| rollout | stage | outcome | why |",
        "|---|---|---|---|",
    ]
    lines += [f"| #{o.rollout_id} | {o.stage_index} | {o.outcome} | {o.detail} |" for o in outcomes]
    create_markdown_artifact(
        markdown="\n".join(lines) + "\n", key="rollout-controller",
        description=f"{len(outcomes)} active rollout(s)",
    )  # fmt: skip
    engine.dispose()
    return outcomes
