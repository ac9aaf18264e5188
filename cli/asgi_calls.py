"""JSON calls straight into an ASGI app, on its own event loop: the demo's simulated users.

What `httpx.ASGITransport` does for one POST, without a client's URL parsing, cookie jar,
header models and redirect handling, which cost the demo's users more than the router's
own work (docs/benchmarks.md). The app sees a real HTTP request scope and answers through
its whole middleware stack; a status of 400 or more raises `CallError`.
"""

from __future__ import annotations

import json
from typing import Any

ASGIApp = Any


class CallError(RuntimeError):
    """The app answered an error status; the message holds the status and body."""


async def post_json(app: ASGIApp, path: str, payload: dict[str, Any]) -> Any:
    """POST `payload` as JSON to `path` of `app`; its decoded JSON answer.

    Raises:
        CallError: the app answered a status >= 400 (or sent no response start).
    """
    body = json.dumps(payload).encode()
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [
            (b"host", b"demo"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 0),
        "server": ("demo", 80),
    }
    sent = False
    status = 0
    chunks: list[bytes] = []

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    await app(scope, receive, send)
    answer = b"".join(chunks)
    if not status or status >= 400:
        raise CallError(f"POST {path} answered {status or 'nothing'}: {answer[:200]!r}")
    return json.loads(answer)
