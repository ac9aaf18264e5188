"""`rollout-controller`: the canary reconciler, scheduled every minute.

Each run looks at every active rollout (of `env`, or all): it computes the current
stage's figures as SQL in the database, decides with always-valid sequential tests
(core.canary, docs/statistics.md), and rolls back, advances or promotes through the
ledger (core.controller.reconcile). It is safe to run any number of times, concurrently
or after a crash: all state is in the database and every change is a compare-and-set
ledger transaction.

With CANARY_REQUIRE_APPROVAL, a stage that is ready to move waits for an operator: the
run pauses with a `StageDecision` form in the Prefect UI (approve, hold, rollback,
abort; who and why), or from code:

    prefect.flow_runs.resume_flow_run(run_id, run_input={"decision": "approve",
                                                         "actor": "ana", "reason": "ok"})

Later ticks do not ask again while a request is open (until it times out).

Forward moves wait for the deploy windows (DEPLOY_WINDOWS, DEPLOY_TIMEZONE,
DEPLOY_FREEZE_DATES); rollbacks never wait. Every transition is announced as a Prefect
event `stateful-ml.rollout.<kind>`, rollbacks and promotions also to ALERT_WEBHOOK_URL
(docs/alerts.md).
"""

from __future__ import annotations

from prefect import flow, get_run_logger
from prefect.flow_runs import pause_flow_run
from prefect.input import RunInput
from pydantic import Field

from config import get_settings
from core.approval import (
    ApprovalRequest,
    Decision,
    NoAnswer,
    OperatorAnswer,
    approval_requests,
    with_answers,
)
from core.canary import CanaryPolicy
from core.db import state_database
from core.reporting import tick_report_markdown
from core.tick import TickOutcome
from models import handoff_labels
from tasks.controller import answer_approval, reconcile
from tasks.registry import open_registry
from tasks.reporting import publish_markdown


class StageDecision(RunInput):
    """An operator's answer to a stage that is ready to move (the UI builds a form)."""

    decision: Decision = Field(
        "approve", description="approve: advance/promote now; hold: ask again next tick"
    )
    actor: str = Field("operator", min_length=1, max_length=128, description="who decides")
    reason: str = Field("approved in the Prefect UI", min_length=1, description="why")


def ask_operator(
    request: ApprovalRequest, timeout_seconds: int, poll_seconds: int
) -> OperatorAnswer | NoAnswer:
    """Pause this flow run with a `StageDecision` form until an operator answers.

    Nobody answering within the timeout (or a refused pause) is an answer too: `NoAnswer`.
    """
    get_run_logger().info(
        "rollout #%s ready to %s: waiting for an operator", request.rollout_id, request.action
    )
    form = StageDecision.with_initial_data(description=request.description, decision="approve")
    try:
        answer = pause_flow_run(
            wait_for_input=form, timeout=timeout_seconds, poll_interval=poll_seconds,
            key=request.key,
        )  # fmt: skip
    except Exception as exc:  # FlowPauseTimeout or a refused pause: nobody answered
        return NoAnswer(type(exc).__name__)
    return OperatorAnswer(answer.decision, answer.actor, answer.reason)


@flow(name="rollout-controller")
def rollout_controller(
    env: str | None = None,
    approval_timeout_seconds: int | None = None,
    approval_poll_seconds: int = 10,
) -> list[TickOutcome]:
    """One tick of the canary controller over every active rollout of `env` (or all).

    approval_timeout_seconds defaults to CANARY_APPROVAL_TIMEOUT_SECONDS.
    """
    settings = get_settings()
    policy = CanaryPolicy.from_settings(
        settings,
        approval_timeout_seconds=approval_timeout_seconds,
        handoff_labels=handoff_labels(),
    )
    with state_database(settings.database_url, wait_seconds=10) as engine:
        # Extract
        registry = open_registry(settings)

        # Transform + Load: decide every active rollout and act on it, or ask an operator
        outcomes = reconcile(engine, registry, policy, env, settings)

        # Load: each stage waiting for an operator moves on their answer
        answered = []
        for request in approval_requests(outcomes):
            answer = ask_operator(request, policy.approval_timeout_seconds, approval_poll_seconds)
            answered.append(answer_approval(engine, registry, request, answer, settings))

    # Report
    outcomes = with_answers(outcomes, answered)
    publish_markdown(
        key="rollout-controller",
        markdown=tick_report_markdown(outcomes),
        description=f"{len(outcomes)} active rollout(s)",
    )
    return outcomes
