"""What a rollout transition announces: the event name, resources and payload (pure).

Every ledger event of a rollout (start, advance, set_stage, pause, resume, abort,
rollback, promote, held_deploy_window, state_not_ready, approval_*) becomes one Prefect
event `stateful-ml.rollout.<kind>` about the resource `stateful-ml.rollout.<id>`, with the
models, their champion and candidate versions and the environment as related resources
and the event's figures as payload (docs/alerts.md). A whole-environment rollback is
`stateful-ml.release.rollback` (`env_rollback_alert`). Rollbacks and promotions also go
to the optional webhook (ALERT_WEBHOOK_URL, core.notify).

The core decides what to announce; the task layer (tasks/controller.py) emits it after the
ledger committed, so the ledger never imports Prefect. `marks` + `events_since` find the
events a tick wrote.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine

from core import ledger
from core.ledger import EventRecord, ReleaseRecord, RolloutRecord

EVENT_PREFIX = "stateful-ml.rollout"
RELEASE_PREFIX = "stateful-ml.release"
WEBHOOK_KINDS = frozenset({"rollback", "promote"})
"""The transitions that page someone through the webhook."""


@dataclass(frozen=True, slots=True)
class Alert:
    """One Prefect event, ready for `prefect.events.emit_event(**alert.emit_kwargs())`."""

    kind: str
    event: str
    resource: dict[str, str]
    related: list[dict[str, str]] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)

    @property
    def pages(self) -> bool:
        """True for the transitions the webhook receives (rollback, promote)."""
        return self.kind in WEBHOOK_KINDS

    def emit_kwargs(self) -> dict[str, Any]:
        """The arguments of `prefect.events.emit_event`."""
        return {
            "event": self.event,
            "resource": self.resource,
            "related": self.related,
            "payload": self.payload,
        }

    def webhook_body(self) -> dict[str, Any]:
        """The JSON the webhook receives: the event, its resources and payload."""
        return {
            "event": self.event,
            "resource": self.resource,
            "related": self.related,
            "payload": self.payload,
        }


def rollout_alert(event: EventRecord, rollout: RolloutRecord) -> Alert:
    """The Prefect event announcing one ledger event of `rollout`."""
    resource = {
        "prefect.resource.id": f"{EVENT_PREFIX}.{rollout.id}",
        "prefect.resource.name": f"rollout #{rollout.id} {rollout.model_name} ({rollout.env})",
        "stateful-ml.env": rollout.env,
        "stateful-ml.status": event.to_status or rollout.status,
    }
    payload = {
        "rollout_id": rollout.id,
        "seq": event.seq,
        "kind": event.kind,
        "ts": event.ts.isoformat(),
        "actor": event.actor,
        "reason": event.reason,
        "from_status": event.from_status,
        "to_status": event.to_status,
        "stage_index": event.stage_index,
        "percent": event.percent,
        "env": rollout.env,
        "model": rollout.model_name,
        "champion_versions": rollout.champion_versions,
        "candidate_versions": rollout.candidate_versions,
        "figures": event.figures,
    }
    return Alert(event.kind, f"{EVENT_PREFIX}.{event.kind}", resource, _related(rollout), payload)


def _related(rollout: RolloutRecord) -> list[dict[str, str]]:
    related = [_resource(f"stateful-ml.environment.{rollout.env}", "environment", rollout.env)]
    champions = rollout.champion_versions
    for name, candidate in rollout.candidate_versions.items():
        related.append(_resource(f"stateful-ml.model.{name}", "model", name))
        for role, version in (("candidate", candidate), ("champion", champions[name])):
            related.append(
                _resource(f"stateful-ml.model.{name}.version.{version}", role, f"{name} v{version}")
            )
    return related


def _resource(rid: str, role: str, name: str) -> dict[str, str]:
    return {
        "prefect.resource.id": rid,
        "prefect.resource.role": role,
        "prefect.resource.name": name,
    }


def env_rollback_alert(release: ReleaseRecord) -> Alert:
    """The Prefect event announcing a whole-environment rollback (`sml rollback --env`,
    the `rollback` flow): `stateful-ml.release.rollback` about the environment, with the
    release it rolled back to as payload. It pages like a rollout's rollback."""
    resource = {
        "prefect.resource.id": f"{RELEASE_PREFIX}.{release.env}",
        "prefect.resource.name": f"release of {release.env}",
        "stateful-ml.env": release.env,
        "stateful-ml.status": "rolled_back",
    }
    related = [_resource(f"stateful-ml.environment.{release.env}", "environment", release.env)]
    related += [
        _resource(f"stateful-ml.model.{name}.version.{version}", "champion", f"{name} v{version}")
        for name, version in sorted(release.model_versions.items())
    ]
    payload = {
        "release_id": release.id,
        "tag": release.tag,
        "env": release.env,
        "ts": release.created_at.isoformat(),
        "actor": release.actor,
        "reason": release.reason,
        "model_versions": release.model_versions,
        "image_version": release.image_version,
        "forced": release.forced,
    }
    return Alert("rollback", f"{RELEASE_PREFIX}.rollback", resource, related, payload)


def marks(engine: Engine, env: str | None = None) -> dict[int, int]:
    """{rollout id: its newest event's seq} of the active rollouts of `env` (or all): the
    point after which `events_since` reads."""
    return {r.id: r.event_seq for r in ledger.active_rollouts(engine, env)}


def events_since(engine: Engine, seqs: Mapping[int, int]) -> list[Alert]:
    """The alerts of every event written after `seqs` ({rollout id: seq}), in order."""
    alerts: list[Alert] = []
    for rollout_id, seq in seqs.items():
        rollout = ledger.get_rollout(engine, rollout_id)
        alerts.extend(
            rollout_alert(event, rollout)
            for event in ledger.rollout_events(engine, rollout_id)
            if event.seq > seq
        )
    return alerts
