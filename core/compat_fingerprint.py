"""What a pickled model depends on, as one value: `EnvironmentFingerprint`.

Image, python, key package versions and the model family's source hash. A version
records the fingerprint it was trained under (as tags, at registration); a verdict
records the fingerprint of the environment that judged it (`to_json`, a tag next to the
verdict); `differences` names what changed between two, in words an operator reads.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field

from core.lineage import TAG_FAMILY_SOURCE, TAG_IMAGE, TAG_PACKAGE_PREFIX, TAG_PYTHON


@dataclass(frozen=True)
class EnvironmentFingerprint:
    """What a pickled model depends on: image, python, key packages, family source."""

    image_version: str
    python_version: str
    packages: dict[str, str] = field(default_factory=dict)
    family_source_hash: str = ""

    @classmethod
    def from_tags(cls, tags: Mapping[str, str]) -> EnvironmentFingerprint:
        """The fingerprint a version recorded at registration."""
        return cls(
            image_version=tags.get(TAG_IMAGE, ""),
            python_version=tags.get(TAG_PYTHON, ""),
            packages={
                key.removeprefix(TAG_PACKAGE_PREFIX): value
                for key, value in tags.items()
                if key.startswith(TAG_PACKAGE_PREFIX)
            },
            family_source_hash=tags.get(TAG_FAMILY_SOURCE, ""),
        )

    def to_json(self) -> str:
        """Compact JSON (stored as a tag next to a verdict: who judged it)."""
        return json.dumps(
            {
                "image": self.image_version,
                "python": self.python_version,
                "packages": self.packages,
                "family_source_hash": self.family_source_hash,
            },
            sort_keys=True,
            separators=(",", ":"),
        )

    @classmethod
    def from_json(cls, text: str) -> EnvironmentFingerprint:
        """The fingerprint `to_json` wrote.

        Raises:
            ValueError: not such a JSON object.
        """
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("a fingerprint is a JSON object")
        return cls(
            str(data.get("image", "")),
            str(data.get("python", "")),
            {str(k): str(v) for k, v in dict(data.get("packages") or {}).items()},
            str(data.get("family_source_hash", "")),
        )

    def differences(self, other: EnvironmentFingerprint) -> list[str]:
        """Human-readable differences from `self` (recorded) to `other` (judging).

        An `other` with no image version (an environment no image was built from yet,
        a preflight) is not compared on the image.
        """
        out = []
        if other.image_version and self.image_version != other.image_version:
            out.append(f"image {self.image_version or '?'} -> {other.image_version}")
        if self.python_version != other.python_version:
            out.append(f"python {self.python_version or '?'} -> {other.python_version}")
        for package in sorted(set(self.packages) | set(other.packages)):
            before, after = self.packages.get(package), other.packages.get(package)
            if before != after:
                out.append(f"{package} {before or 'absent'} -> {after or 'absent'}")
        if self.family_source_hash != other.family_source_hash:
            out.append(
                f"model family source {self.family_source_hash[:8] or '?'} -> "
                f"{other.family_source_hash[:8] or '?'}"
            )
        return out
