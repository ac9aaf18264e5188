"""Prefect's temporary API server for `sml demo`, spawned as the demo's first act.

With no PREFECT_API_URL, Prefect starts a temporary server itself on the first flow run
(`prefect.server.api.server.SubprocessASGIServer`: uvicorn serving
`prefect.server.api.server:create_app` in a subprocess, the UI off). On 2 cores that
server took 15-22 s to answer, and starting it from the demo also imported
`prefect.server` (its FastAPI app and ORM) into the demo's own process: 5-6 s of CPU
taken from the steps running beside it. Here the same command is spawned before the
demo imports its steps, without importing Prefect at all: the server starts while the
CLI loads, and the demo points its flow runs at it (`api_url`), then stops it.

The server is Prefect's app behind `RetrySoon`: on SQLite, Prefect's server answers 503
when a write meets a concurrent one (SQLITE_BUSY_SNAPSHOT: its task-run recorder writes
while an API call that read first tries to write), and Prefect's client, told nothing,
waits 2 s before it tries again. A demo met 4 of them (8 s of its 88); the flow tests 13.
`RetrySoon` adds the `Retry-After` the client honours: 0.05 s, doubling while 503s keep
coming (a server really in trouble still gets the client's patience).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from core.ports import free_port

Message = MutableMapping[str, Any]
ASGIApp = Callable[
    [Message, Callable[[], Awaitable[Message]], Callable[[Message], Awaitable[None]]],
    Awaitable[None],
]

HOST = "127.0.0.1"
SERVER_ENV = {
    "PREFECT_UI_ENABLED": "0",
    "PREFECT__SERVER_EPHEMERAL": "1",
    "PREFECT__SERVER_FINAL": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PREFECT_LOGGING_LEVEL": "WARNING",
    # The demo's flows run in its own process: no deployment, work pool or schedule for the
    # services that watch those, and no block (config is env vars) to register at start,
    # which imported every installed Prefect collection in the server (~3 s of CPU); nor
    # the check of that registration's hash, which imported them all the same (~5 s)
    "PREFECT_SERVER_REGISTER_BLOCKS_ON_START": "false",
    "PREFECT_SERVER_MEMOIZE_BLOCK_AUTO_REGISTRATION": "false",
    **{
        f"PREFECT_SERVER_SERVICES_{service}_ENABLED": "false"
        for service in (
            "SCHEDULER",
            "LATE_RUNS",
            "FOREMAN",
            "PAUSE_EXPIRATIONS",
            "CANCELLATION_CLEANUP",
        )
    },
}
"""What Prefect starts its own temporary server with (the UI off, ephemeral), quiet, and
without what the demo does not use."""
STOP_SECONDS = 5.0
"""How long `stop` waits after SIGTERM before it kills the server."""
RETRY_SOON_SECONDS = 0.05
RETRY_MAX_SECONDS = 2.0
"""`RetrySoon`'s first Retry-After, and its ceiling (Prefect's own first back-off)."""


class RetrySoon:
    """An ASGI wrapper that tells clients when to retry a 503: RETRY_SOON_SECONDS after a
    quiet spell, doubling with each 503 answered within a second of the previous one,
    up to RETRY_MAX_SECONDS."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.streak = 0
        self.last = -1.0e9

    def hint(self) -> float:
        """The next 503's Retry-After, in seconds (and count it)."""
        now = time.monotonic()
        self.streak = self.streak + 1 if now - self.last < 1.0 else 0
        self.last = now
        return min(RETRY_SOON_SECONDS * 2**self.streak, RETRY_MAX_SECONDS)

    async def __call__(
        self,
        scope: Message,
        receive: Callable[[], Awaitable[Message]],
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def hinted(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] == 503:
                headers = [
                    (name, value)
                    for name, value in message.get("headers", [])
                    if name.lower() != b"retry-after"
                ]
                retry = f"{self.hint():.3f}".encode()
                message = {**message, "headers": [*headers, (b"retry-after", retry)]}
            await send(message)

        await self.app(scope, receive, hinted)


def create_app() -> ASGIApp:
    """Prefect's API app (as its temporary server makes it), behind `RetrySoon`."""
    from prefect.server.api.server import create_app as prefect_app

    return RetrySoon(prefect_app())


@dataclass
class DemoPrefectServer:
    """A temporary Prefect API server in a subprocess on a free loopback port."""

    process: subprocess.Popen[bytes]
    port: int

    @classmethod
    def spawn(cls, environment: dict[str, str]) -> DemoPrefectServer:
        """Start the server with `environment` (this process's, for its Prefect home and
        settings); returns at once: `wait_ready` before the first flow run."""
        port = free_port()
        argv = [
            sys.executable, "-m", "uvicorn", "--factory",
            "cli.demo_server:create_app", "--host", HOST, "--port", str(port),
            "--log-level", "error", "--lifespan", "on",
        ]  # fmt: skip
        process = subprocess.Popen(
            argv, env={**environment, **SERVER_ENV}, stdin=subprocess.DEVNULL
        )
        return cls(process, port)

    @property
    def api_url(self) -> str:
        """The PREFECT_API_URL of this server."""
        return f"http://{HOST}:{self.port}/api"

    def wait_ready(self, timeout: float) -> float:
        """Wait until the server answers its health check; returns the seconds waited.

        Raises:
            RuntimeError: the server exited first, or did not answer within `timeout`.
        """
        started = time.monotonic()
        while True:
            code = self.process.poll()
            if code is not None:
                raise RuntimeError(f"Prefect's temporary server exited with code {code}")
            try:
                with urllib.request.urlopen(f"{self.api_url}/health", timeout=2) as answer:  # noqa: S310
                    if answer.status == 200:
                        return time.monotonic() - started
            except (urllib.error.URLError, OSError):
                pass  # not listening yet
            if time.monotonic() - started > timeout:
                raise RuntimeError(
                    f"Prefect's temporary server on {self.api_url} did not answer "
                    f"within {timeout:.0f} s"
                )
            time.sleep(0.1)

    def stop(self) -> None:
        """Terminate the server (killed if it has not exited after STOP_SECONDS)."""
        if self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def spawn_prefect_server() -> DemoPrefectServer | None:
    """The demo's temporary Prefect server, spawned now; None when PREFECT_API_URL names
    a server (env or .env): the demo's flows then run against that one."""
    from config import load_settings

    if os.environ.get("PREFECT_API_URL") or load_settings().PREFECT_API_URL:
        return None
    return DemoPrefectServer.spawn(dict(os.environ))
