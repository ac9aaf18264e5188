"""Prefect tasks over `core.registry`: open it (with our model families), register, alias.

Retries only on transient MLflow/database errors (`core.transient`); `NotFoundError`,
`DataError` and other `SmlError`s are answers, never retried. Tasks receiving a registry
or an engine use `NO_CACHE` (clients are not hashable inputs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prefect import task
from prefect.cache_policies import NO_CACHE

from config import Settings
from core.registry import ModelRegistry, ModelVersionInfo
from models import families_on_use
from tasks.policies import IO_TASK

if TYPE_CHECKING:
    from models import ModelFamily
    from models.pipeline import TrainedModel


@task(name="registry-open", cache_policy=NO_CACHE)
def open_registry(settings: Settings) -> ModelRegistry:
    """The MLflow registry of these settings, knowing our model families (no connection yet)."""
    return ModelRegistry.from_settings(settings, families=families_on_use())


@task(name="registry-register-trained", **IO_TASK)
def register_trained(
    registry: ModelRegistry, trained: TrainedModel, family: ModelFamily, image_version: str
) -> ModelVersionInfo:
    """`models.registration.register_trained`: log and register with lineage tags."""
    from models.registration import register_trained as register

    return register(registry, trained, family, image_version=image_version)


@task(name="registry-set-alias", **IO_TASK)
def set_alias(registry: ModelRegistry, name: str, alias: str, version: str) -> ModelVersionInfo:
    """Point `alias` at `version`; return the version with its new aliases."""
    registry.set_alias(name, alias, version)
    return registry.get_version(name, version)
