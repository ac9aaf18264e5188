"""The demo's temporary Prefect server (`cli.demo_server`): a real uvicorn subprocess
serving Prefect's API on loopback, a flow run recorded on it, then stopped."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

import pytest
from prefect import flow, get_client

from cli.demo_server import (
    RETRY_MAX_SECONDS,
    DemoPrefectServer,
    RetrySoon,
    spawn_prefect_server,
)
from flows.in_process import in_process_flow_runs


@flow(name="demo-server-probe")
def probe(x: int) -> int:
    return x + 1


def test_a_flow_runs_against_the_spawned_server_which_stops(tmp_path: Path) -> None:
    environment = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    environment.pop("PREFECT_API_URL", None)
    server = DemoPrefectServer.spawn(environment)
    try:
        assert server.wait_ready(timeout=180) >= 0.0
        before = os.environ.get("PREFECT_API_URL")
        with in_process_flow_runs(api_url=server.api_url):
            assert os.environ["PREFECT_API_URL"] == server.api_url
            assert probe(1) == 2
            with get_client(sync_client=True) as client:
                assert str(client.api_url).rstrip("/") == server.api_url
                runs = client.read_flow_runs()
        assert os.environ.get("PREFECT_API_URL") == before  # restored
        assert [
            (r.name is not None, r.state_type.value if r.state_type else None) for r in runs
        ] == [(True, "COMPLETED")]
    finally:
        server.stop()
    assert server.process.returncode is not None
    with pytest.raises(RuntimeError, match="exited with code"):
        server.wait_ready(timeout=5)
    server.stop()  # stopping twice is harmless


def test_no_server_is_spawned_when_one_is_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PREFECT_API_URL", "http://127.0.0.1:4200/api")
    assert spawn_prefect_server() is None


def _answers(app: Any, statuses: list[int]) -> list[dict[bytes, bytes]]:
    """The response headers `app` sends for one request per status in `statuses`."""

    async def run() -> list[dict[bytes, bytes]]:
        seen: list[dict[bytes, bytes]] = []
        for status in statuses:

            async def receive() -> dict[str, Any]:
                return {"type": "http.request", "body": b"", "more_body": False}

            async def send(message: dict[str, Any]) -> None:
                if message["type"] == "http.response.start":
                    seen.append(dict(message["headers"]))

            await app({"type": "http", "status": status}, receive, send)
        return seen

    return asyncio.run(run())


async def _status_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """Answers the status the scope asks for, with a Retry-After of its own on 503."""
    headers = [(b"content-type", b"application/json")]
    if scope["status"] == 503:
        headers.append((b"Retry-After", b"30"))
    await send({"type": "http.response.start", "status": scope["status"], "headers": headers})
    await send({"type": "http.response.body", "body": b"{}"})


def test_retry_soon_hints_a_short_retry_on_503_doubling_while_they_continue() -> None:
    app = RetrySoon(_status_app)
    headers = _answers(app, [200, 503, 503, 503, 200])
    assert b"retry-after" not in headers[0]
    assert b"retry-after" not in headers[4]
    # the app's own hint is replaced; 0.05 s, then doubled within a second of the last
    hints = [h[b"retry-after"] for h in headers[1:4]]
    assert hints == [b"0.050", b"0.100", b"0.200"]
    assert all(b"Retry-After" not in h for h in headers)
    for _ in range(8):
        app.hint()
    assert app.hint() == RETRY_MAX_SECONDS  # capped
    app.last -= 5  # a quiet spell: short again
    assert _answers(app, [503])[0][b"retry-after"] == b"0.050"


def test_retry_soon_passes_lifespan_and_websockets_through() -> None:
    calls: list[str] = []

    async def inner(scope: dict[str, Any], receive: Any, send: Any) -> None:
        calls.append(scope["type"])

    async def noop(*_: Any) -> Any:
        return None

    asyncio.run(RetrySoon(inner)({"type": "lifespan"}, noop, noop))
    asyncio.run(RetrySoon(inner)({"type": "websocket"}, noop, noop))
    assert calls == ["lifespan", "websocket"]
