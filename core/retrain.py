"""Retrain on image change, per model: a pure plan, then the steps that carry it out.

`plan_retrain` looks at the versions registered for the running image and the champion
and answers one of: up to date (nothing to do), resume a version an interrupted run
registered but never gave a role, or train a new one; the version then becomes the
`candidate`, or the first `champion` when there is none yet. It is pure, so every branch
is unit-tested without Prefect or MLflow. `judge_champion` and `give_role` do the I/O
(the registry, the ledger); flows/retrain_on_image_change.py sequences them as tasks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from core.compat import CompatReport, check_version, record_verdict
from core.db import state_database
from core.errors import ConflictError
from core.ledger import ReleaseRecord, record_release

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config import Settings
    from core.registry import ModelRegistry, ModelVersionInfo

RetrainStep = Literal["up_to_date", "resume", "train"]
Role = Literal["candidate", "champion"]
RetrainAction = Literal["up_to_date", "candidate", "first_champion"]

# The tag the ledger puts on a candidate it rolled back (core.ledger.rollback).
ROLLED_BACK_TAG = "rolled_back_reason"


class RegisteredVersion(Protocol):
    """What the plan reads of a registered version (core.registry.ModelVersionInfo)."""

    @property
    def version(self) -> str: ...

    @property
    def aliases(self) -> Sequence[str]: ...

    @property
    def tags(self) -> Mapping[str, str]: ...


@dataclass(frozen=True, slots=True)
class RetrainPlan:
    """What to do for one model on one image.

    step: `up_to_date` (`version` is the newest one for the image), `resume` (`version`
    was registered by an interrupted run and never given a role) or `train` (`version` is
    None until trained). role: the alias the version gets, `candidate` when a champion
    exists (`champion_version`), else `champion`.
    """

    model: str
    image_version: str
    step: RetrainStep
    role: Role
    version: str | None
    champion_version: str | None

    @property
    def up_to_date(self) -> bool:
        """True when the image already has its version: nothing to do."""
        return self.step == "up_to_date"

    @property
    def resume_version(self) -> str | None:
        """The version to finish instead of training, when an earlier run left one."""
        return self.version if self.step == "resume" else None

    def describe(self) -> str:
        """One line for the run's log."""
        if self.step == "up_to_date":
            return f"{self.model} already has v{self.version} for image {self.image_version}"
        if self.step == "resume":
            return (
                f"{self.model} v{self.version} was registered for image {self.image_version} "
                "but never given a role: resuming"
            )
        return f"{self.model} has no version for image {self.image_version}: training"


@dataclass(frozen=True)
class RetrainOutcome:
    """What the flow did for one model."""

    model: str
    action: RetrainAction
    version: str
    champion_version: str | None = None
    champion_verdict: str | None = None
    reason: str = ""

    @classmethod
    def nothing_to_do(cls, plan: RetrainPlan) -> RetrainOutcome:
        """The outcome of an up-to-date plan.

        Raises:
            ValueError: the plan has work to do.
        """
        if not plan.up_to_date or plan.version is None:
            raise ValueError(f"{plan.model}: the plan is to {plan.step}, not up to date")
        return cls(plan.model, "up_to_date", plan.version, reason="already trained")


def check_image(running: str, announced: str | None) -> str:
    """The image to retrain for: the running one, which an event may have announced.

    Raises:
        ConflictError: `announced` differs from the running image (a model must be
            trained inside the image that will serve it).
    """
    if announced is not None and announced != running:
        raise ConflictError(
            f"asked to retrain for image {announced!r} but this run is on image {running!r}: "
            "run the flow in the new image"
        )
    return running


def never_given_a_role(version: RegisteredVersion, champion: RegisteredVersion | None) -> bool:
    """True for a version an interrupted run left behind: no alias, never rolled back, and
    newer than the champion (so it never served)."""
    if version.aliases or ROLLED_BACK_TAG in version.tags:
        return False
    return champion is None or int(version.version) > int(champion.version)


def plan_retrain(
    model: str,
    image_version: str,
    existing: Sequence[RegisteredVersion],
    champion: RegisteredVersion | None,
) -> RetrainPlan:
    """Decide what one model needs on `image_version`; pure.

    Args:
        existing: the versions of `model` trained on `image_version`, oldest first.
        champion: the version the `champion` alias points at, if any.
    """
    role: Role = "champion" if champion is None else "candidate"
    champion_version = champion.version if champion is not None else None
    if not existing:
        return RetrainPlan(model, image_version, "train", role, None, champion_version)
    latest = existing[-1]
    step: RetrainStep = "resume" if never_given_a_role(latest, champion) else "up_to_date"
    return RetrainPlan(model, image_version, step, role, latest.version, champion_version)


def judge_champion(registry: ModelRegistry, plan: RetrainPlan) -> CompatReport | None:
    """Judge the plan's champion under its image and record the verdict as version tags
    (`compat.<image>`); None when there is no champion.

    Raises:
        NotFoundError: the champion version does not exist.
    """
    if plan.champion_version is None:
        return None
    report = check_version(
        registry, plan.model, plan.champion_version, image_version=plan.image_version
    )
    record_verdict(registry, report)
    return report


def give_role(
    registry: ModelRegistry,
    plan: RetrainPlan,
    version: str,
    verdict: str | None,
    *,
    settings: Settings,
    actor: str,
) -> RetrainOutcome:
    """Point the plan's alias at `version`; a first champion also gets its first release
    in the ledger (opened on settings.database_url). `verdict` is the champion's under
    this image (`judge_champion`), None without a champion.

    Raises:
        NotFoundError: the version does not exist.
        SmlError: the state database has no ledger tables (first champion only).
    """
    registry.set_alias(plan.model, plan.role, version)
    if plan.role == "candidate":
        return RetrainOutcome(
            plan.model, "candidate", version, plan.champion_version, verdict,
            f"champion v{plan.champion_version} is {verdict} under {plan.image_version}",
        )  # fmt: skip
    info = registry.get_version(plan.model, version)
    with state_database(settings.database_url, wait_seconds=10) as engine:
        release = record_first_release(engine, settings, info, actor)
    return RetrainOutcome(
        plan.model,
        "first_champion",
        version,
        reason=f"no champion yet: first release {release.tag}",
    )


def record_first_release(
    engine: Engine, settings: Settings, info: ModelVersionInfo, actor: str
) -> ReleaseRecord:
    """The first release of this environment's ledger for a model's first champion."""
    return record_release(
        engine,
        env=settings.ENVIRONMENT,
        code_version=settings.CODE_VERSION,
        image_version=info.image_version,
        model_versions={info.name: info.version},
        artifact_digests={info.name: info.artifact_sha256},
        reason=f"first champion: {info.name} v{info.version} trained on image {info.image_version}",
        actor=actor,
    )
