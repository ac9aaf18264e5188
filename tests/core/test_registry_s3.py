"""Model artifacts on S3, both ways the cluster can store them (docs/deploy.md).

An S3-compatible server (moto's standalone server) runs on loopback, started here; nothing
external is reached. Two modes, each through the project's own registry, training and
compat code:

- proxied: a real `mlflow server --artifacts-destination s3://...` in front of the bucket;
  clients only talk HTTP to the tracking server (`mlflow-artifacts:` URIs);
- direct: the tracking store is local and experiments live at `s3://bucket/prefix`;
  clients write to the bucket themselves (MLFLOW_S3_ENDPOINT_URL, AWS_* credentials).

Each trains and registers a real model, loads it with digest verification, runs the compat
probe, and shows that a changed object in the bucket is refused, not unpickled.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from core.compat import check_version
from core.ports import free_port
from core.registry import (
    PICKLE_FILE,
    DigestMismatchError,
    ModelRegistry,
    experiment_artifact_location,
)
from models.intent_classifier import GOLDEN_INPUTS
from tests.factories import train_and_register

BUCKET = "stateful-ml-artifacts"
NAME = "intent-classifier"
S3_ENV = {
    # fake credentials: moto accepts any; they never leave loopback
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
# 26-32 s on an idle 2-core machine; minutes when other test processes share it
MLFLOW_START_TIMEOUT_S = 420.0


@dataclass(frozen=True)
class S3Server:
    """The loopback S3 endpoint and a boto3 client on it."""

    endpoint: str
    client: Any

    def keys(self, prefix: str) -> list[str]:
        listing = self.client.list_objects_v2(Bucket=BUCKET, Prefix=prefix)
        return [item["Key"] for item in listing.get("Contents", [])]


@pytest.fixture(scope="module")
def s3() -> Iterator[S3Server]:
    """moto's S3 server on a free loopback port, with the bucket, and the S3 env set."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    with pytest.MonkeyPatch.context() as env:
        for key, value in {**S3_ENV, "MLFLOW_S3_ENDPOINT_URL": endpoint}.items():
            env.setenv(key, value)
        client = boto3.client("s3", endpoint_url=endpoint)
        client.create_bucket(Bucket=BUCKET)
        try:
            yield S3Server(endpoint, client)
        finally:
            server.stop()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + MLFLOW_START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"mlflow server exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"mlflow server not healthy after {MLFLOW_START_TIMEOUT_S:g} s:\n{log.read_text()}")


@pytest.fixture(scope="module")
def mlflow_server(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real `mlflow server` on sqlite, proxying artifacts to s3://BUCKET/proxied."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    log = root / "server.log"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        f"sqlite:///{root}/mlflow.db",
        "--artifacts-destination",
        f"s3://{BUCKET}/proxied",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with log.open("wb") as out:
        # os.environ holds the S3 env set by the `s3` fixture: the server writes to moto
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, cwd=root, env=dict(os.environ)
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(url, process, log)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def open_registry(tracking_uri: str, location: str, cache: Path) -> ModelRegistry:
    """A registry as the flows open it, knowing our model families."""
    from models import FAMILIES

    return ModelRegistry(
        tracking_uri,
        cache,
        experiment_artifact_location(tracking_uri, location),
        experiment="s3-tests",
        image_version="img-1",
        families=FAMILIES,
    )


def logged_model(registry: ModelRegistry) -> Any:
    """MLflow's logged model behind version 1."""
    from core.lineage import TAG_MODEL_ID

    info = registry.get_version(NAME, "1")
    return registry.client.get_logged_model(info.tags[TAG_MODEL_ID])


def assert_round_trip(registry: ModelRegistry, s3: S3Server, prefix: str, fresh: Path) -> None:
    """Train, register, load verified, probe; then a changed object is refused."""
    # Given: a version trained and registered through this registry
    info = train_and_register(registry)

    # Then: its pickle is an object in the bucket, and loading verifies and predicts
    pickles = [k for k in s3.keys(prefix) if k.endswith(f"/{PICKLE_FILE}")]
    assert len(pickles) == 1, s3.keys(prefix)
    loaded = registry.load(NAME, info.version)
    assert loaded.artifact_sha256 == info.artifact_sha256
    _, golden = registry.golden_predictions(NAME, info.version)
    assert loaded.predict(GOLDEN_INPUTS[:3]) == golden[:3]

    # And: the compat probe (a subprocess reading the downloaded copy) judges it
    report = check_version(registry, NAME, info.version, image_version="img-2")
    assert report.verdict == "compatible", report.reason
    assert report.golden_checked == len(GOLDEN_INPUTS)

    # When: the object in the bucket is replaced by other bytes
    s3.client.put_object(Bucket=BUCKET, Key=pickles[0], Body=b"not the registered model")
    reader = open_registry(registry.tracking_uri, registry.artifact_location or "", fresh)

    # Then: a reader with an empty cache refuses it, and the probe calls it broken
    with pytest.raises(DigestMismatchError, match="does not match the registered"):
        reader.load(NAME, info.version)
    assert check_version(reader, NAME, info.version).verdict == "broken"


@pytest.mark.integration
@pytest.mark.slow
def test_register_and_load_through_mlflow_server_proxying_to_s3(
    s3: S3Server, mlflow_server: str, tmp_path: Path
) -> None:
    # as the cluster's ConfigMap says (k8s/overlays/stg): a prefix under the server's root
    registry = open_registry(mlflow_server, "mlflow-artifacts:/stg", tmp_path / "cache")

    assert_round_trip(registry, s3, "proxied/stg/", tmp_path / "fresh-cache")

    # the model's artifacts are addressed through the server, never the bucket itself
    assert str(logged_model(registry).artifact_location).startswith("mlflow-artifacts:")


@pytest.mark.integration
@pytest.mark.slow
def test_register_and_load_with_direct_s3_artifact_location(s3: S3Server, tmp_path: Path) -> None:
    tracking = f"sqlite:///{tmp_path}/mlflow.db"
    registry = open_registry(tracking, f"s3://{BUCKET}/direct", tmp_path / "cache")
    assert registry.artifact_location == f"s3://{BUCKET}/direct"

    assert_round_trip(registry, s3, "direct/", tmp_path / "fresh-cache")

    assert str(logged_model(registry).artifact_location).startswith(f"s3://{BUCKET}/direct/")


@pytest.mark.parametrize(
    ("tracking", "location", "expected"),
    [
        ("http://mlflow:5000", ".local/mlartifacts", None),
        ("http://mlflow:5000", "s3://b/prd", "s3://b/prd"),
        ("https://mlflow.example.com", "mlflow-artifacts:/prd", "mlflow-artifacts:/prd"),
        ("sqlite:///x.db", "s3://b/p", "s3://b/p"),
    ],
)
def test_experiment_artifact_location_keeps_uris_and_defers_paths_to_a_server(
    tracking: str, location: str, expected: str | None
) -> None:
    assert experiment_artifact_location(tracking, location) == expected


def test_experiment_artifact_location_resolves_a_path_for_a_local_store(tmp_path: Path) -> None:
    location = experiment_artifact_location("sqlite:///x.db", str(tmp_path / "a" / ".." / "b"))

    assert location == str(tmp_path / "b")
