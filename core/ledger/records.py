"""What the ledger hands out and what it needs: records, protocols, figures as JSON.

Records are detached copies of table rows (frozen dataclasses), so callers never hold a
session. The protocols name exactly what the ledger uses of its collaborators: the model
registry (`AliasRegistry`, satisfied by `core.registry.ModelRegistry`) and a compat
judgement (`CompatJudgement`, satisfied by `core.compat.CompatReport`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal, Protocol

from core.db import ACTIVE_STATUSES, Rollout, RolloutEvent

RolloutMode = Literal["shadow", "canary"]
SHADOW_STAGE = -1
"""The stage index of a shadow rollout (0 percent); it advances into canary stage 0."""


class VersionInfo(Protocol):
    """What the ledger reads of a registered model version."""

    @property
    def version(self) -> str: ...

    @property
    def artifact_sha256(self) -> str | None: ...


class AliasRegistry(Protocol):
    """The part of `core.registry.ModelRegistry` the ledger uses (MLflow aliases and tags)."""

    def get_version(self, name: str, version: str) -> VersionInfo: ...

    def version_by_alias(self, name: str, alias: str) -> VersionInfo | None: ...

    def set_alias(self, name: str, alias: str, version: str) -> None: ...

    def delete_alias(self, name: str, alias: str) -> None: ...

    def set_tag(self, name: str, version: str, key: str, value: str) -> None: ...


class CompatJudgement(Protocol):
    """Whether a version runs under an image: `core.compat.CompatReport` is one.

    `verdict` is identical | compatible | drifted | broken; `reason` says why.
    """

    @property
    def verdict(self) -> str: ...

    @property
    def reason(self) -> str: ...


VerdictFn = Callable[[str, str], CompatJudgement]
"""`(model name, version) -> CompatJudgement` under the running image."""


@dataclass(frozen=True, slots=True)
class RolloutRecord:
    """A rollout row as plain data."""

    id: int
    env: str
    model_name: str
    champion_version: str
    candidate_version: str
    salt: str
    stage_index: int
    percent: float
    status: str
    stage_started_at: datetime
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    event_seq: int
    forced: bool = False
    """True for a rollout opened past a refusal (a promotion forced past a missing upstream
    rollout); the release its promotion records is forced too."""
    bundle: dict[str, dict[str, str]] | None = None
    """The other models this rollout carries with `model_name` (its lead), as
    {model: {"champion": version, "candidate": version}}; None for a rollout of one model."""

    @property
    def is_active(self) -> bool:
        """True while the rollout can still change (shadow, canary or paused)."""
        return self.status in ACTIVE_STATUSES

    @classmethod
    def from_row(cls, row: Rollout) -> RolloutRecord:
        """Copy a table row into a detached record."""
        return cls(
            id=row.id,
            env=row.env,
            model_name=row.model_name,
            champion_version=row.champion_version,
            candidate_version=row.candidate_version,
            salt=row.salt,
            stage_index=row.stage_index,
            percent=row.percent,
            status=row.status,
            stage_started_at=row.stage_started_at,
            created_at=row.created_at,
            updated_at=row.updated_at,
            ended_at=row.ended_at,
            event_seq=row.event_seq,
            forced=row.forced,
            bundle={m: dict(v) for m, v in row.bundle.items()} if row.bundle else None,
        )

    @property
    def candidate_versions(self) -> dict[str, str]:
        """{model: candidate version} of every model of the rollout, lead first."""
        members = self.bundle or {}
        return {self.model_name: self.candidate_version} | {
            m: v["candidate"] for m, v in members.items()
        }

    @property
    def champion_versions(self) -> dict[str, str]:
        """{model: champion version} of every model of the rollout, lead first."""
        members = self.bundle or {}
        return {self.model_name: self.champion_version} | {
            m: v["champion"] for m, v in members.items()
        }


@dataclass(frozen=True, slots=True)
class EventRecord:
    """A rollout event row as plain data."""

    id: int
    rollout_id: int
    seq: int
    ts: datetime
    kind: str
    actor: str
    reason: str | None
    from_status: str | None
    to_status: str | None
    stage_index: int | None
    percent: float | None
    figures: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: RolloutEvent) -> EventRecord:
        """Copy a table row into a detached record."""
        return cls(
            id=row.id,
            rollout_id=row.rollout_id,
            seq=row.seq,
            ts=row.ts,
            kind=row.kind,
            actor=row.actor,
            reason=row.reason,
            from_status=row.from_status,
            to_status=row.to_status,
            stage_index=row.stage_index,
            percent=row.percent,
            figures=dict(row.figures) if row.figures is not None else None,
        )


def _json_value(value: Any) -> Any:
    """A JSON-safe copy of a figure: numpy scalars unwrapped, NaN/inf as None."""
    if isinstance(value, Mapping):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_value(v) for v in value]
    # numpy scalars are not ours and carry no protocol: `.item()` is their documented way out
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, datetime | date):
        return value.isoformat()
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def clean_figures(figures: Mapping[str, Any] | None) -> dict[str, Any] | None:
    """The figures of an event as strict JSON (NaN/inf as None, numpy unwrapped).

    Raises:
        ValueError: if they still cannot be serialised (fails here, not in the driver).
    """
    if figures is None:
        return None
    clean = _json_value(figures)
    json.dumps(clean, allow_nan=False)
    return clean
