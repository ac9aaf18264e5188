"""The reconciler on real rows in SQLite and Postgres: advance, promote, roll back, repeat."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import numpy as np
import pytest
from sqlalchemy import Engine

from config import load_settings
from core import ledger
from core.controller import (
    APPROVAL_ANSWERED,
    APPROVAL_REQUESTED,
    CanaryPolicy,
    NoAnswer,
    OperatorAnswer,
    TickOutcome,
    answer_approval,
    apply_plan,
    approval_pending,
    approval_requests,
    finish_promotions,
    open_approval,
    plan_rollout,
    reconcile,
    with_answers,
)
from core.db import utcnow
from core.simulation import Arm, write_simulated_traffic

MODEL = "intent-classifier"
GOOD = Arm(error_rate=0.01, negative_feedback_rate=0.05, latency_median_ms=20.0)
# a candidate clearly no worse than the champion (so point-estimate gates pass at small n)
BETTER = Arm(error_rate=0.0, negative_feedback_rate=0.01, latency_median_ms=18.0)
BROKEN = Arm(error_rate=0.60, negative_feedback_rate=0.05, latency_median_ms=20.0)
VERSIONS = {"code_version": "1.0.0", "image_version": "img-1"}


@pytest.fixture
def policy() -> CanaryPolicy:
    """Default thresholds, short stages: bake 60 s, 50 samples per arm."""
    base = CanaryPolicy.from_settings(load_settings())
    return dataclasses.replace(base, bake_seconds=60.0, min_samples=50)


def _start(engine: Engine, policy: CanaryPolicy) -> ledger.RolloutRecord:
    ledger.record_release(
        engine,
        env="dev",
        code_version="1.0.0",
        image_version="img-1",
        model_versions={MODEL: "1"},
        artifact_digests={MODEL: None},
        reason="v1",
        actor="test",
    )
    return ledger.start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version="2",
        stages=policy.stages,
        actor="test",
        reason="canary v2",
    )


def _feed(
    engine: Engine, rollout_id: int, candidate: Arm, requests: int, seed: int
) -> ledger.RolloutRecord:
    """Write a stage's traffic (10 minutes worth) and return the rollout."""
    rollout = ledger.get_rollout(engine, rollout_id)
    write_simulated_traffic(
        engine,
        rollout,
        champion=GOOD,
        candidate=candidate,
        requests=requests,
        start=rollout.stage_started_at,
        span_seconds=600,
        rng=np.random.default_rng(seed),
    )
    return rollout


def _later(rollout: ledger.RolloutRecord) -> object:
    return rollout.stage_started_at + timedelta(minutes=11)


