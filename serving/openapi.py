"""The router's OpenAPI document as this process serves it: the `model` field of /predict
lists the model names of this environment (MODELS), so the document allows exactly what
the route accepts (schemathesis, tests/serving/test_schemathesis.py, holds it to that)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.utils import get_openapi
from starlette.exceptions import HTTPException

from serving.errors import http_error_handler, validation_error_handler


def document_and_refuse(app: FastAPI, models: Sequence[str]) -> None:
    """Install the router's error handlers (serving/errors.py: a refusal never echoes the
    input) and its OpenAPI document (`served_openapi`)."""
    app.add_exception_handler(RequestValidationError, validation_error_handler)
    app.add_exception_handler(HTTPException, http_error_handler)
    app.openapi = served_openapi(app, models)  # type: ignore[method-assign]


def served_openapi(app: FastAPI, models: Sequence[str]) -> Callable[[], dict[str, Any]]:
    """`app.openapi` replaced: FastAPI's document, built once, with `models` as the enum of
    PredictRequest.model (a plain pattern otherwise: any name, even one not served)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                summary=app.summary,
                description=app.description,
                routes=app.routes,
            )
            model = document["components"]["schemas"]["PredictRequest"]["properties"]["model"]
            for choice in model["anyOf"]:
                if choice.get("type") == "string":
                    choice.pop("pattern", None)
                    choice["enum"] = list(models)
            app.openapi_schema = document
        return app.openapi_schema

    return openapi
