"""What a registered model version records about where it came from, as plain data.

Tag keys, the environment's lineage (image, code, python and key package versions, the
model family's source hash), digests (artifact sha256, golden predictions), and
`ModelVersionInfo`, a registered version as plain data. No MLflow import here: the
registry (core.registry), the compat check (core.compat) and its probe subprocess
(core.compat_probe) all read these.

Model families are not imported (core never imports `models`): whoever needs a family's
lineage receives it as a `FamilySource`, which `models.ModelFamily` satisfies.
"""

from __future__ import annotations

import hashlib
import json
import re
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any, Protocol

from core.errors import NotFoundError

#: Packages whose versions are pinned in the logged requirements and recorded as tags.
KEY_PACKAGES: tuple[str, ...] = ("scikit-learn", "numpy", "scipy", "pandas", "cloudpickle")
SERIALIZATION_FORMAT = "cloudpickle"
#: Prefix of a golden "prediction" that is the name of the exception the input raised.
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


class FamilySource(Protocol):
    """What lineage needs of a model family: its name and the hash of its source code.

    `models.ModelFamily` is one; callers pass `models.FAMILIES` (core never imports it).
    """

    @property
    def name(self) -> str:
        """The registered model name of the family."""
        ...

    @property
    def source_modules(self) -> tuple[str, ...]:
        """The modules of ours a pickle of this family depends on (`source_hash` reads)."""
        ...

    def source_hash(self) -> str:
        """sha256 over the source files a pickle of this family depends on."""
        ...


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

    Used for golden predictions, at registration and in the compat probe, so a model
    that fails on some inputs still has comparable golden predictions.
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


def module_source_hash(modules: Sequence[str], search_path: Sequence[str]) -> str:
    """sha256 over the source files of `modules`, found on `search_path` without importing.

    The same digest as `models.ModelFamily.source_hash` (sorted module names, each as
    `name NUL bytes NUL`), computed by path so a probe can hash the source an environment
    would import even when importing it would fail there.

    Raises:
        NotFoundError: a module has no source file on `search_path`.
    """
    digest = hashlib.sha256()
    for module in sorted(modules):
        relative = Path(*module.split("."))
        candidates = [
            Path(folder or ".") / suffix
            for folder in search_path
            for suffix in (relative.with_suffix(".py"), relative / "__init__.py")
        ]
        found = next((path for path in candidates if path.is_file()), None)
        if found is None:
            raise NotFoundError(f"module {module} has no source file on the search path")
        digest.update(module.encode() + b"\0" + found.read_bytes() + b"\0")
    return digest.hexdigest()


def python_version() -> str:
    """`major.minor.micro` of the running interpreter."""
    return ".".join(str(part) for part in sys.version_info[:3])


def environment_tags(
    image_version: str, code_version: str, family: FamilySource | None
) -> dict[str, str]:
    """Lineage tags of the running environment for a version of `family` (None: no family).

    Raises:
        NotFoundError: a module of the family's source cannot be found.
    """
    tags = {
        TAG_IMAGE: image_version,
        TAG_CODE: code_version,
        TAG_PYTHON: python_version(),
        TAG_SERIALIZATION: SERIALIZATION_FORMAT,
    }
    tags.update({f"{TAG_PACKAGE_PREFIX}{k}": v for k, v in package_versions().items()})
    if family is not None:
        tags[TAG_FAMILY] = family.name
        tags[TAG_FAMILY_SOURCE] = family.source_hash()
    return tags


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

    @classmethod
    def from_mlflow(cls, mv: Any, aliases: Sequence[str] | None = None) -> ModelVersionInfo:
        """Plain data of an MLflow `ModelVersion` (`aliases` overrides the ones it carries)."""
        tags = {str(k): str(v) for k, v in (mv.tags or {}).items()}
        created = datetime.fromtimestamp((mv.creation_timestamp or 0) / 1000, tz=UTC)
        return cls(
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
