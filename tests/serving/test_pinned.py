"""`sml serve --pin`: parsing the pins, the champion-only state they serve, and a pinned
router that serves its version and writes no traffic rows."""

from __future__ import annotations

import httpx
import pytest
from conftest import MODEL, DictModelSource, KeywordModel, open_canary, router_settings
from sqlalchemy import Engine, func, select

from core.db import Feedback, Traffic
from serving.app import create_app
from serving.pinned import PinError, parse_pins, pinned_states
from serving.server import serve_in_thread


def test_parse_pins_reads_model_equals_version() -> None:
    assert parse_pins(["intent-classifier=3", " faq-retriever = 2 "]) == {
        "intent-classifier": "3",
        "faq-retriever": "2",
    }


@pytest.mark.parametrize("bad", ["intent-classifier", "=3", "intent-classifier=", ""])
def test_parse_pins_refuses_what_is_not_model_equals_version(bad: str) -> None:
    with pytest.raises(PinError, match="MODEL=VERSION"):
        parse_pins([bad])


def test_parse_pins_refuses_a_model_pinned_twice() -> None:
    with pytest.raises(PinError, match="twice"):
        parse_pins(["m=1", "m=2"])


def test_pinned_states_are_champion_only_without_rollout() -> None:
    (state,) = pinned_states({MODEL: "7"}).values()

    assert (state.champion_version, state.mode, state.rollout_id) == ("7", "champion_only", None)


def test_pinned_router_serves_its_version_despite_a_canary_and_writes_no_traffic(
    state_engine: Engine, sqlite_url: str
) -> None:
    # Given a canary of v2 at 100% in the ledger
    open_canary(state_engine, "2", 100.0)
    source = DictModelSource()
    source.add(KeywordModel("1"))
    source.add(KeywordModel("3"))
    states = pinned_states({MODEL: "3"})
    app = create_app(
        router_settings(sqlite_url),
        model_source=source,
        state_reader=lambda: states,
        record_traffic=False,
    )

    # When the router pinned to v3 answers requests and feedback
    with serve_in_thread(app) as url:
        ready = httpx.get(f"{url}/ready", timeout=10)
        answers = [
            httpx.post(f"{url}/predict", json={"text": "refund", "user_id": f"u{i}"}, timeout=10)
            for i in range(20)
        ]
        thumbs = httpx.post(
            f"{url}/feedback",
            json={"request_id": answers[0].json()["request_id"], "kind": "thumbs", "value": "up"},
            timeout=10,
        )

    # Then every answer is v3's, as champion, and not one traffic row was written
    assert (ready.status_code, thumbs.status_code) == (200, 202)
    assert {(a.json()["model_version"], a.json()["role"]) for a in answers} == {("3", "champion")}
    with state_engine.connect() as conn:
        assert conn.scalar(select(func.count()).select_from(Traffic)) == 0
        assert conn.scalar(select(func.count()).select_from(Feedback)) == 0


def test_sml_serve_refuses_a_bad_pin_with_exit_2() -> None:
    from typer.testing import CliRunner

    from cli.main import app

    result = CliRunner().invoke(app, ["serve", "--pin", "intent-classifier"])

    assert result.exit_code == 2
    assert "MODEL=VERSION" in result.output
