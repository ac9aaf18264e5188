"""/predict without the framework's per-request machinery: the router's hot path.

`PredictFastPath` is a pure ASGI middleware. A `POST /predict` with a JSON body that
parses and validates (`PredictRequest`) is answered here, by the same
`answer_predict` the FastAPI route calls, so both give the same answer, rows and errors.
Everything else (another path or method, another content type, a body the schema refuses,
a router still starting) goes on to FastAPI with the body replayed, so every refusal keeps
FastAPI's exact answer and the OpenAPI document stays the route's.

What it saves per request: route matching over the included router, dependency solving
(query, header and cookie parsing), the exception and exit-stack middlewares and the
Request/Response objects. Measured in bench/router.py (docs/benchmarks.md).
"""

from __future__ import annotations

import json

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from serving.errors import http_error_handler, validation_error_handler
from serving.limits import replaying
from serving.routes import answer_predict
from serving.schemas import PredictRequest
from serving.service import RouterService

PATH = "/predict"
JSON_TYPES = (b"application/json", b"application/json; charset=utf-8")


def _is_json(scope: Scope) -> bool:
    """True when the request says its body is plain JSON (the only type answered here)."""
    for key, value in scope["headers"]:
        if key == b"content-type":
            return value.lower() in JSON_TYPES
    return False


class PredictFastPath:
    """Answer valid `POST /predict` requests directly (see module doc); hand on the rest."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap `app` (the FastAPI stack below this middleware)."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """ASGI entry."""
        if (
            scope["type"] != "http"
            or scope["method"] != "POST"
            or scope["path"] != PATH
            or not _is_json(scope)
        ):
            await self.app(scope, receive, send)
            return
        messages: list[Message] = []
        body = await _read_body(receive, messages)
        service: RouterService | None = getattr(scope["app"].state, "service", None)
        request = None if body is None or service is None else _parse(body)
        if request is None or service is None:
            await self.app(scope, replaying(messages, receive), send)
            return
        response: Response
        try:
            payload = await answer_predict(service, request)
        except RequestValidationError as exc:
            response = await validation_error_handler(Request(scope), exc)
        except HTTPException as exc:
            response = await http_error_handler(Request(scope), exc)
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [
                        (b"content-length", str(len(payload)).encode()),
                        (b"content-type", b"application/json"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": payload})
            return
        await response(scope, receive, send)


async def _read_body(receive: Receive, messages: list[Message]) -> bytes | None:
    """The whole request body (every message kept in `messages` for a replay); None when
    the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _parse(body: bytes) -> PredictRequest | None:
    """The request when FastAPI would accept its body exactly as sent (parsed by
    `json.loads` like FastAPI, then the schema); None for anything it would refuse, which
    FastAPI then answers itself. The text limit is `answer_predict`'s, on both paths."""
    try:
        return PredictRequest.model_validate(json.loads(body))
    except (ValueError, ValidationError):  # JSONDecodeError and UnicodeDecodeError included
        return None
