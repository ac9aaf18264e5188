"""The Kubernetes work pool's base job template, with envFrom for every flow-run pod.

The Prefect worker copies only its own PREFECT_* settings into the Jobs it creates, so the
ConfigMap `stateful-ml-env` and the Secret `stateful-ml-secrets` reach flow-run pods only
through the work pool's base job template. This script builds that template from
prefect-kubernetes' default and either writes it or applies it to a Prefect server:

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


def build_template(namespace: str = DEFAULT_NAMESPACE) -> dict[str, Any]:
    """The default Kubernetes base job template plus an `env_from` variable on the container.

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
    job_spec = template["job_configuration"]["job_manifest"]["spec"]
    pod_spec = job_spec["template"]["spec"]
    pod_spec["containers"][0]["envFrom"] = "{{ env_from }}"
    # The default template puts these Job fields in the pod spec, where the API server
    # drops them with a warning (and strict field validation refuses): move them.
    for field in ("completions", "parallelism"):
        if field in pod_spec:
            job_spec[field] = pod_spec.pop(field)
    return template


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
