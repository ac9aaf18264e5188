"""The whole lifecycle (`sml demo`) as a test, on SQLite and on the real Postgres.

Runs every demo step in process under the session's Prefect harness with isolated
settings, then checks the final state exactly: MLflow aliases, the env's releases, and
every event of both rollouts (the good candidate promoted through all stages, the faulty
one rolled back by the controller).
"""

from __future__ import annotations

import io
import os

import pytest
from rich.console import Console

from cli.lifecycle import DEMO_OVERRIDES, PREFECT_QUIET
from config import get_settings
from core import ledger
from core.db import make_engine
from core.registry import ModelRegistry

MODEL = "intent-classifier"

pytestmark = pytest.mark.slow


def test_demo_lifecycle_final_state_exact(db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from cli.demo import run_demo

    monkeypatch.setenv("DATABASE_URL", db_url)
    # the demo sets these in the process environment: let monkeypatch restore them
    for key in (*DEMO_OVERRIDES, *PREFECT_QUIET, "IMAGE_VERSION"):
        monkeypatch.setenv(key, os.environ.get(key, "local" if key == "IMAGE_VERSION" else ""))
    get_settings.cache_clear()
    out = io.StringIO()

    run_demo(Console(file=out, width=120))

    settings = get_settings()
    text = out.getvalue()
    assert "demo finished" in text
    aliases = ModelRegistry.from_settings(settings).aliases(MODEL)
    assert aliases == {"dev-champion": "2", "dev-previous": "1"}

    engine = make_engine(settings.database_url)
    try:
        releases = list(reversed(ledger.releases_history(engine, "dev", 10)))
        assert [r.model_versions for r in releases] == [{MODEL: "1"}, {MODEL: "2"}]
        assert releases[1].parent_id == releases[0].id
        assert releases[1].image_version == "demo-image-2"

        good, faulty = sorted(ledger.list_rollouts(engine, "dev"), key=lambda r: r.id)
        assert (good.candidate_version, good.champion_version, good.status) == (
            "2",
            "1",
            "promoted",
        )
        assert [e.kind for e in ledger.rollout_events(engine, good.id)] == [
            "start",
            "shadow_evaluation",
            "advance",
            "advance",
            "advance",
            "promote",
        ]
        assert [(e.stage_index, e.percent) for e in ledger.rollout_events(engine, good.id)][2:] == [
            (1, 40.0),
            (2, 70.0),
            (3, 100.0),
            (3, 100.0),
        ]
        assert (faulty.candidate_version, faulty.champion_version, faulty.status) == (
            "3",
            "2",
            "rolled_back",
        )
        events = ledger.rollout_events(engine, faulty.id)
        assert [e.kind for e in events] == ["start", "rollback"]
        assert events[-1].actor == "rollout-controller"
        assert events[-1].figures is not None
        assert events[-1].figures["verdict"]["tests"]["error_rate"]["reject"] is True
        assert ledger.active_rollouts(engine, "dev") == []
    finally:
        engine.dispose()

    reports = settings.reports_dir
    for name in ("rollout-1-stages.png", "rollout-2-stages.png"):
        assert (reports / name).stat().st_size > 0
    assert (reports / f"shadow-{MODEL}-v2" / "shadow-latency.png").exists()
