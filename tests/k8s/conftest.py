"""Rendering k8s/ with the real kustomize (`kubectl kustomize`), once per directory."""

from __future__ import annotations

import shutil
import subprocess
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "k8s"
OVERLAYS = {"stg": K8S / "overlays" / "stg", "prd": K8S / "overlays" / "prd"}
PLATFORM = K8S / "platform"
KUSTOMIZATIONS = [K8S / "base", *OVERLAYS.values(), PLATFORM]
NO_KUSTOMIZE = (
    "neither `kubectl` nor `kustomize` is on PATH: k8s/ is rendered with the real kustomize "
    "(install kubectl >= 1.27; .ci/run installs it when absent)"
)


def kustomize_command() -> list[str]:
    """`kubectl kustomize`, or a standalone `kustomize build`; fails the test when neither."""
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    if shutil.which("kustomize"):
        return ["kustomize", "build"]
    pytest.fail(NO_KUSTOMIZE)


@cache
def _render_text(directory: Path) -> str:
    completed = subprocess.run(
        [*kustomize_command(), str(directory)], capture_output=True, text=True, check=False
    )
    if completed.returncode != 0:
        pytest.fail(f"kustomize failed on {directory}:\n{completed.stderr}")
    return completed.stdout


def render(directory: Path) -> list[dict[str, Any]]:
    """The documents `kubectl kustomize directory` renders (fresh copies per call)."""
    return [d for d in yaml.safe_load_all(_render_text(directory)) if d]


def by_kind_name(docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}


def pod_spec(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The pod spec of a Deployment or Job (None for other kinds)."""
    if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
        return doc["spec"]["template"]["spec"]
    return None
