"""The model registry: versions, aliases, registering with lineage, and verified loading.

`ModelRegistry` is the one object the rest of the code holds for MLflow's registry:

- reads, aliases and tags come from `core.model_versions.ModelVersions` (its base);
- `register` logs a fitted model and creates a version tagged with its lineage
  (`core.lineage` tags, `core.registration` mechanics): image, code, python and key
  package versions, the model family's source hash, the artifact sha256, the golden
  predictions digest, plus the caller's tags (data snapshot hash, training window, ...);
- `load` verifies a version's pickle against its recorded sha256 before unpickling
  (`core.artifacts`).

Model families come in as `families` (name -> `core.lineage.FamilySource`, e.g.
`models.FAMILIES`) from whoever opens the registry: core never imports `models`. A registry
opened without them records no family lineage and cannot tell an unchanged family source
in `core.compat` (its check then probes the version instead of calling it identical).

The names below stay importable from here for callers of the former single module.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from core.artifacts import DigestMismatchError, LoadedModel, ModelArtifacts
from core.errors import NotFoundError
from core.lineage import (
    ERROR_PREFIX,
    KEY_PACKAGES,
    SERIALIZATION_FORMAT,
    TAG_CODE,
    TAG_COMPAT_PREFIX,
    TAG_FAMILY,
    TAG_FAMILY_SOURCE,
    TAG_GOLDEN_COUNT,
    TAG_GOLDEN_DIGEST,
    TAG_IMAGE,
    TAG_MODEL_ID,
    TAG_PACKAGE_PREFIX,
    TAG_PYTHON,
    TAG_SERIALIZATION,
    TAG_SHA256,
    TAG_SNAPSHOT,
    TAG_WINDOW,
    FamilySource,
    ModelVersionInfo,
    compat_tag,
    environment_tags,
    golden_digest,
    package_versions,
    predict_each,
    python_version,
    sha256_file,
)
from core.model_versions import ALIASES, ModelVersions, check_model_name
from core.registration import (
    GOLDEN_ARTIFACT,
    MODEL_ARTIFACT,
    PICKLE_FILE,
    VersionRecord,
    ensure_experiment,
    log_version,
)

if TYPE_CHECKING:
    from config import Settings


def experiment_artifact_location(tracking_uri: str, location: str) -> str | None:
    """The artifact root to create experiments at, from the settings' location.

    A URI (`s3://bucket/prefix`: clients write there directly; `mlflow-artifacts:/prefix`:
    through the tracking server's `--artifacts-destination`) is kept as it is. A plain
    path is resolved to an absolute path for a local tracking store (sqlite, file); with
    a tracking *server* a path on this machine means nothing to other pods, so None lets
    the server choose its own default root (proxied when it serves artifacts).
    """
    if urlsplit(location).scheme:
        return location
    if urlsplit(tracking_uri).scheme in ("http", "https"):
        return None
    return str(Path(location).resolve())


class ModelRegistry(ModelVersions):
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
        families: Mapping[str, FamilySource] | None = None,
    ) -> None:
        super().__init__(tracking_uri)
        self.cache_dir = Path(cache_dir)
        self.artifact_location = artifact_location
        self.experiment = experiment
        self.image_version = image_version
        self.code_version = code_version
        # kept as given: a lazy mapping (models.families_on_use) stays unread until needed
        self.families: Mapping[str, FamilySource] = {} if families is None else families
        self.artifacts = ModelArtifacts(self, self.cache_dir)

    @classmethod
    def from_settings(
        cls, settings: Settings, families: Mapping[str, FamilySource] | None = None
    ) -> ModelRegistry:
        """A registry on the settings' MLflow store, cache dir, image and code versions.

        `families` (e.g. `models.FAMILIES`) is needed to register versions with their
        family lineage and to judge them in `core.compat`; reading and loading need none.
        """
        return cls(
            settings.MLFLOW_TRACKING_URI,
            settings.MODEL_CACHE_DIR,
            experiment_artifact_location(
                settings.MLFLOW_TRACKING_URI, settings.MLFLOW_ARTIFACT_LOCATION
            ),
            experiment=settings.MLFLOW_EXPERIMENT,
            image_version=settings.IMAGE_VERSION,
            code_version=settings.CODE_VERSION,
            families=families,
        )

    def family_source(self, name: str) -> FamilySource | None:
        """The model family registered as `name`, if this registry was given it."""
        return self.families.get(name)

    def environment_tags(self, name: str) -> dict[str, str]:
        """Lineage tags of the running environment for a version of model `name`."""
        return environment_tags(self.image_version, self.code_version, self.family_source(name))

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
        inputs = [str(text) for text in golden_inputs]
        golden = predict_each(model, inputs)
        all_tags = {**self.environment_tags(name), **{k: str(v) for k, v in tags.items()}}
        all_tags[TAG_GOLDEN_DIGEST] = golden_digest(inputs, golden)
        all_tags[TAG_GOLDEN_COUNT] = str(len(inputs))
        record = VersionRecord(
            name=name,
            tags=all_tags,
            params=params,
            metrics=metrics,
            golden_inputs=inputs,
            golden_predictions=golden,
            artifacts=artifacts or {},
            description=description,
        )
        experiment_id = ensure_experiment(self.client, self.experiment, self.artifact_location)
        return log_version(self, experiment_id, model, record)

    # --- artifacts and loading ---------------------------------------------------------
    def golden_predictions(self, name: str, version: str) -> tuple[list[str], list[str]]:
        """The (inputs, predictions) recorded at registration of a version.

        Raises:
            NotFoundError: the version or its golden artifact does not exist.
        """
        return self.artifacts.golden_predictions(name, version)

    def artifact_path(self, name: str, version: str) -> Path:
        """The local pickle of a version, downloaded once (NOT verified: see `load`).

        Raises:
            NotFoundError: the version does not exist or has no model artifact.
        """
        return self.artifacts.artifact_path(name, version)

    def load(self, name: str, version: str) -> LoadedModel:
        """Load a version, verifying its sha256 before unpickling (cached per process).

        Raises:
            NotFoundError: the version does not exist.
            DigestMismatchError: the artifact differs from the digest recorded at
                registration (or none was recorded): it is not unpickled.
        """
        return self.artifacts.load(name, version)

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
        self.artifacts.forget(name, version)


__all__ = [
    "ALIASES",
    "ERROR_PREFIX",
    "GOLDEN_ARTIFACT",
    "KEY_PACKAGES",
    "MODEL_ARTIFACT",
    "PICKLE_FILE",
    "SERIALIZATION_FORMAT",
    "TAG_CODE",
    "TAG_COMPAT_PREFIX",
    "TAG_FAMILY",
    "TAG_FAMILY_SOURCE",
    "TAG_GOLDEN_COUNT",
    "TAG_GOLDEN_DIGEST",
    "TAG_IMAGE",
    "TAG_MODEL_ID",
    "TAG_PACKAGE_PREFIX",
    "TAG_PYTHON",
    "TAG_SERIALIZATION",
    "TAG_SHA256",
    "TAG_SNAPSHOT",
    "TAG_WINDOW",
    "DigestMismatchError",
    "FamilySource",
    "LoadedModel",
    "ModelRegistry",
    "ModelVersionInfo",
    "check_model_name",
    "compat_tag",
    "experiment_artifact_location",
    "golden_digest",
    "package_versions",
    "predict_each",
    "python_version",
    "sha256_file",
]
