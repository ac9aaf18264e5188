"""The model registry: a thin layer over MlflowClient for versions, aliases and loading.

- `register` logs a fitted model to MLflow (a real pickle, explicit pip requirements of
  the running environment, signature and input example), records its golden predictions,
  and creates a registered version tagged with its lineage: image, code, python and key
  package versions, the model family's source hash, the artifact sha256, the golden
  predictions digest, plus the caller's tags (data snapshot hash, training window, ...).
- Aliases `champion`, `candidate`, `previous` (MLflow 3 aliases, never stages).
- `load` downloads a version's artifact once into `cache_dir/<name>/<version>/`, checks
  the sha256 of the pickle file against the recorded digest BEFORE unpickling, and keeps
  loaded models per (name, version) in process. Thread-safe.

`import mlflow` costs ~11 s here, so it is imported lazily, inside the methods that use it.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import re
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import NotFoundError, SmlError

if TYPE_CHECKING:
    from mlflow import MlflowClient

    from config import Settings

ALIASES: tuple[str, ...] = ("champion", "candidate", "previous")
PICKLE_FILE = "model.pkl"
MODEL_ARTIFACT = "model"
GOLDEN_ARTIFACT = "golden/golden_predictions.json"
SERIALIZATION_FORMAT = "cloudpickle"
#: Packages whose versions are pinned in the logged requirements and recorded as tags.
KEY_PACKAGES: tuple[str, ...] = ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle")
ERROR_PREFIX = "!error:"

# Lineage tag keys on every registered version.
TAG_IMAGE = "image_version"
TAG_CODE = "code_version"
TAG_PYTHON = "python_version"
TAG_PACKAGE_PREFIX = "pkg."
TAG_FAMILY = "model_family"
TAG_FAMILY_SOURCE = "family_source_hash"
TAG_SHA256 = "artifact_sha256"
TAG_GOLDEN_DIGEST = "golden_digest"
TAG_GOLDEN_COUNT = "golden_count"
TAG_SERIALIZATION = "serialization_format"
TAG_MODEL_ID = "mlflow_model_id"
TAG_SNAPSHOT = "data_snapshot_hash"
TAG_WINDOW = "training_window"
TAG_COMPAT_PREFIX = "compat."

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TAG_VALUE_SAFE = re.compile(r"^[^'\"\\\n]{1,250}$")
_FLUENT_LOCK = threading.Lock()
_TRACKING_ENV = "MLFLOW_TRACKING_URI"


class DigestMismatchError(SmlError):
    """A model artifact's sha256 differs from the digest recorded at registration."""


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid registered model name.

    Raises:
        NotFoundError: the name cannot name a registered model (so no such model exists).
    """
    if not _NAME.match(name):
        raise NotFoundError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def _check_filter_value(kind: str, value: str) -> str:
    if not _TAG_VALUE_SAFE.match(value):
        raise NotFoundError(f"invalid {kind} {value!r}: no quotes, backslashes or newlines")
    return value


def compat_tag(image_version: str) -> str:
    """The version tag holding the compat verdict under `image_version`."""
    return f"{TAG_COMPAT_PREFIX}{re.sub(r'[^A-Za-z0-9._-]', '_', image_version)}"


def sha256_file(path: Path) -> str:
    """The hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def golden_digest(inputs: Sequence[str], predictions: Sequence[str]) -> str:
    """sha256 of the canonical JSON of (input, prediction) pairs."""
    pairs = [[i, p] for i, p in zip(inputs, predictions, strict=True)]
    return hashlib.sha256(json.dumps(pairs, ensure_ascii=False).encode()).hexdigest()


def predict_each(model: Any, inputs: Sequence[str]) -> list[str]:
    """Predict inputs one by one; an input that raises yields `!error:<ExceptionType>`.

    Used for golden predictions, here at registration and in the compat probe, so a
    model that fails on some inputs still has comparable golden predictions.
    """
    out = []
    for text in inputs:
        try:
            out.append(str(model.predict([text])[0]))
        except Exception as exc:  # recorded as a prediction, by design
            out.append(f"{ERROR_PREFIX}{type(exc).__name__}")
    return out


