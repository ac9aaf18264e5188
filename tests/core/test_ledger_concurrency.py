"""Concurrent writers: one promotion wins, the others are refused with a clear reason.

Threads share one engine (one pooled connection each); processes each build their own
engine from the URL, as two operators' CLIs or two controller pods would. Both run on
SQLite (BEGIN IMMEDIATE) and on the real Postgres (advisory lock + SELECT ... FOR UPDATE).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, func, select

from core.db import Release, RolloutEvent, session_scope
from core.errors import ConflictError
from core.ledger import (
    advance_stage,
    get_rollout,
    promote,
    record_release,
    releases_history,
    rollout_events,
    start_rollout,
    write_transaction,
)
from core.ledger.rollout_rows import locked_rollout

REPO = Path(__file__).resolve().parents[2]
STAGES = [1.0, 10.0, 25.0, 50.0, 100.0]

WORKER = """
import json, sys, time
from core.db import make_engine
from core.errors import ConflictError
from core.ledger import promote
url, rollout_id, start_at = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
engine = make_engine(url)
with engine.connect() as conn:
    conn.exec_driver_sql("SELECT 1")  # connect before the start line, not after
time.sleep(max(0.0, start_at - time.time()))
try:
    _, release = promote(engine, rollout_id, actor=sys.argv[4], reason="race",
                         code_version="1.1", image_version="img-1")
    print(json.dumps({"ok": True, "release": release.id}))
except ConflictError as exc:
    print(json.dumps({"ok": False, "error": str(exc)}))
"""


def _open_rollout(engine: Engine) -> int:
    record_release(
        engine,
        env="prd",
        code_version="1.0",
        image_version="img-1",
        model_versions={"clf": "1"},
        artifact_digests={"clf": "sha-1"},
        reason="seed",
        actor="test",
    )
    return start_rollout(
        engine,
        env="prd",
        model_name="clf",
        candidate_version="2",
        stages=STAGES,
        actor="test",
        reason="race",
    ).id


def _race(n: int, action: Callable[[int], Any]) -> list[Any]:
    """Run `action(i)` in n threads released at once; return each result or exception."""
    barrier = threading.Barrier(n)
    results: list[Any] = [None] * n

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = action(i)
        except Exception as exc:
            results[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return results


def _assert_one_promotion(engine: Engine, rollout_id: int) -> None:
    assert get_rollout(engine, rollout_id).status == "promoted"
    assert [e.kind for e in rollout_events(engine, rollout_id)] == ["start", "promote"]
    with session_scope(engine) as session:
        assert session.scalar(select(func.count()).select_from(Release)) == 2
    assert releases_history(engine, "prd")[0].model_versions == {"clf": "2"}


def test_concurrent_promotions_threads_one_wins_others_refused(engine: Engine) -> None:
    rid = _open_rollout(engine)
    results = _race(
        4,
        lambda i: promote(
            engine, rid, actor=f"op{i}", reason="race", code_version="1.1", image_version="i"
        ),
    )
    wins = [r for r in results if isinstance(r, tuple)]
    refusals = [r for r in results if isinstance(r, ConflictError)]
    assert len(wins) == 1, results
    assert len(refusals) == 3, results
    assert all(f"cannot promote rollout #{rid}" in str(r) for r in refusals)
    assert all("it is already promoted since" in str(r) for r in refusals)
    _assert_one_promotion(engine, rid)


@pytest.mark.slow
def test_concurrent_promotions_processes_one_wins_one_refused(engine: Engine, db_url: str) -> None:
    rid = _open_rollout(engine)
    start_at = time.time() + 6.0  # both processes are connected and waiting by then
    env = os.environ | {"PYTHONPATH": str(REPO)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, db_url, str(rid), str(start_at), f"proc{i}"],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        outputs.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(o["ok"] for o in outputs) == [False, True], outputs
    [refusal] = [o for o in outputs if not o["ok"]]
    assert refusal["error"].startswith(f"cannot promote rollout #{rid} (clf v2 in prd)")
    assert "already promoted" in refusal["error"]
    _assert_one_promotion(engine, rid)


def test_duplicated_controller_tick_advances_only_once(engine: Engine) -> None:
    rid = _open_rollout(engine)
    results = _race(
        4,
        lambda i: advance_stage(
            engine,
            rid,
            expected_stage_index=0,
            stages=STAGES,
            actor=f"tick{i}",
            reason="gates passed",
        ),
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1, results
    assert all("at stage 1, not 0" in str(r) for r in results if isinstance(r, ConflictError)), (
        results
    )
    assert get_rollout(engine, rid).stage_index == 1
    with session_scope(engine) as session:
        seqs = session.scalars(
            select(RolloutEvent.seq).where(RolloutEvent.rollout_id == rid).order_by("seq")
        ).all()
    assert seqs == [1, 2]


def test_promote_waits_for_open_writer_then_sees_its_commit(engine: Engine) -> None:
    """The lock, not luck: a promotion started while another writer holds the rollout
    waits for it, then reads what it committed and refuses."""
    rid = _open_rollout(engine)
    outcome: list[Any] = []
    with write_transaction(engine) as session:
        row = locked_rollout(session, rid)
        row.status = "rolled_back"  # the other writer's decision, not yet committed
        session.flush()
        thread = threading.Thread(
            target=lambda: outcome.append(
                _catch(
                    lambda: promote(
                        engine, rid, actor="late", reason="r", code_version="1", image_version="i"
                    )
                )
            )
        )
        thread.start()
        thread.join(timeout=1.0)
        assert thread.is_alive(), "promote did not wait for the open writer"
    thread.join(timeout=30)
    [result] = outcome
    assert isinstance(result, ConflictError)
    assert "already rolled_back" in str(result)


def _catch(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception as exc:
        return exc
