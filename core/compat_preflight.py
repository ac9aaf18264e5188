"""Preflight of the next image: judge what serves (and could serve) under its environment.

Before an image is built from a new lock, `run_preflight` judges, under the environment
that lock describes (`core.compat_envs`), every version an environment could serve:

- each environment's champion (its current release in the ledger, the truth),
- each environment's candidate (`<env>-candidate`),
- the rollback targets within retention (the models of the env's last `keep` releases).

A champion blocks the image when it would be `broken`, or `drifted` on a larger share of
its golden predictions than the tolerance (Settings.COMPAT_DRIFT_TOLERANCE); a candidate
or a rollback target never blocks, it is reported. `blocking_reason` is that rule, pure.

Each verdict is recorded on its version under the lock's hash (`preflight.<hash>` = the
verdict, `.reason`, `.env` = the fingerprint of the environment that judged it), so a
retrain on the image built from that lock reuses it (`reuse_preflight`) instead of
loading the champion again: only when the fingerprint that judged it equals the running
one, and after the artifact's digest is checked again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from core.aliases import env_alias
from core.compat import (
    VERDICTS,
    CompatReport,
    Verdict,
    check_version,
    current_fingerprint,
    digest_mismatch,
)
from core.compat_envs import PythonEnvironment, running_lock_hash
from core.compat_fingerprint import EnvironmentFingerprint
from core.errors import NotFoundError
from core.ledger import releases_history

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from core.registry import ModelRegistry

PREFLIGHT_TAG_PREFIX = "preflight."
HASH_CHARS = 16


@dataclass(frozen=True)
class PreflightSubject:
    """One version to judge and the roles it has (`prd champion`, `stg rollback target`)."""

    model: str
    version: str
    roles: tuple[str, ...]

    @property
    def is_champion(self) -> bool:
        """True when some environment serves it now."""
        return any(role.endswith(" champion") for role in self.roles)


def preflight_subjects(
    engine: Engine,
    registry: ModelRegistry,
    *,
    envs: Sequence[str],
    models: Sequence[str],
    keep: int,
) -> list[PreflightSubject]:
    """Champions, candidates and rollback targets (last `keep` releases) of every env,
    one subject per (model, version) with every role it has, in the order found."""
    roles: dict[tuple[str, str], list[str]] = {}

    def add(model: str, version: str, role: str) -> None:
        found = roles.setdefault((model, version), [])
        if role not in found:
            found.append(role)

    for env in envs:
        history = releases_history(engine, env, limit=keep)
        for index, release in enumerate(history):
            for model, version in release.model_versions.items():
                if model in models:
                    add(model, version, f"{env} {'champion' if index == 0 else 'rollback target'}")
        for model in models:
            candidate = registry.version_by_alias(model, env_alias(env, "candidate"))
            if candidate is not None:
                add(model, candidate.version, f"{env} candidate")
    return [PreflightSubject(m, v, tuple(r)) for (m, v), r in roles.items()]


def blocking_reason(report: CompatReport, is_champion: bool, tolerance: float) -> str | None:
    """Why this verdict stops the image, or None; pure.

    Only a champion blocks: `broken`, or `drifted` on more than `tolerance` (a share) of
    its golden predictions.
    """
    if not is_champion:
        return None
    if report.verdict == "broken":
        return f"champion {report.name} v{report.version} would be broken"
    if report.verdict == "drifted" and report.drift_share > tolerance:
        return (
            f"champion {report.name} v{report.version} would drift on "
            f"{report.golden_mismatches}/{report.golden_checked} golden predictions "
            f"(tolerance {tolerance:.0%})"
        )
    return None


@dataclass(frozen=True)
class PreflightRow:
    """One judged subject."""

    subject: PreflightSubject
    report: CompatReport
    blocking: str | None


@dataclass(frozen=True)
class PreflightResult:
    """Every subject judged under one environment."""

    environment: str
    lock_hash: str
    tolerance: float
    rows: tuple[PreflightRow, ...]

    @property
    def blocked(self) -> list[str]:
        """Why the image would break a champion (empty: it may ship)."""
        return [row.blocking for row in self.rows if row.blocking]

    @property
    def passed(self) -> bool:
        """True when no champion would be broken or drift past the tolerance."""
        return not self.blocked

    def summary(self) -> str:
        """One line: verdict counts and the decision."""
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.report.verdict] = counts.get(row.report.verdict, 0) + 1
        shown = ", ".join(f"{n} {verdict}" for verdict, n in sorted(counts.items())) or "nothing"
        decision = "passes" if self.passed else f"FAILS: {'; '.join(self.blocked)}"
        return f"preflight under {self.environment}: {shown}; {decision}"


def preflight_tag(lock_hash: str) -> str:
    """The version tag holding the preflight verdict under the lock with `lock_hash`."""
    return f"{PREFLIGHT_TAG_PREFIX}{lock_hash[:HASH_CHARS]}"


def record_preflight(registry: ModelRegistry, report: CompatReport, lock_hash: str) -> None:
    """Store a preflight verdict on its version: `preflight.<hash>`, `.reason`, `.env`."""
    key = preflight_tag(lock_hash)
    registry.set_tag(report.name, report.version, key, report.verdict)
    registry.set_tag(report.name, report.version, f"{key}.reason", report.reason[:1000])
    if report.judged_by is not None:
        registry.set_tag(report.name, report.version, f"{key}.env", report.judged_by.to_json())


def run_preflight(
    registry: ModelRegistry,
    environment: PythonEnvironment,
    *,
    subjects: Iterable[PreflightSubject],
    tolerance: float,
    timeout_s: float = 120.0,
    record: bool = True,
) -> PreflightResult:
    """Judge each subject under `environment`; record each verdict under the lock's hash.

    Raises:
        NotFoundError: a subject's version does not exist.
        EnvironmentBuildError: the environment cannot be probed.
    """
    rows = []
    lock_hash = environment.spec.content_hash
    for subject in subjects:
        report = check_version(
            registry, subject.model, subject.version, environment=environment, timeout_s=timeout_s
        )
        if record:
            record_preflight(registry, report, lock_hash)
        rows.append(
            PreflightRow(subject, report, blocking_reason(report, subject.is_champion, tolerance))
        )
    return PreflightResult(environment.label, lock_hash, tolerance, tuple(rows))


def reuse_preflight(
    registry: ModelRegistry,
    name: str,
    version: str,
    image_version: str,
    lock_hash: str | None = None,
) -> CompatReport | None:
    """The preflight verdict recorded for the running lock, as this image's verdict; None
    when there is none, or the environment that judged it is not this one (python,
    packages or family source differ). A digest mismatch is `broken` whatever was recorded.

    `lock_hash` defaults to the hash of this checkout's uv.lock (the image's lock).

    Raises:
        NotFoundError: the version does not exist.
    """
    lock_hash = lock_hash or running_lock_hash()
    if lock_hash is None:
        return None
    info = registry.get_version(name, version)
    key = preflight_tag(lock_hash)
    verdict, recorded_env = info.tags.get(key), info.tags.get(f"{key}.env")
    if verdict is None or recorded_env is None:
        return None
    try:
        judged = EnvironmentFingerprint.from_json(recorded_env)
    except ValueError:
        return None
    running = current_fingerprint("", registry.family_source(name))
    if judged.differences(running):
        return None
    try:
        mismatch = digest_mismatch(registry.artifact_path(name, version), info.artifact_sha256)
    except NotFoundError as exc:
        mismatch = str(exc)
    checked = int(info.tags.get("golden_count", "0") or 0)
    reason = f"preflight under lock {lock_hash[:12]}: {info.tags.get(f'{key}.reason', '')}"
    final: Verdict = "broken" if mismatch else _as_verdict(verdict)
    return CompatReport(
        name,
        version,
        image_version,
        final,
        mismatch or reason,
        golden_checked=checked,
        environment=f"preflight {lock_hash[:12]}",
        judged_by=judged,
    )


def _as_verdict(value: str) -> Verdict:
    for verdict in VERDICTS:
        if value == verdict:
            return verdict
    return "broken"


def preflight_markdown(result: PreflightResult) -> str:
    """The preflight as a markdown report: the decision, then one row per version."""
    lines = [
        f"# Preflight under {result.environment}",
        "",
        f"**{'passes' if result.passed else 'FAILS'}**: {result.summary()}",
        "",
        "| model | version | roles | verdict | reason |",
        "|---|---|---|---|---|",
    ]
    for row in result.rows:
        report = row.report
        verdict = f"**{report.verdict}** (blocks)" if row.blocking else report.verdict
        reason = report.reason.replace("|", "\\|")
        roles = ", ".join(row.subject.roles)
        lines.append(f"| {report.name} | {report.version} | {roles} | {verdict} | {reason} |")
    return "\n".join(lines) + "\n"
