"""`sml status` as data: per env, the release, its active rollouts and their stages.

`status_document` reads the ledger and computes each active rollout's current stage the
way the controller does (`core.tick.plan_rollout`: the same SQL figures, the same
`core.canary.decide`), writing nothing. The result is plain JSON-ready data: `sml status
-o json` prints it as it is (schema: docs/schemas/sml-status.schema.json) and
`cli.status_tree` draws it. Every identifier is kept whole.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import Engine

from cli.records import event_json, iso, release_json
from core.canary import CanaryPolicy
from core.gates import GateCheck
from core.ledger import (
    ENVIRONMENTS,
    EventRecord,
    RolloutRecord,
    active_rollouts,
    current_release,
    rollout_events,
    rollout_stages,
)
from core.sequential import SequentialResult
from core.tick import TickPlan, plan_rollout

STATUS_SCHEMA = "sml.status/v1"
LAST_EVENTS = 5

# The always-valid test behind each advance-gate check (None: a count or the bake time,
# which no test judges).
GATE_TESTS: dict[str, str] = {
    "candidate_p95_ms": "p95_limit",
    "p95_vs_champion_ms": "p95_vs_champion",
    "error_rate_excess": "error_rate",
    "negative_feedback_excess": "negative_feedback",
    "reformulation_excess": "reformulation",
    "handoff_excess": "handoff",
    "abandonment_excess": "abandonment",
}


def _test_json(result: SequentialResult) -> dict[str, Any]:
    return {
        "estimate": result.estimate,
        "null": result.null,
        "p_value": result.p_value,
        "alpha": result.alpha,
        "breach": result.reject,
    }


def _gate_json(check: GateCheck, tests: dict[str, SequentialResult]) -> dict[str, Any]:
    """One gate: the advance threshold on the point estimate and, where one runs, the
    always-valid breach test; `passed` is false when either fails, null while skipped."""
    name = GATE_TESTS.get(check.name)
    test = tests.get(name) if name else None
    breach = test is not None and test.reject
    return {
        "name": check.name,
        "estimate": check.value,
        "comparison": check.comparison,
        "threshold": check.threshold,
        "passed": None if check.skipped and not breach else (check.passed and not breach),
        "test": None if test is None else {"name": name} | _test_json(test),
    }


def _stages_json(stages: list[float], rollout: RolloutRecord) -> list[dict[str, Any]]:
    current = rollout.stage_index
    return [
        {
            "step": i + 1,
            "percent": percent,
            "state": "done" if i < current else ("current" if i == current else "pending"),
        }
        for i, percent in enumerate(stages)
    ]


def _analysis_json(plan: TickPlan, now: datetime) -> dict[str, Any] | None:
    """The current stage as the controller sees it: arms' n vs the minimum, bake time,
    verdict and every gate (None for a shadow rollout, which no tick judges)."""
    if plan.figures is None or plan.verdict is None:
        return None
    policy, figures, verdict = plan.policy, plan.figures, plan.verdict
    in_stage = max(0.0, (now - plan.rollout.stage_started_at).total_seconds())
    full = policy.stages[plan.rollout.stage_index] >= 100.0
    arms = {
        name: {"n": arm.n, "min_n": None if full and name == "champion" else policy.min_samples}
        for name, arm in (("champion", figures.champion), ("candidate", figures.candidate))
    }
    return {
        "seconds_in_stage": round(in_stage, 1),
        "bake_seconds": policy.bake_seconds,
        "bake_seconds_left": round(max(0.0, policy.bake_seconds - in_stage), 1),
        "arms": arms,
        "figures": figures.as_dict(),
        "verdict": {"action": verdict.action, "reasons": list(verdict.reasons)},
        "test_alpha": policy.test_alpha,
        "gates": [_gate_json(c, verdict.tests) for c in verdict.gate.checks],
    }


def rollout_json(
    engine: Engine,
    rollout: RolloutRecord,
    policy: CanaryPolicy,
    *,
    now: datetime,
    stateful: Collection[str],
    events: list[EventRecord] | None = None,
) -> dict[str, Any]:
    """One active rollout: versions, step k/N (one-based), percent, stages, the current
    stage's analysis and the last events."""
    stages = rollout_stages(engine, rollout.id)
    plan = plan_rollout(engine, rollout, policy, now=now, stateful=stateful)
    shadow = rollout.stage_index < 0
    events = rollout_events(engine, rollout.id) if events is None else events
    return {
        "id": rollout.id,
        "lead": rollout.model_name,
        "bundle": bool(rollout.bundle),
        "models": {
            name: {"champion": rollout.champion_versions[name], "candidate": candidate}
            for name, candidate in rollout.candidate_versions.items()
        },
        "status": rollout.status,
        "forced": rollout.forced,
        "step": None if shadow else rollout.stage_index + 1,
        "steps": len(stages),
        "percent": rollout.percent,
        "stage_started_at": iso(rollout.stage_started_at),
        "created_at": iso(rollout.created_at),
        "stages": _stages_json(stages, rollout),
        "skipped": plan.skipped,
        "analysis": _analysis_json(plan, now),
        "events": [event_json(e) for e in events[-LAST_EVENTS:]],
    }


def status_document(
    engine: Engine,
    envs: tuple[str, ...],
    policy: CanaryPolicy,
    *,
    now: datetime,
    stateful: Collection[str] = (),
) -> dict[str, Any]:
    """`sml status` as JSON-ready data (schema STATUS_SCHEMA): per env in `envs`, its
    current release (and the other envs running the same versions), the models it
    serves, and every active rollout with its current stage judged at `now`."""
    releases = {env: current_release(engine, env) for env in ENVIRONMENTS}
    out = []
    for env in envs:
        release = releases[env]
        active = active_rollouts(engine, env)
        in_rollout = {name: r.id for r in active for name in r.candidate_versions}
        models = sorted(set(release.model_versions if release else {}) | set(in_rollout))
        same = [
            other
            for other, theirs in releases.items()
            if release and other != env and theirs
            if theirs.model_versions == release.model_versions
        ]
        out.append(
            {
                "env": env,
                "release": None if release is None else release_json(release, stateful),
                "also_in": same,
                "models": [
                    {
                        "name": name,
                        "serving": release.model_versions.get(name) if release else None,
                        "rollout_id": in_rollout.get(name),
                    }
                    for name in models
                ],
                "rollouts": [
                    rollout_json(engine, r, policy, now=now, stateful=stateful) for r in active
                ],
            }
        )
    return {"schema": STATUS_SCHEMA, "generated_at": iso(now), "environments": out}
