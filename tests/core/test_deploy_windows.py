"""Deploy windows: parsing, zones across daylight saving, freeze dates, and the controller
outside a window on real rows (SQLite and Postgres): one event per closed period, a breach
still rolled back."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import Engine

from config import ConfigError, load_settings
from core import ledger
from core.controller import CanaryPolicy, reconcile
from core.deploy_windows import DAYS, DeployWindows
from core.tick import HELD_DEPLOY_WINDOW
from tests.core.test_controller import BETTER, BROKEN, VERSIONS, _feed, _later, _start

PARIS = "Europe/Paris"
WEEKDAYS = DeployWindows.parse("Mon-Thu 09:00-16:00", PARIS)


@pytest.mark.parametrize(
    ("windows", "zone", "freeze", "message"),
    [
        ("Mon-Thu", "UTC", "", "DEPLOY_WINDOWS: 'Mon-Thu' is not a window"),
        ("Mon-Fry 09:00-16:00", "UTC", "", "DEPLOY_WINDOWS: 'Fry' in"),
        ("Mon 16:00-09:00", "UTC", "", "must start before it ends"),
        ("Mon 09:00-25:00", "UTC", "", "is not a time of day"),
        ("Mon 09:00-16:00", "Europe/Pariss", "", "DEPLOY_TIMEZONE: 'Europe/Pariss'"),
        ("", "UTC", "2026-12-24,24/12/2026", "DEPLOY_FREEZE_DATES: '24/12/2026'"),
    ],
)
def test_parse_errors_name_the_variable(windows: str, zone: str, freeze: str, message: str) -> None:
    with pytest.raises(ValueError, match=r"^DEPLOY_(WINDOWS|TIMEZONE|FREEZE_DATES): ") as info:
        DeployWindows.parse(windows, zone, freeze)
    assert message in str(info.value)


def test_settings_refuse_a_bad_window_naming_the_variable(monkeypatch) -> None:
    monkeypatch.setenv("DEPLOY_WINDOWS", "weekdays 9 to 5")
    with pytest.raises(ConfigError, match="DEPLOY_WINDOWS"):
        load_settings()


def test_settings_default_is_always_open() -> None:
    windows = load_settings().deploy_windows

    assert windows.always_open
    assert windows.is_open(datetime(2026, 12, 25, 3, 0, tzinfo=UTC))
    assert windows.why_closed(datetime(2026, 12, 25, 3, 0, tzinfo=UTC)) == ""


def test_several_ranges_and_wrapping_days() -> None:
    windows = DeployWindows.parse("Mon-Thu 09:00-16:00; Fri 09:00-12:00, Sat-Sun 22:00-24:00")

    assert [sorted(w.days) for w in windows.windows] == [[0, 1, 2, 3], [4], [5, 6]]
    friday = datetime(2026, 12, 4, tzinfo=UTC)  # a Friday
    assert DAYS[friday.weekday()] == "Fri"
    assert windows.is_open(friday.replace(hour=11, minute=59))
    assert not windows.is_open(friday.replace(hour=12))  # the end is excluded
    assert windows.is_open(friday.replace(hour=23) + timedelta(days=2))  # Sunday 23:00
    assert DeployWindows.parse("Sun-Mon 10:00-11:00").windows[0].days == frozenset({6, 0})


def test_window_is_wall_clock_time_across_daylight_saving() -> None:
    winter = datetime(2026, 1, 12, 8, 30, tzinfo=UTC)  # Monday, 09:30 in Paris (UTC+1)
    summer = datetime(2026, 6, 8, 7, 30, tzinfo=UTC)  # Monday, 09:30 in Paris (UTC+2)

    assert WEEKDAYS.is_open(winter)
    assert WEEKDAYS.is_open(summer)
    assert not WEEKDAYS.is_open(winter - timedelta(hours=1))  # 08:30 local
    assert not WEEKDAYS.is_open(summer.replace(hour=14))  # 16:00 local: closed


def test_next_open_over_the_spring_forward_weekend() -> None:
    # Fri 2026-03-27 17:00 CET; the clocks go forward on Sun 2026-03-29
    friday = datetime(2026, 3, 27, 16, 0, tzinfo=UTC)

    opening = WEEKDAYS.next_open(friday)

    assert opening == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)  # Mon 09:00 CEST (UTC+2)
    reason = WEEKDAYS.why_closed(friday)
    print(reason)
    assert "Fri 2026-03-27 17:00 Europe/Paris is outside the deploy windows" in reason
    assert reason.endswith("next opening Mon 2026-03-30 09:00 Europe/Paris")


def test_next_open_over_the_fall_back_weekend_and_a_skipped_hour() -> None:
    # Fri 2026-10-23 17:00 CEST; the clocks go back on Sun 2026-10-25
    friday = datetime(2026, 10, 23, 15, 0, tzinfo=UTC)
    assert WEEKDAYS.next_open(friday) == datetime(2026, 10, 26, 8, 0, tzinfo=UTC)  # UTC+1
    # a window starting inside the skipped hour opens when the clock jumps past it
    night = DeployWindows.parse("Sun 02:30-04:00", PARIS)
    saturday = datetime(2026, 3, 28, 12, 0, tzinfo=UTC)
    opening = night.next_open(saturday)
    assert opening == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)  # 03:30 CEST
    assert night.is_open(opening)


def test_freeze_dates_close_whole_local_days() -> None:
    windows = DeployWindows.parse("Mon-Fri 00:00-24:00", PARIS, "2026-12-24, 2026-12-31")
    # 23:30 UTC on the 23rd is already the 24th in Paris
    eve = datetime(2026, 12, 23, 23, 30, tzinfo=UTC)

    assert not windows.is_open(eve)
    assert windows.why_closed(eve).startswith("2026-12-24 is a freeze date")
    assert windows.next_open(eve) == datetime(2026, 12, 24, 23, 0, tzinfo=UTC)  # the 25th
    assert windows.is_open(eve - timedelta(hours=1))  # 23:30 on the 23rd in Paris
    only_freeze = DeployWindows.parse("", "UTC", "2026-12-24")
    assert not only_freeze.always_open
    assert only_freeze.is_open(datetime(2026, 12, 23, 12, tzinfo=UTC))


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        WEEKDAYS.is_open(datetime(2026, 1, 12, 9, 30))


# --- the controller outside a window (SQLite and Postgres) ------------------------------


@pytest.fixture
def policy() -> CanaryPolicy:
    base = CanaryPolicy.from_settings(load_settings())
    return dataclasses.replace(base, bake_seconds=60.0, min_samples=50)


def _whole_day_two_days_after(at: datetime) -> DeployWindows:
    """A window open all of one weekday, two days after `at`'s (closed at `at`)."""
    day = DAYS[(at.weekday() + 2) % 7]
    return DeployWindows.parse(f"{day} 00:00-24:00", "UTC")


