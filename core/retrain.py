"""Retrain on image change, per model and environment: a pure plan, then the steps.

Model versions are shared by every environment (one retrain per image); each environment
has its own releases and aliases (`core.aliases.env_alias`). `plan_retrain` takes the
environment's current release (the ledger: the truth of "has a champion here"), the
versions registered for the running image and the versions rolled back in this
environment, and answers one of:

- up to date: the image has its version and this environment gave it its role;
- resume: a version for the image exists (left by an interrupted run, or trained by
  another environment's run) and gets its role here without training;
- train: no usable version for the image.

The role is this environment's first `champion` (a first release) when the ledger has no
release of the model here, else its `candidate`. It is pure, so every branch is
unit-tested without Prefect or MLflow. The order of a first champion is ledger first:
register -> record the first release (the truth) -> `<env>-champion` (a mirror), so a
crash at any point is finished by the next run (`core.repair` sets a missing alias from
the ledger). A candidate is register -> `<env>-candidate` (no ledger row until a rollout).
Plan and steps run under the model's lock (`core.model_lock`), so a version without a
role is only resumed when the run that wrote it is gone.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal, Protocol

from core.aliases import env_alias
from core.compat import CompatReport, check_version, record_verdict
from core.compat_preflight import reuse_preflight
from core.errors import ConflictError
from core.ledger import ReleaseRecord, current_release, list_rollouts, record_release
from core.release_state import require_ready

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from config import Settings
    from core.registry import ModelRegistry, ModelVersionInfo

RetrainStep = Literal["up_to_date", "resume", "train"]
Role = Literal["candidate", "champion"]
RetrainAction = Literal["up_to_date", "candidate", "first_champion"]

# The tags the ledger puts on a version it rolled back (core.ledger.registry_sync).
ROLLED_BACK_TAG = "rolled_back_reason"
ROLLED_BACK_ENV_TAG = "rolled_back_env"
ROLLED_BACK_SCAN = 500
"""How many of an environment's newest rollouts are read for rolled-back candidates."""


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
    """What to do for one model on one image in one environment.

    step: `up_to_date` (`version` is the image's version), `resume` (`version` exists for
    the image and gets its role here without training) or `train` (`version` is None
    until trained). role: `champion` when the environment has no release of the model
    yet (the version's first release), else `candidate`. champion_version: the version
    the environment's current release serves (None before its first release).
    """

    model: str
    image_version: str
    step: RetrainStep
    role: Role
    version: str | None
    champion_version: str | None
    env: str = "dev"

    @property
    def up_to_date(self) -> bool:
        """True when the image already has its version here: nothing to do."""
        return self.step == "up_to_date"

    @property
    def resume_version(self) -> str | None:
        """The existing version to give its role instead of training, if any."""
        return self.version if self.step == "resume" else None

    @property
    def alias(self) -> str:
        """The alias the version gets: `<env>-champion` or `<env>-candidate`."""
        return env_alias(self.env, self.role)

    def describe(self) -> str:
        """One line for the run's log."""
        where = f"{self.model} in {self.env}"
        if self.step == "up_to_date":
            return f"{where} already has v{self.version} for image {self.image_version}"
        if self.step == "resume":
            first = " (its first release)" if self.role == "champion" else ""
            return (
                f"{where}: v{self.version} is registered for image {self.image_version} "
                f"with no role here yet: it becomes {self.alias}{first}, no training"
            )
        return f"{where} has no version for image {self.image_version}: training"


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


def rolled_back_in(version: RegisteredVersion, env: str) -> bool:
    """True when the tags say `version` was rolled back in `env` (a tag without an env,
    from before environments were recorded, counts everywhere)."""
    if ROLLED_BACK_TAG not in version.tags:
        return False
    return version.tags.get(ROLLED_BACK_ENV_TAG, env) == env


def never_given_a_role(
    version: RegisteredVersion, champion: RegisteredVersion | None, env: str = "dev"
) -> bool:
    """True for a version with no role in `env`: no alias of `env`, never rolled back
    there, and newer than the env's champion (so it never served here)."""
    mine = {env_alias(env, "champion"), env_alias(env, "candidate")}
    if mine & set(version.aliases) or rolled_back_in(version, env):
        return False
    return champion is None or int(version.version) > int(champion.version)


def first_release_pick(usable: Sequence[RegisteredVersion]) -> RegisteredVersion:
    """The version an environment releases first: the newest one that is some
    environment's champion (what already serves somewhere), else the newest."""
    serving = [v for v in usable if any(a.endswith("-champion") for a in v.aliases)]
    return (serving or list(usable))[-1]


