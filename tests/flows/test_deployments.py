"""`prefect deploy --all` against a real Prefect API, then `prefect deployment run` picked up
by a real process worker: the path an operator uses from a terminal or CI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from prefect.client.schemas.objects import FlowRun

ROOT = Path(__file__).resolve().parents[2]
PREFECT = [sys.executable, "-m", "prefect"]


def _prefect(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    result = subprocess.run(
        [*PREFECT, "--no-prompt", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert result.returncode == 0, f"prefect {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
    return result.stdout


@pytest.mark.slow
@pytest.mark.integration
def test_deploy_all_then_run_controller_through_a_process_worker(
    isolated_settings: Path, tmp_path: Path
) -> None:
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "IMAGE_VERSION": "img-test",
        "PWD": str(ROOT),
    }
    # Given a migrated state database and the three work pools an operator creates once
    subprocess.run(
        [sys.executable, "-m", "cli.main", "db", "upgrade"],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        timeout=120,
    )
    template = tmp_path / "k8s-template.json"
    template.write_text((ROOT / "k8s/base/work-pool-template.json").read_text())
    _prefect(["work-pool", "create", "local", "--type", "process", "--overwrite"], env)
    for pool in ("stateful-ml-stg", "stateful-ml-prd"):
        _prefect(
            [
                "work-pool",
                "create",
                pool,
                "--type",
                "kubernetes",
                "--overwrite",
                "--base-job-template",
                str(template),
            ],
            env,
        )

    # When every deployment is applied from prefect.yaml
    # 36 deployments, each a few API calls: minutes on 2 loaded cores, so a long bound
    _prefect(["deploy", "--all"], env, timeout=900)

    # Then all 36 exist, with the schedules prefect.yaml declares
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        names = {d.name for d in deployments}
        assert len(deployments) == 36  # 12 flows (11 + the image.published relay) x 3
        assert names == {"local", "stg", "prd"}
        controller_prd = client.read_deployment_by_name("rollout-controller/prd")
        assert controller_prd.schedules[0].schedule.cron == "* * * * *"
        assert controller_prd.job_variables["image"] == "registry.example.com/stateful-ml:img-test"

    # And a run started from the terminal is executed by a local process worker
    out = _prefect(["deployment", "run", "rollout-controller/local", "--param", 'env="dev"'], env)
    assert "Created flow run" in out
    worker_log = _prefect(
        ["worker", "start", "--pool", "local", "--type", "process", "--run-once"],
        env,
        timeout=600,
    )
    # only this deployment's runs: earlier tests of the session ran flows on this server
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    with get_client(sync_client=True) as client:
        controller_local = client.read_deployment_by_name("rollout-controller/local")
        only = DeploymentFilter(id=DeploymentFilterId(any_=[controller_local.id]))
        runs = client.read_flow_runs(deployment_filter=only)
        states = {r.name: r.state_type.value for r in runs}
    assert list(states.values()) == ["COMPLETED"], json.dumps(states) + "\n" + worker_log


def _stop(worker: subprocess.Popen[bytes]) -> None:
    """Stop the worker this test started, and the flow runs it started (its own session):
    SIGTERM, then SIGKILL when a run it waits for does not end in time."""
    os.killpg(worker.pid, signal.SIGTERM)
    try:
        worker.wait(timeout=30)
    except subprocess.TimeoutExpired:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait(timeout=30)


def _wait_for_run(deployment_name: str, image_version: str, timeout: float = 300) -> FlowRun:
    """The run of a deployment whose image_version parameter is `image_version`, once a
    worker has picked it up (no longer Scheduled/Pending)."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId

    deadline = time.monotonic() + timeout
    with get_client(sync_client=True) as client:
        deployment = client.read_deployment_by_name(deployment_name)
        only = DeploymentFilter(id=DeploymentFilterId(any_=[deployment.id]))
        while time.monotonic() < deadline:
            for run in client.read_flow_runs(deployment_filter=only):
                started = run.state_type is not None and run.state_type.value not in (
                    "SCHEDULED",
                    "PENDING",
                )
                if run.parameters.get("image_version") == image_version and started:
                    return run
            time.sleep(0.5)
    pytest.fail(f"no started {deployment_name} run with image_version={image_version}")


@pytest.mark.slow
@pytest.mark.integration
def test_image_published_event_starts_a_retrain_on_the_new_image(
    isolated_settings: Path, tmp_path: Path
) -> None:
    """`prefect event emit image.published` -> image-published/local (a trigger) -> a
    retrain-on-image-change/local run carrying the event's image_version and IMAGE_VERSION;
    the stg relay gives its retrain the image tag too (its Kubernetes pool has no worker here,
    so the relay runs in-process against the same server)."""
    from prefect.client.orchestration import get_client
    from prefect.settings import PREFECT_API_URL

    from flows.image_published import image_published

    env = {
        **os.environ,
        "PREFECT_API_URL": str(PREFECT_API_URL.value()),
        "IMAGE_VERSION": "img-test",
        "PWD": str(ROOT),
        "PREFECT_WORKER_QUERY_SECONDS": "1",  # the worker polls sooner (default 10 s)
    }
    # Given the local and stg deployments (make deploy; make deploy ENV=stg) and a worker
    for target in ("local", "stg"):
        subprocess.run(
            [sys.executable, "-m", "ops.deploy", "--env", target],
            cwd=ROOT, env=env, check=True, capture_output=True, timeout=300,
        )  # fmt: skip
    log = (tmp_path / "worker.log").open("wb")
    worker = subprocess.Popen(
        [*PREFECT, "worker", "start", "--pool", "local", "--type", "process"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )  # fmt: skip
    try:
        # When the README's event is emitted for image 9.9.9
        _prefect(
            ["event", "emit", "image.published", "--resource-id", "stateful-ml.image.9.9.9",
             "--payload", '{"image_version": "9.9.9"}'],
            env,
        )  # fmt: skip

        # Then a retrain run starts with the event's image version as parameter and env
        run = _wait_for_run("retrain-on-image-change/local", "9.9.9")
        assert run.parameters == {"image_version": "9.9.9"}
        assert run.job_variables == {"env": {"IMAGE_VERSION": "9.9.9"}}
    finally:
        _stop(worker)

    # And the stg relay starts the stg retrain on the image registry.example.com/...:9.9.9
    run_id = image_published("9.9.9", "stg", "registry.example.com/stateful-ml")
    with get_client(sync_client=True) as client:
        stg_run = client.read_flow_run(run_id)
        relays = client.read_flow_runs()
    assert stg_run.parameters == {"image_version": "9.9.9"}
    assert stg_run.job_variables == {
        "image": "registry.example.com/stateful-ml:9.9.9",
        "env": {"IMAGE_VERSION": "9.9.9"},
    }
    # (the event also started the stg relay: scheduled on its Kubernetes pool)
    assert any(
        r.parameters.get("env") == "stg" and r.parameters.get("image_version") == "9.9.9"
        for r in relays
    )