def test_outside_a_window_holds_with_one_event_per_closed_period(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=3)
    now = _later(current)
    windows = _whole_day_two_days_after(now)
    opening = windows.next_open(now)
    assert opening is not None

    ticks = [reconcile(engine, policy, now=now + timedelta(hours=h), windows=windows, **VERSIONS)
             for h in (0, 1, 2)]  # fmt: skip

    assert [[o.outcome for o in t] for t in ticks] == [["held"]] * 3
    print(ticks[0][0].detail)
    assert ticks[0][0].detail.startswith("advance held: ")
    assert "next opening" in ticks[0][0].detail
    events = ledger.rollout_events(engine, rollout.id)
    assert [e.kind for e in events] == ["start", HELD_DEPLOY_WINDOW]
    assert events[-1].figures is not None
    assert events[-1].figures["deploy_window"]["next_open"] == opening.isoformat()
    assert events[-1].figures["verdict"]["action"] == "advance"
    assert ledger.get_rollout(engine, rollout.id).stage_index == 0

    # the next closed period (the day after the window) is a new hold: one more event
    after = opening + timedelta(days=1, hours=1)
    assert [
        o.outcome for o in reconcile(engine, policy, now=after, windows=windows, **VERSIONS)
    ] == ["held"]
    kinds = [e.kind for e in ledger.rollout_events(engine, rollout.id)]
    assert kinds == ["start", HELD_DEPLOY_WINDOW, HELD_DEPLOY_WINDOW]

    # inside the window the same evidence advances
    inside = opening + timedelta(hours=12)
    moved = reconcile(engine, policy, now=inside, windows=windows, **VERSIONS)
    assert [o.outcome for o in moved] == ["advanced"]


def test_outside_a_window_a_breach_is_still_rolled_back(
    engine: Engine, policy: CanaryPolicy
) -> None:
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, BROKEN, 6_000, seed=12)
    now = _later(current)
    windows = _whole_day_two_days_after(now)
    assert not windows.is_open(now)

    outcomes = reconcile(engine, policy, now=now, windows=windows, **VERSIONS)

    assert [o.outcome for o in outcomes] == ["rolled_back"]
    assert [e.kind for e in ledger.rollout_events(engine, rollout.id)] == ["start", "rollback"]
    assert ledger.get_rollout(engine, rollout.id).status == "rolled_back"


def test_outside_a_window_no_operator_is_asked(engine: Engine, policy: CanaryPolicy) -> None:
    policy = dataclasses.replace(policy, require_approval=True)
    rollout = _start(engine, policy)
    current = _feed(engine, rollout.id, BETTER, 6_000, seed=0)
    now = _later(current)

    outcomes = reconcile(
        engine, policy, now=now, windows=_whole_day_two_days_after(now), **VERSIONS
    )

    assert [(o.outcome, o.request) for o in outcomes] == [("held", None)]
    assert [e.kind for e in ledger.rollout_events(engine, rollout.id)] == [
        "start",
        HELD_DEPLOY_WINDOW,
    ]
