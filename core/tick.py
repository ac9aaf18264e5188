"""One controller tick for one rollout: plan (the stage's figures and verdict), then apply.

`plan_rollout` computes the current stage's figures in SQL and asks `core.canary.decide`;
it writes nothing. `apply_plan` carries the verdict out through the ledger, each write one
compare-and-set transaction with one event, so a stale plan ends as `conflict` and writes
nothing. core.controller runs these over every active rollout; core.approval adds the
operator's say when CANARY_REQUIRE_APPROVAL is on.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Collection
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Engine

from core import ledger
from core.analysis import StageFigures, stage_figures
from core.canary import Action, CanaryPolicy, Verdict, decide
from core.deploy_windows import DeployWindows
from core.errors import ConflictError, StateNotReadyError

if TYPE_CHECKING:
    from core.approval import ApprovalRequest

Outcome = Literal[
    "held", "advanced", "promoted", "rolled_back", "skipped", "conflict", "awaiting_approval"
]

log = logging.getLogger(__name__)

CONTROLLER_ACTOR = "rollout-controller"
STATE_NOT_READY = "state_not_ready"
"""The event kind of a forward move held because a candidate's release state is missing."""
HELD_DEPLOY_WINDOW = "held_deploy_window"
"""The event kind of a forward move held outside the deploy windows (once per closed
period: its figures carry the next opening, which names the period)."""


@dataclass(frozen=True, slots=True)
class TickPlan:
    """What one tick found for one rollout: its figures and verdict (None when skipped)."""

    rollout: ledger.RolloutRecord
    policy: CanaryPolicy
    figures: StageFigures | None
    verdict: Verdict | None
    skipped: str | None = None
    stateful: frozenset[str] = frozenset()
    """The models that read release state: a forward move needs their candidates' states
    published (an approval's fresh plan keeps the same set)."""
    closed: str | None = None
    """Why the deploy windows are closed at the plan's time (None when open): a forward
    move is held, a rollback is not."""
    reopens: datetime | None = None
    """When the windows open next (None when open, or no opening within the horizon)."""

    @property
    def needs_approval_for(self) -> Action | None:
        """advance/promote when the verdict would move the rollout forward, else None."""
        if self.verdict is None or self.rollout.status != "canary":
            return None
        return self.verdict.action if self.verdict.action in ("advance", "promote") else None

    @property
    def awaits_operator(self) -> bool:
        """True when the verdict moves forward and the policy wants an operator to agree."""
        return (
            self.policy.require_approval
            and self.needs_approval_for is not None
            and self.closed is None
        )

    def evidence(self) -> dict[str, Any]:
        """The figures and verdict, JSON-ready, stored with the event that acts on them.

        Raises:
            ValueError: the plan was skipped (it has no figures).
        """
        if self.figures is None or self.verdict is None:
            raise ValueError(f"rollout #{self.rollout.id} was skipped: no evidence")
        return {"figures": self.figures.as_dict(), "verdict": self.verdict.as_dict()}


@dataclass(frozen=True, slots=True)
class TickOutcome:
    """What the tick did to one rollout, and why (one line).

    `request` is set when this tick asked an operator (core.approval): the outcome is
    `awaiting_approval` until `core.approval.answer_approval` replaces it.
    """

    rollout_id: int
    outcome: Outcome
    detail: str
    stage_index: int
    request: ApprovalRequest | None = None
    waiting_on: tuple[str, ...] = ()
    """For a stage held by its gate: the failing checks' names (`followed_answers`: the
    users' follow-up windows have not passed yet; `bake_seconds`: too early)."""


