"""The router's OpenAPI document against its behaviour, with schemathesis: every operation,
valid and invalid generated inputs, every check (status codes, content types, response
schemas, negative data refused, positive data accepted, no 500), over real HTTP on
loopback, with a bounded number of examples per operation and mode."""

from __future__ import annotations

import pytest
import schemathesis
from conftest import DictModelSource, KeywordModel, RouterFactory, router_settings
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from sqlalchemy import Engine

EXAMPLES = 40


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_the_router_behaves_as_its_openapi_document_says(
    state_engine: Engine, run_router: RouterFactory, mode: GenerationMode
) -> None:
    source = DictModelSource()
    source.add(KeywordModel("1"))
    url = state_engine.url.render_as_string(hide_password=False)
    router = run_router(router_settings(url), model_source=source)
    schema = schemathesis.openapi.from_url(f"{router.url}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/predict", "/answer", "/feedback", "/metrics"}
    if mode is GenerationMode.NEGATIVE:  # an operation without inputs has no invalid input
        operations = [op for op in operations if op.method.upper() == "POST"]
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
        )
        def conforms(case: schemathesis.Case) -> None:
            case.call_and_validate()

        conforms()
