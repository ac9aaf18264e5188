"""The environment contract: every Settings field has exactly one home.

`.env.example` lists every field; `k8s/base/configmap.yaml` the non-secret ones (except
those the image provides, named in its `stateful-ml/from-image` annotation); the Secret
template exactly the secret ones.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import yaml

from config import PUBLIC_FIELDS, SECRET_FIELDS, Settings

ROOT = Path(__file__).resolve().parents[1]
ENV_LINE = re.compile(r"^#?\s*([A-Z][A-Z0-9_]*)=")
FROM_IMAGE = {"CODE_VERSION", "IMAGE_VERSION"}


def env_example_keys() -> Counter[str]:
    """Variables named in .env.example, as `NAME=` or commented `# NAME=` lines."""
    lines = (ROOT / ".env.example").read_text().splitlines()
    return Counter(m.group(1) for line in lines if (m := ENV_LINE.match(line)))


def configmap() -> dict:
    return yaml.safe_load((ROOT / "k8s" / "base" / "configmap.yaml").read_text())


def secret_template() -> dict:
    return yaml.safe_load((ROOT / "k8s" / "base" / "secret.template.yaml").read_text())


def test_env_example_lists_every_settings_field_once() -> None:
    keys = env_example_keys()

    assert set(keys) == set(Settings.model_fields)
    assert all(count == 1 for count in keys.values()), keys.most_common(3)


def test_configmap_lists_exactly_the_non_secret_fields() -> None:
    cm = configmap()
    from_image = set(cm["metadata"]["annotations"]["stateful-ml/from-image"].split(","))

    assert cm["metadata"]["name"] == "stateful-ml-env"
    assert from_image == FROM_IMAGE
    assert set(cm["data"]) | from_image == PUBLIC_FIELDS
    assert not set(cm["data"]) & from_image
    assert not set(cm["data"]) & SECRET_FIELDS
    assert all(isinstance(v, str) for v in cm["data"].values())


def test_secret_template_lists_exactly_the_secret_fields_without_values() -> None:
    secret = secret_template()

    assert secret["kind"] == "Secret"
    assert secret["metadata"]["name"] == "stateful-ml-secrets"
    assert set(secret["stringData"]) == SECRET_FIELDS
    assert all(value == "" for value in secret["stringData"].values())


def test_env_example_leaves_secrets_empty() -> None:
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line and not line.startswith("#") and "=" in line:
            name, _, value = line.partition("=")
            values[name] = value
    assert all(values.get(name, "") == "" for name in SECRET_FIELDS)


def test_env_example_values_load_as_valid_settings(monkeypatch, tmp_path: Path) -> None:
    from config import load_settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("SML_ENV_FILE", str(ROOT / ".env.example"))

    settings = load_settings()

    assert settings.ENVIRONMENT == "dev"
    assert settings.database_url == "sqlite:///.local/state.db"


def test_configmap_values_load_as_valid_settings(monkeypatch) -> None:
    from config import load_settings

    for name in Settings.model_fields:
        monkeypatch.delenv(name, raising=False)
    for name, value in configmap()["data"].items():
        monkeypatch.setenv(name, value)

    settings = load_settings()

    assert settings.ROUTER_HOST == "0.0.0.0"
    assert settings.SUPABASE_URL is None


def test_overlay_configmaps_load_as_valid_settings(monkeypatch) -> None:
    from config import load_settings

    base = configmap()["data"]
    for env in ("stg", "prd"):
        patch = yaml.safe_load((ROOT / "k8s" / "overlays" / env / "configmap.yaml").read_text())
        for name in Settings.model_fields:
            monkeypatch.delenv(name, raising=False)
        for name, value in {**base, **patch["data"]}.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setenv("DATABASE_URL", "postgresql://app:s3cret@db.internal:5432/state")

        assert env == load_settings().ENVIRONMENT


def test_dockerfile_bakes_image_version_from_build_arg() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()

    assert re.search(r"^ARG IMAGE_VERSION(=\S+)?$", dockerfile, re.MULTILINE)
    assert re.search(r"^ENV IMAGE_VERSION=\$\{?IMAGE_VERSION\}?$", dockerfile, re.MULTILINE)
    assert re.search(r"^FROM python:3\.11-slim", dockerfile, re.MULTILINE)
    assert "uv sync --frozen" in dockerfile
    assert re.search(r'^CMD \["sml", "serve"\]$', dockerfile, re.MULTILINE)


def test_dockerignore_keeps_env_files_and_local_state_out_of_the_image() -> None:
    ignored = set((ROOT / ".dockerignore").read_text().splitlines())

    assert {".env", ".local", ".git", ".venv"} <= ignored