def plan_rollout(
    engine: Engine,
    rollout: ledger.RolloutRecord,
    policy: CanaryPolicy,
    *,
    now: datetime,
    stateful: Collection[str] = (),
    windows: DeployWindows | None = None,
) -> TickPlan:
    """Compute the current stage's figures in SQL and decide; no write.

    The figures are the lead model's rows (`rollout.model_name`): for a bundle, one row per
    request, the endpoint's. The stages are the ones the rollout was started with (the
    thresholds come from `policy`). Shadow rollouts are skipped (the shadow evaluation
    moves them into canary). Paused ones are analysed (a breach still rolls them back) but
    never moved forward. `stateful` (the models that read release state) travels with the
    plan for `apply_plan`'s readiness gate; `windows` (core.deploy_windows, None: always
    open) says at `now` whether a forward move may happen (`TickPlan.closed`).

    Raises:
        sqlalchemy.exc.SQLAlchemyError: if the database cannot be queried.
    """
    gate = frozenset(stateful)
    if rollout.status == "shadow":
        why = "shadow: waiting for the shadow evaluation"
        return TickPlan(rollout, policy, None, None, why, gate)
    policy = dataclasses.replace(policy, stages=tuple(ledger.rollout_stages(engine, rollout.id)))
    if not 0 <= rollout.stage_index < len(policy.stages):
        why = f"stage {rollout.stage_index} not in stages"
        return TickPlan(rollout, policy, None, None, why, gate)
    figures = stage_figures(
        engine,
        rollout.id,
        model_name=rollout.model_name,
        since=rollout.stage_started_at,
        until=max(now, rollout.stage_started_at),
        latency_limit_ms=policy.p95_max_ms,
        p95_margin=policy.p95_margin,
        behaviour=policy.behaviour,
    )
    verdict = decide(figures, stage_index=rollout.stage_index, policy=policy)
    closed = windows.why_closed(now) if windows is not None else ""
    return TickPlan(
        rollout, policy, figures, verdict, stateful=gate, closed=closed or None,
        reopens=windows.next_open(now) if closed and windows is not None else None,
    )  # fmt: skip


def apply_plan(
    engine: Engine,
    plan: TickPlan,
    *,
    actor: str = CONTROLLER_ACTOR,
    registry: ledger.AliasRegistry | None = None,
    code_version: str,
    image_version: str,
    approved: bool = False,
) -> TickOutcome:
    """Carry out a plan through the ledger (each write is one transaction with one event).

    Safe to repeat: advances are compare-and-set on the stage index and ended rollouts
    refuse changes, so a plan made from stale state ends as `conflict`, writing nothing.
    A forward move (advance, promote) that would give traffic to a candidate whose release
    state is not published is held, with a `state_not_ready` event saying which and the
    fix; outside the deploy windows (`plan.closed`) it is held with one
    `held_deploy_window` event per closed period; a rollback is never held. A forward
    move that needs approval
    (policy.require_approval) is only made when `approved`.
    """
    rollout, verdict = plan.rollout, plan.verdict
    if verdict is None:
        return TickOutcome(rollout.id, "skipped", plan.skipped or "", rollout.stage_index)
    reason = "; ".join(verdict.reasons)
    try:
        if verdict.action == "rollback":
            ledger.rollback(
                engine, rollout.id, actor=actor, reason=reason,
                figures=plan.evidence(), registry=registry,
            )  # fmt: skip
            return TickOutcome(rollout.id, "rolled_back", reason, rollout.stage_index)
        if verdict.action == "hold" or rollout.status != "canary":
            why = reason if verdict.action == "hold" else f"{rollout.status}: not moving"
            failing = tuple(check.name for check in verdict.gate.failed)  # () if it passed
            return TickOutcome(rollout.id, "held", why, rollout.stage_index, waiting_on=failing)
        held = _hold_outside_window(engine, plan, actor) or _hold_without_state(engine, plan, actor)
        if held is not None:
            return held
        if plan.policy.require_approval and not approved:
            return TickOutcome(
                rollout.id, "awaiting_approval", f"{verdict.action} needs an operator",
                rollout.stage_index,
            )  # fmt: skip
        if verdict.action == "advance":
            ledger.advance_stage(
                engine, rollout.id, expected_stage_index=rollout.stage_index,
                stages=plan.policy.stages, actor=actor, reason=reason, figures=plan.evidence(),
            )  # fmt: skip
            return TickOutcome(rollout.id, "advanced", reason, rollout.stage_index)
        _promote(
            engine, plan, actor=actor, reason=reason, registry=registry,
            code_version=code_version, image_version=image_version,
        )  # fmt: skip
        return TickOutcome(rollout.id, "promoted", reason, rollout.stage_index)
    except ConflictError as exc:
        # Another tick (or an operator) changed the rollout first: nothing to do here.
        log.info("rollout #%s: %s", rollout.id, exc)
        return TickOutcome(rollout.id, "conflict", str(exc), rollout.stage_index)


