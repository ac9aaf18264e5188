"""A flow run started by `image.published` runs on the published image: the Job the
Kubernetes worker renders from the work pool template with the relay's job variables."""

from __future__ import annotations

import json
from pathlib import Path

from core.image_events import image_job_variables
from tests.k8s.test_work_pool_template import ENV_FROM, render_job, work_pool_template

ROOT = Path(__file__).resolve().parents[2]


def test_image_published_job_runs_the_event_image_with_its_image_version() -> None:
    template = json.loads(work_pool_template.TEMPLATE_PATH.read_text())
    # the deployment's own job variables (prefect.yaml, stg at IMAGE_VERSION=1.3.0), then the
    # flow run's, which the worker lays over them as the relay sets them for payload 1.4.0
    deployment_vars = {
        "image": "registry.example.com/stateful-ml:1.3.0",
        "namespace": "stateful-ml-stg",
    }
    run_vars = image_job_variables("1.4.0", "registry.example.com/stateful-ml")

    job = render_job(template, {**deployment_vars, **run_vars})

    container = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/stateful-ml:1.4.0"
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["IMAGE_VERSION"] == "1.4.0"
    assert "PREFECT__FLOW_RUN_ID" in env
    assert container["envFrom"] == ENV_FROM
    assert job["metadata"]["namespace"] == "stateful-ml-stg"
