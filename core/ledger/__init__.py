"""The release ledger: the only writer of rollouts, rollout_events and releases."""

from core.ledger.releases import (
    ENVIRONMENTS,
    ReleaseRecord,
    check_env,
    current_release,
    record_release,
    record_release_in,
    release_tag,
)
from core.ledger.routing import RoutingState, routing_state

__all__ = [
    "ENVIRONMENTS",
    "ReleaseRecord",
    "RoutingState",
    "check_env",
    "current_release",
    "record_release",
    "record_release_in",
    "release_tag",
    "routing_state",
]
