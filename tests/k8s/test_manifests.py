"""k8s/: every manifest parses and validates offline; overlays render what each env needs.

Overlays are rendered with `kubectl kustomize` when kubectl (or kustomize) is installed,
else with tests/k8s/kustomize_lite.py; when kubectl is here, both must agree.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))
import kustomize_lite

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = {"stg": K8S / "overlays" / "stg", "prd": K8S / "overlays" / "prd"}
K8S_VERSION = kubernetes_validate.latest_version()
CONFIGMAP = "stateful-ml-env"
SECRET = "stateful-ml-secrets"


def kustomize_binary() -> list[str] | None:
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


def render(directory: Path) -> list[dict[str, Any]]:
    """Render a kustomization with the real tool if present, else with kustomize_lite."""
    binary = kustomize_binary()
    if binary is None:
        return kustomize_lite.render(directory)
    out = subprocess.run([*binary, str(directory)], capture_output=True, text=True, check=True)
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def manifest_files() -> list[Path]:
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml"  # not a Kubernetes object
    )


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_file_validates_against_kubernetes_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]

    assert docs, f"{path} is empty"
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS.values()], ids=str)
def test_rendered_kustomization_validates_against_kubernetes_schema(directory: Path) -> None:
    docs = render(directory)

    assert docs
    for doc in docs:
        kubernetes_validate.validate(doc, K8S_VERSION, strict=True)


def test_kustomization_files_list_existing_resources() -> None:
    for kustomization in K8S.rglob("kustomization.yaml"):
        spec = yaml.safe_load(kustomization.read_text())
        for entry in spec.get("resources", []) + [p["path"] for p in spec.get("patches", [])]:
            assert (kustomization.parent / entry).exists(), f"{kustomization}: {entry}"


def test_base_does_not_apply_the_secret_template() -> None:
    spec = yaml.safe_load((K8S / "base" / "kustomization.yaml").read_text())
    kinds = {d["kind"] for d in render(K8S / "base")}

    assert "secret.template.yaml" not in spec["resources"]
    assert "Secret" not in kinds


@pytest.mark.parametrize(
    ("env", "replicas"),
    [("stg", 1), ("prd", 3)],
)
def test_overlay_sets_namespace_environment_image_and_replicas(env: str, replicas: int) -> None:
    docs = render(OVERLAYS[env])
    resources = by_kind_name(docs)
    namespace = f"stateful-ml-{env}"
    configmap = resources[("ConfigMap", CONFIGMAP)]["data"]

    assert ("Namespace", namespace) in resources
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {namespace}
    assert configmap["ENVIRONMENT"] == env
    assert configmap["K8S_NAMESPACE"] == namespace
    assert configmap["PREFECT_WORK_POOL"] == namespace
    assert resources[("Deployment", "router")]["spec"]["replicas"] == replicas
    images = {c["image"] for d in docs if d["kind"] == "Deployment" for c in containers(d)}
    assert images == {"registry.example.com/stateful-ml:0.1.0"}
    binding = resources[("RoleBinding", "stateful-ml-worker")]
    assert binding["subjects"][0]["namespace"] == namespace


def test_overlay_configmaps_keep_every_base_key() -> None:
    base = by_kind_name(render(K8S / "base"))[("ConfigMap", CONFIGMAP)]["data"]
    for directory in OVERLAYS.values():
        data = by_kind_name(render(directory))[("ConfigMap", CONFIGMAP)]["data"]
        assert set(data) == set(base)


@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS.values()], ids=str)
def test_every_container_gets_the_configmap_and_the_secret(directory: Path) -> None:
    for doc in render(directory):
        if doc["kind"] != "Deployment":
            continue
        for container in containers(doc):
            assert container["envFrom"] == [
                {"configMapRef": {"name": CONFIGMAP}},
                {"secretRef": {"name": SECRET}},
            ], doc["metadata"]["name"]


def test_router_serves_with_ready_and_health_probes() -> None:
    resources = by_kind_name(render(K8S / "base"))
    router = containers(resources[("Deployment", "router")])[0]
    service = resources[("Service", "router")]

    assert router["command"] == ["sml", "serve"]
    assert router["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert router["livenessProbe"]["httpGet"]["path"] == "/health"
    port = router["ports"][0]
    configmap = resources[("ConfigMap", CONFIGMAP)]["data"]
    assert port["containerPort"] == int(configmap["ROUTER_PORT"])
    assert configmap["ROUTER_HOST"] == "0.0.0.0"
    assert service["spec"]["ports"][0]["targetPort"] == port["name"]
    assert (
        service["spec"]["selector"]
        == resources[("Deployment", "router")]["spec"]["selector"]["matchLabels"]
    )


def test_worker_can_create_jobs_in_its_namespace() -> None:
    resources = by_kind_name(render(K8S / "base"))
    worker = resources[("Deployment", "prefect-worker")]
    spec = worker["spec"]["template"]["spec"]
    role = resources[("Role", "stateful-ml-worker")]
    binding = resources[("RoleBinding", "stateful-ml-worker")]

    command = containers(worker)[0]["command"]
    assert command[:3] == ["prefect", "worker", "start"]
    assert command[command.index("--type") + 1] == "kubernetes"
    assert command[command.index("--pool") + 1] == "$(PREFECT_WORK_POOL)"
    assert spec["serviceAccountName"] == "stateful-ml-worker"
    assert binding["roleRef"]["name"] == role["metadata"]["name"]
    assert binding["subjects"][0]["name"] == "stateful-ml-worker"
    job_rules = [r for r in role["rules"] if "jobs" in r["resources"]]
    assert job_rules
    assert {"create", "delete", "watch"} <= set(job_rules[0]["verbs"])


def test_term_pod_is_scaled_to_zero_and_interactive() -> None:
    term = by_kind_name(render(K8S / "base"))[("Deployment", "stateful-ml-term")]
    container = containers(term)[0]

    assert term["spec"]["replicas"] == 0
    assert container["stdin"] is True
    assert container["tty"] is True


def test_pods_run_as_non_root() -> None:
    for doc in render(K8S / "base"):
        if doc["kind"] == "Deployment":
            assert doc["spec"]["template"]["spec"]["securityContext"]["runAsNonRoot"] is True


@pytest.mark.skipif(kustomize_binary() is None, reason="no kubectl/kustomize to compare with")
@pytest.mark.parametrize("directory", [K8S / "base", *OVERLAYS.values()], ids=str)
def test_kustomize_lite_renders_like_kubectl(directory: Path) -> None:
    def key(doc: dict[str, Any]) -> tuple[str, str]:
        return doc["kind"], doc["metadata"]["name"]

    assert sorted(kustomize_lite.render(directory), key=key) == sorted(render(directory), key=key)
