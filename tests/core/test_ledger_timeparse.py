"""Times typed by operators: ISO 8601 and relative forms, always aware UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from core.timeparse import TimeParseError, parse_duration, parse_time

NOW = datetime(2026, 11, 22, 13, 30, 15, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2h ago", NOW - timedelta(hours=2)),
        ("30m ago", NOW - timedelta(minutes=30)),
        ("3 days ago", NOW - timedelta(days=3)),
        ("1 week ago", NOW - timedelta(weeks=1)),
        ("1d 6h ago", NOW - timedelta(days=1, hours=6)),
        ("90s ago", NOW - timedelta(seconds=90)),
        ("1.5h ago", NOW - timedelta(minutes=90)),
        ("  2 Hours Ago ", NOW - timedelta(hours=2)),
        ("now", NOW),
        ("today", datetime(2026, 11, 22, tzinfo=UTC)),
        ("yesterday", datetime(2026, 11, 21, tzinfo=UTC)),
        ("2026-11-17T14:00", datetime(2026, 11, 17, 14, tzinfo=UTC)),
        ("2026-11-17 14:00:00+01:00", datetime(2026, 11, 17, 13, tzinfo=UTC)),
        ("2026-11-17T14:00:00Z", datetime(2026, 11, 17, 14, tzinfo=UTC)),
        ("2026-11-17", datetime(2026, 11, 17, tzinfo=UTC)),
    ],
)
def test_parse_time_reads_iso_and_relative_forms(text: str, expected: datetime) -> None:
    parsed = parse_time(text, now=NOW)
    assert parsed == expected
    assert parsed.tzinfo is not None


@pytest.mark.parametrize("text", ["", "soon", "2 fortnights ago", "ago", "2h", "14:00 tomorrow"])
def test_parse_time_refuses_unknown_forms_with_examples(text: str) -> None:
    with pytest.raises(TimeParseError, match=r"cannot read|unknown time unit"):
        parse_time(text, now=NOW)


def test_parse_duration_sums_parts_and_refuses_junk() -> None:
    assert parse_duration("1d 2h, 3m") == timedelta(days=1, hours=2, minutes=3)
    with pytest.raises(TimeParseError, match="unknown time unit 'parsecs'"):
        parse_duration("3 parsecs")
    with pytest.raises(TimeParseError, match="cannot read a duration"):
        parse_duration("2h and then some")
