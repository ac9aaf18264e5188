"""prefect.yaml: every deployment points at a real flow that accepts its parameters, on its
environment's work pool; `image.published` reaches each environment's retrain through the
relay `image-published/<env>` (flows/image_published.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
DEPLOYMENTS: list[dict[str, Any]] = yaml.safe_load((ROOT / "prefect.yaml").read_text())[
    "deployments"
]


def _id(d: dict[str, Any]) -> str:
    return f"{d['entrypoint'].rsplit(':', 1)[1]}/{d['name']}"


def test_prefect_yaml_has_local_stg_and_prd_for_every_flow() -> None:
    per_flow = Counter(d["entrypoint"] for d in DEPLOYMENTS)
    assert len(per_flow) == 12  # eleven flows + the image.published relay
    for entrypoint in per_flow:
        names = sorted(d["name"] for d in DEPLOYMENTS if d["entrypoint"] == entrypoint)
        assert names == ["local", "prd", "stg"], entrypoint


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=_id)
def test_deployment_entrypoint_is_a_flow_accepting_its_parameters(
    deployment: dict[str, Any],
) -> None:
    from prefect import Flow
    from prefect.flows import load_flow_from_entrypoint

    flow = load_flow_from_entrypoint(str(ROOT / deployment["entrypoint"]))
    assert isinstance(flow, Flow)
    given = deployment.get("parameters") or {}
    schema = flow.parameters
    assert set(given) <= set(schema.properties), f"{_id(deployment)}: unknown parameters"
    if not set(schema.required or []) - set(given):  # operator-supplied params stay open
        flow.validate_parameters(given)
    for schedule in deployment.get("schedules") or []:
        kinds = {"cron", "interval", "rrule"} & set(schedule)
        assert len(kinds) == 1, f"{_id(deployment)}: a schedule needs exactly one of {kinds}"


def test_controller_runs_every_minute_in_the_cluster_envs() -> None:
    for d in DEPLOYMENTS:
        if d["entrypoint"].endswith(":rollout_controller") and d["name"] in ("stg", "prd"):
            assert d["schedules"][0]["cron"] == "* * * * *"
            assert d["parameters"]["env"] == d["name"]


POOLS = {"local": "local", "stg": "stateful-ml-stg", "prd": "stateful-ml-prd"}
IMAGE_REPOSITORY = "registry.example.com/stateful-ml"
RELAY = "flows/image_published.py:image_published"


@pytest.mark.parametrize("deployment", DEPLOYMENTS, ids=_id)
def test_deployment_runs_on_its_environments_pool(deployment: dict[str, Any]) -> None:
    env = deployment["name"]
    pool = deployment["work_pool"]

    assert pool["name"] == POOLS[env]
    if env == "local":
        assert pool["job_variables"] == {}
        step = deployment["pull"][0]["prefect.deployments.steps.set_working_directory"]
        assert step == {"directory": "{{ $PWD }}"}
    else:
        assert pool["job_variables"] == {
            "image": f"{IMAGE_REPOSITORY}:{{{{ $IMAGE_VERSION }}}}",
            "namespace": f"stateful-ml-{env}",
        }


@pytest.mark.parametrize("env", ["local", "stg", "prd"])
def test_image_published_starts_the_relay_of_every_environment(env: str) -> None:
    (relay,) = [d for d in DEPLOYMENTS if d["entrypoint"] == RELAY and d["name"] == env]

    (trigger,) = relay["triggers"]
    assert trigger["type"] == "event"
    assert trigger["enabled"] is True
    assert trigger["match"] == {"prefect.resource.id": "stateful-ml.image.*"}
    assert trigger["expect"] == ["image.published"]
    assert trigger["parameters"] == {"image_version": "{{ event.payload.image_version }}"}
    # which retrain it starts, and for a Kubernetes pool the repository of the image
    expected = (
        {"env": env} if env == "local" else {"env": env, "image_repository": IMAGE_REPOSITORY}
    )
    assert relay["parameters"] == expected


def test_only_the_relays_listen_for_image_published() -> None:
    """A trigger on the retrain itself would start it on the deployed (old) image."""
    listening = {_id(d) for d in DEPLOYMENTS if d.get("triggers")}
    assert listening == {"image_published/local", "image_published/stg", "image_published/prd"}
    for d in DEPLOYMENTS:
        for trigger in d.get("triggers") or []:
            assert "job_variables" not in trigger, f"{_id(d)}: Prefect 3.8.8 drops them"


def test_prefect_deploy_would_strip_event_templates_from_trigger_job_variables() -> None:
    """Why the relay exists: `prefect deploy` templates a trigger's fields (all but its
    parameters) with the build step outputs, which empties `{{ event.* }}` placeholders."""
    from prefect.utilities.templating import apply_values

    spec = {"job_variables": {"image": f"{IMAGE_REPOSITORY}:{{{{ event.payload.image_version }}}}"}}

    assert apply_values(spec, {}, warn_on_notset=False) == {
        "job_variables": {"image": f"{IMAGE_REPOSITORY}:"}
    }


def test_retrain_runs_on_a_schedule_in_the_cluster_envs() -> None:
    for d in DEPLOYMENTS:
        if d["entrypoint"].endswith(":retrain_on_image_change") and d["name"] in ("stg", "prd"):
            assert d["schedules"][0]["cron"] == "*/30 * * * *"


def test_release_state_gc_runs_daily_in_the_cluster_envs() -> None:
    for d in DEPLOYMENTS:
        if d["entrypoint"].endswith(":gc_release_state") and d["name"] in ("stg", "prd"):
            assert d["schedules"][0]["cron"] == "17 3 * * *"