def _hold_outside_window(engine: Engine, plan: TickPlan, actor: str) -> TickOutcome | None:
    """`held` with a `held_deploy_window` event when the deploy windows are closed; None
    when they are open.

    One event per closed period: the event's figures carry the next opening, and a tick
    finding the newest such event with the same next opening only holds.
    """
    if plan.closed is None:
        return None
    rollout = plan.rollout
    why = f"{plan.needs_approval_for} held: {plan.closed}"
    reopens = plan.reopens.isoformat() if plan.reopens is not None else None
    held = [e for e in ledger.rollout_events(engine, rollout.id) if e.kind == HELD_DEPLOY_WINDOW]
    if not held or (held[-1].figures or {}).get("deploy_window", {}).get("next_open") != reopens:
        window = {"next_open": reopens, "reason": plan.closed}
        ledger.record_event(
            engine, rollout.id, kind=HELD_DEPLOY_WINDOW, actor=actor, reason=why,
            figures=plan.evidence() | {"deploy_window": window},
        )  # fmt: skip
        log.warning("rollout #%s: %s", rollout.id, why)
    return TickOutcome(rollout.id, "held", why, rollout.stage_index)


def _hold_without_state(engine: Engine, plan: TickPlan, actor: str) -> TickOutcome | None:
    """`held` with a `state_not_ready` event when a stateful candidate of the rollout has no
    published release state (it must take no more traffic); None when the move may go on.

    The event is written once per wait, not on every tick: a tick whose rollout's newest
    event already says so only holds.
    """
    rollout = plan.rollout
    try:
        ledger.require_state_ready(engine, rollout.candidate_versions, plan.stateful)
    except StateNotReadyError as exc:
        why = f"{plan.needs_approval_for} held: {exc}"
        events = ledger.rollout_events(engine, rollout.id)
        if not events or events[-1].kind != STATE_NOT_READY:
            ledger.record_event(
                engine, rollout.id, kind=STATE_NOT_READY, actor=actor, reason=why,
                figures=plan.evidence(),
            )  # fmt: skip
        log.warning("rollout #%s: %s", rollout.id, why)
        return TickOutcome(rollout.id, "held", why, rollout.stage_index)
    return None


def _promote(
    engine: Engine,
    plan: TickPlan,
    *,
    actor: str,
    reason: str,
    registry: ledger.AliasRegistry | None,
    code_version: str,
    image_version: str,
) -> None:
    """Promote at the last stage, unless the stage moved since the plan was made.

    Raises:
        ConflictError: the rollout moved since it was analysed, or the ledger refuses.
    """
    rollout = plan.rollout
    current = ledger.get_rollout(engine, rollout.id)
    if (current.stage_index, current.stage_started_at) != (
        rollout.stage_index,
        rollout.stage_started_at,
    ):
        raise ConflictError(f"rollout #{rollout.id} moved since it was analysed")
    ledger.promote(
        engine, rollout.id, actor=actor, reason=reason, figures=plan.evidence(),
        registry=registry, code_version=code_version, image_version=image_version,
        stateful=plan.stateful,
    )  # fmt: skip


def log_verdict(plan: TickPlan) -> None:
    """Log the decision either way, with every failed threshold or breach."""
    if plan.verdict is None:
        log.info("rollout #%s skipped: %s", plan.rollout.id, plan.skipped)
        return
    v = plan.verdict
    level = logging.WARNING if v.action == "rollback" else logging.INFO
    log.log(
        level,
        "rollout #%s stage %s (%g%%): %s [%s]",
        plan.rollout.id,
        v.stage_index,
        plan.rollout.percent,
        v.action,
        "; ".join(v.reasons),
    )
