"""/predict's fast path (serving/fast_path.py) answers exactly as the FastAPI route does.

Over real HTTP: the same body sent as `application/json` (the fast path) and as
`application/merge-patch+json` (a JSON type FastAPI parses but the fast path hands on, so
the route answers) gets the same status and body, for valid requests and for every
refusal. At the ASGI level: a valid request never reaches the app below, and anything the
fast path does not answer reaches it with its body intact.
"""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from conftest import (
    MODEL,
    DictModelSource,
    KeywordModel,
    RouterFactory,
    RunningRouter,
    count_traffic,
    router_settings,
)
from sqlalchemy import Engine
from starlette.types import Message, Receive, Scope, Send

from serving.fast_path import PredictFastPath

FAST = {"content-type": "application/json"}
ROUTE = {"content-type": "application/merge-patch+json"}

CASES = [
    b'{"text": "a refund please", "user_id": "u-1", "request_id": "REQ"}',
    b'{"text": "my password", "model": "intent-classifier", "request_id": "REQ"}',
    b'{"text": "boom: the model raises on this", "request_id": "REQ"}',  # champion fails: 500
    b'{"text": "hi", "model": "not-served"}',  # a valid name that is not in MODELS: 422
    b'{"text": "' + b"x" * 101 + b'"}',  # over ROUTER_MAX_TEXT_CHARS
    b'{"text": ""}',
    b'{"text": "refund \\u0000"}',
    b'{"text": "refund \\ud800"}',
    b'{"text": "hi", "extra": 1}',
    b'{"text": 5}',
    b'["text"]',
    b'{"text": "hi"',
    b"",
    b'{"text": "caf\xe9"}',
]


@pytest.fixture
def router(state_engine: Engine, run_router: RouterFactory) -> RunningRouter:
    source = DictModelSource()
    source.add(KeywordModel("1", fail_on="boom"))
    url = state_engine.url.render_as_string(hide_password=False)
    return run_router(router_settings(url, ROUTER_MAX_TEXT_CHARS=100), model_source=source)


@pytest.mark.parametrize("body", CASES)
def test_the_fast_path_and_the_route_give_the_same_answer(
    router: RunningRouter, body: bytes
) -> None:
    answers = []
    for n, headers in enumerate((FAST, ROUTE)):
        sent = body.replace(b"REQ", b"r%d" % n)  # one request id per request
        response = router.client.post("/predict", content=sent, headers=headers)
        answers.append((response.status_code, response.headers["content-type"], response.json()))
    fast, route = answers
    if fast[0] == 200:
        fast[2]["request_id"] = route[2]["request_id"] = "same"
    assert fast == route


def test_both_paths_log_the_same_rows(router: RunningRouter, state_engine: Engine) -> None:
    for headers in (FAST, ROUTE):
        ok = router.client.post("/predict", content=b'{"text": "refund"}', headers=headers)
        assert ok.status_code == 200
        failed = router.client.post("/predict", content=b'{"text": "boom"}', headers=headers)
        assert failed.status_code == 500
    router.service.writer.flush()
    assert count_traffic(state_engine, model_name=MODEL, error=None) == 2
    assert count_traffic(state_engine, model_name=MODEL) == 4


class Below:
    """The app below the fast path: records what reaches it and answers 599."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []
        self.messages: list[Message] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chunks = []
        while True:
            message = await receive()
            self.messages.append(message)
            if message["type"] != "http.request":
                break
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        self.bodies.append(b"".join(chunks))
        await send({"type": "http.response.start", "status": 599, "headers": []})
        await send({"type": "http.response.body", "body": b""})


def _asgi_call(
    router: RunningRouter, below: Below, messages: list[Message], **scope: Any
) -> list[Message]:
    """Call PredictFastPath(below) as a server would, the router's app in the scope."""
    fast = PredictFastPath(below)
    sent: list[Message] = []
    full_scope = {
        "type": "http",
        "method": "POST",
        "path": "/predict",
        "headers": [(b"content-type", b"application/json")],
        "app": router.app,
        **scope,
    }
    pending = list(messages)

    async def receive() -> Message:
        return pending.pop(0)

    async def send(message: Message) -> None:
        sent.append(message)

    async def call() -> None:
        await fast(full_scope, receive, send)

    asyncio.run(call())
    return sent


def test_a_valid_request_never_reaches_the_app_below(router: RunningRouter) -> None:
    below = Below()
    sent = _asgi_call(
        router,
        below,
        [
            {"type": "http.request", "body": b'{"text": "a ref', "more_body": True},
            {"type": "http.request", "body": b'und"}', "more_body": False},
        ],
    )
    assert below.bodies == []
    assert sent[0]["status"] == 200
    assert httpx.Response(200, content=sent[1]["body"]).json()["intent"] == "billing"


@pytest.mark.parametrize(
    ("scope", "messages", "body"),
    [
        ({}, [{"type": "http.request", "body": b'{"text": ""}'}], b'{"text": ""}'),
        (
            {},
            [
                {"type": "http.request", "body": b'{"text": "x', "more_body": True},
                {"type": "http.request", "body": b'"', "more_body": False},
            ],
            b'{"text": "x"',
        ),
        (
            {"headers": [(b"content-type", b"text/plain")]},
            [{"type": "http.request", "body": b'{"text": "a refund"}'}],
            b'{"text": "a refund"}',
        ),
        (
            {"path": "/predict/"},
            [{"type": "http.request", "body": b'{"text": "a refund"}'}],
            b'{"text": "a refund"}',
        ),
        ({"method": "PUT"}, [{"type": "http.request", "body": b"{}"}], b"{}"),
    ],
)
def test_what_the_fast_path_does_not_answer_reaches_the_app_whole(
    router: RunningRouter, scope: dict[str, Any], messages: list[Message], body: bytes
) -> None:
    below = Below()
    sent = _asgi_call(router, below, messages, **scope)
    assert below.bodies == [body]
    assert sent[0]["status"] == 599


def test_a_client_gone_before_its_body_is_handed_on_as_gone(router: RunningRouter) -> None:
    below = Below()
    _asgi_call(
        router,
        below,
        [
            {"type": "http.request", "body": b'{"text": ', "more_body": True},
            {"type": "http.disconnect"},
        ],
    )
    assert [m["type"] for m in below.messages] == ["http.request", "http.disconnect"]
