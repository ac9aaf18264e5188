"""Will a registered model version run correctly under the running environment?

The environment fingerprint of a process is its image version, Python version, key
package versions and the hash of the model family's source (the family as the registry
was given it, `ModelRegistry(families=...)`: core never imports `models`). A version
records the fingerprint it was trained under (as tags, at registration). Under another
environment a version is judged:

- `identical`: same fingerprint and the artifact matches its registered sha256;
- `compatible`: it loads and reproduces every golden prediction recorded at registration;
- `drifted`: it loads, but some golden predictions differ;
- `broken`: it does not load (missing class or module, incompatible pickle, digest
  mismatch, crash, timeout).

The artifact's sha256 is checked against the digest recorded at registration before any
verdict, even for a version trained under the running environment: tags say what a
version was built with, only the digest says the file is still what was built.

Deserialization runs in a subprocess (`core.compat_probe`) with a timeout, so a bad
pickle can neither crash nor hang the caller, and classes resolve against the code
installed now rather than the modules the caller already imported.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.compat_probe import RESULT_PREFIX, sha256_mismatch
from core.errors import NotFoundError
from core.lineage import (
    ERROR_PREFIX,
    KEY_PACKAGES,
    TAG_FAMILY_SOURCE,
    TAG_IMAGE,
    TAG_PACKAGE_PREFIX,
    TAG_PYTHON,
    FamilySource,
    compat_tag,
    golden_digest,
    package_versions,
    python_version,
)

if TYPE_CHECKING:
    from core.registry import ModelRegistry

Verdict = Literal["identical", "compatible", "drifted", "broken"]
VERDICTS: tuple[Verdict, ...] = ("identical", "compatible", "drifted", "broken")
DEFAULT_TIMEOUT_S = 120.0
PROJECT_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class EnvironmentFingerprint:
    """What a pickled model depends on: image, python, key packages, family source."""

    image_version: str
    python_version: str
    packages: dict[str, str] = field(default_factory=dict)
    family_source_hash: str = ""

    @classmethod
    def from_tags(cls, tags: dict[str, str]) -> EnvironmentFingerprint:
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

    def differences(self, other: EnvironmentFingerprint) -> list[str]:
        """Human-readable differences from `self` (recorded) to `other` (running)."""
        out = []
        if self.image_version != other.image_version:
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


def current_fingerprint(
    image_version: str, family: FamilySource | None = None
) -> EnvironmentFingerprint:
    """The fingerprint of this process for a version of `family`.

    The family source hash is empty without a family (a model that is no known family).

    Raises:
        NotFoundError: a module of the family's source cannot be found.
    """
    return EnvironmentFingerprint(
        image_version=image_version,
        python_version=python_version(),
        packages=package_versions(KEY_PACKAGES),
        family_source_hash=family.source_hash() if family else "",
    )


@dataclass(frozen=True)
class CompatReport:
    """The verdict for one version under one environment, with its reason."""

    name: str
    version: str
    image_version: str
    verdict: Verdict
    reason: str
    differences: tuple[str, ...] = ()
    golden_checked: int = 0
    golden_mismatches: int = 0

    @property
    def safe_to_serve(self) -> bool:
        """True for identical and compatible versions."""
        return self.verdict in ("identical", "compatible")


@dataclass(frozen=True)
class ProbeOutcome:
    """What the subprocess reported: predictions, or the stage and error that stopped it."""

    predictions: tuple[str, ...] = ()
    error: str | None = None


def probe_artifact(
    pickle_path: Path, sha256: str, inputs: Sequence[str], timeout_s: float = DEFAULT_TIMEOUT_S
) -> ProbeOutcome:
    """Unpickle and predict `inputs` in a fresh interpreter; never raises for a bad pickle.

    The child gets this process's environment with the project root prepended to
    PYTHONPATH; anything else on PYTHONPATH stays (that is where an image's code lives).
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        part for part in (str(PROJECT_ROOT), env.get("PYTHONPATH", "")) if part
    )
    request = json.dumps(
        {"pickle_path": str(pickle_path), "sha256": sha256, "inputs": list(inputs)}
    )
    try:
        completed = subprocess.run(
            [sys.executable, "-m", "core.compat_probe"],
            input=request,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env=env,
            cwd=str(PROJECT_ROOT),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return ProbeOutcome(error=f"loading timed out after {timeout_s:g} s (process killed)")
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if not lines:
        tail = (completed.stderr.strip().splitlines() or ["no output"])[-1][:300]
        return ProbeOutcome(error=f"loader process exited with code {completed.returncode}: {tail}")
    result = json.loads(lines[-1].removeprefix(RESULT_PREFIX))
    if not result["ok"]:
        return ProbeOutcome(error=f"{result['stage']} failed: {result['error']}")
    return ProbeOutcome(predictions=tuple(result["predictions"]))


def digest_mismatch(pickle_path: Path, expected_sha256: str) -> str | None:
    """Why the file at `pickle_path` is not the registered artifact, or None when it is.

    The wording matches the subprocess's own digest check (`core.compat_probe`), so a
    verdict names a tampered artifact the same way whichever side caught it.
    """
    if not expected_sha256:
        return "digest failed: no artifact sha256 was recorded at registration"
    try:
        found = hashlib.sha256(pickle_path.read_bytes()).hexdigest()
    except OSError as exc:
        return f"read failed: {type(exc).__name__}: {exc}"
    if found != expected_sha256:
        return f"digest failed: {sha256_mismatch(expected_sha256, found)}"
    return None


def check_version(
    registry: ModelRegistry,
    name: str,
    version: str,
    *,
    image_version: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
) -> CompatReport:
    """Judge a registered version under the running environment (image: the registry's).

    The running family source is that of the family the registry knows as `name`.

    Raises:
        NotFoundError: the version does not exist.
    """
    info = registry.get_version(name, version)
    image = image_version or registry.image_version
    recorded = EnvironmentFingerprint.from_tags(info.tags)
    running = current_fingerprint(image, registry.family_source(name))
    differences = tuple(recorded.differences(running))

    def report(verdict: Verdict, reason: str, checked: int = 0, bad: int = 0) -> CompatReport:
        return CompatReport(name, info.version, image, verdict, reason, differences, checked, bad)

    try:
        pickle_path = registry.artifact_path(name, info.version)
    except NotFoundError as exc:
        return report("broken", str(exc))
    mismatch = digest_mismatch(pickle_path, info.artifact_sha256)
    if mismatch is not None:
        return report("broken", mismatch)
    if not differences:
        return report("identical", "same image, python, packages and model family source")
    try:
        inputs, expected = registry.golden_predictions(name, info.version)
    except NotFoundError as exc:
        return report("broken", str(exc))
    if info.golden_digest and golden_digest(inputs, expected) != info.golden_digest:
        return report("broken", "the golden predictions artifact does not match its digest")
    outcome = probe_artifact(pickle_path, info.artifact_sha256, inputs, timeout_s)
    if outcome.error is not None:
        return report("broken", outcome.error)
    verdict, reason, bad = golden_verdict(inputs, expected, outcome.predictions, differences)
    return report(verdict, reason, len(inputs), bad)


def golden_verdict(
    inputs: Sequence[str],
    expected: Sequence[str],
    found: Sequence[str],
    differences: Sequence[str],
) -> tuple[Verdict, str, int]:
    """(`drifted` or `compatible`, the reason, how many differ) from golden predictions
    recorded at registration (`expected`) and reproduced now (`found`)."""
    mismatched = [
        (text, before, after)
        for text, before, after in zip(inputs, expected, found, strict=True)
        if before != after
    ]
    changed = "; ".join(differences)
    if mismatched:
        text, before, after = mismatched[0]
        errors = sum(1 for _, _, after in mismatched if after.startswith(ERROR_PREFIX))
        more = f", {errors} now raise" if errors else ""
        return (
            "drifted",
            f"{len(mismatched)}/{len(inputs)} golden predictions differ{more} "
            f"(e.g. {text!r}: {before} -> {after}) after {changed}",
            len(mismatched),
        )
    return (
        "compatible",
        f"loads and reproduces all {len(inputs)} golden predictions after {changed}",
        0,
    )


def record_verdict(registry: ModelRegistry, report: CompatReport) -> None:
    """Store a verdict on its version: `compat.<image>` = verdict, `.reason` = reason."""
    key = compat_tag(report.image_version)
    registry.set_tag(report.name, report.version, key, report.verdict)
    registry.set_tag(report.name, report.version, f"{key}.reason", report.reason[:1000])


__all__ = [
    "VERDICTS",
    "CompatReport",
    "EnvironmentFingerprint",
    "ProbeOutcome",
    "Verdict",
    "check_version",
    "current_fingerprint",
    "digest_mismatch",
    "probe_artifact",
    "record_verdict",
]
