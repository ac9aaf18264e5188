"""Create or update the Kubernetes Secret `stateful-ml-secrets` from env / .env.

Usage:
    python create_secrets.py                 # create or replace the Secret in K8S_NAMESPACE
    python create_secrets.py --check         # which secret variables are set / missing
    python create_secrets.py --output FILE   # write the Secret manifest instead (mode 0600)

The secret variables are exactly the `SecretStr` fields of `config.Settings`
(`config.SECRET_FIELDS`), read from the process environment first, then `.env`.
Talks to the cluster through the kubernetes client (kubeconfig, or in-cluster config when
running in a pod). Idempotent: creates the Secret, or replaces it when it exists.

It never prints a secret value, not even on error: messages name variables only, and
Kubernetes API errors are reported by HTTP status and reason.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
import yaml
from rich.console import Console
from rich.table import Table

from config import SECRET_FIELDS, ConfigError, Settings, load_settings
from config.settings import env_file_path
from core.errors import SmlError

SECRET_NAME = "stateful-ml-secrets"  # noqa: S105 (a name, not a value)
PART_OF_LABEL = {"app.kubernetes.io/part-of": "stateful-ml"}


class SecretsError(SmlError):
    """The Secret could not be built or applied (the message never holds a value)."""


def optional_secret_fields() -> frozenset[str]:
    """Secret fields a deployment may leave unset (their Settings default is None)."""
    return frozenset(name for name in SECRET_FIELDS if Settings.model_fields[name].default is None)


def required_secret_fields() -> frozenset[str]:
    """Secret fields a cluster must set (their default is an embedded, local-only value)."""
    return SECRET_FIELDS - optional_secret_fields()


@dataclass(frozen=True)
class SecretValues:
    """The secret variables found in env / .env, and where each came from."""

    values: dict[str, str]
    sources: dict[str, str]

    def __repr__(self) -> str:  # never show values
        return f"SecretValues(names={sorted(self.values)})"

    @property
    def missing_required(self) -> list[str]:
        """Required secret names that are not set."""
        return sorted(required_secret_fields() - set(self.values))

    @property
    def missing_optional(self) -> list[str]:
        """Optional secret names that are not set."""
        return sorted(optional_secret_fields() - set(self.values))


def read_secret_values(env_file: Path | None = None) -> SecretValues:
    """Collect the secret variables from the process env, then `env_file` (default .env).

    Empty values count as unset.
    """
    from dotenv import dotenv_values

    path = env_file if env_file is not None else env_file_path()
    dotenv = {k: v for k, v in dotenv_values(path).items() if v} if path.exists() else {}
    values: dict[str, str] = {}
    sources: dict[str, str] = {}
    for name in sorted(SECRET_FIELDS):
        if os.environ.get(name):
            values[name], sources[name] = os.environ[name], "env"
        elif dotenv.get(name):
            values[name], sources[name] = str(dotenv[name]), str(path)
    return SecretValues(values=values, sources=sources)


def validate_secret_values(secrets: SecretValues) -> None:
    """Check the values parse as Settings would (URL shapes); never echo them.

    Raises:
        SecretsError: a value is malformed (the message names the variable only).
    """
    try:
        load_settings(**secrets.values)
    except ConfigError as exc:
        raise SecretsError(str(exc)) from None


def build_manifest(secrets: SecretValues, namespace: str, encode: bool = False) -> dict[str, Any]:
    """The Secret manifest: `stringData`, or base64 `data` when `encode`."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": SECRET_NAME, "namespace": namespace, "labels": dict(PART_OF_LABEL)},
        "type": "Opaque",
    }
    if encode:
        manifest["data"] = {
            k: base64.b64encode(v.encode()).decode() for k, v in sorted(secrets.values.items())
        }
    else:
        manifest["stringData"] = dict(sorted(secrets.values.items()))
    return manifest


