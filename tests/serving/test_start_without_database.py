"""A real `sml serve` process started while the state database is unreachable.

Real Postgres behind a TCP proxy that is cut before the router starts, real registered
versions in an MLflow sqlite store: the router answers from the environment's champion
alias (`dev-champion`), says so in /metrics and /ready, spills its traffic; once the
database answers it follows the ledger (whose champion is another version), and every
spilled row is written exactly once.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import MODEL, RegisteredVersions, release, wait_until
from sqlalchemy import func, select
from sqlalchemy.engine import make_url
from tcp_proxy import TcpProxy

from core.aliases import env_alias
from core.db import Traffic, make_engine, session_scope, upgrade

pytestmark = [pytest.mark.postgres, pytest.mark.slow, pytest.mark.integration]

SML = [sys.executable, "-c", "from cli.main import main; main()"]
ALIAS_GAUGE = f'router_serving_from_registry_alias{{model="{MODEL}"}}'


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _gauges(client: httpx.Client) -> dict[str, float]:
    return {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in client.get("/metrics").text.splitlines()
        if line and not line.startswith("#")
    }


def _predict(client: httpx.Client, request_id: str) -> dict[str, str]:
    response = client.post("/predict", json={"text": "refund my order", "request_id": request_id})
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def _wait_up(client: httpx.Client, proc: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 120
    while True:
        try:
            if client.get("/ready").status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert proc.poll() is None, "sml serve exited"
        assert time.monotonic() < deadline, "sml serve never became ready"
        time.sleep(0.2)


def test_router_started_without_database_serves_the_alias_then_the_ledger(
    postgres_url: str, registered_versions: RegisteredVersions, tmp_path: Path
) -> None:
    versions = registered_versions
    registry = versions.registry()
    registry.set_alias(MODEL, env_alias("dev", "champion"), versions.champion)
    direct = make_engine(postgres_url)
    upgrade(direct)
    release(direct, versions.slow)  # the ledger's champion differs from the alias's
    upstream = make_url(postgres_url)
    proxy = TcpProxy(upstream.host or "127.0.0.1", upstream.port or 5432).start()
    proxy.cut()  # the database is unreachable before the router starts
    via_proxy = upstream.set(port=proxy.port).render_as_string(hide_password=False)

    port = _free_port()
    env = {
        **os.environ,
        "ENVIRONMENT": "dev",
        "DATABASE_URL": via_proxy,
        "MLFLOW_TRACKING_URI": f"sqlite:///{versions.registry_dir}/mlflow.db",
        "MLFLOW_ARTIFACT_LOCATION": str(versions.registry_dir / "mlartifacts"),
        "MODEL_CACHE_DIR": str(tmp_path / "serve-models"),
        "TRAFFIC_SPILL_DIR": str(tmp_path / "serve-spill"),
        "ROUTER_POLL_SECONDS": "0.2",
        "TRAFFIC_FLUSH_SECONDS": "0.1",
        "LOG_LEVEL": "INFO",
    }
    log_path = tmp_path / "serve.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [*SML, "serve", "--port", str(port), "--workers", "1"],  # one process: its gauges
            env=env,
            stderr=log_file,
            text=True,
        )
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=30)
    try:
        _wait_up(client, proc)
        ready = client.get("/ready").json()
        assert ready["source"] == "registry-alias"
        assert ready["models"][MODEL]["champion_version"] == versions.champion
        assert ready["models"][MODEL]["source"] == "registry-alias"
        during = [_predict(client, f"outage-{i}") for i in range(40)]
        assert {(b["model_version"], b["role"]) for b in during} == {
            (versions.champion, "champion")
        }
        gauges = _gauges(client)
        assert gauges[ALIAS_GAUGE] == 1.0
        assert gauges["router_traffic_database_up"] == 0.0
        wait_until(lambda: _gauges(client)["router_traffic_spill_rows"] > 0, 30)

        proxy.restore()
        wait_until(lambda: client.get("/ready").json()["source"] == "ledger", 30)
        ready = client.get("/ready").json()
        assert ready["models"][MODEL]["champion_version"] == versions.slow
        after = [_predict(client, f"after-{i}") for i in range(5)]
        assert {b["model_version"] for b in after} == {versions.slow}
        wait_until(lambda: _gauges(client)["router_traffic_database_up"] == 1.0, 30)
        wait_until(lambda: _gauges(client)["router_traffic_spill_rows"] == 0, 30)
        assert _gauges(client)[ALIAS_GAUGE] == 0.0
    finally:
        client.close()
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        proxy.close()
    log = log_path.read_text()
    assert log.count("champion aliases (read-only)") == 1, log  # logged once
    assert log.count("following the ledger from now on") == 1, log

    with session_scope(direct) as session:
        counts = dict(
            session.execute(
                select(Traffic.request_id, func.count()).group_by(Traffic.request_id)
            ).all()
        )
    direct.dispose()
    sent = [b["request_id"] for b in during + after]
    assert sorted(counts) == sorted(sent)  # no row lost, none from elsewhere
    assert set(counts.values()) == {1}  # none written twice