def test_reconcile_good_candidate_walks_every_stage_then_promotes(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    # enough traffic per stage for both arms to reach 50 samples, even at 1%
    sizes = [6_000, 700, 300, 200, 120]
    for index, size in enumerate(sizes):
        current = _feed(engine, rollout.id, BETTER, size, seed=index)
        assert current.stage_index == index
        outcomes = reconcile(engine, policy, now=_later(current), **VERSIONS)
        expected = "promoted" if index == len(sizes) - 1 else "advanced"
        assert [o.outcome for o in outcomes] == [expected], outcomes

    final = ledger.get_rollout(engine, rollout.id)
    assert final.status == "promoted"
    release = ledger.current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {MODEL: "2"}
    events = ledger.rollout_events(engine, rollout.id)
    assert [e.kind for e in events] == [
        "start",
        "advance",
        "advance",
        "advance",
        "advance",
        "promote",
    ]
    assert [e.seq for e in events] == list(range(1, 7))
    first_advance = events[1].figures
    assert first_advance is not None
    assert first_advance["figures"]["candidate"]["n"] >= 50
    assert first_advance["verdict"]["gate"]["passed"] is True
    assert set(first_advance["verdict"]["tests"]) == {
        "error_rate",
        "negative_feedback",
        "p95_limit",
        "p95_vs_champion",
        "reformulation",
        "handoff",
        "abandonment",
    }
    assert first_advance["figures"]["candidate"]["abandonment_rate"] == 0.0


def test_reconcile_erroring_candidate_rolled_back_with_evidence(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, BROKEN, 6_000, seed=1)

    outcomes = reconcile(engine, policy, now=_later(current), **VERSIONS)

    assert [o.outcome for o in outcomes] == ["rolled_back"]
    assert "error_rate" in outcomes[0].detail
    events = ledger.rollout_events(engine, rollout.id)
    assert [e.kind for e in events] == ["start", "rollback"]
    assert events[-1].actor == "rollout-controller"
    figures = events[-1].figures
    assert figures is not None
    assert figures["verdict"]["tests"]["error_rate"]["reject"] is True
    assert figures["figures"]["candidate"]["error_rate"] > 0.2
    # the champion keeps serving: no new release
    release = ledger.current_release(engine, "dev")
    assert release is not None
    assert release.model_versions == {MODEL: "1"}


def test_reconcile_rolls_back_a_candidate_whose_users_ask_again(
    engine: Engine, policy: CanaryPolicy
) -> None:
    """Same errors, latency and thumbs; but users of the candidate reformulate and ask for a
    person far more often: the behaviour gates, read in SQL from the rows, roll it back."""
    policy = dataclasses.replace(policy, stages=(50.0, 100.0), handoff_labels=("talk_to_agent",))
    rollout = _start(engine, policy)
    champion = dataclasses.replace(GOOD, reformulation_rate=0.05, handoff_rate=0.01)
    confusing = dataclasses.replace(GOOD, reformulation_rate=0.30, handoff_rate=0.15)
    write_simulated_traffic(
        engine, rollout, champion=champion, candidate=confusing, requests=6_000,
        start=rollout.stage_started_at, span_seconds=600, rng=np.random.default_rng(5),
    )  # fmt: skip

    outcomes = reconcile(engine, policy, now=_later(rollout), **VERSIONS)

    assert [o.outcome for o in outcomes] == ["rolled_back"]
    evidence = ledger.rollout_events(engine, rollout.id)[-1].figures
    assert evidence is not None
    tests = evidence["verdict"]["tests"]
    assert tests["reformulation"]["reject"]
    assert tests["handoff"]["reject"]
    assert not tests["error_rate"]["reject"]
    assert not tests["negative_feedback"]["reject"]
    candidate, champ = evidence["figures"]["candidate"], evidence["figures"]["champion"]
    assert candidate["reformulation_rate"] > 3 * champ["reformulation_rate"]


def test_reconcile_before_bake_time_holds_without_events(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, GOOD, 6_000, seed=2)

    outcomes = reconcile(
        engine, policy, now=current.stage_started_at + timedelta(seconds=30), **VERSIONS
    )

    assert [o.outcome for o in outcomes] == ["held"]
    assert "bake_seconds" in outcomes[0].detail
    waiting_on = outcomes[0].waiting_on  # the failing checks by name, as the detail lists them
    assert waiting_on[0] == "bake_seconds"
    assert [part.split()[0] for part in outcomes[0].detail.split("; ")] == list(waiting_on)
    assert [e.kind for e in ledger.rollout_events(engine, rollout.id)] == ["start"]


def test_reconcile_repeated_tick_same_state_advances_once(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=3)
    now = _later(current)
    plan = plan_rollout(engine, current, policy, now=now)

    first = apply_plan(engine, plan, **VERSIONS)
    again = apply_plan(engine, plan, **VERSIONS)  # a duplicated tick, stale plan
    later = reconcile(engine, policy, **VERSIONS)  # the new stage has just begun

    assert (first.outcome, again.outcome) == ("advanced", "conflict")
    assert [o.outcome for o in later] == ["held"]
    events = ledger.rollout_events(engine, rollout.id)
    assert [e.kind for e in events] == ["start", "advance"]
    assert ledger.get_rollout(engine, rollout.id).stage_index == 1


def test_reconcile_paused_rollout_never_advances_but_rolls_back_on_breach(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    ledger.pause(engine, rollout.id, actor="op", reason="looking")
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=4)
    [paused] = reconcile(engine, policy, now=_later(current), **VERSIONS)
    assert (paused.outcome, paused.waiting_on) == ("held", ())  # not the gate: the operator
    _feed(engine, rollout.id, BROKEN, 6_000, seed=5)
    assert [o.outcome for o in reconcile(engine, policy, now=_later(current), **VERSIONS)] == [
        "rolled_back"
    ]
    kinds = [e.kind for e in ledger.rollout_events(engine, rollout.id)]
    assert kinds == ["start", "pause", "rollback"]


def test_reconcile_shadow_rollout_skipped(engine: Engine, policy: CanaryPolicy) -> None:
    ledger.record_release(
        engine,
        env="dev",
        code_version="1",
        image_version="i",
        model_versions={MODEL: "1"},
        artifact_digests={MODEL: None},
        reason="v1",
        actor="test",
    )
    ledger.start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version="2",
        stages=policy.stages,
        mode="shadow",
        actor="test",
        reason="shadow first",
    )
    outcomes = reconcile(engine, policy, **VERSIONS)
    assert [o.outcome for o in outcomes] == ["skipped"]