def write_manifest(manifest: dict[str, Any], output: Path) -> None:
    """Write the manifest as YAML, readable by the owner only."""
    output.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(output, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        yaml.safe_dump(manifest, handle, sort_keys=False)
    output.chmod(0o600)


def load_kube_client(kubeconfig: Path | None = None, context: str | None = None) -> Any:
    """A CoreV1Api from in-cluster config (inside a pod) or kubeconfig.

    Raises:
        SecretsError: no usable configuration was found.
    """
    from kubernetes import client, config
    from kubernetes.config.config_exception import ConfigException

    try:
        if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
            config.load_incluster_config()
        else:
            config.load_kube_config(
                config_file=str(kubeconfig) if kubeconfig else None, context=context
            )
    except (ConfigException, OSError) as exc:
        raise SecretsError(
            f"no Kubernetes configuration found (kubeconfig or in-cluster): {type(exc).__name__}"
        ) from None
    return client.CoreV1Api()


def apply_secret(api: Any, manifest: dict[str, Any]) -> str:
    """Create the Secret, or replace it if it exists. Returns "created" or "replaced".

    Raises:
        SecretsError: the API refused (status and reason only, never the body).
    """
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    namespace = manifest["metadata"]["namespace"]
    try:
        try:
            api.create_namespaced_secret(namespace=namespace, body=manifest)
            return "created"
        except ApiException as exc:
            if exc.status != 409:
                raise
        api.replace_namespaced_secret(name=SECRET_NAME, namespace=namespace, body=manifest)
        return "replaced"
    except ApiException as exc:
        raise SecretsError(
            f"Kubernetes API refused Secret {namespace}/{SECRET_NAME}: {exc.status} {exc.reason}"
        ) from None
    except HTTPError as exc:
        raise SecretsError(
            f"could not reach the Kubernetes API for {namespace}/{SECRET_NAME}: "
            f"{type(exc).__name__}"
        ) from None


def print_check(secrets: SecretValues, console: Console) -> None:
    """A table of every secret variable: set (and from where) or missing."""
    table = Table(title=f"secret variables for {SECRET_NAME}")
    table.add_column("variable")
    table.add_column("status")
    for name in sorted(SECRET_FIELDS):
        if name in secrets.values:
            status = f"[green]set[/green] (from {secrets.sources[name]})"
        elif name in required_secret_fields():
            status = "[red]missing (required)[/red]"
        else:
            status = "[yellow]missing (optional)[/yellow]"
        table.add_row(name, status)
    console.print(table)


def run(
    check: bool,
    output: Path | None,
    encode: bool,
    namespace: str | None,
    kubeconfig: Path | None,
    context: str | None,
    env_file: Path | None,
    console: Console,
) -> int:
    """The command: returns the exit code (1 when required secrets are missing).

    Raises:
        SecretsError: a malformed value, or the cluster refused.
        ConfigError: the settings themselves are invalid.
    """
    secrets = read_secret_values(env_file)
    if check:
        print_check(secrets, console)
        if secrets.missing_required:
            console.print(f"missing required: {', '.join(secrets.missing_required)}")
            return 1
        return 0
    if secrets.missing_required:
        raise SecretsError(
            f"missing required secret variable(s): {', '.join(secrets.missing_required)} "
            "(set them in the environment or .env; see --check)"
        )
    validate_secret_values(secrets)
    target_namespace = namespace or load_settings().K8S_NAMESPACE
    manifest = build_manifest(secrets, target_namespace, encode=encode)
    names = ", ".join(sorted(secrets.values))
    if output is not None:
        write_manifest(manifest, output)
        console.print(f"wrote Secret {target_namespace}/{SECRET_NAME} ({names}) to {output}")
        return 0
    action = apply_secret(load_kube_client(kubeconfig, context), manifest)
    console.print(f"{action} Secret {target_namespace}/{SECRET_NAME} with keys {names}")
    return 0


def main(
    check: bool = typer.Option(False, "--check", help="list which secrets are set or missing"),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="write the manifest to this file instead of applying it"
    ),
    encode: bool = typer.Option(
        False, "--base64", help="write base64 `data` instead of `stringData`"
    ),
    namespace: str | None = typer.Option(
        None, "--namespace", "-n", help="target namespace (default: K8S_NAMESPACE)"
    ),
    kubeconfig: Path | None = typer.Option(None, "--kubeconfig", help="kubeconfig file"),
    context: str | None = typer.Option(None, "--context", help="kubeconfig context"),
    env_file: Path | None = typer.Option(
        None, "--env-file", help="read secrets from this file after the environment"
    ),
) -> None:
    """Create or update the Kubernetes Secret stateful-ml-secrets (idempotent)."""
    console = Console()
    try:
        code = run(check, output, encode, namespace, kubeconfig, context, env_file, console)
    except (ConfigError, SmlError) as exc:
        Console(stderr=True).print(f"[red]error:[/red] {exc}", highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    raise typer.Exit(code)


if __name__ == "__main__":
    typer.run(main)
