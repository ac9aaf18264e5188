"""`prefect deploy --all` against a real Prefect API, then `prefect deployment run` picked up
by a real process worker: the path an operator uses from a terminal or CI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

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
    _prefect(["deploy", "--all"], env)

    # Then all 18 exist, with the schedules prefect.yaml declares
    with get_client(sync_client=True) as client:
        deployments = client.read_deployments()
        names = {d.name for d in deployments}
        assert len(deployments) == 18
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
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs()
        states = {r.name: r.state_type.value for r in runs}
    assert list(states.values()) == ["COMPLETED"], json.dumps(states) + "\n" + worker_log
