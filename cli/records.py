"""Ledger records as JSON-ready dicts: what every `sml ... -o json` prints.

One converter per record, so each read command's JSON names a release, a rollout or an
event with the same keys (documented in docs/cli.md). Times are ISO 8601 in UTC;
identifiers (tags, versions, image and code versions) are never shortened.
"""

from __future__ import annotations

import json
from collections.abc import Collection
from datetime import datetime
from typing import Any

import typer

from core.ledger import EventRecord, ReleaseRecord, RolloutRecord, diff_releases


def iso(ts: datetime | None) -> str | None:
    """ISO 8601 with its UTC offset, or None."""
    return ts.isoformat() if ts is not None else None


def print_json(data: Any) -> None:
    """Print `data` as one JSON document on stdout (no colour, no wrapping: pipes read it)."""
    typer.echo(json.dumps(data, indent=2, sort_keys=False, allow_nan=False))


def release_json(release: ReleaseRecord, stateful: Collection[str] = ()) -> dict[str, Any]:
    """A release: tag, models, state keys of the models in `stateful`, image, code, who, why."""
    from core.release_state import model_state_key  # pandas and the builders: only here

    return {
        "id": release.id,
        "env": release.env,
        "tag": release.tag,
        "created_at": iso(release.created_at),
        "models": dict(sorted(release.model_versions.items())),
        "state": {
            name: model_state_key(name, version)
            for name, version in sorted(release.model_versions.items())
            if name in stateful
        },
        "artifact_digests": dict(sorted(release.artifact_digests.items())),
        "image_version": release.image_version,
        "code_version": release.code_version,
        "actor": release.actor,
        "reason": release.reason,
        "parent_id": release.parent_id,
        "forced": release.forced,
    }


def rollout_record_json(rollout: RolloutRecord) -> dict[str, Any]:
    """A rollout row: every model's champion and candidate, status, step (one-based)."""
    return {
        "id": rollout.id,
        "env": rollout.env,
        "lead": rollout.model_name,
        "models": {
            name: {"champion": rollout.champion_versions[name], "candidate": candidate}
            for name, candidate in rollout.candidate_versions.items()
        },
        "status": rollout.status,
        "step": None if rollout.stage_index < 0 else rollout.stage_index + 1,
        "percent": rollout.percent,
        "forced": rollout.forced,
        "stage_started_at": iso(rollout.stage_started_at),
        "created_at": iso(rollout.created_at),
        "ended_at": iso(rollout.ended_at),
    }


def event_json(event: EventRecord, *, figures: bool = False) -> dict[str, Any]:
    """A rollout event: who did what and why; its stored figures when `figures`."""
    out: dict[str, Any] = {
        "seq": event.seq,
        "ts": iso(event.ts),
        "kind": event.kind,
        "actor": event.actor,
        "reason": event.reason,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "step": None if event.stage_index is None or event.stage_index < 0
        else event.stage_index + 1,
        "percent": event.percent,
    }  # fmt: skip
    if figures:
        out["figures"] = event.figures
    return out


def diff_json(a: ReleaseRecord, b: ReleaseRecord, stateful: Collection[str] = ()) -> dict[str, Any]:
    """What differs between two releases (the rows of `sml diff`)."""
    diff = diff_releases(a, b)
    keys_a, keys_b = release_json(a, stateful)["state"], release_json(b, stateful)["state"]
    return {
        "a": release_json(a, stateful),
        "b": release_json(b, stateful),
        "code": {"a": a.code_version, "b": b.code_version, "changed": diff.code is not None},
        "image": {"a": a.image_version, "b": b.image_version, "changed": diff.image is not None},
        "models": {
            "changed": {n: {"a": old, "b": new} for n, (old, new) in diff.changed.items()},
            "added": dict(diff.added),
            "removed": dict(diff.removed),
            "unchanged": dict(diff.unchanged),
            "digests_changed": sorted(diff.digests_changed),
        },
        "state": {
            name: {"a": keys_a.get(name), "b": keys_b.get(name)}
            for name in sorted(set(keys_a) | set(keys_b))
        },
        "same": diff.is_empty,
    }
