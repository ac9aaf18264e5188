"""The Kubernetes work pool template: every flow-run Job gets the ConfigMap and the Secret."""

from __future__ import annotations

import asyncio
import json
import sys
import uuid
from pathlib import Path
from typing import Any
from unittest.mock import AsyncMock

import kubernetes_validate
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "k8s"))
import work_pool_template  # noqa: E402

ENV_FROM = [
    {"configMapRef": {"name": "stateful-ml-env"}},
    {"secretRef": {"name": "stateful-ml-secrets"}},
]


def render_job(template: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    """The Job manifest the Kubernetes worker would create for one flow run."""
    from prefect.client.schemas.objects import FlowRun
    from prefect_kubernetes.worker import KubernetesWorkerJobConfiguration

    config = asyncio.run(
        KubernetesWorkerJobConfiguration.from_template_and_values(
            base_job_template=template, values=values, client=AsyncMock()
        )
    )
    config.prepare_for_flow_run(FlowRun(flow_id=uuid.uuid4(), name="calm-otter"))
    return config.job_manifest


def test_committed_template_equals_the_generated_one() -> None:
    committed = json.loads(work_pool_template.TEMPLATE_PATH.read_text())

    assert committed == work_pool_template.build_template()
    assert work_pool_template.TEMPLATE_PATH.read_text() == work_pool_template.render_json(committed)


def test_flow_run_job_container_gets_configmap_and_secret() -> None:
    template = json.loads(work_pool_template.TEMPLATE_PATH.read_text())

    job = render_job(template, {"image": "registry.example.com/stateful-ml:0.1.0"})

    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["envFrom"] == ENV_FROM
    assert container["image"] == "registry.example.com/stateful-ml:0.1.0"
    assert job["metadata"]["namespace"] == "stateful-ml"
    assert (job["spec"]["completions"], job["spec"]["parallelism"]) == (1, 1)
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert "PREFECT__FLOW_RUN_ID" in env


def test_flow_run_job_namespace_follows_job_variables() -> None:
    template = work_pool_template.build_template(namespace="stateful-ml-stg")

    default_ns = render_job(template, {"image": "x:1"})
    overridden = render_job(template, {"image": "x:1", "namespace": "stateful-ml-prd"})

    assert default_ns["metadata"]["namespace"] == "stateful-ml-stg"
    assert overridden["metadata"]["namespace"] == "stateful-ml-prd"
    assert overridden["spec"]["template"]["spec"]["containers"][0]["envFrom"] == ENV_FROM


def test_flow_run_job_validates_against_the_job_schema() -> None:
    job = render_job(work_pool_template.build_template(), {"image": "x:1"})
    job = {**job, "metadata": {**job["metadata"], "name": "calm-otter-abc"}}

    kubernetes_validate.validate(job, kubernetes_validate.latest_version(), strict=True)


def test_write_command_is_idempotent(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    target = tmp_path / "template.json"
    runner = CliRunner()

    first = runner.invoke(work_pool_template.app, ["write", "--output", str(target)])
    content = target.read_text()
    second = runner.invoke(work_pool_template.app, ["write", "--output", str(target)])

    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert target.read_text() == content


@pytest.mark.slow
def test_prefect_server_accepts_the_template() -> None:
    """A real Prefect server (the temporary test harness) stores the pool with envFrom."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import WorkPoolCreate
    from prefect.testing.utilities import prefect_test_harness

    template = work_pool_template.build_template(namespace="stateful-ml-stg")

    async def create_and_read() -> dict[str, Any]:
        async with get_client() as client:
            pool = WorkPoolCreate(
                name="stateful-ml-stg", type="kubernetes", base_job_template=template
            )
            await client.create_work_pool(pool)
            pool = await client.read_work_pool("stateful-ml-stg")
            return pool.base_job_template

    with prefect_test_harness(server_startup_timeout=120):
        stored = asyncio.run(create_and_read())

    assert stored["variables"]["properties"]["env_from"]["default"] == ENV_FROM
