"""`sml status | history | diff | rollout | rollback` on SQLite and Postgres.

Commands run in-process through `cli.main.main`, exactly as the console script runs them:
bad input must end in ONE line on stderr and exit code 2.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine

from core.ledger import (
    advance_stage,
    get_rollout,
    record_event,
    record_release,
    start_rollout,
)
from tests.factories import make_release

SmlRunner = Callable[..., Any]  # the `sml` fixture of tests/cli/conftest.py

T0 = datetime(2026, 11, 17, 9, 0, tzinfo=UTC)
STAGES = [1.0, 10.0, 25.0, 50.0, 100.0]


def _one_line_error(result_err: str) -> str:
    lines = [line for line in result_err.splitlines() if line.strip()]
    assert len(lines) == 1, result_err
    return lines[0]


def test_status_shows_release_champion_candidate_stage_and_gate_figures(
    ledger_db: Engine, sml: SmlRunner
) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", ranker="7"))
    make_release(ledger_db, env="stg", at=T0, models=dict(clf="2"))
    rollout = start_rollout(
        ledger_db,
        env="prd",
        model_name="clf",
        candidate_version="2",
        stages=STAGES,
        actor="a",
        reason="r",
    )
    advance_stage(
        ledger_db, rollout.id, expected_stage_index=0, stages=STAGES, actor="c", reason="ok"
    )
    record_event(
        ledger_db, rollout.id, kind="gate", actor="c", figures={"n_candidate": 230, "p95": 12.5}
    )
    result = sml("status")
    assert result.code == 0, result.err
    lines = [line.strip("│├└─ ") for line in result.out.splitlines()]
    assert "prd  release v1.0-clfv1-rankerv7" in lines
    assert f"clf v1  in rollout #{rollout.id}" in lines
    assert "ranker v7" in lines
    assert f"rollout #{rollout.id} clf v2 vs v1 canary" in lines
    assert any(line.startswith("step 2/5  10%  in stage ") for line in lines)
    assert "stages  ✓1% ▶10% ·25% ·50% ·100%" in lines
    assert "n  champion 0/200 ✗ candidate 0/200 ✗" in lines
    assert any(line.endswith("advance by c canary -> canary: ok") for line in lines)
    assert "stg  release v1.0-clfv2-rc" in lines
    assert "dev  (nothing released)" in lines


def test_history_lists_releases_and_at_picks_release_in_force(
    ledger_db: Engine, sml: SmlRunner
) -> None:
    first = make_release(ledger_db, env="prd", at=T0, models=dict(clf="1")).tag
    second = make_release(
        ledger_db, env="prd", at=T0 + timedelta(hours=5), models=dict(clf="2")
    ).tag
    result = sml("history", "--env", "prd")
    assert result.code == 0, result.err
    assert result.out.index(second) < result.out.index(first)  # newest first
    assert "2026-11-17 14:00:00" in result.out

    at = sml("history", "--env", "prd", "--at", "2026-11-17T13:59")
    assert at.code == 0, at.err
    assert f"in force in prd at 2026-11-17 13:59:00 UTC: {first}" in at.out

    recent = sml("history", "--env", "prd", "--at", "2h ago")
    assert f"UTC: {second}" in recent.out

    before = sml("history", "--env", "prd", "--at", "2026-01-01")
    assert "nothing was released in prd at or before 2026-01-01 00:00:00 UTC" in before.out


def test_diff_shows_changed_added_removed_models(ledger_db: Engine, sml: SmlRunner) -> None:
    a = make_release(ledger_db, env="prd", at=T0, models=dict(clf="1", ranker="7")).tag
    b = record_release(
        ledger_db,
        env="prd",
        code_version="1.1",
        image_version="img-2",
        model_versions={"clf": "2", "tagger": "3"},
        artifact_digests={},
        reason="r",
        replace_models=True,
    ).tag
    result = sml("diff", a, b)
    assert result.code == 0, result.err
    rows = {line.split("│")[1].strip(): line for line in result.out.splitlines() if "│" in line}
    assert "changed" in rows["clf"]
    assert "v1" in rows["clf"]
    assert "v2" in rows["clf"]
    assert "removed" in rows["ranker"]
    assert "added" in rows["tagger"]
    assert "img-1" in rows["image"]
    assert "img-2" in rows["image"]
    assert "changed" in rows["image"]
    assert "changed" in rows["code"]


def test_rollout_pause_resume_abort_show_and_list(ledger_db: Engine, sml: SmlRunner) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1"))
    rid = start_rollout(
        ledger_db,
        env="prd",
        model_name="clf",
        candidate_version="2",
        stages=STAGES,
        actor="a",
        reason="r",
    ).id
    paused = sml("rollout", "pause", str(rid), "--reason", "looking into a ticket")
    assert paused.code == 0, paused.err
    assert f"rollout #{rid} paused: clf v2 vs v1 in prd: paused, step 1, 1%" in paused.out
    assert sml("rollout", "resume", str(rid), "-r", "fine").code == 0
    moved = sml("rollout", "set-stage", str(rid), "3", "-r", "faster")  # step 3 of 5
    assert "canary, step 3, 25%" in moved.out
    assert sml("rollout", "abort", str(rid), "-r", "stop", "--actor", "bob").code == 0
    assert get_rollout(ledger_db, rid).status == "aborted"

    shown = sml("rollout", "show", str(rid))
    assert shown.code == 0, shown.err
    for kind in ("start", "pause", "resume", "set_stage", "abort"):
        assert kind in shown.out
    assert "tester" in shown.out
    assert "bob" in shown.out
    assert "looking into a ticket" in shown.out
    listed = sml("rollout", "list", "--env", "prd")
    assert "aborted" in listed.out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("history", "--env", "qa"), "unknown env 'qa': expected one of dev, stg, prd"),
        (("status", "--env", "qa"), "unknown env 'qa'"),
        (("history", "--env", "prd", "--at", "last tuesday"), "cannot read the time"),
        (("diff", "v1.0-clfv1", "nope"), "unknown release tag 'nope'"),
        (("diff", "x", "y", "--env", "qa"), "unknown env 'qa'"),
        (("rollout", "pause", "999", "-r", "x"), "rollout #999 not found"),
        (("rollout", "show", "999"), "rollout #999 not found"),
        (("rollout", "resume", "{rid}", "-r", "x"), "it is canary, resume needs paused"),
        (("rollout", "set-stage", "{rid}", "9", "-r", "x"), "step: expected 1..5"),
        (("rollout", "set-stage", "{rid}", "0", "-r", "x"), "step: expected 1..5"),
        (("rollback", "--env", "qa", "-r", "x"), "unknown env 'qa'"),
        (("rollback", "--env", "prd", "--to", "nope", "-r", "x"), "unknown release tag 'nope'"),
        (("rollback", "--env", "stg", "-r", "x"), "nothing was ever released in stg"),
        (
            ("rollout", "start", "-e", "qa", "-m", "clf", "-v", "2", "-r", "x"),
            "unknown env 'qa'",
        ),
        (
            ("rollout", "start", "-e", "prd", "-m", "clf", "-v", "2", "-r", "x", "--mode", "bg"),
            "--mode: expected shadow or canary",
        ),
        (
            ("rollout", "start", "-e", "prd", "-m", "c", "-v", "2", "-r", "x", "--stages", "5,1"),
            "strictly increasing",
        ),
    ],
)
def test_bad_input_fails_with_one_clear_line(
    ledger_db: Engine, sml: SmlRunner, args: tuple[str, ...], message: str
) -> None:
    make_release(ledger_db, env="prd", at=T0, models=dict(clf="1"))
    rid = start_rollout(
        ledger_db,
        env="prd",
        model_name="clf",
        candidate_version="2",
        stages=STAGES,
        actor="a",
        reason="r",
    ).id
    result = sml(*(arg.format(rid=rid) for arg in args))
    assert result.code == 2
    line = _one_line_error(result.err)
    assert line.startswith("error: "), line
    assert message in line


def test_unmigrated_database_fails_with_one_line(
    sml: SmlRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: object
) -> None:
    result = sml("status")
    assert result.code == 2
    assert "run `sml db upgrade`" in _one_line_error(result.err)
