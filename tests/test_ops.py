"""ops/: the relay's job variables and `make deploy`'s refusals (no server needed)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from core.image_events import image_job_variables
from ops.deploy import pool_create_args, refusal

ROOT = Path(__file__).resolve().parents[1]


def test_kubernetes_runs_get_the_image_and_its_version() -> None:
    assert image_job_variables("1.4.0", "registry.example.com/stateful-ml") == {
        "image": "registry.example.com/stateful-ml:1.4.0",
        "env": {"IMAGE_VERSION": "1.4.0"},
    }


def test_process_runs_get_only_the_version() -> None:
    assert image_job_variables("1.4.0", None) == {"env": {"IMAGE_VERSION": "1.4.0"}}


def test_an_event_without_a_version_is_refused() -> None:
    with pytest.raises(ValueError, match="image_version"):
        image_job_variables(" ", "registry.example.com/stateful-ml")


@pytest.mark.parametrize("env", ["stg", "prd"])
@pytest.mark.parametrize("image_version", [None, "", "  "])
def test_cluster_deploy_refuses_an_empty_image_version(env: str, image_version: str | None) -> None:
    reason = refusal(env, image_version)
    assert reason is not None
    assert "IMAGE_VERSION is empty" in reason
    assert "\n" not in reason


def test_local_deploy_needs_no_image_version_and_unknown_envs_are_refused() -> None:
    assert refusal("local", None) is None
    assert refusal("stg", "1.4.0") is None
    assert "ENV must be one of" in (refusal("dev", "1.4.0") or "")


def test_cluster_pools_are_kubernetes_with_the_committed_template() -> None:
    assert pool_create_args("local")[:5] == ["work-pool", "create", "local", "--type", "process"]
    args = pool_create_args("prd")
    assert args[2:5] == ["stateful-ml-prd", "--type", "kubernetes"]
    assert Path(args[args.index("--base-job-template") + 1]) == (
        ROOT / "k8s/base/work-pool-template.json"
    )


def test_deploy_command_exits_2_with_one_line_without_image_version() -> None:
    env = {k: v for k, v in os.environ.items() if k != "IMAGE_VERSION"}
    env["PREFECT_API_URL"] = "http://127.0.0.1:9/api"  # never reached
    result = subprocess.run(
        [sys.executable, "-m", "ops.deploy", "--env", "stg"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith("deploy: IMAGE_VERSION is empty; stg would run")
