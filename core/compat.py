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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from core.compat_envs import PythonEnvironment, probe_fingerprint, run_probe
from core.compat_fingerprint import EnvironmentFingerprint
from core.compat_probe import sha256_mismatch
from core.errors import NotFoundError
from core.lineage import (
    ERROR_PREFIX,
    KEY_PACKAGES,
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
    environment: str = "running"
    """Which environment judged: `running` (this interpreter) or an `EnvironmentSpec` label."""
    judged_by: EnvironmentFingerprint | None = None
    """The fingerprint of the environment that judged (measured inside it)."""

    @property
    def drift_share(self) -> float:
        """The share of golden predictions that differ (0 when none were checked)."""
        return self.golden_mismatches / self.golden_checked if self.golden_checked else 0.0

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
    pickle_path: Path,
    sha256: str,
    inputs: Sequence[str],
    timeout_s: float = DEFAULT_TIMEOUT_S,
    environment: PythonEnvironment | None = None,
) -> ProbeOutcome:
    """Unpickle and predict `inputs` in a fresh interpreter of `environment` (None: this
    one); never raises for a bad pickle (`core.compat_envs.run_probe`)."""
    request = {"pickle_path": str(pickle_path), "sha256": sha256, "inputs": list(inputs)}
    run = run_probe(environment, request, timeout_s)
    if run.result is None:
        return ProbeOutcome(error=run.error)
    if not run.result["ok"]:
        return ProbeOutcome(error=f"{run.result['stage']} failed: {run.result['error']}")
    return ProbeOutcome(predictions=tuple(run.result["predictions"]))


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


def judging_fingerprint(
    registry: ModelRegistry, name: str, image: str, environment: PythonEnvironment | None
) -> EnvironmentFingerprint:
    """The fingerprint of whoever judges `name`: this process (under `image`), or
    `environment` measured inside it (no image: it is judged before any is built).

    Raises:
        NotFoundError: a module of the family's source cannot be found here.
        EnvironmentBuildError: `environment` cannot be probed.
    """
    family = registry.family_source(name)
    if environment is None:
        return current_fingerprint(image, family)
    modules = family.source_modules if family is not None else ()
    return probe_fingerprint(environment, KEY_PACKAGES, modules)


def check_version(
    registry: ModelRegistry,
    name: str,
    version: str,
    *,
    image_version: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    environment: PythonEnvironment | None = None,
) -> CompatReport:
    """Judge a registered version under the running environment (image: the registry's),
    or under `environment` (its python, packages and code; no image is compared).

    The judging family source is that of the family the registry knows as `name`.

    Raises:
        NotFoundError: the version does not exist.
        EnvironmentBuildError: `environment` cannot be probed.
    """
    info = registry.get_version(name, version)
    image = image_version or (registry.image_version if environment is None else "")
    recorded = EnvironmentFingerprint.from_tags(info.tags)
    judge = judging_fingerprint(registry, name, image, environment)
    differences = tuple(recorded.differences(judge))
    where = environment.label if environment is not None else "running"

    def report(verdict: Verdict, reason: str, checked: int = 0, bad: int = 0) -> CompatReport:
        return CompatReport(
            name, info.version, image, verdict, reason, differences, checked, bad, where, judge
        )

    try:
        pickle_path = registry.artifact_path(name, info.version)
    except NotFoundError as exc:
        return report("broken", str(exc))
    mismatch = digest_mismatch(pickle_path, info.artifact_sha256)
    if mismatch is not None:
        return report("broken", mismatch)
    if not differences:
        same = "python, packages and model family source"
        return report("identical", f"same {'image, ' if image else ''}{same}")
    try:
        inputs, expected = registry.golden_predictions(name, info.version)
    except NotFoundError as exc:
        return report("broken", str(exc))
    if info.golden_digest and golden_digest(inputs, expected) != info.golden_digest:
        return report("broken", "the golden predictions artifact does not match its digest")
    outcome = probe_artifact(pickle_path, info.artifact_sha256, inputs, timeout_s, environment)
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
    """Store a verdict on its version: `compat.<image>` = verdict, `.reason` = reason,
    `.env` = the fingerprint of the environment that judged it.

    Raises:
        ValueError: the report names no image (a preflight's: `core.compat_preflight`
            records those under the lock's hash).
    """
    if not report.image_version:
        raise ValueError("a verdict judged under no image is recorded by the preflight")
    key = compat_tag(report.image_version)
    registry.set_tag(report.name, report.version, key, report.verdict)
    registry.set_tag(report.name, report.version, f"{key}.reason", report.reason[:1000])
    if report.judged_by is not None:
        registry.set_tag(report.name, report.version, f"{key}.env", report.judged_by.to_json())


__all__ = [
    "VERDICTS",
    "CompatReport",
    "EnvironmentFingerprint",
    "ProbeOutcome",
    "Verdict",
    "check_version",
    "current_fingerprint",
    "digest_mismatch",
    "judging_fingerprint",
    "probe_artifact",
    "record_verdict",
]
