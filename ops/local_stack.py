"""`make up` / `make down`: a Prefect server, an MLflow server and a process worker on loopback.

Each runs in the background in its own session, with its pid and log under `.local/up/`
(`prefect-server`, `mlflow`, `worker`); `up` waits until each answers, then prints the
variables to export. Prefect keeps its database under `.local/prefect` and MLflow uses the
same `.local/mlflow.db` and `.local/mlartifacts` as the embedded defaults, so runs made
with or without the servers share one history. `make clean` removes it all.

    uv run python -m ops.local_stack up [--prefect-port 4200] [--mlflow-port 5000]
    uv run python -m ops.local_stack down
"""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import typer

HOST = "127.0.0.1"
START_TIMEOUT_SECONDS = 240.0  # `prefect server start` took 41 s cold on 2 shared cores
STOP_TIMEOUT_SECONDS = 20.0

app = typer.Typer(help="Start or stop the local Prefect server, MLflow server and worker.")


@dataclass(frozen=True)
class Stack:
    """Where the local stack lives and listens."""

    local_dir: Path
    prefect_port: int
    mlflow_port: int

    @property
    def run_dir(self) -> Path:
        """Pid and log files."""
        return self.local_dir / "up"

    @property
    def prefect_api_url(self) -> str:
        """PREFECT_API_URL of the local server."""
        return f"http://{HOST}:{self.prefect_port}/api"

    @property
    def mlflow_url(self) -> str:
        """MLFLOW_TRACKING_URI of the local MLflow server."""
        return f"http://{HOST}:{self.mlflow_port}"

    def exports(self) -> dict[str, str]:
        """The variables a shell (and the worker's flow runs) need to use the stack."""
        return {"PREFECT_API_URL": self.prefect_api_url, "MLFLOW_TRACKING_URI": self.mlflow_url}

    def commands(self) -> dict[str, list[str]]:
        """Each background process's argv, in start order."""
        prefect = [sys.executable, "-m", "prefect"]
        local = self.local_dir.resolve()
        return {
            "prefect-server": [
                *prefect,
                "server",
                "start",
                "--host",
                HOST,
                "--port",
                str(self.prefect_port),
            ],
            "mlflow": [
                sys.executable,
                "-m",
                "mlflow",
                "server",
                "--backend-store-uri",
                f"sqlite:///{local}/mlflow.db",
                "--artifacts-destination",
                str(local / "mlartifacts"),
                "--host",
                HOST,
                "--port",
                str(self.mlflow_port),
                "--workers",
                "1",
            ],
            "worker": [*prefect, "worker", "start", "--pool", "local", "--type", "process"],
        }


@functools.cache
def _http() -> httpx.Client:
    """One client for every health poll (a new client loads the CA bundle each time)."""
    return httpx.Client(timeout=5)


def _get_ok(url: str, body: dict[str, object] | None = None) -> bytes | None:
    """The body of a 2xx answer (a POST of `body` when given), or None while the server does
    not answer yet."""
    try:
        response = _http().get(url) if body is None else _http().post(url, json=body)
    except httpx.HTTPError:
        return None
    return response.content if response.is_success else None


def health_checks(stack: Stack) -> dict[str, Callable[[], bool]]:
    """Per process, a check that it serves: the two health endpoints, and for the worker an
    online worker in pool `local` on the Prefect server."""

    def worker_online() -> bool:
        url = f"{stack.prefect_api_url}/work_pools/local/workers/filter"
        answer = _get_ok(url, body={})
        return answer is not None and any(w.get("status") == "ONLINE" for w in json.loads(answer))

    return {
        "prefect-server": lambda: _get_ok(f"{stack.prefect_api_url}/health") is not None,
        "mlflow": lambda: _get_ok(f"{stack.mlflow_url}/health") is not None,
        "worker": worker_online,
    }


def running_pid(stack: Stack, name: str) -> int | None:
    """The pid of a process `up` started that is still alive, or None."""
    pid_file = stack.run_dir / f"{name}.pid"
    try:
        pid = int(pid_file.read_text())
        os.kill(pid, 0)
    except (FileNotFoundError, ValueError, ProcessLookupError, PermissionError):
        return None
    return pid


def start(stack: Stack, name: str, argv: list[str]) -> int:
    """Start one process in its own session (so `down` stops its children too); its pid."""
    env = {
        **os.environ,
        **stack.exports(),
        "PREFECT_HOME": str(stack.local_dir.resolve() / "prefect"),
    }
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    log = (stack.run_dir / f"{name}.log").open("ab")
    process = subprocess.Popen(
        argv,
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        env=env,
        start_new_session=True,
    )
    (stack.run_dir / f"{name}.pid").write_text(str(process.pid))
    return process.pid


def wait_healthy(stack: Stack, name: str, check: Callable[[], bool]) -> None:
    """Wait until `check` passes; exit 1 naming the log when the process dies or times out."""
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while not check():
        if running_pid(stack, name) is None or time.monotonic() > deadline:
            why = "exited" if running_pid(stack, name) is None else "is not healthy in time"
            typer.echo(f"up: {name} {why}; see {stack.run_dir / (name + '.log')}", err=True)
            raise typer.Exit(1)
        time.sleep(1)


def stop(stack: Stack, name: str) -> bool:
    """SIGTERM the process group `up` started (SIGKILL after a grace period); True if it ran."""
    pid = running_pid(stack, name)
    (stack.run_dir / f"{name}.pid").unlink(missing_ok=True)
    if pid is None:
        return False
    os.killpg(pid, signal.SIGTERM)  # its own session: this process and its children only
    deadline = time.monotonic() + STOP_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.5)
    os.killpg(pid, signal.SIGKILL)
    return True


def _stack(local_dir: Path, prefect_port: int, mlflow_port: int) -> Stack:
    stack = Stack(local_dir, prefect_port, mlflow_port)
    stack.run_dir.mkdir(parents=True, exist_ok=True)
    return stack


LOCAL_DIR = typer.Option(Path(".local"), "--local-dir", envvar="LOCAL_DIR")
PREFECT_PORT = typer.Option(4200, "--prefect-port", envvar="PREFECT_PORT")
MLFLOW_PORT = typer.Option(5000, "--mlflow-port", envvar="MLFLOW_PORT")


@app.command()
def up(
    local_dir: Path = LOCAL_DIR, prefect_port: int = PREFECT_PORT, mlflow_port: int = MLFLOW_PORT
) -> None:
    """Start what is not running, wait until all serve, print the variables to export."""
    stack = _stack(local_dir, prefect_port, mlflow_port)
    checks = health_checks(stack)
    commands = stack.commands()
    for name in ("prefect-server", "mlflow", "worker"):
        if name == "worker":  # the worker needs the Prefect server: wait for it first
            wait_healthy(stack, "prefect-server", checks["prefect-server"])
        if running_pid(stack, name) is None:
            start(stack, name, commands[name])
    for name, check in checks.items():
        wait_healthy(stack, name, check)
        typer.echo(f"up: {name} healthy (pid {running_pid(stack, name)})", err=True)
    for key, value in stack.exports().items():
        typer.echo(f"export {key}={value}")


@app.command()
def down(local_dir: Path = LOCAL_DIR) -> None:
    """Stop the processes `up` started (worker first, servers last)."""
    stack = _stack(local_dir, 0, 0)
    for name in reversed(list(stack.commands())):
        typer.echo(f"down: {name} {'stopped' if stop(stack, name) else 'was not running'}")


if __name__ == "__main__":
    app()
