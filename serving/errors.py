"""The router's 422: FastAPI's validation errors without the input they refused.

FastAPI's own handler echoes each error's `input` (and `ctx`) back. An input that cannot be
encoded as UTF-8 (an unpaired surrogate sent as a JSON escape, `"\ud800"`) then fails the
response itself and the client gets a 500 for its own bad request. This handler answers
422 with `loc`, `msg` and `type` only; any string the client chose (a field name in `loc`)
is made encodable with backslash escapes. A body that is not UTF-8 at all (FastAPI's own
400) gets the same 422 as any other invalid JSON, so the API has one answer for a body it
cannot read.
"""

from __future__ import annotations

from typing import Any

from fastapi import Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException

# What FastAPI raises (as a 400) for a body it could not even decode, e.g. bytes that are
# not UTF-8: answered as the 422 of any other unreadable body.
_UNDECODABLE_BODY = "There was an error parsing the body"
NOT_UTF8 = "the body is not UTF-8 encoded JSON"


def _encodable(value: Any) -> Any:
    """`value` with every string made UTF-8 encodable (unpaired surrogates escaped)."""
    if isinstance(value, str):
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


def validation_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    """The 422 `detail` list: per error its location, message and type, nothing echoed."""
    return [
        {
            "loc": [_encodable(part) for part in error.get("loc", ())],
            "msg": _encodable(error.get("msg", "invalid")),
            "type": _encodable(error.get("type", "value_error")),
        }
        for error in exc.errors()
    ]


async def validation_error_handler(request: Request, exc: Exception) -> JSONResponse:  # noqa: ARG001 (Starlette's handler signature)
    """422 with `validation_errors(exc)` (registered for RequestValidationError)."""
    assert isinstance(exc, RequestValidationError)
    return JSONResponse(status_code=422, content={"detail": validation_errors(exc)})


async def http_error_handler(request: Request, exc: Exception) -> Response:
    """FastAPI's answer to an HTTPException, except its 400 for an undecodable body: a 422
    `json_invalid` like any other unreadable body."""
    assert isinstance(exc, HTTPException)
    if exc.status_code == 400 and exc.detail == _UNDECODABLE_BODY:
        detail = [
            {"loc": ["body"], "msg": "the body is not UTF-8 encoded JSON", "type": "json_invalid"}
        ]
        return JSONResponse(status_code=422, content={"detail": detail})
    return await http_exception_handler(request, exc)
