"""An operator's say on a canary stage that is ready to move (CANARY_REQUIRE_APPROVAL).

When a verdict would advance or promote a rollout and the policy wants an operator,
`open_approval` records an `approval_requested` event with the evidence and returns a
`TickOutcome` carrying an `ApprovalRequest`; whoever can reach an operator (the
rollout-controller flow pauses with a form) asks, and `answer_approval` records the
answer (`approval_answered`) and carries it out through the ledger: approve (advance or
promote now, on a fresh look at the stage), hold (ask again later), rollback, abort; no
answer holds. Later ticks do not ask again while a request is open (until it times out).
No Prefect here: the pause itself lives in flows/rollout_controller.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy import Engine

from core import ledger
from core.canary import Action
from core.db import utcnow
from core.errors import ConflictError
from core.tick import CONTROLLER_ACTOR, TickOutcome, TickPlan, apply_plan, plan_rollout

APPROVAL_REQUESTED = "approval_requested"
APPROVAL_ANSWERED = "approval_answered"

Decision = Literal["approve", "hold", "rollback", "abort"]


@dataclass(frozen=True, slots=True)
class OperatorAnswer:
    """What an operator decided about a stage, who they are, and why."""

    decision: Decision
    actor: str
    reason: str


@dataclass(frozen=True, slots=True)
class NoAnswer:
    """Nobody answered a request (it timed out, or asking failed), and why not."""

    why: str


@dataclass(frozen=True, slots=True)
class ApprovalRequest:
    """A question to an operator: may this rollout move forward now?

    `key` is unique per rollout, stage and event count, so a paused flow never mistakes
    an answer to an earlier question for this one.
    """

    plan: TickPlan
    action: Action
    description: str
    key: str

    @property
    def rollout_id(self) -> int:
        """The rollout asked about."""
        return self.plan.rollout.id


def approval_pending(
    engine: Engine, rollout: ledger.RolloutRecord, *, timeout_seconds: float
) -> bool:
    """True when an operator was already asked about this stage and may still answer.

    Ticks that run while a paused flow waits for an operator do not ask again; a request
    older than the approval timeout is stale (its flow gave up or died) and is asked again.
    """
    cutoff = utcnow() - timedelta(seconds=timeout_seconds)
    for event in reversed(ledger.rollout_events(engine, rollout.id)):
        if event.kind == APPROVAL_REQUESTED:
            return event.stage_index == rollout.stage_index and event.ts >= cutoff
        if event.kind == APPROVAL_ANSWERED or event.stage_index != rollout.stage_index:
            return False
    return False


def open_approval(engine: Engine, plan: TickPlan) -> TickOutcome:
    """Ask for an operator on a plan that awaits one (`plan.awaits_operator`).

    Records `approval_requested` with the evidence and returns an `awaiting_approval`
    outcome carrying the request; when a request for this stage is still open, asks
    nothing and only reports that it waits.

    Raises:
        ValueError: the plan does not await an operator.
    """
    rollout, action = plan.rollout, plan.needs_approval_for
    if not plan.awaits_operator or action is None:
        raise ValueError(f"rollout #{rollout.id}: nothing to approve")
    if approval_pending(engine, rollout, timeout_seconds=plan.policy.approval_timeout_seconds):
        return TickOutcome(
            rollout.id, "awaiting_approval", "operator asked already", rollout.stage_index
        )
    reasons = "; ".join(plan.verdict.reasons if plan.verdict else ())
    ledger.record_event(
        engine, rollout.id, kind=APPROVAL_REQUESTED, actor=CONTROLLER_ACTOR,
        reason=f"ready to {action}: {reasons}", figures=plan.evidence(),
    )  # fmt: skip
    request = ApprovalRequest(
        plan=plan,
        action=action,
        description=f"Rollout #{rollout.id} ({rollout.model_name} v{rollout.candidate_version}, "
        f"{rollout.percent:g}%) is ready to {action}.",
        key=f"rollout-{rollout.id}-stage-{rollout.stage_index}-{rollout.event_seq}",
    )
    return TickOutcome(
        rollout.id, "awaiting_approval", f"{action} needs an operator", rollout.stage_index,
        request,
    )  # fmt: skip


def answer_approval(
    engine: Engine,
    request: ApprovalRequest,
    answer: OperatorAnswer | NoAnswer,
    *,
    registry: ledger.AliasRegistry | None,
    code_version: str,
    image_version: str,
    now: datetime | None = None,
) -> TickOutcome:
    """Record the operator's answer (`approval_answered`) and carry it out.

    approve: look at the stage again (at `now`, default the current time) and advance or
    promote if it still passes; hold or no answer: nothing moves (asked again on a later
    tick); rollback and abort: through the ledger in the operator's name. A rollout that
    changed meanwhile ends as `conflict`, writing nothing more.
    """
    rollout = request.plan.rollout
    _record_answer(engine, rollout.id, answer)
    try:
        match answer:
            case NoAnswer():
                return TickOutcome(rollout.id, "held", "no operator answer", rollout.stage_index)
            case OperatorAnswer(decision="approve"):
                fresh = plan_rollout(
                    engine, rollout, request.plan.policy, now=now or utcnow(),
                    stateful=request.plan.stateful,
                )  # fmt: skip
                return apply_plan(
                    engine, fresh, registry=registry, code_version=code_version,
                    image_version=image_version, approved=True,
                )  # fmt: skip
            case OperatorAnswer(decision="rollback"):
                ledger.rollback(
                    engine, rollout.id, actor=answer.actor, reason=answer.reason,
                    registry=registry,
                )  # fmt: skip
                return TickOutcome(rollout.id, "rolled_back", answer.reason, rollout.stage_index)
            case OperatorAnswer(decision="abort"):
                ledger.abort(
                    engine, rollout.id, actor=answer.actor, reason=answer.reason,
                    registry=registry,
                )  # fmt: skip
                detail = f"aborted: {answer.reason}"
                return TickOutcome(rollout.id, "skipped", detail, rollout.stage_index)
            case _:
                return TickOutcome(rollout.id, "held", answer.reason, rollout.stage_index)
    except ConflictError as exc:
        return TickOutcome(rollout.id, "conflict", str(exc), rollout.stage_index)


def _record_answer(engine: Engine, rollout_id: int, answer: OperatorAnswer | NoAnswer) -> None:
    """The `approval_answered` event: who answered what, or why nobody did."""
    if isinstance(answer, NoAnswer):
        ledger.record_event(
            engine, rollout_id, kind=APPROVAL_ANSWERED, actor=CONTROLLER_ACTOR,
            reason=f"no answer: {answer.why}",
        )  # fmt: skip
        return
    ledger.record_event(
        engine, rollout_id, kind=APPROVAL_ANSWERED, actor=answer.actor,
        reason=f"{answer.decision}: {answer.reason}", figures={"decision": answer.decision},
    )  # fmt: skip


def approval_requests(outcomes: Sequence[TickOutcome]) -> list[ApprovalRequest]:
    """The requests a tick opened, in rollout order (each waits for an operator)."""
    return [o.request for o in outcomes if o.request is not None]


def with_answers(
    outcomes: Sequence[TickOutcome], answered: Sequence[TickOutcome]
) -> list[TickOutcome]:
    """The tick's outcomes with each answered rollout's outcome in place of its request."""
    by_rollout = {o.rollout_id: o for o in answered}
    return [by_rollout.get(o.rollout_id, o) for o in outcomes]
