"""Prefect tasks over `core.registry`, `core.compat` and the first release in the ledger.

Retries only on transient MLflow/database errors (`core.transient`); `NotFoundError`,
`DataError` and other `SmlError`s are answers, never retried. Tasks receiving a registry
or an engine use `NO_CACHE` (clients are not hashable inputs).
"""

from __future__ import annotations

from prefect import task
from prefect.cache_policies import NO_CACHE
from sqlalchemy import Engine

from config import Settings
from core.compat import CompatReport
from core.ledger import ReleaseRecord
from core.registry import ModelRegistry, ModelVersionInfo
from models import FAMILIES, ModelFamily
from models.pipeline import TrainedModel
from tasks.policies import IO_TASK


@task(name="registry-open", cache_policy=NO_CACHE)
def open_registry(settings: Settings) -> ModelRegistry:
    """The MLflow registry of these settings, knowing our model families (no connection yet)."""
    return ModelRegistry.from_settings(settings, families=FAMILIES)


@task(name="registry-register-trained", **IO_TASK)
def register_trained(
    registry: ModelRegistry, trained: TrainedModel, family: ModelFamily, image_version: str
) -> ModelVersionInfo:
    """`models.registration.register_trained`: log and register with lineage tags."""
    from models.registration import register_trained as register

    return register(registry, trained, family, image_version=image_version)


@task(name="registry-list-image-versions", **IO_TASK)
def list_image_versions(
    registry: ModelRegistry, name: str, image_version: str
) -> list[ModelVersionInfo]:
    """Versions of `name` trained on `image_version`."""
    return registry.list_versions(name, image_version=image_version)


@task(name="registry-version-by-alias", **IO_TASK)
def version_by_alias(registry: ModelRegistry, name: str, alias: str) -> ModelVersionInfo | None:
    """The version an alias points at, or None."""
    return registry.version_by_alias(name, alias)


@task(name="registry-set-alias", **IO_TASK)
def set_alias(registry: ModelRegistry, name: str, alias: str, version: str) -> ModelVersionInfo:
    """Point `alias` at `version`; return the version with its new aliases."""
    registry.set_alias(name, alias, version)
    return registry.get_version(name, version)


@task(name="registry-check-compat", **IO_TASK)
def check_and_record_compat(
    registry: ModelRegistry, name: str, version: str, image_version: str
) -> CompatReport:
    """`core.compat.check_version` under `image_version`, recorded as version tags."""
    from core.compat import check_version, record_verdict

    report = check_version(registry, name, version, image_version=image_version)
    record_verdict(registry, report)
    return report


@task(name="registry-record-first-release", **IO_TASK)
def record_first_release(
    engine: Engine, settings: Settings, info: ModelVersionInfo, actor: str
) -> ReleaseRecord:
    """`core.ledger.record_release` for a model's first champion in this environment."""
    from core.ledger import record_release

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
