"""create_secrets.py: manifest, --check, and the Kubernetes API path against a fake API server.

A cluster cannot run here, so a small Kubernetes API imitation on 127.0.0.1 answers the
kubernetes client's real HTTP requests (create -> 201 or 409, replace -> 200, or 403).
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

import create_secrets
from config import SECRET_FIELDS

ROOT = Path(__file__).resolve().parents[1]
SENTINEL = "s3ntinel-Secret-Value-7731"
SECRETS = {
    "DATABASE_URL": f"postgresql://app:{SENTINEL}-db@db.example.com:5432/state",
    "SOURCE_DATABASE_URL": f"postgresql://app:{SENTINEL}-src@db.example.com:5432/source",
    "SUPABASE_KEY": f"{SENTINEL}-supabase",
    "PREFECT_API_KEY": f"pnu_{SENTINEL}-prefect",
    "ALERT_WEBHOOK_URL": f"https://hooks.example.com/{SENTINEL}-hook",
}


def run_script(
    *args: str, env: dict[str, str] | None = None, cwd: Path = ROOT
) -> subprocess.CompletedProcess[str]:
    """Run create_secrets.py in a subprocess with `env` on top of the test's environment."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run(
        [sys.executable, str(ROOT / "create_secrets.py"), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=120,
    )


def assert_no_sentinel(result: subprocess.CompletedProcess[str]) -> None:
    assert SENTINEL not in result.stdout
    assert SENTINEL not in result.stderr


@pytest.fixture
def all_secrets(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    for name, value in SECRETS.items():
        monkeypatch.setenv(name, value)
    return SECRETS


# --- --output -------------------------------------------------------------------------


def test_output_writes_string_data_manifest_with_every_secret(
    all_secrets: dict[str, str], tmp_path: Path
) -> None:
    target = tmp_path / "out" / "secret.yaml"

    result = run_script("--output", str(target), "--namespace", "stg")

    assert result.returncode == 0, result.stderr
    assert_no_sentinel(result)
    manifest = yaml.safe_load(target.read_text())
    assert manifest["kind"] == "Secret"
    assert manifest["metadata"]["name"] == "stateful-ml-secrets"
    assert manifest["metadata"]["namespace"] == "stg"
    assert manifest["stringData"] == all_secrets
    assert set(manifest["stringData"]) == SECRET_FIELDS
    assert target.stat().st_mode & 0o777 == 0o600


def test_output_base64_writes_encoded_data(all_secrets: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "secret.yaml"

    result = run_script("--output", str(target), "--base64")

    assert result.returncode == 0, result.stderr
    assert_no_sentinel(result)
    manifest = yaml.safe_load(target.read_text())
    assert "stringData" not in manifest
    decoded = {k: base64.b64decode(v).decode() for k, v in manifest["data"].items()}
    assert decoded == all_secrets
    assert manifest["metadata"]["namespace"] == "stateful-ml"


def test_output_omits_unset_optional_secrets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SUPABASE_KEY", raising=False)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    target = tmp_path / "secret.yaml"

    result = run_script("--output", str(target))

    assert result.returncode == 0, result.stderr
    assert set(yaml.safe_load(target.read_text())["stringData"]) == {
        "DATABASE_URL",
        "SOURCE_DATABASE_URL",
    }


def test_output_reads_secrets_from_the_env_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("DATABASE_URL")
    env_file = tmp_path / "deploy.env"
    env_file.write_text(f"DATABASE_URL={SECRETS['DATABASE_URL']}\nSUPABASE_KEY=\n")
    target = tmp_path / "secret.yaml"

    result = run_script("--output", str(target), "--env-file", str(env_file))

    assert result.returncode == 0, result.stderr
    data = yaml.safe_load(target.read_text())["stringData"]
    assert data["DATABASE_URL"] == SECRETS["DATABASE_URL"]
    assert "SUPABASE_KEY" not in data  # empty counts as unset


def test_output_twice_gives_the_same_manifest(all_secrets: dict[str, str], tmp_path: Path) -> None:
    target = tmp_path / "secret.yaml"
    run_script("--output", str(target))
    first = target.read_text()

    run_script("--output", str(target))

    assert target.read_text() == first


# --- --check --------------------------------------------------------------------------


def test_check_lists_missing_required_and_optional_names(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("DATABASE_URL", SECRETS["DATABASE_URL"])
    monkeypatch.delenv("SOURCE_DATABASE_URL")
    monkeypatch.setenv("SUPABASE_KEY", SECRETS["SUPABASE_KEY"])
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)

    result = run_script("--check")

    assert result.returncode == 1
    assert_no_sentinel(result)
    lines = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if "│" in line}
    assert "missing (required)" in lines["SOURCE_DATABASE_URL"]
    assert "missing (optional)" in lines["PREFECT_API_KEY"]
    assert "set (from env)" in lines["DATABASE_URL"]
    assert "set (from env)" in lines["SUPABASE_KEY"]
    assert "missing required: SOURCE_DATABASE_URL" in result.stdout


def test_check_all_set_exits_zero(all_secrets: dict[str, str]) -> None:
    result = run_script("--check")

    assert result.returncode == 0, result.stdout
    assert "missing" not in result.stdout
    assert_no_sentinel(result)


def test_apply_without_required_secret_names_it_and_exits_2(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.delenv("SOURCE_DATABASE_URL")

    result = run_script("--output", str(tmp_path / "s.yaml"))

    assert result.returncode == 2
    assert "SOURCE_DATABASE_URL" in result.stderr
    assert not (tmp_path / "s.yaml").exists()


def test_malformed_secret_names_the_variable_without_its_value(
    all_secrets: dict[str, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"mysql://app:{SENTINEL}@db/state")

    result = run_script("--output", str(tmp_path / "s.yaml"))

    assert result.returncode == 2
    assert "DATABASE_URL" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_sentinel(result)


def test_secret_values_repr_shows_names_only(all_secrets: dict[str, str]) -> None:
    values = create_secrets.read_secret_values()

    assert SENTINEL not in repr(values)
    assert "DATABASE_URL" in repr(values)


# --- the Kubernetes API path ----------------------------------------------------------------


@dataclass
class FakeKubeApi:
    """Secrets stored per (namespace, name); `refuse` makes every write return 403."""

    secrets: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    calls: list[tuple[str, str]] = field(default_factory=list)
    refuse: bool = False

    def handle(self, method: str, path: str, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, path))
        parts = path.strip("/").split("/")  # api v1 namespaces NS secrets [NAME]
        if parts[:3] != ["api", "v1", "namespaces"] or parts[4:5] != ["secrets"]:
            return 404, status(404, "NotFound", "no such path")
        namespace = parts[3]
        if self.refuse:
            # an admission webhook that echoes the request: must never reach the output
            return 403, status(403, "Forbidden", f"denied: {json.dumps(body)}")
        if method == "POST":
            key = (namespace, body["metadata"]["name"])
            if key in self.secrets:
                return 409, status(409, "AlreadyExists", "secrets already exists")
            self.secrets[key] = body
            return 201, body
        if method == "PUT" and len(parts) == 6:
            key = (namespace, parts[5])
            if key not in self.secrets:
                return 404, status(404, "NotFound", "not found")
            self.secrets[key] = body
            return 200, body
        return 405, status(405, "MethodNotAllowed", method)


def status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "status": "Failure",
        "message": message,
        "reason": reason,
        "code": code,
    }


@pytest.fixture
def kube_api(tmp_path: Path) -> Iterator[tuple[Path, FakeKubeApi]]:
    """A fake Kubernetes API on 127.0.0.1 and a kubeconfig pointing at it."""
    fake = FakeKubeApi()

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = json.loads(self.rfile.read(length) or b"{}")
            code, payload = fake.handle(self.command, self.path.split("?")[0], body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_POST = do_PUT = do_GET = _answer

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "fake",
                        "cluster": {"server": f"http://127.0.0.1:{server.server_port}"},
                    }
                ],
                "users": [{"name": "tester", "user": {"token": "test-token"}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "tester"}}],
                "current-context": "fake",
            }
        )
    )
    try:
        yield kubeconfig, fake
    finally:
        server.shutdown()
        server.server_close()


