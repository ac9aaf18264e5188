"""k8s/: every manifest and every rendered kustomization validates offline against the
Kubernetes schemas (kubernetes-validate, strict: unknown fields are errors); overlays
render what each environment needs. Rendering is the real `kubectl kustomize`
(tests/k8s/conftest.py): without it these tests fail, they do not skip.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.k8s.conftest import K8S, KUSTOMIZATIONS, OVERLAYS, by_kind_name, render

#: The oldest Kubernetes the manifests are meant for, and the newest schemas shipped.
K8S_VERSIONS = ["1.29.0", kubernetes_validate.latest_version()]
CONFIGMAP = "stateful-ml-env"
SECRET = "stateful-ml-secrets"


def manifest_files() -> list[Path]:
    return sorted(
        p
        for p in K8S.rglob("*.yaml")
        if p.name != "kustomization.yaml"  # not a Kubernetes object
        and "overlays" not in p.parts  # partial patches, validated once rendered
    )


def containers(doc: dict[str, Any]) -> list[dict[str, Any]]:
    return doc["spec"]["template"]["spec"]["containers"]


def schema_errors(docs: list[dict[str, Any]], version: str) -> list[str]:
    errors = []
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata'].get('name')}: {exc.message}")
    return errors


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: str(p.relative_to(K8S)))
def test_manifest_file_validates_against_kubernetes_schema(path: Path) -> None:
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]

    assert docs, f"{path} is empty"
    assert schema_errors(docs, K8S_VERSIONS[-1]) == []


@pytest.mark.parametrize("version", K8S_VERSIONS)
@pytest.mark.parametrize("directory", KUSTOMIZATIONS, ids=lambda p: str(p.relative_to(K8S)))
def test_rendered_kustomization_validates_with_zero_errors(directory: Path, version: str) -> None:
    docs = render(directory)

    assert docs
    assert schema_errors(docs, version) == []


def test_schema_validation_refuses_a_misplaced_field() -> None:
    """The check above can fail: a field in the wrong place is an error, not ignored."""
    router = by_kind_name(render(OVERLAYS["prd"]))[("Deployment", "router")]
    router["spec"]["template"]["spec"]["readOnlyRootFilesystem"] = True  # a container field

    errors = schema_errors([router], K8S_VERSIONS[-1])

    assert len(errors) == 1
    assert "readOnlyRootFilesystem" in errors[0]


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


@pytest.mark.parametrize(("env", "min_replicas", "max_replicas"), [("stg", 1, 2), ("prd", 3, 10)])
def test_overlay_sets_namespace_environment_image_and_router_scale(
    env: str, min_replicas: int, max_replicas: int
) -> None:
    docs = render(OVERLAYS[env])
    resources = by_kind_name(docs)
    namespace = f"stateful-ml-{env}"
    configmap = resources[("ConfigMap", CONFIGMAP)]["data"]
    hpa = resources[("HorizontalPodAutoscaler", "router")]

    assert ("Namespace", namespace) in resources
    assert {d["metadata"].get("namespace") for d in docs if d["kind"] != "Namespace"} == {namespace}
    assert configmap["ENVIRONMENT"] == env
    assert configmap["K8S_NAMESPACE"] == namespace
    assert configmap["PREFECT_WORK_POOL"] == namespace
    assert configmap["MLFLOW_ARTIFACT_LOCATION"] == f"mlflow-artifacts:/{env}"
    assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (min_replicas, max_replicas)
    # the autoscaler owns the count: an apply must not reset it
    assert "replicas" not in resources[("Deployment", "router")]["spec"]
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


def test_worker_is_ready_only_while_its_healthcheck_answers() -> None:
    worker = by_kind_name(render(K8S / "base"))[("Deployment", "prefect-worker")]
    container = containers(worker)[0]
    env = {e["name"]: e["value"] for e in container["env"]}

    assert "--with-healthcheck" in container["command"]
    probe = container["readinessProbe"]["httpGet"]
    assert probe["path"] == "/health"
    port = next(p for p in container["ports"] if p["name"] == probe["port"])
    assert port["containerPort"] == int(env["PREFECT_WORKER_WEBSERVER_PORT"])
    assert env["PREFECT_WORKER_WEBSERVER_HOST"] == "0.0.0.0"


def test_term_pod_is_scaled_to_zero_and_interactive() -> None:
    term = by_kind_name(render(K8S / "base"))[("Deployment", "stateful-ml-term")]
    container = containers(term)[0]

    assert term["spec"]["replicas"] == 0
    assert container["stdin"] is True
    assert container["tty"] is True
