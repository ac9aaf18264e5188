"""Registered versions of models in one MLflow tracking store: reads, aliases and tags.

A thin layer over `MlflowClient` that answers with plain data (`ModelVersionInfo`) and
turns MLflow's "does not exist" into `NotFoundError` (or None / {} where absence is an
answer). Aliases are per environment (`prd-champion`, `stg-candidate`, `dev-previous`:
`core.aliases.env_alias`), MLflow 3 aliases, never stages.
`core.registry.ModelRegistry` builds on this with registering and verified loading.

`import mlflow` costs ~11 s here, so it is imported lazily, inside the methods that use it.
"""

from __future__ import annotations

import re
import threading
from typing import TYPE_CHECKING, Any, get_args

from config.settings import Environment
from core.aliases import ALIAS_ROLES, env_alias
from core.errors import NotFoundError
from core.lineage import TAG_IMAGE, ModelVersionInfo

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

ALIASES: tuple[str, ...] = tuple(
    env_alias(env, role) for env in get_args(Environment) for role in ALIAS_ROLES
)
"""Every alias the project sets: `<env>-<role>` for each environment and role."""

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
_TAG_VALUE_SAFE = re.compile(r"^[^'\"\\\n]{1,250}$")
_NOT_FOUND_CODES = frozenset({"RESOURCE_DOES_NOT_EXIST", "NOT_FOUND"})


def check_model_name(name: str) -> str:
    """Return `name` if it is a valid registered model name.

    Raises:
        NotFoundError: the name cannot name a registered model (so no such model exists).
    """
    if not _NAME.match(name):
        raise NotFoundError(f"invalid model name {name!r}: letters, digits, '.', '_' and '-' only")
    return name


def check_filter_value(kind: str, value: str) -> str:
    """Return `value` if it can be quoted in an MLflow search filter.

    Raises:
        NotFoundError: it holds quotes, backslashes or newlines (so nothing can match it).
    """
    if not _TAG_VALUE_SAFE.match(value):
        raise NotFoundError(f"invalid {kind} {value!r}: no quotes, backslashes or newlines")
    return value


def is_not_found(exc: MlflowException) -> bool:
    """True if an MLflow error means the model, version or alias does not exist."""
    return exc.error_code in _NOT_FOUND_CODES


class ModelVersions:
    """Registered models, versions, aliases and tags of one MLflow tracking store."""

    def __init__(self, tracking_uri: str) -> None:
        self.tracking_uri = tracking_uri
        self._client: MlflowClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> MlflowClient:
        """The MlflowClient for this store (created on first use)."""
        if self._client is None:
            with self._lock:
                if self._client is None:
                    from mlflow import MlflowClient

                    self._client = MlflowClient(
                        tracking_uri=self.tracking_uri, registry_uri=self.tracking_uri
                    )
        return self._client

    # --- writing ---------------------------------------------------------------------
    def set_alias(self, name: str, alias: str, version: str) -> None:
        """Point `alias` of `name` at `version` (moving it if set elsewhere).

        Raises:
            NotFoundError: the model or version does not exist.
        """
        self.get_version(name, version)
        self.client.set_registered_model_alias(name, alias, str(version))

    def delete_alias(self, name: str, alias: str) -> None:
        """Remove `alias` from `name` (no error if it was not set)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            self.client.delete_registered_model_alias(name, alias)
        except MlflowException as exc:
            if not is_not_found(exc) and exc.error_code != "INVALID_PARAMETER_VALUE":
                raise

    def set_tag(self, name: str, version: str, key: str, value: str) -> None:
        """Set one tag on a version.

        Raises:
            NotFoundError: the model or version does not exist.
        """
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            self.client.set_model_version_tag(name, str(version), key, str(value))
        except MlflowException as exc:
            if is_not_found(exc):
                raise NotFoundError(f"model {name!r} has no version {version}") from None
            raise

    # --- reading ---------------------------------------------------------------------
    def get_version(self, name: str, version: str) -> ModelVersionInfo:
        """One version with its tags and aliases.

        Raises:
            NotFoundError: the model or version does not exist.
        """
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        if not str(version).isdigit():
            raise NotFoundError(f"model {name!r} has no version {version!r} (expected a number)")
        try:
            mv = self.client.get_model_version(name, str(version))
        except MlflowException as exc:
            if is_not_found(exc):
                raise NotFoundError(f"model {name!r} has no version {version}") from None
            raise
        return ModelVersionInfo.from_mlflow(mv)

    def version_by_alias(self, name: str, alias: str) -> ModelVersionInfo | None:
        """The version `alias` points at, or None (alias unset or model unknown)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            mv = self.client.get_model_version_by_alias(name, alias)
        except MlflowException as exc:
            if is_not_found(exc) or exc.error_code == "INVALID_PARAMETER_VALUE":
                return None
            raise
        return ModelVersionInfo.from_mlflow(mv)

    def resolve(self, name: str, ref: str) -> ModelVersionInfo:
        """A version by number (`"3"`) or alias (`"prd-champion"`, `"@prd-champion"`).

        Raises:
            NotFoundError: no such version, the alias is not set, or a bare role
                (`champion`) that names no environment.
        """
        ref = ref.removeprefix("@")
        if ref.isdigit():
            return self.get_version(name, ref)
        if ref in ALIAS_ROLES:
            raise NotFoundError(
                f"alias {ref!r} names no environment: use {env_alias('prd', ref)!r} "
                f"(or dev-/stg-{ref})"
            )
        found = self.version_by_alias(name, ref)
        if found is None:
            raise NotFoundError(f"model {name!r} has no alias {ref!r}")
        return found

    def aliases(self, name: str) -> dict[str, str]:
        """alias -> version for model `name` ({} if the model does not exist)."""
        from mlflow.exceptions import MlflowException

        check_model_name(name)
        try:
            model = self.client.get_registered_model(name)
        except MlflowException as exc:
            if is_not_found(exc):
                return {}
            raise
        raw = model.aliases or {}
        if isinstance(raw, dict):
            return {str(k): str(v) for k, v in raw.items()}
        return {str(a.alias): str(a.version) for a in raw}

    def list_versions(self, name: str, image_version: str | None = None) -> list[ModelVersionInfo]:
        """Versions of `name` (oldest first), only those trained on `image_version` if given."""
        check_model_name(name)
        query = f"name='{name}'"
        if image_version is not None:
            query += f" and tag.{TAG_IMAGE}='{check_filter_value('image version', image_version)}'"
        found: list[Any] = []
        token: str | None = None
        while True:
            page = self.client.search_model_versions(query, max_results=1000, page_token=token)
            found.extend(page)
            token = page.token
            if not token:
                break
        by_version: dict[str, list[str]] = {}
        for alias, version in self.aliases(name).items():
            by_version.setdefault(version, []).append(alias)
        infos = [
            ModelVersionInfo.from_mlflow(mv, by_version.get(str(mv.version), [])) for mv in found
        ]
        return sorted(infos, key=lambda info: int(info.version))

    def list_models(self) -> list[str]:
        """Names of every registered model, sorted."""
        return sorted(model.name for model in self.client.search_registered_models())
