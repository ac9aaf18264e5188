"""Read side for routers: what each model of an env should serve right now.

Routers poll this every ROUTER_POLL_SECONDS; it is two small indexed queries.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy import Engine, select

from core.db import ACTIVE_STATUSES, Release, Rollout, session_scope

Mode = Literal["champion_only", "shadow", "canary"]


@dataclass(frozen=True, slots=True)
class RoutingState:
    """How one model is served in one env.

    mode: `champion_only` (no active rollout), `shadow` (candidate runs off the hot path
    for everyone), `canary` (candidate answers users whose bucket < percent x 100; a
    paused rollout keeps serving at its current percent).
    """

    model_name: str
    champion_version: str
    mode: Mode = "champion_only"
    candidate_version: str | None = None
    rollout_id: int | None = None
    salt: str | None = None
    percent: float = 0.0
    status: str | None = None
    lead_model: str | None = None
    """The model whose traffic rows judge the rollout (its `model_name`); for a model of a
    bundle, the bundle's lead. None when no rollout is active."""
    bundle: tuple[str, ...] = ()
    """Every model of the rollout, lead first (one model: just this one)."""


def routing_state(engine: Engine, env: str) -> dict[str, RoutingState]:
    """Per model name, the routing state of `env` (empty if nothing was released)."""
    with session_scope(engine) as session:
        release = session.scalars(
            select(Release)
            .where(Release.env == env)
            .order_by(Release.created_at.desc(), Release.id.desc())
            .limit(1)
        ).first()
        rollouts = session.scalars(
            select(Rollout).where(Rollout.env == env, Rollout.status.in_(ACTIVE_STATUSES))
        ).all()
        states = {
            name: RoutingState(model_name=name, champion_version=str(version))
            for name, version in (release.model_versions.items() if release else ())
        }
        for r in rollouts:
            members = {r.model_name: (r.champion_version, r.candidate_version)} | {
                m: (v["champion"], v["candidate"]) for m, v in (r.bundle or {}).items()
            }
            for name, (champion, candidate) in members.items():
                states[name] = RoutingState(
                    model_name=name,
                    champion_version=str(champion),
                    # a paused rollout keeps serving as it was: shadow (stage -1) or canary
                    mode="shadow" if r.status == "shadow" or r.stage_index < 0 else "canary",
                    candidate_version=str(candidate),
                    rollout_id=r.id,
                    salt=r.salt,
                    percent=r.percent if r.stage_index >= 0 else 0.0,
                    status=r.status,
                    lead_model=r.model_name,
                    bundle=tuple(members),
                )
        return states
