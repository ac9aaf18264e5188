"""Deploy windows: when a rollout may move forward (advance or promote).

Settings DEPLOY_WINDOWS names one or more weekly ranges, comma or semicolon separated, in
the zone DEPLOY_TIMEZONE: `Mon-Thu 09:00-16:00; Fri 09:00-12:00` (a day or a day range,
wrapping past Sunday allowed as in `Sun-Mon`; a time range within one day, `24:00` allowed
as an end). DEPLOY_FREEZE_DATES lists whole days (`2026-12-24,2026-12-31`, dates in that
zone) closed whatever the windows say. No windows means no weekly restriction (only the
freeze dates close); that is the default. Times are wall-clock times of the zone, so a
window stays 09:00-16:00 local across a daylight-saving change.

Pure: no I/O, no clock; the controller passes `now` (core.tick).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
HORIZON_DAYS = 400
"""How far `next_open` looks ahead (a year of freeze dates plus a margin)."""

_RANGE = re.compile(
    r"^(?P<d1>[A-Za-z]{3})(?:\s*-\s*(?P<d2>[A-Za-z]{3}))?\s+"
    r"(?P<t1>\d{1,2}:\d{2})\s*-\s*(?P<t2>\d{1,2}:\d{2})$"
)


@dataclass(frozen=True, slots=True)
class Window:
    """One weekly range: these weekdays (0 = Monday), from `start` to `end` local time."""

    days: frozenset[int]
    start: time
    end: time | None
    """None means midnight at the end of the day (`24:00`)."""
    text: str

    def contains(self, local: datetime) -> bool:
        """True when the local wall-clock time falls in this window."""
        if local.weekday() not in self.days or local.time() < self.start:
            return False
        return self.end is None or local.time() < self.end


@dataclass(frozen=True, slots=True)
class DeployWindows:
    """The weekly windows, their zone and the freeze dates (see the module docstring)."""

    windows: tuple[Window, ...] = ()
    zone: str = "UTC"
    freeze: frozenset[date] = frozenset()

    @classmethod
    def parse(
        cls, windows: str = "", timezone: str = "UTC", freeze_dates: str = ""
    ) -> DeployWindows:
        """Read DEPLOY_WINDOWS, DEPLOY_TIMEZONE and DEPLOY_FREEZE_DATES.

        Raises:
            ValueError: naming the variable and what it expects.
        """
        try:
            ZoneInfo(timezone.strip() or "UTC")
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"DEPLOY_TIMEZONE: {timezone!r} is not a known time zone "
                "(an IANA name like Europe/Paris or UTC)"
            ) from exc
        parsed = tuple(_parse_window(part.strip()) for part in _split(windows))
        freeze = frozenset(_parse_date(part.strip()) for part in _split(freeze_dates))
        return cls(parsed, timezone.strip() or "UTC", freeze)

    @property
    def tz(self) -> ZoneInfo:
        """The zone of the windows and freeze dates."""
        return ZoneInfo(self.zone)

    @property
    def always_open(self) -> bool:
        """True when nothing restricts (no windows, no freeze dates)."""
        return not self.windows and not self.freeze

    def describe(self) -> str:
        """One line: the windows, zone and freeze dates."""
        text = "; ".join(w.text for w in self.windows) or "any time"
        if self.freeze:
            text += ", except " + ", ".join(d.isoformat() for d in sorted(self.freeze))
        return f"{text} ({self.zone})"

    def is_open(self, at: datetime) -> bool:
        """True when a rollout may move forward at `at` (timezone-aware).

        Raises:
            ValueError: `at` is naive.
        """
        local = self._local(at)
        if local.date() in self.freeze:
            return False
        return not self.windows or any(w.contains(local) for w in self.windows)

    def why_closed(self, at: datetime) -> str:
        """Why no forward move at `at`, with the next opening; "" when open."""
        if self.is_open(at):
            return ""
        local = self._local(at)
        stamp = local.strftime("%a %Y-%m-%d %H:%M")
        if local.date() in self.freeze:
            why = f"{local.date().isoformat()} is a freeze date (DEPLOY_FREEZE_DATES)"
        else:
            why = f"{stamp} {self.zone} is outside the deploy windows {self.describe()}"
        opening = self.next_open(at)
        if opening is None:
            return f"{why}; no opening within {HORIZON_DAYS} days"
        return f"{why}; next opening {opening.astimezone(self.tz):%a %Y-%m-%d %H:%M} {self.zone}"

    def next_open(self, at: datetime) -> datetime | None:
        """The first instant at or after `at` when the windows are open (in `at`'s zone);
        None if none within HORIZON_DAYS."""
        if self.is_open(at):
            return at
        local = self._local(at)
        for offset in range(HORIZON_DAYS):
            day = local.date() + timedelta(days=offset)
            if day in self.freeze:
                continue
            starts = [time(0)] if not self.windows else _starts_on(self.windows, day)
            for start in sorted(starts):
                candidate = _instant(day, start, self.tz)
                if candidate > at and self.is_open(candidate):
                    return candidate.astimezone(at.tzinfo)
        return None

    def _local(self, at: datetime) -> datetime:
        if at.tzinfo is None:
            raise ValueError(f"deploy windows need a timezone-aware time, got {at!r}")
        return at.astimezone(self.tz)


def _starts_on(windows: tuple[Window, ...], day: date) -> list[time]:
    return [w.start for w in windows if day.weekday() in w.days]


def _instant(day: date, start: time, tz: ZoneInfo) -> datetime:
    """The instant a local wall-clock time happens; a time skipped by a daylight-saving
    jump is moved past the jump (normalised through UTC)."""
    naive = datetime.combine(day, start)
    return naive.replace(tzinfo=tz).astimezone(UTC).astimezone(tz)


def _split(value: str) -> list[str]:
    return [part for part in re.split(r"[,;]", value or "") if part.strip()]


def _parse_window(text: str) -> Window:
    match = _RANGE.match(text)
    if match is None:
        raise ValueError(
            f"DEPLOY_WINDOWS: {text!r} is not a window; expected days and hours like "
            "'Mon-Thu 09:00-16:00' (ranges separated by ',' or ';')"
        )
    first = _day(match["d1"], text)
    last = _day(match["d2"], text) if match["d2"] else first
    days = frozenset((first + i) % 7 for i in range((last - first) % 7 + 1))
    start, end = _clock(match["t1"], text), _clock(match["t2"], text)
    if start is None or (end is not None and end <= start):
        raise ValueError(
            f"DEPLOY_WINDOWS: {text!r} must start before it ends within one day "
            "(split an overnight window in two: 'Mon 22:00-24:00, Tue 00:00-06:00')"
        )
    return Window(days, start, end, text)


def _day(name: str, text: str) -> int:
    try:
        return DAYS.index(name.capitalize())
    except ValueError:
        raise ValueError(
            f"DEPLOY_WINDOWS: {name!r} in {text!r} is not a day; expected one of " + ", ".join(DAYS)
        ) from None


def _clock(value: str, text: str) -> time | None:
    """HH:MM as a time; 24:00 as None (the end of the day)."""
    hours, minutes = (int(p) for p in value.split(":"))
    if (hours, minutes) == (24, 0):
        return None
    if not (0 <= hours < 24 and 0 <= minutes < 60):
        raise ValueError(f"DEPLOY_WINDOWS: {value!r} in {text!r} is not a time of day (HH:MM)")
    return time(hours, minutes)


def _parse_date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise ValueError(
            f"DEPLOY_FREEZE_DATES: {text!r} is not a date; expected YYYY-MM-DD, comma separated"
        ) from None
