"""The demo's simulated users: JSON calls into an ASGI app, and sessions that interleave.

A small FastAPI app stands in for the router (the demo itself drives the real one:
tests/flows/test_lifecycle.py): it answers an intent per text and records every request.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI, HTTPException

from cli import demo_users
from cli.asgi_calls import CallError, post_json
from cli.demo_users import SimulatedUsers

TEXTS = [f"text {i}" for i in range(20)]
INTENTS = ["check_balance" if i % 3 else "talk_to_agent" for i in range(20)]


def recording_app(seen: list[dict[str, Any]]) -> FastAPI:
    """/predict answers the text's intent (wrong for texts ending in 7), /feedback 200."""
    app = FastAPI()

    @app.post("/predict")
    async def predict(body: dict[str, Any]) -> dict[str, Any]:
        seen.append({"path": "predict", **body})
        await asyncio.sleep(0)  # let other sessions interleave
        i = TEXTS.index(body["text"])
        intent = "wrong" if body["text"].endswith("7") else INTENTS[i]
        return {"request_id": f"r{len(seen)}", "role": "champion", "intent": intent}

    @app.post("/feedback")
    async def feedback(body: dict[str, Any]) -> dict[str, str]:
        seen.append({"path": "feedback", **body})
        if body["value"] == "refuse":
            raise HTTPException(status_code=422, detail="no")
        return {"status": "ok"}

    return app


def test_post_json_answers_the_apps_json_and_raises_on_an_error_status() -> None:
    seen: list[dict[str, Any]] = []
    app = recording_app(seen)
    answer = asyncio.run(post_json(app, "/predict", {"text": "text 1", "user_id": "u"}))
    assert answer == {"request_id": "r1", "role": "champion", "intent": "check_balance"}
    assert seen == [{"path": "predict", "text": "text 1", "user_id": "u"}]
    with pytest.raises(CallError, match=r"POST /feedback answered 422: .*no"):
        asyncio.run(post_json(app, "/feedback", {"value": "refuse"}))
    with pytest.raises(CallError, match="answered 404"):
        asyncio.run(post_json(app, "/nowhere", {}))


class Users(SimulatedUsers):
    def __init__(self) -> None:
        self.seed, self.served, self.texts, self.intents = 11, 0, TEXTS, INTENTS


def _sessions(concurrent: int, monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    monkeypatch.setattr(demo_users, "CONCURRENT_USERS", concurrent)
    seen: list[dict[str, Any]] = []
    roles = asyncio.run(Users()._sessions(recording_app(seen), 0, 40, "predict"))
    assert roles == {"champion": sum(r["path"] == "predict" for r in seen)}
    return seen


def _asked(rows: list[dict[str, Any]]) -> dict[str, list[str]]:
    """What each user asked, in order."""
    asked: dict[str, list[str]] = {}
    for row in rows:
        if row["path"] == "predict":
            asked.setdefault(row["user_id"], []).append(row["text"])
    return asked


def _feedback(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((r["kind"], r["value"]) for r in rows if r["path"] == "feedback")


def test_each_user_does_the_same_whatever_the_interleaving(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    one_by_one = _sessions(1, monkeypatch)
    together = _sessions(16, monkeypatch)
    assert len(_asked(one_by_one)) == 40
    assert _asked(together) == _asked(one_by_one)
    assert any(len(texts) == 2 for texts in _asked(together).values())  # follow-ups happen
    assert _feedback(together) == _feedback(one_by_one) != []
    # the 16 lanes really interleave: users are not served one after another
    order = [r["user_id"] for r in together if r["path"] == "predict"]
    assert order != sorted(order, key=lambda user: int(user.split("-")[1]))
