"""The controller process is SIGKILLed between ticks and mid-tick, then run again.

A real subprocess runs `core.controller.reconcile` with a checkpoint hook that prints each
named point and, at the chosen one, blocks; the test kills it there with SIGKILL, then
runs the controller again and checks the rollout's events: no duplicate, none lost, seq
contiguous.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import Engine

from core import ledger
from core.simulation import Arm, write_simulated_traffic

MODEL = "intent-classifier"
GOOD = Arm(error_rate=0.0, negative_feedback_rate=0.0, latency_median_ms=15.0)
STAGE_REQUESTS = [6_000, 700]

CONTROLLER_SCRIPT = textwrap.dedent(
    """
    import dataclasses, sys, time
    from config import load_settings
    from core.controller import CanaryPolicy, reconcile
    from core.db import make_engine

    url, stop_at, ticks = sys.argv[1], sys.argv[2], int(sys.argv[3])
    policy = dataclasses.replace(
        CanaryPolicy.from_settings(load_settings()), bake_seconds=0.0, min_samples=50,
        followup_seconds=0.01, abandonment_seconds=0.01,
    )
    engine = make_engine(url)

    def checkpoint(point):
        print(point, flush=True)
        if point == stop_at:
            print("stopped", flush=True)
            time.sleep(600)

    for _ in range(ticks):
        for outcome in reconcile(
            engine, policy, code_version="1", image_version="img", checkpoint=checkpoint
        ):
            print("outcome", outcome.outcome, flush=True)
        checkpoint("tick_done")
    print("exit", flush=True)
    """
)


def _run_controller(url: str, *, stop_at: str = "never", ticks: int = 1) -> list[str]:
    """Run the controller in a subprocess; SIGKILL it when it blocks at `stop_at`."""
    proc = subprocess.Popen(
        [sys.executable, "-c", CONTROLLER_SCRIPT, url, stop_at, str(ticks)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parents[2],
        env=os.environ.copy(),
    )
    assert proc.stdout is not None
    lines = []
    for line in proc.stdout:
        lines.append(line.strip())
        if line.strip() == "stopped":
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=120)
    stderr = proc.stderr.read() if proc.stderr else ""
    if stop_at == "never":
        assert proc.returncode == 0, stderr
    else:
        assert proc.returncode == -signal.SIGKILL, stderr
    return lines


def _start_and_feed(engine: Engine) -> int:
    ledger.record_release(
        engine,
        env="dev",
        code_version="1",
        image_version="img",
        model_versions={MODEL: "1"},
        artifact_digests={MODEL: None},
        reason="v1",
        actor="test",
    )
    rollout = ledger.start_rollout(
        engine,
        env="dev",
        model_name=MODEL,
        candidate_version="2",
        stages=[1, 10, 25, 50, 100],
        actor="test",
        reason="canary",
    )
    _feed(engine, rollout.id)
    return rollout.id


def _feed(engine: Engine, rollout_id: int) -> None:
    """Traffic of the current stage, timestamped within 10 ms of its start (in the past)."""
    rollout = ledger.get_rollout(engine, rollout_id)
    write_simulated_traffic(
        engine,
        rollout,
        champion=GOOD,
        candidate=GOOD,
        requests=STAGE_REQUESTS[rollout.stage_index],
        start=rollout.stage_started_at,
        span_seconds=0.01,
        rng=np.random.default_rng(rollout.stage_index),
    )


def _events(engine: Engine, rollout_id: int) -> list[tuple[int, str, int | None]]:
    return [(e.seq, e.kind, e.stage_index) for e in ledger.rollout_events(engine, rollout_id)]


@pytest.mark.slow
def test_controller_killed_mid_tick_before_write_advances_once_on_rerun(
    engine: Engine, db_url: str
) -> None:
    rollout_id = _start_and_feed(engine)

    lines = _run_controller(db_url, stop_at="planned")
    assert "outcome" not in " ".join(lines)
    assert _events(engine, rollout_id) == [(1, "start", 0)]

    lines = _run_controller(db_url)
    assert "outcome advanced" in lines
    assert _events(engine, rollout_id) == [(1, "start", 0), (2, "advance", 1)]


@pytest.mark.slow
def test_controller_killed_mid_tick_after_write_continues_without_duplicate(
    engine: Engine, db_url: str
) -> None:
    rollout_id = _start_and_feed(engine)

    _run_controller(db_url, stop_at="applied")
    assert _events(engine, rollout_id) == [(1, "start", 0), (2, "advance", 1)]

    lines = _run_controller(db_url)  # the new stage has no data yet: holds, writes nothing
    assert "outcome held" in lines
    assert _events(engine, rollout_id) == [(1, "start", 0), (2, "advance", 1)]

    _feed(engine, rollout_id)
    _run_controller(db_url)
    assert _events(engine, rollout_id) == [(1, "start", 0), (2, "advance", 1), (3, "advance", 2)]


@pytest.mark.slow
def test_controller_killed_between_ticks_continues_on_rerun(engine: Engine, db_url: str) -> None:
    rollout_id = _start_and_feed(engine)

    lines = _run_controller(db_url, stop_at="tick_done", ticks=3)
    assert lines.count("tick_done") == 1
    assert "outcome advanced" in lines

    _feed(engine, rollout_id)
    lines = _run_controller(db_url, ticks=2)
    assert lines.count("outcome advanced") == 1
    assert lines.count("outcome held") == 1
    events = _events(engine, rollout_id)
    assert events == [(1, "start", 0), (2, "advance", 1), (3, "advance", 2)]
    assert ledger.get_rollout(engine, rollout_id).percent == 25.0
