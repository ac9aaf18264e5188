"""Every pod of k8s/ (and every flow-run Job) runs restricted; the router scales, keeps a
disruption budget and is reachable only on its port; the platform servers exist and
match the URLs the ConfigMap gives clients."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.k8s.conftest import (
    K8S,
    KUSTOMIZATIONS,
    OVERLAYS,
    PLATFORM,
    by_kind_name,
    pod_spec,
    render,
)
from tests.k8s.test_work_pool_template import render_job, work_pool_template

CONTAINER_RESTRICTIONS = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: What the image's processes write (LOCAL_DIR and the dirs under it, tempfile, HOME).
WRITABLE = {"/tmp", "/home/app"}


def flow_run_job() -> dict[str, Any]:
    template = json.loads(work_pool_template.TEMPLATE_PATH.read_text())
    return render_job(template, {"image": "registry.example.com/stateful-ml:0.1.0"})


def pods() -> list[tuple[str, dict[str, Any]]]:
    """(name, pod spec) of every workload of every kustomization, and of a flow-run Job."""
    found = [
        (f"{directory.name}/{doc['kind']}/{doc['metadata']['name']}", spec)
        for directory in KUSTOMIZATIONS
        for doc in render(directory)
        if (spec := pod_spec(doc)) is not None
    ]
    return [*found, ("flow-run/Job", pod_spec(flow_run_job()) or {})]


def emptydir_mounts(spec: dict[str, Any], container: dict[str, Any]) -> set[str]:
    empty = {v["name"] for v in spec.get("volumes", []) if "emptyDir" in v}
    return {m["mountPath"] for m in container.get("volumeMounts", []) if m["name"] in empty}


@pytest.mark.parametrize(("name", "spec"), pods(), ids=[name for name, _ in pods()])
def test_every_pod_runs_restricted_with_writable_scratch(name: str, spec: dict[str, Any]) -> None:
    assert spec["securityContext"]["runAsNonRoot"] is True, name
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}, name
    for container in spec["containers"] + spec.get("initContainers", []):
        context = container["securityContext"]
        assert {k: context.get(k) for k in CONTAINER_RESTRICTIONS} == CONTAINER_RESTRICTIONS
        assert emptydir_mounts(spec, container) >= WRITABLE, name


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS.values()], ids=str)
def test_stateful_ml_paths_are_on_writable_volumes(directory: Path) -> None:
    resources = by_kind_name(render(directory))
    data = resources[("ConfigMap", "stateful-ml-env")]["data"]
    paths = [data[k] for k in ("LOCAL_DIR", "MODEL_CACHE_DIR", "TRAFFIC_SPILL_DIR")]
    job_spec = pod_spec(flow_run_job()) or {}
    specs = [pod_spec(d) for d in resources.values() if d["kind"] == "Deployment"]
    for spec in [*specs, job_spec]:
        assert spec is not None
        mounts = emptydir_mounts(spec, spec["containers"][0])
        for path in paths:
            assert any(path == m or path.startswith(m + "/") for m in mounts), path


def test_flow_run_job_has_resources_ttl_and_no_api_token() -> None:
    job = flow_run_job()
    spec = job["spec"]["template"]["spec"]
    resources = spec["containers"][0]["resources"]

    assert job["spec"]["ttlSecondsAfterFinished"] == 3600
    assert resources["requests"] == {"cpu": "500m", "memory": "1Gi"}
    assert resources["limits"] == {"memory": "4Gi"}
    assert spec["serviceAccountName"] == "stateful-ml-app"
    labels = job["spec"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/name"] == "stateful-ml-flow-run"


def test_flow_run_job_resources_and_ttl_follow_job_variables() -> None:
    template = work_pool_template.build_template()

    job = render_job(
        template, {"image": "x:1", "memory_limit": "8Gi", "cpu_limit": "2", "finished_job_ttl": 60}
    )

    limits = job["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits == {"cpu": "2", "memory": "8Gi"}
    assert job["spec"]["ttlSecondsAfterFinished"] == 60


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_router_autoscaler_and_disruption_budget_target_the_router(env: str) -> None:
    resources = by_kind_name(render(OVERLAYS[env]))
    router = resources[("Deployment", "router")]
    hpa = resources[("HorizontalPodAutoscaler", "router")]
    pdb = resources[("PodDisruptionBudget", "router")]
    labels = router["spec"]["template"]["metadata"]["labels"]

    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "router",
    }
    cpu = hpa["spec"]["metrics"][0]["resource"]
    assert cpu["name"] == "cpu"
    assert router["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]
    assert pdb["spec"]["maxUnavailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()


def _egress_ports(policy: dict[str, Any]) -> dict[int, list[dict[str, Any]]]:
    ports: dict[int, list[dict[str, Any]]] = {}
    for rule in policy["spec"]["egress"]:
        for port in rule["ports"]:
            ports.setdefault(int(port["port"]), []).extend(rule["to"])
    return ports


def _namespace_of(peers: list[dict[str, Any]]) -> set[str]:
    return {
        p["namespaceSelector"]["matchLabels"]["kubernetes.io/metadata.name"]
        for p in peers
        if "namespaceSelector" in p
    }


def test_network_policies_admit_router_port_and_the_services_it_needs() -> None:
    resources = by_kind_name(render(OVERLAYS["prd"]))
    data = resources[("ConfigMap", "stateful-ml-env")]["data"]
    deny = resources[("NetworkPolicy", "default-deny-ingress")]
    router_in = resources[("NetworkPolicy", "router-ingress")]
    egress = _egress_ports(resources[("NetworkPolicy", "stateful-ml-egress")])
    mlflow, prefect = urlsplit(data["MLFLOW_TRACKING_URI"]), urlsplit(data["PREFECT_API_URL"])

    assert deny["spec"] == {"podSelector": {}, "policyTypes": ["Ingress"]}
    assert router_in["spec"]["podSelector"]["matchLabels"] == {"app.kubernetes.io/name": "router"}
    assert [p["port"] for p in router_in["spec"]["ingress"][0]["ports"]] == [
        int(data["ROUTER_PORT"])
    ]
    assert 53 in egress
    assert 5432 in egress
    # the namespaces named by the ConfigMap's URLs (<svc>.<namespace>.svc.cluster.local)
    assert _namespace_of(egress[mlflow.port or 80]) == {str(mlflow.hostname).split(".")[1]}
    assert _namespace_of(egress[prefect.port or 80]) == {str(prefect.hostname).split(".")[1]}


def test_platform_serves_the_urls_the_configmap_gives_clients() -> None:
    data = by_kind_name(render(K8S / "base"))[("ConfigMap", "stateful-ml-env")]["data"]
    platform = by_kind_name(render(PLATFORM))
    for url in (data["MLFLOW_TRACKING_URI"], data["PREFECT_API_URL"]):
        parts = urlsplit(url)
        service_name, namespace = str(parts.hostname).split(".")[:2]
        service = platform[("Service", service_name)]
        assert service["metadata"]["namespace"] == namespace
        assert service["spec"]["ports"][0]["port"] == parts.port
    mlflow = platform[("ConfigMap", "mlflow-server")]["data"]
    assert f"{urlsplit(data['MLFLOW_TRACKING_URI']).netloc}" in mlflow[
        "MLFLOW_ALLOWED_HOSTS"
    ].split(",")
    assert mlflow["MLFLOW_ARTIFACTS_DESTINATION"].startswith("s3://")


def test_platform_servers_run_on_postgres_from_secrets() -> None:
    platform = by_kind_name(render(PLATFORM))
    prefect = platform[("Deployment", "prefect-server")]["spec"]["template"]["spec"]
    mlflow = platform[("Deployment", "mlflow")]["spec"]["template"]["spec"]

    prefect_env = {e["name"]: e for e in prefect["containers"][0]["env"]}
    mlflow_env = {e["name"]: e for e in mlflow["containers"][0]["env"]}
    assert "secretKeyRef" in prefect_env["PREFECT_API_DATABASE_CONNECTION_URL"]["valueFrom"]
    assert "secretKeyRef" in mlflow_env["MLFLOW_BACKEND_STORE_URI"]["valueFrom"]
    command = mlflow["containers"][0]["command"]
    assert command[:2] == ["mlflow", "server"]
    assert command[command.index("--backend-store-uri") + 1] == "$(MLFLOW_BACKEND_STORE_URI)"
    assert "--artifacts-destination" in command
    assert prefect["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/api/health"
    assert mlflow["containers"][0]["readinessProbe"]["httpGet"]["path"] == "/health"


@pytest.mark.parametrize("env", sorted(OVERLAYS))
def test_platform_servers_admit_the_environment_namespaces(env: str) -> None:
    namespace = by_kind_name(render(OVERLAYS[env]))[("Namespace", f"stateful-ml-{env}")]
    platform = by_kind_name(render(PLATFORM))
    for policy in ("prefect-server-ingress", "mlflow-ingress"):
        peers = platform[("NetworkPolicy", policy)]["spec"]["ingress"][0]["from"]
        selector = peers[0]["namespaceSelector"]["matchLabels"]
        assert selector.items() <= namespace["metadata"]["labels"].items(), policy
