"""Routing decisions: which arm answers a request, and whether the candidate shadows it.

Pure functions, no I/O, so they are tested without HTTP (tests/core/test_routing.py).

- The bucket of a request is a stable hash of (rollout salt, routing key) into 0..9999.
  The routing key is the user id, or the request id when there is no user id.
- A request goes to the candidate when its bucket < percent x 100. Raising the percent
  only adds buckets, so users never flip back; a new rollout has a new salt and so draws a
  fresh set of users.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Literal

from core.ledger.routing import RoutingState

BUCKETS = 10_000
Arm = Literal["champion", "candidate"]


@dataclass(frozen=True, slots=True)
class Route:
    """Where one request goes.

    arm: who answers the user. shadow: also run the candidate off the hot path and log
    its answer as role=shadow (never shown to the user).
    """

    arm: Arm
    shadow: bool


# The four possible outcomes, shared so the hot path allocates nothing.
CHAMPION = Route("champion", shadow=False)
CHAMPION_WITH_SHADOW = Route("champion", shadow=True)
CANDIDATE = Route("candidate", shadow=False)


def bucket(salt: str, key: str) -> int:
    """The bucket (0..9999) of `key` under `salt`: stable across processes and restarts.

    blake2b, not Python's `hash()`, which is randomised per process.
    """
    digest = hashlib.blake2b(
        salt.encode("utf-8") + b"\x1f" + key.encode("utf-8"), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def candidate_threshold(percent: float) -> int:
    """Number of buckets (0..10000) in the candidate arm at `percent` (0..100).

    Rounded, so 33.33% is 3333 buckets; monotonic in `percent`.
    """
    if percent <= 0:
        return 0
    if percent >= 100:
        return BUCKETS
    return round(percent * (BUCKETS / 100))


def in_candidate_arm(salt: str, key: str, percent: float) -> bool:
    """True when `key` falls in the candidate arm of a rollout with `salt` at `percent`."""
    return bucket(salt, key) < candidate_threshold(percent)


def routing_key(user_id: str | None, request_id: str) -> str:
    """What is hashed: the user id, so a user stays in one arm; else the request id."""
    return user_id if user_id else request_id


def choose_route(state: RoutingState, key: str, *, shadow_in_canary: bool = True) -> Route:
    """Decide the route of one request under a model's routing state.

    - champion_only, or a rollout without a candidate: the champion answers.
    - shadow: the champion answers; the candidate shadows every request.
    - canary: the candidate answers when the key's bucket < percent x 100; other
      requests are answered by the champion and, when `shadow_in_canary`, shadowed by
      the candidate (paired evidence on the champion arm, logged as role=shadow).
    """
    if state.mode == "champion_only" or not state.candidate_version:
        return CHAMPION
    if state.mode == "shadow":
        return CHAMPION_WITH_SHADOW
    if in_candidate_arm(state.salt or "", key, state.percent):
        return CANDIDATE
    return CHAMPION_WITH_SHADOW if shadow_in_canary else CHAMPION
