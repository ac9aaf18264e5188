"""Every input stored or refused, over real HTTP: text the traffic table cannot hold (NUL:
serving.schemas.StorableText; unpaired surrogates: pydantic refuses them as strings) and
bytes that are not UTF-8 get a 422 naming the problem, never a 500 (serving/errors.py: the
refused input is not echoed); a load with such requests mixed in stores every
accepted row and keeps the writer's buffer empty."""

from __future__ import annotations

import pytest
from conftest import (
    DictModelSource,
    KeywordModel,
    RouterFactory,
    count_traffic,
    router_settings,
)
from sqlalchemy import Engine

JSON = {"content-type": "application/json"}


def _router(engine: Engine, run_router: RouterFactory):
    source = DictModelSource()
    source.add(KeywordModel("1"))
    url = engine.url.render_as_string(hide_password=False)
    return run_router(router_settings(url), model_source=source)


@pytest.mark.parametrize(
    ("path", "body", "where", "message"),
    [
        ("/predict", b'{"text": "refund \\ud800 please"}', "text", "unicode string"),
        ("/predict", b'{"text": "refund \\u0000 please"}', "text", "NUL character"),
        ("/answer", b'{"text": "\\udfff"}', "text", "unicode string"),
        (
            "/feedback",
            b'{"request_id": "r1", "kind": "label", "value": "bill\\ud83d"}',
            "value",
            "unicode string",
        ),
        (
            "/feedback",
            b'{"request_id": "r1", "kind": "label", "value": "a\\u0000"}',
            "value",
            "NUL",
        ),
        # a field the client named with a lone surrogate: the body is refused as a whole
        ("/predict", b'{"text": "hi", "\\ud800x": 1}', "body", "unicode string"),
        ("/predict", b'{"text": "hi", "user_id": "\\ud800"}', "user_id", "unicode string"),
    ],
)
def test_unstorable_text_is_refused_with_422_not_500(
    state_engine: Engine,
    run_router: RouterFactory,
    path: str,
    body: bytes,
    where: str,
    message: str,
) -> None:
    router = _router(state_engine, run_router)
    response = router.client.post(path, content=body, headers=JSON)
    assert response.status_code == 422, response.text
    [detail] = response.json()["detail"]
    assert detail["loc"][-1] == where
    assert message in detail["msg"]
    assert set(detail) == {"loc", "msg", "type"}  # the refused input is never echoed
    router.service.writer.flush()
    assert count_traffic(state_engine) == 0


def test_bytes_that_are_not_utf8_are_refused_with_422(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = _router(state_engine, run_router)
    response = router.client.post("/predict", content=b'{"text": "caf\xe9"}', headers=JSON)
    assert response.status_code == 422
    [detail] = response.json()["detail"]
    assert detail == {
        "loc": ["body"],
        "msg": "the body is not UTF-8 encoded JSON",
        "type": "json_invalid",
    }


def test_a_load_with_unstorable_requests_stores_every_accepted_row(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    """1 request in 50 carries a NUL: refused at the door; the other 490 are stored, the
    writer never falls back to isolating rows and its buffer ends empty."""
    router = _router(state_engine, run_router)
    accepted = 0
    for i in range(500):
        if i % 50 == 7:
            body = b'{"text": "bad \\u0000 row", "user_id": "u%d"}' % i
            assert router.client.post("/predict", content=body, headers=JSON).status_code == 422
            continue
        response = router.client.post("/predict", json={"text": f"refund {i}", "user_id": f"u{i}"})
        assert response.status_code == 200
        accepted += 1
    writer = router.service.writer
    assert writer.flush()
    assert accepted == 490
    assert count_traffic(state_engine) == accepted
    stats = writer.stats()
    assert stats.rejected == 0
    assert writer.buffered == 0


def test_the_openapi_schema_says_what_metrics_and_bad_bodies_answer(
    state_engine: Engine, run_router: RouterFactory
) -> None:
    router = _router(state_engine, run_router)
    spec = router.client.get("/openapi.json").json()
    metrics = spec["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain"]
    response = router.client.get("/metrics")
    assert response.headers["content-type"].startswith("text/plain")
    predict = spec["paths"]["/predict"]["post"]["responses"]
    assert "400" not in predict
    assert "422" in predict
