"""`sml serve` starts the router (as the image's default command does) and stops cleanly."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import httpx
import pytest
from conftest import release

from core.db import make_engine, upgrade

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SML = [sys.executable, "-c", "from cli.main import main; main()"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_sml_serve_answers_health_and_stops_on_sigterm(sqlite_url: str) -> None:
    engine = make_engine(sqlite_url)
    upgrade(engine)
    release(engine, "1")  # a champion the (empty) registry cannot load: never ready
    engine.dispose()
    port = _free_port()
    env = {**os.environ, "DATABASE_URL": sqlite_url, "ROUTER_POLL_SECONDS": "0.2"}
    proc = subprocess.Popen(
        [*SML, "serve", "--port", str(port)], env=env, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
                break
            except httpx.TransportError:
                assert proc.poll() is None, "sml serve exited"
                assert time.monotonic() < deadline, "sml serve did not come up"
                time.sleep(0.2)
        assert health.json() == {"status": "ok"}
        ready = httpx.get(f"http://127.0.0.1:{port}/ready", timeout=30)
        assert ready.status_code == 503
        assert "no champion loaded" in ready.json()["reason"]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=60)
    # uvicorn re-raises the signal after a graceful shutdown (lifespan ran: traffic flushed)
    assert proc.returncode in (0, -signal.SIGTERM)
    assert "Application shutdown complete" in stderr


def test_sml_serve_bad_setting_fails_with_one_line() -> None:
    env = {**os.environ, "ROUTER_PORT": "not-a-port"}
    result = subprocess.run(
        [*SML, "serve"], env=env, capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 2
    assert "ROUTER_PORT" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
