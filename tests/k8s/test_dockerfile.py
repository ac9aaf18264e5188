"""The Dockerfile, read statically (no Docker engine here): a uv builder and a slim runtime
on a digest-pinned base, a non-root user matching the manifests, a HEALTHCHECK on /health,
defaults that serve on 0.0.0.0:8080 with writable state, and no tests in the image."""

from __future__ import annotations

import json
import re
import shlex
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.k8s.conftest import K8S, ROOT, by_kind_name, render
from tests.k8s.test_work_pool_template import work_pool_template

DOCKERFILE = ROOT / "Dockerfile"
NOT_IN_IMAGE = ("tests", "bench", "docs", ".ci", ".env", ".git", ".local")


@dataclass
class Stage:
    """One FROM ... block: its base, name and instructions (keyword, argument text)."""

    base: str
    name: str
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def args(self, keyword: str) -> list[str]:
        return [text for key, text in self.instructions if key == keyword]

    def env(self) -> dict[str, str]:
        values: dict[str, str] = {}
        for text in self.args("ENV"):
            for item in shlex.split(text):
                key, _, value = item.partition("=")
                values[key] = value
        return values


def parse(text: str) -> tuple[list[str], list[Stage]]:
    """(ARGs before the first FROM, stages) of a Dockerfile, continuations joined."""
    joined = re.sub(r"\\\n", " ", text)
    global_args: list[str] = []
    stages: list[Stage] = []
    for raw in joined.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword, rest = keyword.upper(), rest.strip()
        if keyword == "FROM":
            parts = rest.split()
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else ""
            stages.append(Stage(parts[0], name))
        elif stages:
            stages[-1].instructions.append((keyword, rest))
        elif keyword == "ARG":
            global_args.append(rest)
    return global_args, stages


@pytest.fixture(scope="module")
def dockerfile() -> tuple[list[str], list[Stage]]:
    return parse(DOCKERFILE.read_text())