def plan_retrain(
    model: str,
    image_version: str,
    existing: Sequence[RegisteredVersion],
    release_version: str | None,
    *,
    env: str = "dev",
    rolled_back: Collection[str] = (),
) -> RetrainPlan:
    """Decide what one model needs on `image_version` in `env`; pure.

    Args:
        existing: the versions of `model` trained on `image_version`, oldest first.
        release_version: the model's version in the env's current release (the ledger),
            None when the env never released the model.
        rolled_back: versions the ledger rolled back in `env` (besides the tags).
    """
    usable = [v for v in existing if v.version not in rolled_back and not rolled_back_in(v, env)]
    if release_version is None:
        if not usable:
            return RetrainPlan(model, image_version, "train", "champion", None, None, env)
        pick = first_release_pick(usable)
        return RetrainPlan(model, image_version, "resume", "champion", pick.version, None, env)
    if not existing:
        return RetrainPlan(model, image_version, "train", "candidate", None, release_version, env)
    latest = existing[-1]
    fresh = (
        latest in usable
        and int(latest.version) > int(release_version)
        and env_alias(env, "candidate") not in latest.aliases
    )
    step: RetrainStep = "resume" if fresh else "up_to_date"
    return RetrainPlan(
        model, image_version, step, "candidate", latest.version, release_version, env
    )


def plan_model(
    engine: Engine, registry: ModelRegistry, model: str, image_version: str, *, env: str
) -> RetrainPlan:
    """`plan_retrain` on what the ledger and the registry hold now (call it under the
    model's lock, so nothing read here is still being written).

    Raises:
        NotFoundError: an unknown env.
    """
    release = current_release(engine, env)
    rolled_back = {
        r.candidate_version
        for r in list_rollouts(engine, env, limit=ROLLED_BACK_SCAN)
        if r.model_name == model and r.status == "rolled_back"
    }
    return plan_retrain(
        model,
        image_version,
        registry.list_versions(model, image_version=image_version),
        release.model_versions.get(model) if release is not None else None,
        env=env,
        rolled_back=rolled_back,
    )


def judge_champion(
    registry: ModelRegistry, plan: RetrainPlan, lock_hash: str | None = None
) -> CompatReport | None:
    """Judge the plan's champion under its image and record the verdict as version tags
    (`compat.<image>`); None when there is no champion.

    A preflight of this image's lock (`core.compat_preflight`, `lock_hash`: default the
    running checkout's uv.lock) already judged it under this very environment: that
    verdict is reused (its artifact digest checked again) instead of loading it again.

    Raises:
        NotFoundError: the champion version does not exist.
    """
    if plan.champion_version is None:
        return None
    report = reuse_preflight(
        registry, plan.model, plan.champion_version, plan.image_version, lock_hash
    ) or check_version(
        registry, plan.model, plan.champion_version, image_version=plan.image_version
    )
    record_verdict(registry, report)
    return report


def give_role(
    engine: Engine,
    registry: ModelRegistry,
    plan: RetrainPlan,
    version: str,
    verdict: str | None,
    *,
    settings: Settings,
    actor: str,
    stateful: Collection[str] = (),
) -> RetrainOutcome:
    """Give `version` the plan's role in the plan's env. A first champion: the first
    release in the ledger (the truth), then `<env>-champion` (the mirror); a crash in
    between is repaired from the ledger by the next run. A candidate: `<env>-candidate`.
    `verdict` is the champion's under this image (`judge_champion`), None without one.
    A model in `stateful` (it reads release state) gets no role before its version's
    state is published (the build_release_state flow runs first).

    Raises:
        NotFoundError: the version does not exist.
        StateNotReadyError: the model reads state and the version's is not published.
    """
    require_ready(engine, {plan.model: version}, stateful)
    if plan.role == "candidate":
        registry.set_alias(plan.model, plan.alias, version)
        return RetrainOutcome(
            plan.model, "candidate", version, plan.champion_version, verdict,
            f"{plan.env} champion v{plan.champion_version} is {verdict} under "
            f"{plan.image_version}",
        )  # fmt: skip
    info = registry.get_version(plan.model, version)
    release = current_release(engine, plan.env)
    # a retried task may find its release already committed: never record it twice
    if release is None or release.model_versions.get(plan.model) != version:
        release = record_first_release(engine, settings, info, actor, env=plan.env)
    registry.set_alias(plan.model, plan.alias, version)
    return RetrainOutcome(
        plan.model,
        "first_champion",
        version,
        reason=f"no champion in {plan.env} yet: first release {release.tag}",
    )


def record_first_release(
    engine: Engine, settings: Settings, info: ModelVersionInfo, actor: str, *, env: str
) -> ReleaseRecord:
    """The first release of a model in `env`'s ledger: its first champion."""
    return record_release(
        engine,
        env=env,
        code_version=settings.CODE_VERSION,
        image_version=info.image_version,
        model_versions={info.name: info.version},
        artifact_digests={info.name: info.artifact_sha256},
        reason=f"first champion: {info.name} v{info.version} trained on image {info.image_version}",
        actor=actor,
    )
