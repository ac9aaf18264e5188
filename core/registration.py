"""Logging a fitted model to MLflow and registering it as a new version with its lineage.

One registration is one MLflow run: params, metrics, the caller's extra artifacts, the
golden predictions, and the model as a real pickle (cloudpickle) with signature, input
example and explicit pip requirements pinned to the running environment. The version
created from that run carries every lineage tag (`core.lineage`), the artifact sha256
measured on the stored pickle, and the golden predictions digest. A failure marks the
run FAILED and registers nothing.

`core.registry.ModelRegistry.register` is the entry point; this module is its mechanics.
"""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.lineage import (
    ERROR_PREFIX,
    SERIALIZATION_FORMAT,
    TAG_IMAGE,
    TAG_MODEL_ID,
    TAG_SHA256,
    ModelVersionInfo,
    package_versions,
    sha256_file,
)

if TYPE_CHECKING:
    import pandas as pd
    from mlflow import MlflowClient
    from mlflow.models import ModelSignature

    from core.model_versions import ModelVersions

PICKLE_FILE = "model.pkl"
MODEL_ARTIFACT = "model"
GOLDEN_ARTIFACT = "golden/golden_predictions.json"

_FLUENT_LOCK = threading.Lock()
_TRACKING_ENV = "MLFLOW_TRACKING_URI"


@dataclass(frozen=True)
class VersionRecord:
    """What a new version of model `name` records besides the model itself."""

    name: str
    #: Every lineage tag (environment's and caller's, golden digest and count); the
    #: artifact sha256 and MLflow model id are added once the pickle is stored.
    tags: dict[str, str]
    params: Mapping[str, Any]
    metrics: Mapping[str, float]
    golden_inputs: list[str]
    golden_predictions: list[str]
    #: Extra run artifacts: path in the run -> bytes.
    artifacts: Mapping[str, bytes]
    description: str = ""


@dataclass(frozen=True)
class _StoredModel:
    """Where the logged model landed and the sha256 of its stored pickle."""

    model_id: str
    artifact_location: str
    sha256: str


@contextmanager
def _fluent_tracking_uri(uri: str) -> Iterator[None]:
    """Point MLflow's fluent API at `uri` for a block, restoring everything after.

    `mlflow.set_tracking_uri` also writes (and MLflow's own restore *deletes*) the
    MLFLOW_TRACKING_URI environment variable, which our Settings read: without this
    guard, registering once would silently re-point later Settings at the default store.
    Callers hold `_FLUENT_LOCK`.
    """
    from mlflow.tracking._tracking_service.utils import _use_tracking_uri

    saved = os.environ.get(_TRACKING_ENV)
    try:
        with _use_tracking_uri(uri):
            yield
    finally:
        if saved is None:
            os.environ.pop(_TRACKING_ENV, None)
        else:
            os.environ[_TRACKING_ENV] = saved


def ensure_experiment(client: MlflowClient, name: str, artifact_location: str | None) -> str:
    """The id of experiment `name`, created (at `artifact_location`) if absent.

    Raises:
        mlflow.exceptions.MlflowException: the store failed (not a concurrent creation).
    """
    from mlflow.exceptions import MlflowException

    found = client.get_experiment_by_name(name)
    if found is not None:
        return str(found.experiment_id)
    try:
        return str(client.create_experiment(name, artifact_location=artifact_location))
    except MlflowException as exc:  # created concurrently by another process
        found = client.get_experiment_by_name(name)
        if found is None:
            raise exc from None
        return str(found.experiment_id)


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.create_registered_model(name)
    except MlflowException as exc:
        if exc.error_code not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
            raise


def _example_and_signature(record: VersionRecord) -> tuple[pd.DataFrame, ModelSignature]:
    """The input example (three golden inputs) and the signature inferred from them."""
    import pandas as pd
    from mlflow.models import infer_signature

    example = pd.DataFrame({"text": record.golden_inputs[:3]})
    outputs = [p for p in record.golden_predictions[:3] if not p.startswith(ERROR_PREFIX)]
    return example, infer_signature(example, pd.Series(outputs or ["label"], name="intent"))


def _log_run_contents(record: VersionRecord, work: Path) -> None:
    """Log params, metrics, tags, extra artifacts and golden predictions to the active run."""
    import mlflow

    mlflow.log_params({k: str(v)[:500] for k, v in record.params.items()})
    mlflow.log_metrics({k: float(v) for k, v in record.metrics.items()})
    mlflow.set_tags(record.tags)
    for artifact_path, data in record.artifacts.items():
        target = work / "artifacts" / artifact_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
        folder = str(Path(artifact_path).parent)
        mlflow.log_artifact(str(target), None if folder == "." else folder)
    mlflow.log_dict(
        {"inputs": record.golden_inputs, "predictions": record.golden_predictions},
        GOLDEN_ARTIFACT,
    )


def _log_model(
    versions: ModelVersions,
    run_id: str,
    model: Any,
    record: VersionRecord,
    example: tuple[pd.DataFrame, ModelSignature],
    work: Path,
) -> _StoredModel:
    """Log the run's contents and the model into run `run_id`; measure the stored pickle.

    `example` is the input example and the signature inferred from it.
    """
    import mlflow

    input_example, signature = example
    requirements = [f"{pkg}=={ver}" for pkg, ver in package_versions().items()]
    with (
        _FLUENT_LOCK,
        _fluent_tracking_uri(versions.tracking_uri),
        mlflow.start_run(run_id=run_id),
    ):
        _log_run_contents(record, work)
        info = mlflow.sklearn.log_model(
            model,
            name=MODEL_ARTIFACT,
            serialization_format=SERIALIZATION_FORMAT,
            signature=signature,
            input_example=input_example,
            pip_requirements=requirements,
        )
    logged = versions.client.get_logged_model(info.model_id)
    # The digest is measured on the copy the store holds, not on a local file.
    pickle_path = Path(
        mlflow.artifacts.download_artifacts(
            artifact_uri=f"{logged.artifact_location.rstrip('/')}/{PICKLE_FILE}",
            dst_path=str(work / "verify"),
            # after the fluent block: an `mlflow-artifacts:` URI needs the server named
            tracking_uri=versions.tracking_uri,
        )
    )
    return _StoredModel(info.model_id, logged.artifact_location, sha256_file(pickle_path))


def log_version(
    versions: ModelVersions, experiment_id: str, model: Any, record: VersionRecord
) -> ModelVersionInfo:
    """Log `model` with `record` in a new run of `experiment_id` and register the version.

    Raises:
        mlflow.exceptions.MlflowException: the tracking store failed (may be transient);
            the run is then marked FAILED.
    """
    client = versions.client
    # Inferred before the run exists: a model that cannot be described leaves no run.
    example = _example_and_signature(record)
    run_name = f"{record.name}-{record.tags[TAG_IMAGE]}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
    run_id = client.create_run(experiment_id, run_name=run_name).info.run_id
    try:
        with tempfile.TemporaryDirectory(prefix="sml-register-") as tmp:
            stored = _log_model(versions, run_id, model, record, example, Path(tmp))
        tags = {**record.tags, TAG_SHA256: stored.sha256, TAG_MODEL_ID: stored.model_id}
        client.set_tag(run_id, TAG_SHA256, stored.sha256)
        _ensure_registered_model(client, record.name)
        mv = client.create_model_version(
            record.name,
            source=stored.artifact_location,
            run_id=run_id,
            tags=tags,
            description=record.description or None,
            model_id=stored.model_id,
        )
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id, status="FINISHED")
    return versions.get_version(record.name, str(mv.version))
