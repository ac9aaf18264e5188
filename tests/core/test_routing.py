"""Routing decisions as pure functions: stickiness, monotonic expansion, shares, salts."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.ledger.routing import RoutingState
from core.routing import (
    BUCKETS,
    CANDIDATE,
    CHAMPION,
    CHAMPION_WITH_SHADOW,
    bucket,
    candidate_threshold,
    choose_route,
    in_candidate_arm,
    routing_key,
)

user_ids = st.text(
    alphabet=st.characters(min_codepoint=33, max_codepoint=0x2FFF), min_size=1, max_size=40
)
salts = st.text(min_size=1, max_size=64)
percents = st.floats(min_value=0, max_value=100, allow_nan=False)


def _canary(salt: str, percent: float) -> RoutingState:
    return RoutingState(
        model_name="intent-classifier",
        champion_version="1",
        mode="canary",
        candidate_version="2",
        rollout_id=7,
        salt=salt,
        percent=percent,
        status="canary",
    )


@given(salt=salts, user=user_ids, percent=percents)
def test_route_same_user_is_sticky(salt: str, user: str, percent: float) -> None:
    state = _canary(salt, percent)
    first = choose_route(state, user)
    assert all(choose_route(state, user) == first for _ in range(3))
    assert bucket(salt, user) == bucket(salt, user)
    assert 0 <= bucket(salt, user) < BUCKETS


def test_bucket_is_stable_across_processes() -> None:
    # a pinned value: Python's randomised hash() would change it per process, and a
    # change of the hash would silently move users between arms of running rollouts
    assert bucket("salt-a", "user-1") == 5402


@given(salt=salts, user=user_ids, low=percents, high=percents)
def test_expand_percent_only_adds_users(salt: str, user: str, low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    if in_candidate_arm(salt, user, low):
        assert in_candidate_arm(salt, user, high)


@given(low=percents, high=percents)
def test_candidate_threshold_is_monotonic(low: float, high: float) -> None:
    low, high = min(low, high), max(low, high)
    assert 0 <= candidate_threshold(low) <= candidate_threshold(high) <= BUCKETS


@settings(max_examples=25, deadline=None)
@given(salt=salts, percent=st.sampled_from([1.0, 5.0, 10.0, 25.0, 50.0, 90.0]))
def test_candidate_share_within_tolerance_of_percent(salt: str, percent: float) -> None:
    n = 20_000
    share = sum(in_candidate_arm(salt, f"user-{i}", percent) for i in range(n)) / n
    p = percent / 100
    tolerance = 5 * (p * (1 - p) / n) ** 0.5  # 5 standard errors of a binomial share
    assert abs(share - p) <= tolerance


@settings(max_examples=20, deadline=None)
@given(salt_a=salts, salt_b=salts)
def test_two_salts_draw_independent_arms(salt_a: str, salt_b: str) -> None:
    if salt_a == salt_b:
        return
    n, percent = 20_000, 50.0
    both = sum(
        in_candidate_arm(salt_a, f"u{i}", percent) and in_candidate_arm(salt_b, f"u{i}", percent)
        for i in range(n)
    )
    # independent 50% draws overlap on 25% of users; the same draw would overlap on 50%
    expected, se = 0.25, (0.25 * 0.75 / n) ** 0.5
    assert abs(both / n - expected) <= 5 * se


def test_percent_edges_route_nobody_or_everybody() -> None:
    users = [f"u{i}" for i in range(2_000)]
    assert not any(in_candidate_arm("s", u, 0.0) for u in users)
    assert all(in_candidate_arm("s", u, 100.0) for u in users)
    assert candidate_threshold(33.33) == 3333


def test_routing_key_prefers_user_then_request() -> None:
    assert routing_key("alice", "r1") == "alice"
    assert routing_key(None, "r1") == "r1"
    assert routing_key("", "r1") == "r1"


@pytest.mark.parametrize(
    ("mode", "percent", "candidate", "shadow_in_canary", "expected"),
    [
        ("champion_only", 0.0, None, True, CHAMPION),
        ("shadow", 0.0, "2", True, CHAMPION_WITH_SHADOW),
        ("canary", 100.0, "2", True, CANDIDATE),
        ("canary", 0.0, "2", True, CHAMPION_WITH_SHADOW),
        ("canary", 0.0, "2", False, CHAMPION),
        ("canary", 100.0, None, True, CHAMPION),
    ],
)
def test_choose_route_per_mode(
    mode: str, percent: float, candidate: str | None, shadow_in_canary: bool, expected: object
) -> None:
    state = RoutingState(
        model_name="m",
        champion_version="1",
        mode=mode,  # type: ignore[arg-type]
        candidate_version=candidate,
        rollout_id=1 if candidate else None,
        salt="s" if candidate else None,
        percent=percent,
    )
    assert choose_route(state, "any-user", shadow_in_canary=shadow_in_canary) == expected
