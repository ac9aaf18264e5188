"""`core.reporting`: the markdown every flow leaves, built without Prefect."""

from __future__ import annotations

from datetime import UTC, datetime

from core.gates import GateCheck, evaluate_gate
from core.ledger import ReleaseRecord
from core.reporting import (
    artifact_key,
    gate_table,
    retrain_report_markdown,
    retrain_summary,
    rollback_report_markdown,
    rollback_summary,
    tick_report_markdown,
)
from core.retrain import RetrainOutcome
from core.tick import TickOutcome


def test_tick_report_has_one_row_per_rollout() -> None:
    markdown = tick_report_markdown(
        [TickOutcome(3, "advanced", "gate: pass", 0), TickOutcome(4, "held", "bake", 2)]
    )

    assert markdown.startswith("# rollout-controller tick\n")
    assert "| #3 | 0 | advanced | gate: pass |" in markdown
    assert "| #4 | 2 | held | bake |" in markdown
    assert markdown.endswith("|\n")


def test_retrain_report_shows_champion_and_verdict_or_dashes() -> None:
    outcomes = [
        RetrainOutcome("a", "candidate", "2", "1", "compatible", "champion v1 is compatible"),
        RetrainOutcome("b", "first_champion", "1", reason="no champion yet"),
    ]

    markdown = retrain_report_markdown("img-2", outcomes)

    assert "# retrain on image `img-2`" in markdown
    assert "| a | candidate | v2 | v1 | compatible | champion v1 is compatible |" in markdown
    assert "| b | first_champion | v1 | - | - | no champion yet |" in markdown
    assert retrain_summary("img-2", outcomes) == "image img-2: a candidate v2, b first_champion v1"


def test_gate_table_lists_every_threshold() -> None:
    gate = evaluate_gate(
        "shadow", [GateCheck("agreement", 0.9, ">=", 0.8), GateCheck("p95", 300, "<=", 200)]
    )

    assert [(row["check"], row["passed"]) for row in gate_table(gate)] == [
        ("agreement", True),
        ("p95", False),
    ]


def test_rollback_report_names_release_models_reason_and_actor() -> None:
    release = ReleaseRecord(
        id=7,
        env="prd",
        created_at=datetime(2026, 1, 1, tzinfo=UTC),
        code_version="1.0",
        image_version="img-1",
        model_versions={"b": "3", "a": "1"},
        artifact_digests={},
        tag="v1.0-a1-b3",
        reason="rollback: v4 misroutes refunds",
        actor="ana",
    )

    summary = rollback_summary("prd", release)

    assert summary == "prd rolled back to v1.0-a1-b3 (a v1, b v3)"
    assert rollback_report_markdown(summary, release, "ana") == (
        f"# rollback\n\n{summary}\n\nrollback: v4 misroutes refunds\n\nby ana\n"
    )


def test_artifact_key_keeps_only_what_prefect_accepts() -> None:
    assert artifact_key("rollout", 7, "set_stage") == "rollout-7-set-stage"
    assert artifact_key("shadow", "Intent.Classifier", "progress") == (
        "shadow-intent-classifier-progress"
    )
