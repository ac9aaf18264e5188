"""The demo's temporary Prefect server (`cli.demo_server`): a real uvicorn subprocess
serving Prefect's API on loopback, a flow run recorded on it, then stopped."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from prefect import flow, get_client

from cli.demo_server import DemoPrefectServer, spawn_prefect_server
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
