"""The router's OpenAPI document as this process serves it: the `model` field of /predict
lists the model names of this environment (MODELS), so the document allows exactly what
the route accepts (schemathesis, tests/serving/test_schemathesis.py, holds it to that)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi


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
