"""`sml status` as an operator reads it, and every read command's `-o json`, on SQLite and
Postgres: the status JSON against its schema, identifiers whole at 80 and 160 columns,
`--watch`, `--env` completion, and a rolled-back version refused without `--force`."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from io import StringIO
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest
from rich.console import Console
from rich.live import Live
from sqlalchemy import Engine, update

from core import ledger
from core.db import Rollout, utcnow
from core.simulation import Arm, write_simulated_traffic

SmlRunner = Callable[..., Any]  # the `sml` fixture of tests/cli/conftest.py

SCHEMA = Path(__file__).parents[2] / "docs" / "schemas" / "sml-status.schema.json"
STAGES = [1.0, 10.0, 25.0, 50.0, 100.0]
CLF, FAQ = "intent-classifier", "faq-retriever"
CODE, IMAGE = "0.1.0+961f5d8.dirty", "ghcr.io/acme/stateful-ml:0.1.0-961f5d8c"
GOOD = Arm(error_rate=0.01, negative_feedback_rate=0.05, latency_median_ms=20.0)


def _release(engine: Engine, env: str, clf: str, faq: str) -> ledger.ReleaseRecord:
    return ledger.record_release(
        engine, env=env, code_version=CODE, image_version=IMAGE,
        model_versions={CLF: clf, FAQ: faq}, artifact_digests={}, reason="r", actor="t",
    )  # fmt: skip


@pytest.fixture
def busy_ledger(ledger_db: Engine) -> dict[str, Any]:
    """stg and prd with long tags; in prd a canary at step 2 with real traffic, in stg a
    shadow rollout of a bundle; an earlier prd rollout of v11 rolled back."""
    old = _release(ledger_db, "prd", "10", "3")
    prd = _release(ledger_db, "prd", "12", "3")
    stg = _release(ledger_db, "stg", "12", "3")
    bad = ledger.start_rollout(
        ledger_db, env="prd", model_name=CLF, candidate_version="11", stages=STAGES,
        actor="t", reason="canary v11",
    )  # fmt: skip
    ledger.rollback(
        ledger_db, bad.id, actor="rollout-controller", reason="error_rate: 0.2 above 0.01"
    )
    canary = ledger.start_rollout(
        ledger_db, env="prd", model_name=CLF, candidate_version="13", stages=STAGES,
        actor="t", reason="canary v13",
    )  # fmt: skip
    ledger.advance_stage(
        ledger_db, canary.id, expected_stage_index=0, stages=STAGES, actor="c", reason="ok"
    )
    with ledger_db.begin() as connection:  # the stage began 5 minutes ago
        connection.execute(
            update(Rollout)
            .where(Rollout.id == canary.id)
            .values(stage_started_at=utcnow() - timedelta(minutes=5))
        )
    canary = ledger.get_rollout(ledger_db, canary.id)
    write_simulated_traffic(
        ledger_db, canary, champion=GOOD, candidate=GOOD, requests=400,
        start=canary.stage_started_at, span_seconds=60, rng=np.random.default_rng(3),
    )  # fmt: skip
    shadow = ledger.start_rollout(
        ledger_db, env="stg", model_name=CLF, candidate_version="13", stages=STAGES,
        mode="shadow", actor="t", reason="shadow", bundle={FAQ: "4"},
    )  # fmt: skip
    return {"tags": [old.tag, prd.tag, stg.tag], "canary": canary.id, "shadow": shadow.id}


def _status_json(sml: SmlRunner, *args: str) -> dict[str, Any]:
    result = sml("status", "-o", "json", *args)
    assert result.code == 0, result.err
    document: dict[str, Any] = json.loads(result.out)
    return document


def test_status_json_validates_against_its_schema_and_round_trips(
    busy_ledger: dict[str, Any], sml: SmlRunner
) -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())

    document = _status_json(sml)

    validator.validate(document)
    assert json.loads(json.dumps(document)) == document  # round trip, nothing lost
    envs = {e["env"]: e for e in document["environments"]}
    (canary,) = envs["prd"]["rollouts"]
    assert (canary["id"], canary["step"], canary["steps"], canary["percent"]) == (
        busy_ledger["canary"], 2, 5, 10.0,
    )  # fmt: skip
    assert [s["state"] for s in canary["stages"]] == ["done", "current", *["pending"] * 3]
    analysis = canary["analysis"]
    assert analysis["arms"]["champion"]["n"] + analysis["arms"]["candidate"]["n"] > 300
    assert analysis["arms"]["candidate"]["min_n"] == 200
    assert analysis["seconds_in_stage"] >= 300
    assert analysis["bake_seconds_left"] == analysis["bake_seconds"] - analysis["seconds_in_stage"]
    gates = {g["name"]: g for g in analysis["gates"]}
    assert gates["error_rate_excess"]["test"]["name"] == "error_rate"
    assert 0 <= gates["error_rate_excess"]["test"]["p_value"] <= 1
    assert gates["bake_seconds"]["passed"] is False
    assert gates["bake_seconds"]["test"] is None
    assert canary["events"][-1]["kind"] == "advance"
    (shadow,) = envs["stg"]["rollouts"]
    assert (shadow["step"], shadow["analysis"], shadow["bundle"]) == (None, None, True)
    assert shadow["models"][FAQ] == {"champion": "3", "candidate": "4"}
    assert envs["stg"]["also_in"] == ["prd"]
    assert envs["dev"]["release"] is None
    validator.validate(_status_json(sml, "--env", "stg"))


def _render(sml: SmlRunner, monkeypatch: pytest.MonkeyPatch, width: int, *args: str) -> str:
    for module in ("cli.ledger", "cli.rollout", "cli.status"):
        monkeypatch.setattr(f"{module}.console", Console(width=width, color_system=None))
    result = sml(*args)
    assert result.code == 0, result.err
    assert all(len(line) <= width for line in result.out.splitlines())
    return str(result.out)


@pytest.mark.parametrize("width", [80, 160])
def test_status_history_and_rollouts_keep_every_identifier_whole(
    busy_ledger: dict[str, Any], sml: SmlRunner, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    status = _render(sml, monkeypatch, width, "status")
    history = _render(sml, monkeypatch, width, "history", "--env", "prd")
    rollouts = _render(sml, monkeypatch, width, "rollout", "list")
    diff = _render(sml, monkeypatch, width, "diff", *busy_ledger["tags"][:2], "-e", "prd")

    prd_tag, stg_tag = busy_ledger["tags"][1:]
    for tag in (prd_tag, stg_tag):
        assert tag in status  # whole: a tag cut by a line break would not match
    assert len(stg_tag) > 50  # long enough to be cut by a careless table at 80 columns
    for text in (status, history):
        assert IMAGE in text
        assert CODE in text
    for tag in busy_ledger["tags"][:2]:
        assert tag in history
        assert tag in diff
    for version in ("v12", "v13", "v3", "v4"):
        assert version in status
    for version in ("v11", "v12", "v13"):
        assert version in rollouts
    assert f"rollout #{busy_ledger['canary']} {CLF} v13 vs v12 canary" in status
    assert "step 2/5  10%" in status


def test_read_commands_print_json(busy_ledger: dict[str, Any], sml: SmlRunner) -> None:
    history = json.loads(sml("history", "-e", "prd", "-o", "json").out)
    assert [r["tag"] for r in history["releases"]] == busy_ledger["tags"][1::-1]
    assert history["release"]["models"] == {CLF: "12", FAQ: "3"}
    at = json.loads(sml("history", "-e", "prd", "--at", "1h ago", "-o", "json").out)
    assert (at["release"], at["schema"]) == (None, "sml.history/v1")
    diff = json.loads(sml("diff", *busy_ledger["tags"][:2], "-o", "json").out)
    assert diff["models"]["changed"] == {CLF: {"a": "10", "b": "12"}}
    listed = json.loads(sml("rollout", "list", "-o", "json").out)["rollouts"]
    assert [r["status"] for r in listed] == ["shadow", "canary", "rolled_back"]
    shown = json.loads(sml("rollout", "show", str(busy_ledger["canary"]), "-o", "json").out)
    assert [e["kind"] for e in shown["events"]] == ["start", "advance"]
    assert shown["rollout"]["step"] == 2


def test_rollout_start_of_a_rolled_back_version_needs_force_and_says_why(
    busy_ledger: dict[str, Any], sml: SmlRunner, ledger_db: Engine
) -> None:
    from mlflow import MlflowClient

    from config import load_settings

    client = MlflowClient(tracking_uri=load_settings().MLFLOW_TRACKING_URI)  # the real store
    client.create_registered_model(CLF)
    for n in range(11):  # versions 1..11 exist, so only the ledger's refusal is tested
        client.create_model_version(CLF, source=f"file:///nowhere/{n}")
    ledger.abort(ledger_db, busy_ledger["canary"], actor="t", reason="make room")
    args = ("rollout", "start", "-e", "prd", "-m", CLF, "-v", "11", "-r", "again")

    refused = sml(*args)

    assert refused.code == 2
    (line,) = [line for line in refused.err.splitlines() if line.strip()]
    assert f"{CLF} v11 was rolled back in prd" in line
    assert "by rollout-controller" in line
    assert "error_rate: 0.2 above 0.01" in line
    assert "--force" in line
    assert len(ledger.active_rollouts(ledger_db, "prd")) == 0

    forced = sml(*args, "--force")

    assert forced.code == 0, forced.err
    assert "recorded as forced" in forced.out
    (opened,) = ledger.active_rollouts(ledger_db, "prd")
    assert (opened.candidate_version, opened.forced) == ("11", True)


def test_status_watch_redraws_and_json_watch_prints_one_document_per_draw(
    busy_ledger: dict[str, Any], sml: SmlRunner
) -> None:
    from cli.status import watch

    out = StringIO()
    draws = iter(["first draw", "second draw"])
    live = Live(console=Console(file=out, width=80, force_terminal=True), auto_refresh=False)
    assert watch(lambda: next(draws), interval=0.0, count=2, live=live) == 2
    assert "first draw" in out.getvalue()
    assert "second draw" in out.getvalue()

    result = sml("status", "-o", "json", "--watch", "--count", "2", "--interval", "0.5")

    assert result.code == 0, result.err
    documents = [json.loads(line) for line in result.out.splitlines()]
    assert len(documents) == 2
    assert documents[0]["generated_at"] < documents[1]["generated_at"]


def test_env_option_completes_the_known_environments() -> None:
    from typer.testing import CliRunner

    from cli.main import app
    from cli.options import complete_env

    assert complete_env("") == ["dev", "stg", "prd"]
    assert complete_env("p") == ["prd"]
    runner = CliRunner()
    for words, expected in (
        ("sml status --env s", ["stg"]),
        ("sml history -e ", ["dev", "stg", "prd"]),
        ("sml rollout list --env p", ["prd"]),
    ):
        env = {
            "_SML_COMPLETE": "complete_bash",  # what the installed bash completion sends
            "COMP_WORDS": words,
            "COMP_CWORD": str(len(words.split(" ")) - 1),
        }
        result = runner.invoke(app, [], prog_name="sml", env=env)
        assert result.exit_code == 0, result.output
        assert result.output.split() == expected


def test_rollout_plot_writes_the_stages_png_and_logs_it_to_an_mlflow_run(
    busy_ledger: dict[str, Any], sml: SmlRunner, ledger_db: Engine
) -> None:
    from mlflow import MlflowClient

    from config import load_settings

    settings = load_settings()
    rollout_id = busy_ledger["canary"]
    refused = sml("rollout", "plot", str(busy_ledger["shadow"]))
    assert refused.code == 2
    assert "no judged stage yet" in refused.err
    arms = {"champion": {"n": 500, "error_rate": 0.01, "p95_ms": 40.0},
            "candidate": {"n": 40, "error_rate": 0.0, "p95_ms": 35.0}}  # fmt: skip
    ledger.record_event(
        ledger_db, rollout_id, kind="advance", actor="rollout-controller",
        figures={"figures": arms, "verdict": {"stage_index": 1}},
    )  # fmt: skip

    result = sml("rollout", "plot", str(rollout_id))

    assert result.code == 0, result.err
    png = settings.reports_dir / f"rollout-{rollout_id}-stages.png"
    assert png.read_bytes()[:4] == b"\x89PNG"
    client = MlflowClient(tracking_uri=settings.MLFLOW_TRACKING_URI)
    (run,) = client.search_runs(
        [client.get_experiment_by_name(settings.MLFLOW_EXPERIMENT).experiment_id],
        filter_string=f"tags.`sml.rollout_id` = '{rollout_id}'",
    )
    assert run.data.tags["sml.candidate_version"] == "13"
    shown = {a.path for a in client.list_artifacts(run.info.run_id, "rollout")}
    assert f"rollout/rollout-{rollout_id}-stages.png" in shown
    assert f"rollout/rollout-{rollout_id}.md" in shown
