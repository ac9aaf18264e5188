"""Real router processes for the load test: `sml serve --pin MODEL=VERSION` on loopback.

Each model version under test runs in a router process of its own, as in production
(same app, same uvicorn, same request path), pinned to that version and writing no
traffic rows (serving/pinned.py). The process inherits this process's environment (the
settings: registry, model cache, database), so in the cluster it runs in the flow-run pod
with the pod's configuration.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from typing import IO

import httpx

from core.ports import free_port

# `sml` as the image runs it, with this interpreter (no reliance on PATH)
SML = (sys.executable, "-c", "from cli.main import main; main()")
STOP_SECONDS = 30.0


class RouterStartError(RuntimeError):
    """A pinned router did not become ready; the message ends with its log's tail."""


def _tail(log: IO[bytes], chars: int = 2000) -> str:
    log.flush()
    log.seek(0)
    return log.read().decode(errors="replace")[-chars:]


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: IO[bytes], timeout: float) -> None:
    """Poll `/ready` until it answers 200.

    Raises:
        RouterStartError: the process exited, or `timeout` seconds passed.
    """
    deadline = time.monotonic() + timeout
    # one client for every poll: each new httpx client loads the CA bundle (0.1-0.5 s of
    # CPU on 2 cores, taken from the routers that are starting)
    with httpx.Client(timeout=2) as http:
        while True:
            try:
                if http.get(f"{url}/ready").status_code == 200:
                    return
            except httpx.TransportError:
                pass  # not listening yet
            if proc.poll() is not None:
                raise RouterStartError(
                    f"the router at {url} exited ({proc.returncode}):\n{_tail(log)}"
                )
            if time.monotonic() > deadline:
                raise RouterStartError(
                    f"the router at {url} was not ready in {timeout:g} s:\n{_tail(log)}"
                )
            time.sleep(0.2)


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM (uvicorn's graceful stop), then SIGKILL if it does not exit in time."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(STOP_SECONDS)


@contextmanager
def _launch(
    model_name: str, version: str, extra_env: Mapping[str, str]
) -> Iterator[tuple[subprocess.Popen[bytes], str, IO[bytes]]]:
    """Start one pinned router (not yet ready); stop it on exit.

    It gets a spill folder of its own: it writes no rows, and must not replay the spill
    files a stopped production router left in TRAFFIC_SPILL_DIR either (that router's
    successor does)."""
    port = free_port()
    command = [
        *SML,
        "serve",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--pin",
        f"{model_name}={version}",
    ]  # fmt: skip (one process each: like for like)
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as spill:
        env = {**os.environ, "LOG_LEVEL": "WARNING", "TRAFFIC_SPILL_DIR": spill, **extra_env}
        proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            yield proc, f"http://127.0.0.1:{port}", log
        finally:
            _stop(proc)


@contextmanager
def pinned_routers(
    model_name: str,
    versions: Mapping[str, str],
    *,
    startup_timeout: float = 120.0,
    extra_env: Mapping[str, str] | None = None,
) -> Iterator[dict[str, str]]:
    """Start one pinned router per `{label: version}` (all at once), wait until each is
    ready, yield `{label: base URL}`; stop them all on exit.

    Raises:
        RouterStartError: a router exited or was not ready within `startup_timeout`.
    """
    with ExitStack() as stack:
        started = {
            label: stack.enter_context(_launch(model_name, version, extra_env or {}))
            for label, version in versions.items()
        }
        for proc, url, log in started.values():
            _wait_ready(proc, url, log, startup_timeout)
        yield {label: url for label, (_proc, url, _log) in started.items()}