def test_apply_plan_requires_approval_when_policy_says_so(
    engine: Engine, policy: CanaryPolicy
) -> None:
    strict = dataclasses.replace(policy, require_approval=True)
    rollout = _start(engine, strict)
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=6)
    plan = plan_rollout(engine, current, strict, now=_later(current))
    assert plan.needs_approval_for == "advance"

    waiting = apply_plan(engine, plan, **VERSIONS)
    approved = apply_plan(engine, plan, approved=True, **VERSIONS)

    assert (waiting.outcome, approved.outcome) == ("awaiting_approval", "advanced")


def test_approval_pending_until_answered_or_stale(engine: Engine, policy: CanaryPolicy) -> None:
    rollout = _start(engine, policy)
    assert not approval_pending(engine, rollout, timeout_seconds=60)
    ledger.record_event(engine, rollout.id, kind=APPROVAL_REQUESTED, actor="rollout-controller")
    assert approval_pending(engine, rollout, timeout_seconds=60)
    assert not approval_pending(engine, rollout, timeout_seconds=0)
    ledger.record_event(engine, rollout.id, kind=APPROVAL_ANSWERED, actor="op", reason="hold")
    assert not approval_pending(engine, rollout, timeout_seconds=60)


def test_reconcile_now_before_stage_start_is_an_empty_window(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    outcomes = reconcile(engine, policy, now=utcnow() - timedelta(days=1), **VERSIONS)
    assert [o.outcome for o in outcomes] == ["held"]
    assert ledger.get_rollout(engine, rollout.id).status == "canary"


class AliasBook:
    """A real, in-memory alias store with the registry's alias interface."""

    def __init__(self, aliases: dict[str, str]) -> None:
        self.aliases = dict(aliases)

    def set_alias(self, name: str, alias: str, version: str) -> None:
        self.aliases[alias] = version

    def delete_alias(self, name: str, alias: str) -> None:
        self.aliases.pop(alias, None)

    def get_version(self, name: str, version: str) -> object:
        return type("Info", (), {"artifact_sha256": None, "version": version})()

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        return None

    def version_by_alias(self, name: str, alias: str) -> object | None:
        version = self.aliases.get(alias)
        return None if version is None else type("Info", (), {"version": version})()


def test_finish_promotions_repairs_aliases_left_by_a_crash(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    # the promotion committed in the database, but the process died before MLflow moved
    ledger.promote(engine, rollout.id, actor="test", reason="done", **VERSIONS)
    book = AliasBook({"dev-champion": "1"})

    assert finish_promotions(engine, book) == [rollout.id]
    assert book.aliases == {"dev-champion": "2", "dev-previous": "1"}
    assert finish_promotions(engine, book) == []  # idempotent


def test_finish_promotions_leaves_a_later_env_rollback_alone(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    ledger.promote(engine, rollout.id, actor="test", reason="done", **VERSIONS)
    ledger.rollback_env(engine, "dev", actor="op", reason="bad day")
    book = AliasBook({"dev-champion": "1"})

    assert finish_promotions(engine, book) == []
    assert book.aliases == {"dev-champion": "1"}


# --- operator approval (core.approval) -----------------------------------------------------


def _awaiting(engine: Engine, policy: CanaryPolicy) -> tuple[int, TickOutcome]:
    """A rollout ready to advance under a policy that wants an operator; the tick asks.

    Seed 6 gives both arms >= 50 samples at 1% (as in the apply_plan approval test)."""
    strict = dataclasses.replace(policy, require_approval=True)
    rollout = _start(engine, strict)
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=6)
    [outcome] = reconcile(engine, strict, now=_later(current), **VERSIONS)
    return rollout.id, outcome


def test_reconcile_asks_an_operator_once_per_stage(engine: Engine, policy: CanaryPolicy) -> None:
    rollout_id, outcome = _awaiting(engine, policy)

    assert outcome.outcome == "awaiting_approval"
    assert outcome.request is not None
    assert outcome.request.action == "advance"
    assert outcome.request.key == f"rollout-{rollout_id}-stage-0-1"
    assert f"Rollout #{rollout_id}" in outcome.request.description
    assert approval_requests([outcome]) == [outcome.request]
    events = ledger.rollout_events(engine, rollout_id)
    assert [e.kind for e in events] == ["start", APPROVAL_REQUESTED]
    assert events[-1].figures is not None
    assert events[-1].figures["verdict"]["action"] == "advance"

    strict = outcome.request.plan.policy
    [again] = reconcile(engine, strict, now=_later(outcome.request.plan.rollout), **VERSIONS)

    assert (again.outcome, again.detail, again.request) == (
        "awaiting_approval",
        "operator asked already",
        None,
    )
    assert len(ledger.rollout_events(engine, rollout_id)) == 2


@pytest.mark.parametrize(
    ("answer", "outcome", "status", "last_kinds"),
    [
        (OperatorAnswer("approve", "ana", "looks good"), "advanced", "canary", ["advance"]),
        (OperatorAnswer("hold", "ana", "after lunch"), "held", "canary", []),
        (OperatorAnswer("rollback", "bo", "not today"), "rolled_back", "rolled_back", ["rollback"]),
        (OperatorAnswer("abort", "bo", "wrong build"), "skipped", "aborted", ["abort"]),
        (NoAnswer("TimeoutError"), "held", "canary", []),
    ],
    ids=["approve", "hold", "rollback", "abort", "no-answer"],
)
def test_answer_approval_records_the_answer_and_carries_it_out(
    engine: Engine,
    policy: CanaryPolicy,
    answer: OperatorAnswer | NoAnswer,
    outcome: str,
    status: str,
    last_kinds: list[str],
) -> None:
    rollout_id, waiting = _awaiting(engine, policy)
    assert waiting.request is not None

    later = _later(waiting.request.plan.rollout)
    done = answer_approval(engine, waiting.request, answer, registry=None, now=later, **VERSIONS)

    assert (done.rollout_id, done.outcome, done.request) == (rollout_id, outcome, None)
    assert ledger.get_rollout(engine, rollout_id).status == status
    events = ledger.rollout_events(engine, rollout_id)
    kinds = [e.kind for e in events]
    assert kinds == ["start", APPROVAL_REQUESTED, APPROVAL_ANSWERED, *last_kinds]
    answered = events[2]
    if isinstance(answer, OperatorAnswer):
        assert (answered.actor, answered.reason) == (
            answer.actor,
            f"{answer.decision}: {answer.reason}",
        )
        assert events[-1].actor == (
            answer.actor if last_kinds != ["advance"] else "rollout-controller"
        )
    else:
        assert (answered.actor, answered.reason) == (
            "rollout-controller",
            "no answer: TimeoutError",
        )
        assert done.detail == "no operator answer"
    assert with_answers([waiting], [done]) == [done]


def test_answer_approval_on_a_rollout_ended_meanwhile_is_a_conflict(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout_id, waiting = _awaiting(engine, policy)
    assert waiting.request is not None
    ledger.abort(engine, rollout_id, actor="op", reason="ended from the CLI meanwhile")

    done = answer_approval(
        engine, waiting.request, OperatorAnswer("rollback", "ana", "late"), registry=None,
        **VERSIONS,
    )  # fmt: skip

    assert done.outcome == "conflict"
    assert ledger.get_rollout(engine, rollout_id).status == "aborted"


def test_open_approval_refuses_a_plan_that_needs_no_operator(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    plan = plan_rollout(engine, rollout, policy, now=utcnow())

    with pytest.raises(ValueError, match="nothing to approve"):
        open_approval(engine, plan)


def test_with_answers_replaces_only_answered_rollouts_in_order() -> None:
    waiting = TickOutcome(2, "awaiting_approval", "advance needs an operator", 0)
    others = [TickOutcome(1, "held", "bake", 0), waiting, TickOutcome(3, "advanced", "ok", 1)]
    answered = TickOutcome(2, "advanced", "approved", 0)

    assert with_answers(others, [answered]) == [others[0], answered, others[2]]
    assert approval_requests(others) == []


def test_status_shows_the_behaviour_figures_of_the_last_tick(
    engine: Engine, policy: CanaryPolicy
) -> None:
    from rich.console import Console

    from cli.tables import status_table

    rollout = _start(engine, policy)
    _feed(engine, rollout.id, BETTER, 6_000, seed=3)
    assert [o.outcome for o in reconcile(engine, policy, now=_later(rollout), **VERSIONS)] == [
        "advanced"
    ]

    console = Console(width=400, record=True)
    console.print(status_table(engine, envs=("dev",)))
    text = console.export_text()
    assert "advance (candidate/champion):" in text
    assert "reform 0.0%/0.0%" in text
    assert "abandon 0.0%/0.0%" in text
    assert "breaches: none" in text
