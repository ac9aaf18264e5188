"""Registered versions' artifacts on local disk, and loading that verifies before unpickling.

A version's model artifact is downloaded once into `cache_dir/<name>/<version>/model/`
(through a staging folder, so a half-finished download is never taken for a copy), and
its golden predictions into `cache_dir/<name>/<version>/golden.json`. `load` checks the
sha256 of the pickle against the digest recorded at registration BEFORE unpickling, and
keeps loaded models per (name, version) in process. Thread-safe.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.errors import NotFoundError, SmlError
from core.lineage import TAG_MODEL_ID, ModelVersionInfo
from core.registration import GOLDEN_ARTIFACT, MODEL_ARTIFACT, PICKLE_FILE

if TYPE_CHECKING:
    from core.model_versions import ModelVersions


class DigestMismatchError(SmlError):
    """A model artifact's sha256 differs from the digest recorded at registration."""


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


class ModelArtifacts:
    """The local copies of registered versions' artifacts, and the models loaded from them."""

    def __init__(self, versions: ModelVersions, cache_dir: Path) -> None:
        self.versions = versions
        self.cache_dir = Path(cache_dir)
        self._lock = threading.Lock()
        self._key_locks: dict[tuple[str, str], threading.Lock] = {}
        self._loaded: dict[tuple[str, str], LoadedModel] = {}

    def _model_dir(self, name: str) -> Path:
        folder = self.cache_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        return folder

    def golden_predictions(self, name: str, version: str) -> tuple[list[str], list[str]]:
        """The (inputs, predictions) recorded at registration of a version.

        Raises:
            NotFoundError: the version or its golden artifact does not exist.
        """
        import mlflow

        info = self.versions.get_version(name, version)
        target = self.cache_dir / name / str(info.version) / "golden.json"
        if not target.exists():
            with tempfile.TemporaryDirectory(dir=self._model_dir(name)) as tmp:
                try:
                    path = mlflow.artifacts.download_artifacts(
                        run_id=info.run_id,
                        artifact_path=GOLDEN_ARTIFACT,
                        dst_path=tmp,
                        tracking_uri=self.versions.tracking_uri,
                    )
                except Exception as exc:
                    raise NotFoundError(
                        f"{name} v{version} has no golden predictions artifact ({exc})"
                    ) from None
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
        data = json.loads(target.read_text())
        return list(data["inputs"]), list(data["predictions"])

    def _model_location(self, info: ModelVersionInfo) -> str:
        """The artifact URI of a version's logged model.

        Raises:
            NotFoundError: the version points at a logged model the store does not have.
        """
        location = info.source
        if location and not location.startswith("models:/"):
            return location
        model_id = info.tags.get(TAG_MODEL_ID) or location.removeprefix("models:/")
        try:
            return str(self.versions.client.get_logged_model(model_id).artifact_location)
        except Exception as exc:
            raise NotFoundError(
                f"{info.name} v{info.version}: model artifact not found ({exc})"
            ) from None

    def artifact_path(self, name: str, version: str) -> Path:
        """The local pickle of a version, downloaded once into `cache_dir/<name>/<version>/model/`.

        The file is NOT verified here; `load` and `core.compat` check its digest first.

        Raises:
            NotFoundError: the version does not exist or has no model artifact.
        """
        import mlflow

        info = self.versions.get_version(name, version)
        final = self.cache_dir / name / info.version / MODEL_ARTIFACT
        pickle_path = final / PICKLE_FILE
        if pickle_path.exists():
            return pickle_path
        location = self._model_location(info)
        final.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".download-", dir=final.parent))
        try:
            downloaded = Path(
                mlflow.artifacts.download_artifacts(
                    artifact_uri=location,
                    dst_path=str(staging),
                    # an `mlflow-artifacts:` URI resolves through this tracking server
                    tracking_uri=self.versions.tracking_uri,
                )
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

    def _verified_bytes(self, info: ModelVersionInfo) -> bytes:
        """The pickle of `info`, its sha256 checked against the registered digest.

        Raises:
            DigestMismatchError: no digest was recorded, or the store's copy differs.
        """
        if not info.artifact_sha256:
            raise DigestMismatchError(
                f"refusing to load {info.name} v{info.version}: no artifact digest was recorded"
            )
        path = self.artifact_path(info.name, info.version)
        data = path.read_bytes()
        actual = hashlib.sha256(data).hexdigest()
        if actual != info.artifact_sha256:
            # A damaged local copy heals from the store; a damaged store copy is refused.
            shutil.rmtree(path.parent, ignore_errors=True)
            path = self.artifact_path(info.name, info.version)
            data = path.read_bytes()
            actual = hashlib.sha256(data).hexdigest()
        if actual != info.artifact_sha256:
            raise DigestMismatchError(
                f"refusing to load {info.name} v{info.version}: artifact sha256 {actual[:12]}... "
                f"does not match the registered {info.artifact_sha256[:12]}... "
                f"({path}); the artifact was altered or corrupted"
            )
        return data

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
            info = self.versions.get_version(name, version)
            data = self._verified_bytes(info)
            model = pickle.loads(data)  # noqa: S301 - digest verified by _verified_bytes
            loaded = LoadedModel(name, info.version, info.artifact_sha256, model)
            self._loaded[key] = loaded
            return loaded

    def forget(self, name: str, version: str) -> None:
        """Drop a loaded version from the in-process cache (the downloaded file stays)."""
        self._loaded.pop((name, str(version)), None)
