"""Time intervals: ranges, negative days of month, locations and DST transitions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from signalroom.alerting.timeinterval import NamedTimeInterval, TimeInterval, any_contains

pytestmark = pytest.mark.unit


def interval(text: str) -> TimeInterval:
    return TimeInterval.model_validate(yaml.safe_load(text))


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def test_times_end_is_exclusive() -> None:
    ti = interval("times: [{start_time: '09:00', end_time: '17:00'}]")
    assert ti.contains(utc(2024, 5, 6, 9, 0))
    assert ti.contains(utc(2024, 5, 6, 16, 59, 59))
    assert not ti.contains(utc(2024, 5, 6, 17, 0))
    assert not ti.contains(utc(2024, 5, 6, 8, 59))


def test_whole_day_and_multiple_ranges() -> None:
    ti = interval(
        "times: [{start_time: '00:00', end_time: '06:00'},"
        " {start_time: '22:00', end_time: '24:00'}]"
    )
    assert ti.contains(utc(2024, 1, 1, 23, 59))
    assert ti.contains(utc(2024, 1, 1, 0, 0))
    assert not ti.contains(utc(2024, 1, 1, 12, 0))


def test_weekdays_sunday_is_zero() -> None:
    ti = interval("weekdays: ['monday:friday']")
    assert ti.contains(utc(2024, 5, 6, 12))  # Monday
    assert ti.contains(utc(2024, 5, 10, 12))  # Friday
    assert not ti.contains(utc(2024, 5, 11, 12))  # Saturday
    assert not ti.contains(utc(2024, 5, 12, 12))  # Sunday
    weekend = interval("weekdays: [Saturday, SUNDAY]")
    assert weekend.contains(utc(2024, 5, 12, 12))


def test_days_of_month_negative_and_clamped() -> None:
    last = interval("days_of_month: ['-1']")
    assert last.contains(utc(2024, 2, 29))  # leap year
    assert not last.contains(utc(2024, 2, 28))
    assert last.contains(utc(2023, 2, 28))
    last3 = interval("days_of_month: ['-3:-1']")
    assert last3.contains(utc(2024, 4, 28)) and not last3.contains(utc(2024, 4, 27))
    # the 30th/31st do not exist in February: never inside then
    late = interval("days_of_month: ['30:31']")
    assert not any(late.contains(utc(2023, 2, d)) for d in range(1, 29))
    assert late.contains(utc(2023, 3, 31))
    # a range running past the month's end is clamped to it
    tail = interval("days_of_month: ['25:31']")
    assert tail.contains(utc(2023, 2, 28))
    first = interval("days_of_month: ['1:7', '15']")
    assert first.contains(utc(2024, 6, 7)) and first.contains(utc(2024, 6, 15))
    assert not first.contains(utc(2024, 6, 8))


def test_months_and_years() -> None:
    ti = interval("months: ['january:march', 'december']\nyears: ['2024:2025']")
    assert ti.contains(utc(2024, 2, 1))
    assert ti.contains(utc(2025, 12, 31))
    assert not ti.contains(utc(2024, 4, 1))
    assert not ti.contains(utc(2026, 1, 1))
    numeric = interval("months: ['4:6']")
    assert numeric.contains(utc(2024, 5, 1)) and not numeric.contains(utc(2024, 7, 1))


def test_all_fields_must_match() -> None:
    ti = interval(
        "times: [{start_time: '09:00', end_time: '17:00'}]\nweekdays: ['monday:friday']\n"
        "months: ['may']"
    )
    assert ti.contains(utc(2024, 5, 6, 10))
    assert not ti.contains(utc(2024, 5, 11, 10))  # Saturday
    assert not ti.contains(utc(2024, 6, 3, 10))  # June
    assert interval("{}").contains(utc(2000, 1, 1))  # nothing set: always inside


def test_location_moves_the_wall_clock() -> None:
    ti = interval("times: [{start_time: '09:00', end_time: '17:00'}]\nlocation: Australia/Sydney")
    # 23:30 UTC on Sunday is 09:30 Monday in Sydney (AEST, UTC+10)
    assert ti.contains(utc(2024, 6, 2, 23, 30))
    assert not ti.contains(utc(2024, 6, 3, 9, 30))
    weekday = interval("weekdays: [monday]\nlocation: Australia/Sydney")
    assert weekday.contains(utc(2024, 6, 2, 23, 30))


def test_without_location_the_instants_own_zone_is_used() -> None:
    ti = interval("times: [{start_time: '09:00', end_time: '10:00'}]")
    plus2 = timezone(timedelta(hours=2))
    assert ti.contains(datetime(2024, 6, 3, 9, 30, tzinfo=plus2))
    assert not ti.contains(datetime(2024, 6, 3, 9, 30, tzinfo=plus2).astimezone(UTC))
    assert ti.contains(datetime(2024, 6, 3, 9, 30))  # naive is UTC


def test_dst_spring_forward_skips_the_missing_hour() -> None:
    ti = interval("times: [{start_time: '02:00', end_time: '03:00'}]\nlocation: Europe/Berlin")
    # 2024-03-31: clocks jump from 02:00 CET to 03:00 CEST, 02:xx never happens
    day = [utc(2024, 3, 30, 22) + timedelta(minutes=15 * i) for i in range(4 * 26)]
    assert not any(ti.contains(t) for t in day if t.date() <= datetime(2024, 3, 31).date())
    # the day before it does happen, at 01:00 UTC
    assert ti.contains(utc(2024, 3, 30, 1, 30))


def test_dst_fall_back_repeats_the_hour() -> None:
    ti = interval("times: [{start_time: '02:00', end_time: '03:00'}]\nlocation: Europe/Berlin")
    # 2024-10-27: 02:00-03:00 local happens twice, 00:00-01:00 UTC (CEST) and 01:00-02:00 UTC (CET)
    assert ti.contains(utc(2024, 10, 27, 0, 30))
    assert ti.contains(utc(2024, 10, 27, 1, 30))
    assert not ti.contains(utc(2024, 10, 27, 2, 30))
    assert not ti.contains(utc(2024, 10, 26, 23, 30))


def test_named_interval_is_any_of_its_entries() -> None:
    named = NamedTimeInterval.model_validate(
        {
            "name": "off-hours",
            "time_intervals": [
                {"weekdays": ["saturday", "sunday"]},
                {"times": [{"start_time": "00:00", "end_time": "08:00"}]},
            ],
        }
    )
    assert named.contains(utc(2024, 5, 11, 12))
    assert named.contains(utc(2024, 5, 6, 7))
    assert not named.contains(utc(2024, 5, 6, 12))
    assert not any_contains([], utc(2024, 5, 6, 12))


def test_round_trip_to_config_shape() -> None:
    raw: dict[str, Any] = {
        "times": [{"start_time": "09:00", "end_time": "17:30"}],
        "weekdays": ["monday:friday", "sunday"],
        "days_of_month": ["1:5", "-1"],
        "months": ["january:march"],
        "years": ["2024"],
        "location": "Europe/Berlin",
    }
    ti = TimeInterval.model_validate(raw)
    assert ti.model_dump(exclude_none=True) == raw
    assert TimeInterval.model_validate(ti.model_dump(exclude_none=True)) == ti


ERRORS = [
    ("times: [{start_time: '09:00'}]", "both start and end times must be provided"),
    ("times: [{start_time: '10:00', end_time: '09:00'}]", "start time cannot be equal or greater"),
    ("times: [{start_time: '9:00', end_time: '10:00'}]", "couldn't parse timestamp 9:00"),
    ("times: [{start_time: '00:00', end_time: '24:01'}]", "couldn't parse timestamp 24:01"),
    ("weekdays: ['friday:monday']", "start day cannot be before end day"),
    # Sunday is day 0, so a weekend range must be written as two days
    ("weekdays: ['saturday:sunday']", "start day cannot be before end day"),
    ("weekdays: [funday]", "funday is not a valid weekday"),
    ("weekdays: ['a:b:c']", "couldn't parse range a:b:c, invalid format"),
    ("days_of_month: ['0']", "0 is not a valid day of the month: out of range"),
    ("days_of_month: ['32']", "32 is not a valid day of the month: out of range"),
    ("days_of_month: ['-2:5']", "end day must be negative if start day is negative"),
    ("days_of_month: ['10:1']", "end day 1 is always before start day 10"),
    ("months: ['march:january']", "end month january is before start month march"),
    ("months: [smarch]", "smarch is not a valid month"),
    ("months: ['13']", "13 is not a valid month: out of range"),
    ("years: ['2025:2024']", "end year 2024 is before start year 2025"),
    ("location: Mars/Olympus", "unknown time zone Mars/Olympus"),
    ("bogus: 1", "Extra inputs are not permitted"),
]


@pytest.mark.parametrize(("text", "message"), ERRORS)
def test_validation_errors(text: str, message: str) -> None:
    with pytest.raises(ValidationError) as info:
        interval(text)
    assert message in str(info.value)
