"""The real-serving A/A of `bench/aa_serving.py`, short: issue 12's "Must show", first bullet.

One bench with small figures: two identically trained versions, a real `sml serve` process,
two A/A canaries (stages 10 -> 50 -> 100 %) under closed-loop load of simulated users, one
at 1 and one at 32 connections, each decided by the real controller (`reconcile`) ticking
on the traffic rows. The full count of false rollbacks against alpha is the bench's
(docs/benchmarks.md); here: both rollouts end by the controller's hand, no latency gate
fires, and the counting and the printed report agree with the runs. Plus the counting and
the simulated users checked without servers.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from bench.aa_serving import (
    LATENCY_GATES,
    AAConfig,
    Behaviour,
    RunResult,
    StageSeen,
    UserPool,
    run_aa,
    run_line,
    summarise,
)
from core.tick import CONTROLLER_ACTOR

SHORT = AAConfig(
    runs=2,
    connections=(1, 32),
    routers=1,
    bake_seconds=1.0,
    min_samples=30,
    tick_seconds=0.5,
    followup_seconds=2.0,
    abandonment_seconds=3.0,
    run_timeout_seconds=60.0,
    training_rows=1_500,
)


@pytest.mark.integration
@pytest.mark.slow
def test_a_a_canaries_through_sml_serve_are_decided_by_the_controller_without_latency_breach(
    db_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    summary = run_aa(tmp_path, db_url, SHORT)

    assert summary.twin_agreement == 1.0  # the premise: the two versions answer alike
    assert [r.connections for r in summary.results] == [1, 32]
    for run in summary.results:
        assert run.outcome in ("promoted", "rolled_back"), run_line(run)
        assert run.decided_by == CONTROLLER_ACTOR
        assert run.failed_requests == 0
        assert run.users < run.requests  # users come back: not one id per request
        judged = [stage.percent for stage in run.stages]
        assert judged == [10.0, 50.0, 100.0][: len(judged)]
        assert not LATENCY_GATES & set(run.breaches), run_line(run)
        if run.outcome == "promoted":
            assert judged == [10.0, 50.0, 100.0]
            assert run.requests > SHORT.min_samples * 10  # the 10% stage needed that many
    rolled_back = sum(r.outcome == "rolled_back" for r in summary.results)
    assert summary.decided == 2
    assert summary.false_rollbacks == rolled_back
    printed = capsys.readouterr().out
    assert f"false rollbacks: {rolled_back} of 2 decided A/A rollouts" in printed
    assert f"allowed alpha {summary.alpha:g}" in printed
    assert printed.count(" rollout #") == 2


def _stage(percent: float, breaches: tuple[str, ...] = ()) -> StageSeen:
    return StageSeen(0, percent, "advance", 500, 10.0, 50, 11.0, breaches)


def _run(outcome: str, connections: int, *stages: StageSeen) -> RunResult:
    return RunResult(0, connections, 1, outcome, None, stages, 100, 0, 40, 1.0)


def test_summarise_counts_every_rollback_of_a_twin_as_false_and_leaves_out_undecided() -> None:
    results = [
        _run("promoted", 1, _stage(10), _stage(50), _stage(100)),
        _run("rolled_back", 32, _stage(10), _stage(50, ("error_rate",))),
        _run("undecided", 1, _stage(10)),
        _run("promoted", 32, _stage(10), _stage(50), _stage(100)),
    ]

    summary = summarise(results, alpha=0.05, twin_agreement=1.0)

    assert (summary.runs, summary.decided, summary.false_rollbacks) == (4, 3, 1)
    assert summary.rate == pytest.approx(1 / 3)
    assert summary.gates == {"error_rate at 50%": 1}
    assert summary.median_ratio == {1: pytest.approx(1.1), 32: pytest.approx(1.1)}
    assert summary.rate < summary.upper_bound < 1.0


def test_simulated_users_come_back_no_sooner_than_their_reading_time() -> None:
    behaviour = Behaviour(think_seconds=(2.0, 4.0), reformulate_if_wrong=1.0)
    pool = UserPool({"a": ["x"], "b": ["y"]}, behaviour, random.Random(1))
    last_answer: dict[str, float] = {}
    now = 0.0
    for _ in range(500):
        now += 0.01
        user = pool.take(now)
        if user.user_id in last_answer:
            assert now - last_answer[user.user_id] >= 2.0
        pool.answered(user, "wrong", now)  # always wrong: every user reformulates
        last_answer[user.user_id] = now

    assert pool.users < 500  # users came back
    assert pool.users >= 200  # nobody asked again within 2 s: new users filled the gap
