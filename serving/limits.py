"""Request body size limit (ROUTER_MAX_BODY_BYTES) as a pure ASGI middleware.

A body over the limit is refused with 422 and a message naming the limit, before any
parsing. With a Content-Length header the check is one comparison; a chunked body is
read up to the limit and then handed on.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send


def validation_detail(loc: list[str], msg: str, kind: str) -> list[dict[str, Any]]:
    """A 422 `detail` list shaped like FastAPI's own validation errors."""
    return [{"loc": loc, "msg": msg, "type": kind}]


def _content_length(scope: Scope) -> int | None:
    """The request's Content-Length, or None when absent or not a number."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def replaying(messages: list[Message], receive: Receive) -> Receive:
    """A `receive` that gives `messages` (a body already read) again, then the real ones:
    what a middleware that read the body hands on."""
    pending = list(messages)

    async def replay() -> Message:
        return pending.pop(0) if pending else await receive()

    return replay


class BodySizeLimit:
    """Refuse request bodies larger than `max_bytes` with 422."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        """Wrap `app`; bodies over `max_bytes` never reach it."""
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry: methods without a body and non-HTTP scopes pass straight through."""
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS"):
            await self.app(scope, receive, send)
            return
        length = _content_length(scope)
        if length is not None:
            if length > self.max_bytes:
                await self._refuse(send, length)
                return
            await self.app(scope, receive, send)
            return
        # no length: read the body ourselves, up to the limit
        body = await self._read_body(receive, send)
        if body is None:
            return
        whole = {"type": "http.request", "body": body, "more_body": False}
        await self.app(scope, replaying([whole], receive), send)

    async def _read_body(self, receive: Receive, send: Send) -> bytes | None:
        """The whole body of a request without Content-Length, read up to the limit; None
        when the client went away or the body is over the limit (refused here)."""
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, size, at_least=True)
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    async def _refuse(self, send: Send, size: int, *, at_least: bool = False) -> None:
        what = f"more than {self.max_bytes}" if at_least else str(size)
        payload = json.dumps(
            {
                "detail": validation_detail(
                    ["body"],
                    f"request body is {what} bytes; the limit is {self.max_bytes} bytes",
                    "body_too_large",
                )
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 422,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
