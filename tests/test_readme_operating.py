"""README "Operating it", "On a laptop": the block run as written on a fresh clone.

Every line of the block is executed in order (the `export` lines take the values `make up`
printed: the test moves the ports with PREFECT_PORT/MLFLOW_PORT so it never meets a server
of someone else's). A `prefect deployment run ... --watch` line must end in the state its
comment names; the `prefect event emit image.published` line must start a
retrain-on-image-change run with the event's image_version and IMAGE_VERSION. `make down`
runs in a finally. The current .venv is reused (a `uv` shim: `uv sync` is a no-op and
`uv run X` runs X from .venv/bin), so nothing is installed.
"""

from __future__ import annotations

import os
import re
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import SETTINGS_ENV_KEYS

ROOT = Path(__file__).resolve().parents[1]
UV_SHIM = """#!/bin/sh
case "$1" in
  sync) exit 0 ;;
  run) shift; exec "$@" ;;
  *) echo "uv shim: $*" >&2; exit 1 ;;
esac
"""
NOTE = re.compile(r"^(?P<command>.*?)\s+#\s*(?P<note>.*)$")


def laptop_block() -> list[tuple[str, str]]:
    """(command, comment) of every command line of the README's "On a laptop" block."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = readme.split("**On a laptop**", 1)[1].split("```bash\n", 1)[1].split("```", 1)[0]
    lines = []
    for line in block.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue  # a continued comment
        match = NOTE.match(line)
        lines.append((match["command"], match["note"]) if match else (line.strip(), ""))
    return lines


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _environment(tmp_path: Path, clone: Path) -> dict[str, str]:
    shim_dir = tmp_path / "bin"
    shim_dir.mkdir()
    (shim_dir / "uv").write_text(UV_SHIM)
    (shim_dir / "uv").chmod(0o755)
    env = {k: v for k, v in os.environ.items() if k not in SETTINGS_ENV_KEYS}
    env.pop("PREFECT_API_URL", None)
    venv_bin = str(Path(sys.executable).parent)
    return {
        **env,
        "PATH": f"{shim_dir}:{venv_bin}:{env['PATH']}",
        "PWD": str(clone),  # prefect.yaml's pull step: {{ $PWD }}, as in a shell
        "PYTHONPATH": str(clone),  # the clone's code, also for the venv's console scripts
        "PREFECT_HOME": str(tmp_path / "prefect-home"),
        "PREFECT_PORT": str(_free_port()),
        "MLFLOW_PORT": str(_free_port()),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_WORKER_QUERY_SECONDS": "3",  # the worker polls sooner (default 10 s)
    }


def _run(command: str, cwd: Path, env: dict[str, str], timeout: float = 420) -> str:
    result = subprocess.run(
        ["bash", "-c", command],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    output = result.stdout + result.stderr
    if result.returncode != 0 and "deployment run" not in command:
        pytest.fail(f"`{command}` exited {result.returncode}:\n{output[-4000:]}")
    return output


def _flow_runs(api: str) -> list[dict[str, Any]]:
    response = httpx.post(f"{api}/flow_runs/filter", json={}, timeout=30)
    response.raise_for_status()
    return list(response.json())


def _run_state(api: str, output: str) -> str:
    """The final state type of the flow run a `prefect deployment run` created."""
    run_id = re.search(r"UUID:\s*([0-9a-f-]{36})", output)
    assert run_id, output
    response = httpx.get(f"{api}/flow_runs/{run_id[1]}", timeout=30)
    return str(response.json()["state"]["type"])


def _triggered_retrain(api: str, image_version: str, timeout: float = 240) -> dict[str, Any]:
    """The retrain-on-image-change/local run an image.published event started (through the
    relay image-published/local), waiting for it."""
    response = httpx.get(f"{api}/deployments/name/retrain-on-image-change/local", timeout=30)
    response.raise_for_status()
    retrain = response.json()["id"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run in _flow_runs(api):
            if run["deployment_id"] == retrain and (
                run["parameters"].get("image_version") == image_version
            ):
                return run
        time.sleep(3)
    pytest.fail(f"no retrain run with image_version={image_version} after {timeout} s")


@pytest.mark.slow
@pytest.mark.integration
def test_readme_laptop_block_on_a_fresh_clone(tmp_path: Path) -> None:
    clone = tmp_path / "repo"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(clone)], check=True, timeout=120)
    env = _environment(tmp_path, clone)
    mismatches: list[str] = []
    try:
        for command, note in laptop_block():
            if command.startswith("export "):
                key, value = command.removeprefix("export ").split("=", 1)
                moved = value.replace(":4200", f":{env['PREFECT_PORT']}")
                assert env.get(key) == moved.replace(":5000", f":{env['MLFLOW_PORT']}"), key
                continue
            output = _run(command, clone, env)
            if command == "make up":
                exports = dict(re.findall(r"^export (\w+)=(\S+)$", output, re.MULTILINE))
                assert set(exports) == {"PREFECT_API_URL", "MLFLOW_TRACKING_URI"}, output
                env.update(exports)
            elif command.startswith("prefect deployment run"):
                expected = note.split(":")[0].strip().upper()
                state = _run_state(env["PREFECT_API_URL"], output)
                if state != expected:
                    mismatches.append(f"{shlex.split(command)[3]}: {state}, README says {note!r}")
            elif command.startswith("prefect event emit image.published"):
                version = re.search(r'"image_version": "([^"]+)"', command)
                assert version
                run = _triggered_retrain(env["PREFECT_API_URL"], version[1])
                assert run["parameters"] == {"image_version": version[1]}
                assert run["job_variables"] == {"env": {"IMAGE_VERSION": version[1]}}
    finally:
        _run("make down", clone, env, timeout=120)
    assert not mismatches, "\n".join(mismatches)
    assert not list((clone / ".local" / "up").glob("*.pid"))