def package_versions(packages: Sequence[str] = KEY_PACKAGES) -> dict[str, str]:
    """Installed versions of `packages` (missing ones are left out)."""
    found = {}
    for package in packages:
        try:
            found[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return found


def python_version() -> str:
    """`major.minor.micro` of the running interpreter."""
    return ".".join(str(part) for part in sys.version_info[:3])


@dataclass(frozen=True)
class ModelVersionInfo:
    """A registered model version as plain data."""

    name: str
    version: str
    tags: dict[str, str]
    aliases: list[str]
    run_id: str
    artifact_sha256: str
    image_version: str
    created_at: datetime
    source: str = ""
    description: str = ""

    @property
    def golden_digest(self) -> str:
        """The golden predictions digest recorded at registration ('' if absent)."""
        return self.tags.get(TAG_GOLDEN_DIGEST, "")

    def compat_verdict(self, image_version: str) -> str | None:
        """The compat verdict recorded for `image_version`, if any."""
        value = self.tags.get(compat_tag(image_version))
        return value.split(":", 1)[0] if value else None


@dataclass
class LoadedModel:
    """A verified, unpickled model version, ready to predict."""

    name: str
    version: str
    artifact_sha256: str
    model: Any = field(repr=False)

    def predict(self, texts: Sequence[str]) -> list[str]:
        """Predict a batch of texts (raises what the model raises)."""
        return [str(label) for label in self.model.predict(list(texts))]

    def predict_one(self, text: str) -> str:
        """Predict one text."""
        return str(self.model.predict([text])[0])


def _version_info(mv: Any, aliases: Sequence[str] | None = None) -> ModelVersionInfo:
    tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
    created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=UTC)
    return ModelVersionInfo(
        name=mv.name,
        version=str(mv.version),
        tags=tags,
        aliases=sorted(aliases if aliases is not None else (mv.aliases or [])),
        run_id=mv.run_id or "",
        artifact_sha256=tags.get(TAG_SHA256, ""),
        image_version=tags.get(TAG_IMAGE, ""),
        created_at=created,
        source=mv.source or "",
        description=mv.description or "",
    )


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


def _is_not_found(exc: Exception) -> bool:
    return getattr(exc, "error_code", "") in {"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"}


