"""`make deploy [ENV=local|stg|prd]`: one environment's deployments from prefect.yaml.

`prefect --no-prompt deploy --all` stops at the first deployment whose work pool does not
exist, and with IMAGE_VERSION unset it deploys stg/prd with the image tag `...:` (empty).
This creates the environment's work pool first (a process pool `local`; for stg/prd the
Kubernetes pool `stateful-ml-<env>` with k8s/base/work-pool-template.json, so its flow-run
pods get the ConfigMap and the Secret), refuses an empty IMAGE_VERSION for stg/prd, then runs
`prefect --no-prompt deploy --name <env>` (every deployment of that name in prefect.yaml):

    uv run python -m ops.deploy [--env local|stg|prd]
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import typer

ROOT = Path(__file__).resolve().parents[1]
TEMPLATE_PATH = ROOT / "k8s" / "base" / "work-pool-template.json"
ENVS = ("local", "stg", "prd")
EXIT_USAGE = 2


def pool_name(env: str) -> str:
    """The work pool of an environment's deployments (as prefect.yaml names them)."""
    return "local" if env == "local" else f"stateful-ml-{env}"


def pool_create_args(env: str) -> list[str]:
    """`prefect work-pool create` arguments that create or update the environment's pool."""
    if env == "local":
        return ["work-pool", "create", "local", "--type", "process", "--overwrite"]
    return [
        "work-pool",
        "create",
        pool_name(env),
        "--type",
        "kubernetes",
        "--base-job-template",
        str(TEMPLATE_PATH),
        "--overwrite",
    ]


def refusal(env: str, image_version: str | None) -> str | None:
    """The one-line reason not to deploy `env`, or None when it may be deployed."""
    if env not in ENVS:
        return f"deploy: ENV must be one of {', '.join(ENVS)}, got {env!r}"
    if env != "local" and not (image_version or "").strip():
        return (
            f"deploy: IMAGE_VERSION is empty; {env} would run the image "
            "'registry.example.com/stateful-ml:' "
            f"(set it: make deploy ENV={env} IMAGE_VERSION=1.4.0)"
        )
    return None


def _prefect(args: list[str]) -> None:
    """Run `prefect --no-prompt ...` in the repository.

    Raises:
        typer.Exit: with prefect's exit code when the command fails.
    """
    command = [sys.executable, "-m", "prefect", "--no-prompt", *args]
    result = subprocess.run(command, cwd=ROOT, check=False)
    if result.returncode != 0:
        typer.echo(
            f"deploy: `prefect {' '.join(args)}` failed (exit {result.returncode})", err=True
        )
        raise typer.Exit(result.returncode)


def main(env: str = typer.Option("local", "--env", help="local, stg or prd")) -> None:
    """Create the environment's work pool, then apply its deployments from prefect.yaml.

    Exits 2 with one line on an unknown ENV or (stg/prd) an empty IMAGE_VERSION; with
    prefect's exit code when one of its commands fails.
    """
    reason = refusal(env, os.environ.get("IMAGE_VERSION"))
    if reason:
        typer.echo(reason, err=True)
        raise typer.Exit(EXIT_USAGE)
    _prefect(pool_create_args(env))
    _prefect(["deploy", "--name", env])


if __name__ == "__main__":
    typer.run(main)