def test_apply_creates_then_replaces_the_secret(
    all_secrets: dict[str, str], kube_api: tuple[Path, FakeKubeApi]
) -> None:
    kubeconfig, fake = kube_api

    first = run_script("--kubeconfig", str(kubeconfig), "--namespace", "stg")
    second = run_script("--kubeconfig", str(kubeconfig), "--namespace", "stg")

    assert first.returncode == 0, first.stderr
    assert second.returncode == 0, second.stderr
    assert "created Secret stg/stateful-ml-secrets" in first.stdout
    assert "replaced Secret stg/stateful-ml-secrets" in second.stdout
    assert_no_sentinel(first)
    assert_no_sentinel(second)
    stored = fake.secrets[("stg", "stateful-ml-secrets")]
    assert stored["stringData"] == all_secrets
    assert [m for m, _ in fake.calls] == ["POST", "POST", "PUT"]


def test_apply_uses_k8s_namespace_from_settings(
    all_secrets: dict[str, str],
    kube_api: tuple[Path, FakeKubeApi],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    kubeconfig, fake = kube_api
    monkeypatch.setenv("K8S_NAMESPACE", "stateful-ml-prd")

    result = run_script("--kubeconfig", str(kubeconfig))

    assert result.returncode == 0, result.stderr
    assert ("stateful-ml-prd", "stateful-ml-secrets") in fake.secrets


def test_apply_refused_reports_status_only_never_the_value(
    all_secrets: dict[str, str], kube_api: tuple[Path, FakeKubeApi]
) -> None:
    kubeconfig, fake = kube_api
    fake.refuse = True

    result = run_script("--kubeconfig", str(kubeconfig))

    assert result.returncode == 2
    assert "403 Forbidden" in result.stderr
    assert "Traceback" not in result.stderr
    assert_no_sentinel(result)


def test_apply_without_kubeconfig_is_one_clear_line(
    all_secrets: dict[str, str], tmp_path: Path
) -> None:
    result = run_script(
        env={"KUBECONFIG": str(tmp_path / "absent"), "HOME": str(tmp_path)},
    )

    assert result.returncode == 2
    assert "no Kubernetes configuration found" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert_no_sentinel(result)


def test_apply_secret_with_mocked_api_replaces_on_conflict() -> None:
    from unittest.mock import MagicMock

    from kubernetes.client.exceptions import ApiException

    api = MagicMock()
    api.create_namespaced_secret.side_effect = ApiException(status=409, reason="Conflict")
    manifest = create_secrets.build_manifest(
        create_secrets.SecretValues({"DATABASE_URL": SECRETS["DATABASE_URL"]}, {}), "dev"
    )

    assert create_secrets.apply_secret(api, manifest) == "replaced"
    api.replace_namespaced_secret.assert_called_once_with(
        name="stateful-ml-secrets", namespace="dev", body=manifest
    )