class ModelRegistry:
    """Registered versions, aliases and verified loading, over one MLflow tracking store."""

    def __init__(
        self,
        tracking_uri: str,
        cache_dir: Path,
        artifact_location: str | None = None,
        *,
        experiment: str = "stateful-ml",
        image_version: str = "local",
        code_version: str = "unknown",
    ) -> None:
        self.tracking_uri = tracking_uri
        self.cache_dir = Path(cache_dir)
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.image_version = image_version
        self.code_version = code_version
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> ModelRegistry:
        """A registry on the settings' MLflow store, cache dir, image and code versions."""
        location = settings.MLFLOW_ARTIFACT_LOCATION
        if "://" not in location:
            location = str(Path(location).resolve())
        return cls(
            settings.MLFLOW_TRACKING_URI,
            settings.MODEL_CACHE_DIR,
            location,
            experiment=settings.MLFLOW_EXPERIMENT,
            image_version=settings.IMAGE_VERSION,
            code_version=settings.CODE_VERSION,
        )

    # --- plumbing ------------------------------------------------------------------
    @property
    def client(self) -> MlflowClient:
        """The MlflowClient for this store (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from mlflow import MlflowClient

                    self._client = MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                    )
        return self._client

    def _experiment_id(self) -> str:
        from mlflow.exceptions import MlflowException

        client = self.client
        found = client.get_experiment_by_name(self.experiment)
        if found is not None:
            return str(found.experiment_id)
        try:
            return str(
                client.create_experiment(self.experiment, artifact_location=self.artifact_location)
            )
        except MlflowException as exc:  # created concurrently by another process
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                raise exc from None
            return str(found.experiment_id)

    def _ensure_registered_model(self, name: str) -> None:
        from mlflow.exceptions import MlflowException

        try:
            self.client.create_registered_model(name)
        except MlflowException as exc:
            if getattr(exc, "error_code", "") not in {"RESOURCE_ALREADY_EXISTS", "ALREADY_EXISTS"}:
                raise

    def environment_tags(self, name: str) -> dict[str, str]:
        """Lineage tags of the running environment for a version of model `name`."""
        tags = {
            TAG_IMAGE: self.image_version,
            TAG_CODE: self.code_version,
            TAG_PYTHON: python_version(),
            TAG_SERIALIZATION: SERIALIZATION_FORMAT,
        }
        tags.update({f"{TAG_PACKAGE_PREFIX}{k}": v for k, v in package_versions().items()})
        from models import FAMILIES

        family = FAMILIES.get(name)
        if family is not None:
            tags[TAG_FAMILY] = family.name
            tags[TAG_FAMILY_SOURCE] = family.source_hash()
        return tags

    # --- writing ---------------------------------------------------------------------
    def register(
        self,
        name: str,
        model: Any,
        *,
        tags: Mapping[str, str],
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        golden_inputs: Sequence[str],
        artifacts: Mapping[str, bytes] | None = None,
        description: str = "",
    ) -> ModelVersionInfo:
        """Log `model` to MLflow and register it as a new version of `name`.

        Logs params, metrics, extra `artifacts` (path in the run -> bytes), the model as a
        cloudpickle with signature, input example and explicit pip requirements pinned
        to the running environment, and the golden predictions. The version is tagged
        with the environment's lineage (see `environment_tags`), the artifact sha256,
        the golden digest, and `tags` (which win on a clash, e.g. `image_version`).

        Raises:
            NotFoundError: `name` is not a valid model name.
            ValueError: `golden_inputs` is empty.
            mlflow.exceptions.MlflowException: the tracking store failed (may be transient).
        """
        check_model_name(name)
        if not golden_inputs:
            raise ValueError("golden_inputs must not be empty")
        import mlflow
        import pandas as pd
        from mlflow.models import infer_signature

        inputs = [str(text) for text in golden_inputs]
        golden = predict_each(model, inputs)
        all_tags = {**self.environment_tags(name), **{k: str(v) for k, v in tags.items()}}
        all_tags[TAG_GOLDEN_DIGEST] = golden_digest(inputs, golden)
        all_tags[TAG_GOLDEN_COUNT] = str(len(inputs))
        example = pd.DataFrame({"text": inputs[:3]})
        ok_outputs = [p for p in golden[:3] if not p.startswith(ERROR_PREFIX)] or ["label"]
        signature = infer_signature(example, pd.Series(ok_outputs, name="intent"))
        requirements = [f"{pkg}=={ver}" for pkg, ver in package_versions().items()]

        client = self.client
        experiment_id = self._experiment_id()
        run_name = f"{name}-{all_tags[TAG_IMAGE]}-{datetime.now(UTC):%Y%m%dT%H%M%S}"
        run = client.create_run(experiment_id, run_name=run_name)
        run_id = run.info.run_id
        try:
            with tempfile.TemporaryDirectory(prefix="sml-register-") as tmp:
                work = Path(tmp)
                with (
                    _FLUENT_LOCK,
                    _fluent_tracking_uri(self.tracking_uri),
                    mlflow.start_run(run_id=run_id),
                ):
                    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
                    mlflow.log_metrics({k: float(v) for k, v in metrics.items()})
                    mlflow.set_tags(all_tags)
                    for artifact_path, data in (artifacts or {}).items():
                        target = work / "artifacts" / artifact_path
                        target.parent.mkdir(parents=True, exist_ok=True)
                        target.write_bytes(data)
                        folder = str(Path(artifact_path).parent)
                        mlflow.log_artifact(str(target), None if folder == "." else folder)
                    mlflow.log_dict({"inputs": inputs, "predictions": golden}, GOLDEN_ARTIFACT)
                    info = mlflow.sklearn.log_model(
                        model,
                        name=MODEL_ARTIFACT,
                        serialization_format=SERIALIZATION_FORMAT,
                        signature=signature,
                        input_example=example,
                        pip_requirements=requirements,
                    )
                logged = client.get_logged_model(info.model_id)
                pickle_path = Path(
                    mlflow.artifacts.download_artifacts(
                        artifact_uri=f"{logged.artifact_location.rstrip('/')}/{PICKLE_FILE}",
                        dst_path=str(work / "verify"),
                    )
                )
                all_tags[TAG_SHA256] = sha256_file(pickle_path)
            all_tags[TAG_MODEL_ID] = info.model_id
            client.set_tag(run_id, TAG_SHA256, all_tags[TAG_SHA256])
            self._ensure_registered_model(name)
            mv = client.create_model_version(
                name,
                source=logged.artifact_location,
                run_id=run_id,
                tags=all_tags,
                description=description or None,
                model_id=info.model_id,
            )
        except BaseException:
            client.set_terminated(run_id, status="FAILED")
            raise
        client.set_terminated(run_id, status="FINISHED")
        return self.get_version(name, str(mv.version))

    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` of `name` at `version` (moving it if set elsewhere).

        Raises:
            NotFoundError: the model or version does not exist.
        """
        self.get_version(name, version)
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias` from `name` (no error if it was not set)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if (
                not _is_not_found(exc)
                and getattr(exc, "error_code", "") != "INVALID_PARAMETER_VALUE"
            ):
                raise

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag on a version.

        Raises:
            NotFoundError: the model or version does not exist.
        """
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            self.client.set_model_version_tag(name, str(version), key, str(value))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"model {name!r} has no version {version}") from None
            raise

    # --- reading ---------------------------------------------------------------------
    def get_version(self, name: str, version: str) -> ModelVersionInfo:
        """One version with its tags and aliases.

        Raises:
            NotFoundError: the model or version does not exist.
        """
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        if not str(version).isdigit():
            raise NotFoundError(f"model {name!r} has no version {version!r} (expected a number)")
        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if _is_not_found(exc):
                raise NotFoundError(f"model {name!r} has no version {version}") from None
            raise
        return _version_info(mv)

    def version_by_alias(self, name: str, alias: str) -> ModelVersionInfo | None:
        """The version `alias` points at, or None (alias unset or model unknown)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if _is_not_found(exc) or getattr(exc, "error_code", "") == "INVALID_PARAMETER_VALUE":
                return None
            raise
        return _version_info(mv)

    def resolve(self, name: str, ref: str) -> ModelVersionInfo:
        """A version by number (`"3"`) or alias (`"champion"`, `"@champion"`).

        Raises:
            NotFoundError: no such version, or the alias is not set.
        """
        ref = ref.removeprefix("@")
        if ref.isdigit():
            return self.get_version(name, ref)
        found = self.version_by_alias(name, ref)
        if found is None:
            raise NotFoundError(f"model {name!r} has no alias {ref!r}")
        return found

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version for model `name` ({} if the model does not exist)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if _is_not_found(exc):
                return {}
            raise
        raw = model.aliases or {}
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return {str(a.alias): str(a.version) for a in raw}

    def list_versions(self, name: str, image_version: str | None = None) -> list[ModelVersionInfo]:
        """Versions of `name` (oldest first), only those trained on `image_version` if given."""
        check_model_name(name)
        query = f"name='{name}'"
        if image_version is not None:
            query += f" and tag.{TAG_IMAGE}='{_check_filter_value('image version', image_version)}'"
        found: list[Any] = []
        token: str | None = None
        while True:
            page = self.client.search_model_versions(query, max_results=1000, page_token=token)
            found.extend(page)
            token = getattr(page, "token", None)
            if not token:
                break
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        infos = [_version_info(mv, by_version.get(str(mv.version), [])) for mv in found]
        return sorted(infos, key=lambda info: int(info.version))

    def list_models(self) -> list[str]:
        """Names of every registered model, sorted."""
        return sorted(model.name for model in self.client.search_registered_models())

    def golden_predictions(self, name: str, version: str) -> tuple[list[str], list[str]]:
        """The (inputs, predictions) recorded at registration of a version.

        Raises:
            NotFoundError: the version or its golden artifact does not exist.
        """
        import mlflow

        info = self.get_version(name, version)
        target = self.cache_dir / name / str(info.version) / "golden.json"
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=self._model_dir(name)) as tmp:
                try:
                    path = mlflow.artifacts.download_artifacts(
                        run_id=info.run_id,
                        artifact_path=GOLDEN_ARTIFACT,
                        dst_path=tmp,
                        tracking_uri=self.tracking_uri,
                    )
                except Exception as exc:
                    raise NotFoundError(
                        f"{name} v{version} has no golden predictions artifact ({exc})"
                    ) from None
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        data = json.loads(target.read_text())
        return list(data["inputs"]), list(data["predictions"])

    # --- loading ---------------------------------------------------------------------
    def _model_dir(self, name: str) -> Path:
        folder = self.cache_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def artifact_path(self, name: str, version: str) -> Path:
        """The local pickle of a version, downloaded once into `cache_dir/<name>/<version>/model/`.

        The file is NOT verified here; `load` and `core.compat` check its digest first.

        Raises:
            NotFoundError: the version does not exist or has no model artifact.
        """
        import mlflow

        info = self.get_version(name, version)
        final = self.cache_dir / name / info.version / MODEL_ARTIFACT
        pickle_path = final / PICKLE_FILE
        if pickle_path.exists():
            return pickle_path
        location = info.source
        if not location or location.startswith("models:/"):
            model_id = info.tags.get(TAG_MODEL_ID) or location.removeprefix("models:/")
            try:
                location = self.client.get_logged_model(model_id).artifact_location
            except Exception as exc:
                raise NotFoundError(
                    f"{name} v{version}: model artifact not found ({exc})"
                ) from None
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
        try:
            downloaded = Path(
                mlflow.artifacts.download_artifacts(artifact_uri=location, dst_path=str(staging))
            )
            if not (downloaded / PICKLE_FILE).exists():
                raise NotFoundError(f"{name} v{version}: the artifact holds no {PICKLE_FILE}")
            if final.exists() and not pickle_path.exists():
                # a partial copy (the pickle deleted or never finished): replace it whole
                shutil.rmtree(final, ignore_errors=True)
            try:
                os.replace(downloaded, final)
            except OSError:  # another process finished the same download first
                if not pickle_path.exists():
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return pickle_path

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version, verifying its sha256 before unpickling (cached per process).

        Raises:
            NotFoundError: the version does not exist.
            DigestMismatchError: the artifact differs from the digest recorded at
                registration (or none was recorded): it is not unpickled. A local cached
                copy that fails the check is downloaded again once before refusing.
        """
        key = (name, str(version))
        cached = self._loaded.get(key)
        if cached is not None:
            return cached
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            cached = self._loaded.get(key)
            if cached is not None:
                return cached
            info = self.get_version(name, version)
            if not info.artifact_sha256:
                raise DigestMismatchError(
                    f"refusing to load {name} v{info.version}: no artifact digest was recorded"
                )
            path = self.artifact_path(name, info.version)
            data = path.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
            if actual != info.artifact_sha256:
                # A damaged local copy heals from the store; a damaged store copy is refused.
                shutil.rmtree(path.parent, ignore_errors=True)
                path = self.artifact_path(name, info.version)
                data = path.read_bytes()
                actual = hashlib.sha256(data).hexdigest()
            if actual != info.artifact_sha256:
                raise DigestMismatchError(
                    f"refusing to load {name} v{info.version}: artifact sha256 {actual[:12]}... "
                    f"does not match the registered {info.artifact_sha256[:12]}... "
                    f"({path}); the artifact was altered or corrupted"
                )
            model = pickle.loads(data)  # noqa: S301 - digest verified just above
            loaded = LoadedModel(name, info.version, actual, model)
            self._loaded[key] = loaded
            return loaded

    def load_alias(self, name: str, alias: str) -> LoadedModel:
        """Load the version an alias points at.

        Raises:
            NotFoundError: the alias is not set.
            DigestMismatchError: see `load`.
        """
        info = self.version_by_alias(name, alias)
        if info is None:
            raise NotFoundError(f"model {name!r} has no alias {alias!r}")
        return self.load(name, info.version)

    def forget(self, name: str, version: str) -> None:
        """Drop a loaded version from the in-process cache (the downloaded file stays)."""
        self._loaded.pop((name, str(version)), None)


__all__ = [
    "ALIASES",
    "DigestMismatchError",
    "LoadedModel",
    "ModelRegistry",
    "ModelVersionInfo",
    "compat_tag",
    "golden_digest",
    "predict_each",
]
