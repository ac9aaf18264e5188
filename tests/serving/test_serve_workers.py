"""`sml serve --workers N`: N router processes on one port sharing nothing but the
database; every request answered and logged, all of them flushed on SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from cli.serve import usable_cores, worker_count
from core.db import Traffic, make_engine, session_scope, upgrade
from core.ledger import record_release

SML = [sys.executable, "-c", "from cli.main import main; main()"]
MODEL = "intent-classifier"


def test_worker_count_defaults_to_the_usable_cores_under_a_cgroup_quota(tmp_path: Path) -> None:
    cores = len(os.sched_getaffinity(0))
    assert worker_count(3) == 3
    assert worker_count(0) == usable_cores()
    assert usable_cores(tmp_path) == cores  # no cpu.max: the affinity
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert usable_cores(tmp_path) == cores
    (tmp_path / "cpu.max").write_text("50000 100000\n")  # half a core: one process
    assert usable_cores(tmp_path) == 1
    (tmp_path / "cpu.max").write_text("6400000 100000\n")  # 64 cores: capped by affinity
    assert usable_cores(tmp_path) == cores


def _children(pid: int) -> list[int]:
    """Live child pids of `pid` (from /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid and fields[0] != "Z":
                found.append(int(entry.name))
    return found


async def _load(url: str, requests: int, connections: int) -> list[int]:
    """`requests` POSTs over `connections` concurrent connections; their status codes."""
    codes: list[int] = []
    queue = list(range(requests))

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            n = queue.pop()
            response = await http.post(
                f"{url}/predict", json={"text": "I want a refund", "user_id": f"u{n}"}
            )
            codes.append(response.status_code)

    async with httpx.AsyncClient(timeout=30) as http:
        await asyncio.gather(*(client(http) for _ in range(connections)))
    return codes


@pytest.mark.integration
@pytest.mark.slow
def test_sml_serve_workers_answer_and_flush_every_row(db_url: str, tmp_path: Path) -> None:
    from factories import make_registry, train_and_register

    registry = make_registry(tmp_path / "registry")
    version = train_and_register(registry).version
    engine = make_engine(db_url)
    upgrade(engine)
    record_release(
        engine, env="dev", code_version="0.1.0", image_version="test",
        model_versions={MODEL: version}, artifact_digests={MODEL: "sha256:test"},
        reason="test", actor="test",
    )  # fmt: skip
    env = {
        **os.environ,
        "DATABASE_URL": db_url,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/registry/mlflow.db",
        "MLFLOW_ARTIFACT_LOCATION": str(tmp_path / "registry" / "mlartifacts"),
        "MODEL_CACHE_DIR": str(tmp_path / "model-cache"),
        "TRAFFIC_SPILL_DIR": str(tmp_path / "spill"),
        "ROUTER_POLL_SECONDS": "0.2",
        "LOG_LEVEL": "INFO",
    }
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    proc = subprocess.Popen(
        [*SML, "serve", "--port", str(port), "--workers", "2"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        ready = 0
        while ready < 20:  # fresh connections: both processes must be ready
            try:
                ready = ready + 1 if httpx.get(f"{url}/ready", timeout=2).is_success else 0
            except httpx.TransportError:
                ready = 0
            assert proc.poll() is None, "sml serve exited"
            assert time.monotonic() < deadline, "sml serve did not become ready"
            time.sleep(0.05)
        assert len(_children(proc.pid)) >= 2
        codes = asyncio.run(_load(url, 300, connections=8))
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=90)
    assert codes == [200] * 300
    assert proc.returncode in (0, -signal.SIGTERM), stderr
    assert stderr.count("Application shutdown complete") == 2
    with session_scope(engine) as session:
        rows = session.scalar(select(func.count()).select_from(Traffic))
    assert rows == 300  # every request of both processes, flushed at shutdown
    engine.dispose()
