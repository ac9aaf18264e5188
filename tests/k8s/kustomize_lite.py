"""A small kustomize renderer for the features k8s/ uses, for machines without kubectl.

Supports: resources (files and directories), patches (strategic merge of maps; lists of
named items merged by name), namespace (including the Namespace object and ServiceAccount
subjects of role bindings it filled), labels (metadata only), images and replicas.
tests/k8s/test_manifests.py checks it renders exactly what `kubectl kustomize` renders.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}
POD_SPEC_PATHS = {
    "Deployment": ("spec", "template", "spec"),
    "StatefulSet": ("spec", "template", "spec"),
    "DaemonSet": ("spec", "template", "spec"),
    "Job": ("spec", "template", "spec"),
    "CronJob": ("spec", "jobTemplate", "spec", "template", "spec"),
    "Pod": ("spec",),
}
_FILLED = "__namespace_filled_by_kustomize__"


def render(directory: Path) -> list[dict[str, Any]]:
    """Render the kustomization in `directory` into a list of resource documents."""
    docs = _render(directory)
    for doc in docs:
        for subject in doc.get("subjects") or []:
            subject.pop(_FILLED, None)
    return docs


def _render(directory: Path) -> list[dict[str, Any]]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[dict[str, Any]] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs.extend(_render(path))
        else:
            docs.extend(d for d in yaml.safe_load_all(path.read_text()) if d)
    for patch in kustomization.get("patches", []):
        for patch_doc in yaml.safe_load_all((directory / patch["path"]).read_text()):
            target = _find(docs, patch_doc["kind"], patch_doc["metadata"]["name"])
            merged = _merge(target, patch_doc)
            target.clear()
            target.update(merged)
    if "namespace" in kustomization:
        _set_namespace(docs, kustomization["namespace"])
    for label_set in kustomization.get("labels", []):
        for doc in docs:
            doc.setdefault("metadata", {}).setdefault("labels", {}).update(label_set["pairs"])
    for image in kustomization.get("images", []):
        _set_image(docs, image)
    for replicas in kustomization.get("replicas", []):
        _find(docs, None, replicas["name"])["spec"]["replicas"] = replicas["count"]
    return docs


def _find(docs: list[dict[str, Any]], kind: str | None, name: str) -> dict[str, Any]:
    for doc in docs:
        if doc["metadata"]["name"] == name and (kind is None or doc["kind"] == kind):
            return doc
    raise KeyError(f"no {kind or 'resource'} named {name!r}")


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        out = copy.deepcopy(base)
        for key, value in patch.items():
            out[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return out
    if (
        isinstance(base, list)
        and isinstance(patch, list)
        and all(isinstance(i, dict) and "name" in i for i in base + patch)
    ):
        out = copy.deepcopy(base)
        for item in patch:
            names = [i["name"] for i in out]
            if item["name"] in names:
                index = names.index(item["name"])
                out[index] = _merge(out[index], item)
            else:
                out.append(copy.deepcopy(item))
        return out
    return copy.deepcopy(patch)


def _set_namespace(docs: list[dict[str, Any]], namespace: str) -> None:
    for doc in docs:
        if doc["kind"] == "Namespace":
            doc["metadata"]["name"] = namespace
        elif doc["kind"] not in CLUSTER_SCOPED:
            doc["metadata"]["namespace"] = namespace
        for subject in doc.get("subjects") or []:
            if subject.get("kind") == "ServiceAccount" and (
                "namespace" not in subject or subject.get(_FILLED)
            ):
                subject["namespace"] = namespace
                subject[_FILLED] = True


def _pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    node: Any = doc
    for key in POD_SPEC_PATHS.get(doc["kind"], ()):
        node = node.get(key) if isinstance(node, dict) else None
    return node if doc["kind"] in POD_SPEC_PATHS and isinstance(node, dict) else None


def _set_image(docs: list[dict[str, Any]], image: dict[str, Any]) -> None:
    for doc in docs:
        spec = _pod_spec(doc)
        if spec is None:
            continue
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            name = container["image"].split("@")[0].rsplit(":", 1)[0]
            if name == image["name"]:
                tag = image.get("newTag")
                new_name = image.get("newName", name)
                container["image"] = f"{new_name}:{tag}" if tag else new_name
