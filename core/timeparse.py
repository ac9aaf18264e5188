"""Times typed by people: ISO 8601 and relative forms, always returned aware in UTC.

Accepted: `2026-11-20T14:00`, `2026-11-20 14:00:00+01:00`, `2026-11-20` (midnight UTC),
`now`, `today` (midnight UTC), `yesterday` (midnight UTC the day before), and "ago"
forms like `2h ago`, `30m ago`, `3 days ago`, `1 week ago`, `1d 6h ago`, `90s ago`.
A time without a zone is taken as UTC.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from core.errors import SmlError


class TimeParseError(SmlError, ValueError):
    """A time that is neither ISO 8601 nor a relative form this module knows."""


_UNITS: dict[str, float] = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_PART = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]+)")
_AGO = re.compile(r"^((?:\d+(?:\.\d+)?\s*[a-z]+\s*,?\s*)+)ago$")
EXAMPLES = "2026-11-20T14:00, 2h ago, 30m ago, 3 days ago, yesterday"


def parse_duration(text: str) -> timedelta:
    """`1d 6h`, `30m`, `3 days` -> a timedelta.

    Raises:
        TimeParseError: for an unknown unit or no number.
    """
    total = 0.0
    consumed = ""
    for number, unit in _PART.findall(text.lower()):
        if unit not in _UNITS:
            raise TimeParseError(f"unknown time unit {unit!r} in {text!r} (use s, m, h, d, w)")
        total += float(number) * _UNITS[unit]
        consumed += number + unit
    if not consumed or re.sub(r"[\s,]", "", text.lower()) != consumed:
        raise TimeParseError(f"cannot read a duration from {text!r} (like 2h, 30m, 3 days)")
    return timedelta(seconds=total)


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A time given as ISO 8601 or relative to `now` (default: the current time), in UTC.

    Raises:
        TimeParseError: one line with the accepted forms.
    """
    now = (now or datetime.now(UTC)).astimezone(UTC)
    raw = text.strip()
    lowered = raw.lower()
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if lowered == "now":
        return now
    if lowered == "today":
        return midnight
    if lowered == "yesterday":
        return midnight - timedelta(days=1)
    match = _AGO.match(lowered)
    if match:
        return now - parse_duration(match.group(1))
    try:
        parsed = datetime.fromisoformat(raw.replace("Z", "+00:00") if raw.endswith("Z") else raw)
    except ValueError:
        raise TimeParseError(f"cannot read the time {text!r}: expected e.g. {EXAMPLES}") from None
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
