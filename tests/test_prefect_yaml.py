"""prefect.yaml: every deployment points at a real flow that accepts its parameters."""

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
    assert len(per_flow) == 6
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


def test_retrain_listens_for_image_published_in_the_cluster_envs() -> None:
    for d in DEPLOYMENTS:
        if d["entrypoint"].endswith(":retrain_on_image_change") and d["name"] in ("stg", "prd"):
            trigger = d["triggers"][0]
            assert trigger["expect"] == ["image.published"]
            assert "image_version" in trigger["parameters"]
