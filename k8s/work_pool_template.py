"""The Kubernetes work pool's base job template: envFrom, resources, security, TTL.

The Prefect worker copies only its own PREFECT_* settings into the Jobs it creates, so the
ConfigMap `stateful-ml-env` and the Secret `stateful-ml-secrets` reach flow-run pods only
through the work pool's base job template. This script builds that template from
prefect-kubernetes' default, adds resource requests and a memory limit, a finished-Job
TTL, the restricted security context (non-root, read-only root filesystem with emptyDir
volumes for what a run writes, no privilege escalation, RuntimeDefault seccomp, no
capabilities) and a pod label the NetworkPolicies select, then writes or applies it:

    uv run python k8s/work_pool_template.py write
        regenerate k8s/base/work-pool-template.json (a test keeps it equal to `build`)
    uv run python k8s/work_pool_template.py apply --pool stateful-ml-stg --namespace stateful-ml-stg
        run `prefect work-pool create <pool> --type kubernetes --base-job-template ... --overwrite`
        against PREFECT_API_URL (creates the pool, or updates it: idempotent)
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import typer

TEMPLATE_PATH = Path(__file__).resolve().parent / "base" / "work-pool-template.json"
CONFIGMAP_NAME = "stateful-ml-env"
SECRET_NAME = "stateful-ml-secrets"  # noqa: S105 (a name, not a value)
DEFAULT_NAMESPACE = "stateful-ml"

ENV_FROM_DEFAULT: list[dict[str, Any]] = [
    {"configMapRef": {"name": CONFIGMAP_NAME}},
    {"secretRef": {"name": SECRET_NAME}},
]
#: Defaults of prefect-kubernetes' own variables (a deployment's job_variables override
#: them). No CPU limit: a throttled training run is slower, not safer; memory is limited.
VARIABLE_DEFAULTS: dict[str, Any] = {
    "cpu_request": "500m",
    "memory_request": "1Gi",
    "memory_limit": "4Gi",
    "finished_job_ttl": 3600,  # finished Jobs and their pods are deleted after an hour
    "service_account_name": "stateful-ml-app",  # no Kubernetes API token (k8s/base/rbac.yaml)
}
#: The pod label k8s/base/network-policy.yaml selects (Prefect adds its own labels).
FLOW_RUN_LABELS = {"app.kubernetes.io/name": "stateful-ml-flow-run"}
#: The image's user (Dockerfile) and the restrictions every Stateful ML container runs with.
APP_UID = 10001
POD_SECURITY_CONTEXT: dict[str, Any] = {
    "runAsNonRoot": True,
    "runAsUser": APP_UID,
    "runAsGroup": APP_UID,
    "fsGroup": APP_UID,
    "seccompProfile": {"type": "RuntimeDefault"},
}
CONTAINER_SECURITY_CONTEXT: dict[str, Any] = {
    "allowPrivilegeEscalation": False,
    "readOnlyRootFilesystem": True,
    "runAsNonRoot": True,
    "capabilities": {"drop": ["ALL"]},
    "seccompProfile": {"type": "RuntimeDefault"},
}
#: The root filesystem is read-only: what a flow run writes goes to emptyDir volumes.
#: LOCAL_DIR (reports, model cache, spill), /tmp, and HOME (Prefect home, matplotlib config).
WRITABLE_DIRS = {"local-state": "/var/lib/stateful-ml", "tmp": "/tmp", "home": "/home/app"}  # noqa: S108


def build_template(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """The default Kubernetes base job template, hardened (module docstring), with `env_from`.

    `namespace` becomes the default of the `namespace` variable (a deployment's
    job_variables can still override it).
    """
    from prefect_kubernetes.worker import KubernetesWorker

    template = copy.deepcopy(KubernetesWorker.get_default_base_job_template())
    properties = template["variables"]["properties"]
    properties["env_from"] = {
        "title": "Environment from",
        "description": (
            "envFrom of the flow-run container: the Stateful ML ConfigMap and Secret, "
            "so every flow run sees the same settings as the worker and the router."
        ),
        "type": "array",
        "items": {"type": "object"},
        "default": copy.deepcopy(ENV_FROM_DEFAULT),
    }
    properties["namespace"]["default"] = namespace
    for name, value in VARIABLE_DEFAULTS.items():
        properties[name]["default"] = value
    job_spec = template["job_configuration"]["job_manifest"]["spec"]
    _harden_pod(job_spec["template"])
    pod_spec = job_spec["template"]["spec"]
    # The default template puts these Job fields in the pod spec, where the API server
    # drops them with a warning (and strict field validation refuses): move them.
    for field in ("completions", "parallelism"):
        if field in pod_spec:
            job_spec[field] = pod_spec.pop(field)
    return template


def _harden_pod(pod_template: dict[str, Any]) -> None:
    """Labels, security contexts, writable volumes and envFrom on the flow-run pod."""
    pod_template.setdefault("metadata", {}).setdefault("labels", {}).update(FLOW_RUN_LABELS)
    pod_spec = pod_template["spec"]
    pod_spec["securityContext"] = copy.deepcopy(POD_SECURITY_CONTEXT)
    pod_spec["volumes"] = [{"name": name, "emptyDir": {}} for name in WRITABLE_DIRS]
    container = pod_spec["containers"][0]
    container["envFrom"] = "{{ env_from }}"
    container["securityContext"] = copy.deepcopy(CONTAINER_SECURITY_CONTEXT)
    container["volumeMounts"] = [
        {"name": name, "mountPath": path} for name, path in WRITABLE_DIRS.items()
    ]


def render_json(template: dict[str, Any]) -> str:
    """The template as stable, diff-friendly JSON."""
    return json.dumps(template, indent=2, sort_keys=True) + "\n"


app = typer.Typer(help="Build or apply the Kubernetes work pool base job template.")


@app.command()
def write(
    output: Path = typer.Option(TEMPLATE_PATH, "--output", help="where to write the JSON"),
    namespace: str = typer.Option(DEFAULT_NAMESPACE, "--namespace"),
) -> None:
    """Write the base job template JSON (idempotent: same input, same file)."""
    output.write_text(render_json(build_template(namespace)), encoding="utf-8")
    typer.echo(f"wrote {output}")


@app.command()
def apply(
    pool: str = typer.Option(..., "--pool", help="work pool name, e.g. stateful-ml-stg"),
    namespace: str = typer.Option(DEFAULT_NAMESPACE, "--namespace", help="namespace of Jobs"),
) -> None:
    """Create or update the work pool on the Prefect server at PREFECT_API_URL."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "base-job-template.json"
        path.write_text(render_json(build_template(namespace)), encoding="utf-8")
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "prefect",
                "--no-prompt",
                "work-pool",
                "create",
                pool,
                "--type",
                "kubernetes",
                "--base-job-template",
                str(path),
                "--overwrite",
            ],
            check=False,
        )
    raise typer.Exit(result.returncode)


if __name__ == "__main__":
    app()