def test_builds_with_uv_in_a_builder_and_runs_from_a_slim_runtime(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    _, stages = dockerfile
    builder, runtime = stages[0], stages[-1]

    assert [s.name for s in stages] == ["builder", "runtime"]
    assert any(re.search(r"\buv==\d+\.\d+\.\d+\b", run) for run in builder.args("RUN"))
    assert "uv sync --frozen --no-dev" in builder.args("RUN")
    assert not any("uv" in run.split() or "pip install" in run for run in runtime.args("RUN"))
    copied = {text.split()[0] for text in runtime.args("COPY") if text.startswith("--from=")}
    assert copied == {"--from=builder"}
    assert all(s.base.startswith("python:3.11-slim@") for s in stages)


def test_base_image_is_pinned_by_digest_never_by_a_floating_tag(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    global_args, stages = dockerfile

    for stage in stages:
        _, _, digest = stage.base.partition("@")
        assert digest == "${PYTHON_DIGEST}" or re.fullmatch(r"sha256:[0-9a-f]{64}", digest)
    # a required build argument: no default, so a build without a digest fails
    assert "PYTHON_DIGEST" in global_args
    runtime = stages[-1]
    labels = " ".join(runtime.args("LABEL"))
    assert 'org.opencontainers.image.base.digest="${PYTHON_DIGEST}"' in labels


def test_runs_as_the_non_root_user_the_manifests_expect(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    runtime = dockerfile[1][-1]
    user = runtime.args("USER")[-1]
    uid = int(user.split(":")[0])

    assert uid != 0
    assert any(f"--uid {uid}" in run for run in runtime.args("RUN"))
    assert uid == work_pool_template.APP_UID
    for doc in render(K8S / "base"):
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsUser"] == uid


def test_healthcheck_asks_the_router_health_endpoint(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    runtime = dockerfile[1][-1]
    (healthcheck,) = runtime.args("HEALTHCHECK")

    assert "/health" in healthcheck
    assert "ROUTER_PORT" in healthcheck
    assert re.search(r"--start-period=\d+s", healthcheck)


def test_defaults_serve_on_all_interfaces_with_writable_state(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    runtime = dockerfile[1][-1]
    env = runtime.env()
    configmap = by_kind_name(render(K8S / "base"))[("ConfigMap", "stateful-ml-env")]["data"]
    runs = " ".join(runtime.args("RUN"))

    assert runtime.args("CMD") == ['["sml", "serve"]']
    assert env["ROUTER_HOST"] == "0.0.0.0"
    assert runtime.args("EXPOSE") == [env["ROUTER_PORT"]]
    assert env["LOCAL_DIR"] == configmap["LOCAL_DIR"]
    assert f"chown app:app {env['LOCAL_DIR']}" in runs
    # the settings' relative SQLite defaults (.local/...) resolve into LOCAL_DIR
    assert f"ln -s {env['LOCAL_DIR']} /app/.local" in runs
    for key in ("MODEL_CACHE_DIR", "TRAFFIC_SPILL_DIR"):
        assert env[key].startswith(env["LOCAL_DIR"] + "/")
    # stg/prd must still refuse the embedded database: the image sets no database URL
    assert not {"DATABASE_URL", "SOURCE_DATABASE_URL", "MLFLOW_TRACKING_URI"} & set(env)


def test_image_version_is_baked_in_from_a_build_argument(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    runtime = dockerfile[1][-1]

    assert any(a.startswith("IMAGE_VERSION") for a in runtime.args("ARG"))
    assert runtime.env()["IMAGE_VERSION"] == "${IMAGE_VERSION}"


def test_no_tests_or_local_state_are_copied_into_the_image(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    ignored = {
        line.strip().rstrip("/")
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for stage in dockerfile[1]:
        for text in stage.args("COPY"):
            if text.startswith("--from="):
                continue
            sources = text.split()[:-1]
            assert "." not in sources, f"COPY {text}: copies the whole context"
            for source in sources:
                assert source.split("/")[0] not in NOT_IN_IMAGE, f"COPY {text}"
                assert (ROOT / source).exists(), f"COPY {text}: {source} does not exist"
    assert {"tests", ".env", ".git", ".local"} <= ignored


def test_image_runs_the_python_the_project_requires(
    dockerfile: tuple[list[str], list[Stage]],
) -> None:
    requires = re.search(r'requires-python = "([^"]+)"', (ROOT / "pyproject.toml").read_text())

    assert requires is not None
    assert requires.group(1) == ">=3.11,<3.12"
    assert {stage.base.split("@")[0] for stage in dockerfile[1]} == {"python:3.11-slim"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _container_env(runtime: Stage, root: Path, port: int) -> dict[str, str]:
    """The runtime stage's ENV as the container would see it, its paths moved under `root`."""
    env = {k: v for k, v in runtime.env().items() if "$" not in v}
    local = env["LOCAL_DIR"]
    env = {k: v.replace(local, str(root / "state")) for k, v in env.items()}
    return {
        **env,
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(root / "home"),
        "ROUTER_PORT": str(port),
        "IMAGE_VERSION": "dev",
    }


@pytest.mark.slow
@pytest.mark.integration
def test_image_defaults_serve_health_without_any_configuration(
    dockerfile: tuple[list[str], list[Stage]], tmp_path: Path
) -> None:
    """`docker run -p 8080:8080 IMAGE`, without Docker: the image's CMD, ENV, working dir
    and /app/.local link, on this machine's venv; then the image's HEALTHCHECK command."""
    runtime = dockerfile[1][-1]
    port = _free_port()
    env = _container_env(runtime, tmp_path, port)
    workdir = tmp_path / "app"
    for folder in (workdir, tmp_path / "state", tmp_path / "home"):
        folder.mkdir()
    (workdir / ".local").symlink_to(tmp_path / "state")  # the image's `ln -s`
    command = json.loads(runtime.args("CMD")[-1])
    healthcheck = json.loads(runtime.args("HEALTHCHECK")[-1].split(" CMD ", 1)[1])

    server = subprocess.Popen(
        command, cwd=workdir, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            probe = subprocess.run(
                healthcheck, cwd=workdir, env=env, capture_output=True, check=False
            )
            if probe.returncode == 0 or time.monotonic() > deadline or server.poll() is not None:
                break
            time.sleep(1)
    finally:
        server.terminate()
        _, stderr = server.communicate(timeout=30)

    assert probe.returncode == 0, stderr.decode()[-2000:]
    # the settings' relative SQLite default landed in LOCAL_DIR through the link
    assert (tmp_path / "state" / "state.db").exists()
