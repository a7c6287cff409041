"""On-call schedules: rotations, handoffs across daylight-saving changes, restrictions,
layer precedence, overrides and the computed final schedule."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from signalroom.alerting.escalation_config import EscalationConfigError, parse_extensions
from signalroom.alerting.oncall import OverrideRecord, final_schedule, oncall_at

pytestmark = pytest.mark.unit


def schedule(**fields: Any) -> Any:
    raw = {"name": "primary", "time_zone": "Europe/Berlin", "receiver": "pager", **fields}
    return parse_extensions({"schedules": [raw]}, ["pager"]).schedules[0]


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=UTC)


WEEKLY = {
    "name": "weekly",
    "rotation": "weekly",
    "start": "2024-03-18",  # a Monday
    "handoff_time": "09:00",
    "users": ["anna", "ben", "carla"],
}


def test_weekly_rotation_hands_off_at_local_time_across_dst() -> None:
    s = schedule(layers=[WEEKLY])
    assert oncall_at(s, utc(2024, 3, 18, 7, 59)).user is None  # before the first shift
    assert oncall_at(s, utc(2024, 3, 18, 8, 0)).user == "anna"  # 09:00 CET = 08:00 UTC
    assert oncall_at(s, utc(2024, 3, 25, 7, 59)).user == "anna"
    assert oncall_at(s, utc(2024, 3, 25, 8, 0)).user == "ben"  # still CET on 25 March
    # 2024-03-31 02:00 CET -> 03:00 CEST: the next handoff is 09:00 CEST = 07:00 UTC
    assert oncall_at(s, utc(2024, 4, 1, 6, 59)).user == "ben"
    assert oncall_at(s, utc(2024, 4, 1, 7, 0)).user == "carla"
    assert oncall_at(s, utc(2024, 4, 8, 7, 0)).user == "anna"  # wraps around
    who = oncall_at(s, utc(2024, 4, 1, 7, 0))
    assert (who.source, who.layer) == ("layer", "weekly")


def test_autumn_change_and_naive_times_rejected() -> None:
    s = schedule(layers=[{**WEEKLY, "start": "2024-10-21"}])
    # 27 October 03:00 CEST -> 02:00 CET; the handoff on the 28th is 09:00 CET = 08:00 UTC
    assert oncall_at(s, utc(2024, 10, 28, 7, 59)).user == "anna"
    assert oncall_at(s, utc(2024, 10, 28, 8, 0)).user == "ben"
    with pytest.raises(ValueError):
        oncall_at(s, datetime(2024, 10, 28, 8, 0))


def test_handoff_inside_the_spring_gap_is_deterministic() -> None:
    s = schedule(
        layers=[{**WEEKLY, "rotation": "daily", "start": "2024-03-30", "handoff_time": "02:30"}]
    )
    # 02:30 does not exist on 31 March; zoneinfo maps it (fold=0) to 03:30 CEST = 01:30 UTC
    assert oncall_at(s, utc(2024, 3, 31, 1, 29)).user == "anna"
    assert oncall_at(s, utc(2024, 3, 31, 1, 30)).user == "ben"
    shifts = final_schedule(s, utc(2024, 3, 30, 12), utc(2024, 4, 1, 12))
    assert [(x.start, x.user) for x in shifts] == [
        (utc(2024, 3, 30, 12), "anna"),
        (utc(2024, 3, 31, 1, 30), "ben"),
        (utc(2024, 4, 1, 0, 30), "carla"),
    ]


def test_daily_rotation_with_two_day_shifts() -> None:
    s = schedule(
        time_zone="UTC",
        layers=[
            {
                "name": "d",
                "rotation": "daily",
                "shift_length": 2,
                "start": "2024-01-01",
                "handoff_time": "00:00",
                "users": ["a", "b"],
            }
        ],
    )
    got = [oncall_at(s, utc(2024, 1, day, 12)).user for day in range(1, 9)]
    assert got == ["a", "a", "b", "b", "a", "a", "b", "b"]


def test_restrictions_and_layer_precedence() -> None:
    business = {
        "name": "business-hours",
        "rotation": "weekly",
        "start": "2024-01-01",
        "handoff_time": "09:00",
        "users": ["dev1", "dev2"],
        "restrictions": [
            {
                "type": "weekly",
                "start_day": "monday",
                "start": "09:00",
                "end_day": "friday",
                "end": "17:00",
            }
        ],
    }
    nights = {
        "name": "nights",
        "rotation": "daily",
        "start": "2024-01-01",
        "handoff_time": "09:00",
        "users": ["ops"],
        "restrictions": [{"type": "daily", "start": "22:00", "end": "06:00"}],
    }
    s = schedule(time_zone="UTC", layers=[business, nights])
    assert oncall_at(s, utc(2024, 1, 3, 10)).user == "dev1"  # Wednesday daytime
    assert oncall_at(s, utc(2024, 1, 10, 10)).user == "dev2"  # next week
    assert oncall_at(s, utc(2024, 1, 3, 23)).user == "ops"  # wraps past midnight
    assert oncall_at(s, utc(2024, 1, 4, 5, 59)).user == "ops"
    # a weekly restriction is one span, Monday 09:00 to Friday 17:00 (PagerDuty's meaning)
    assert oncall_at(s, utc(2024, 1, 4, 7)).user == "dev1"
    assert oncall_at(s, utc(2024, 1, 5, 18)).user is None  # Friday evening: neither layer
    assert oncall_at(s, utc(2024, 1, 6, 12)).user is None  # Saturday
    # a later layer wins where both are on duty
    overlapping = schedule(time_zone="UTC", layers=[business, {**nights, "restrictions": []}])
    assert oncall_at(overlapping, utc(2024, 1, 3, 10)).user == "ops"


def test_overrides_win_latest_first() -> None:
    s = schedule(
        layers=[WEEKLY],
        overrides=[{"user": "zoe", "start": "2024-03-19T10:00:00Z", "end": "2024-03-19T12:00:00Z"}],
    )
    assert oncall_at(s, utc(2024, 3, 19, 11)).user == "zoe"
    assert oncall_at(s, utc(2024, 3, 19, 12)).user == "anna"  # end is exclusive
    made = [
        OverrideRecord(
            "1", "primary", "yann", utc(2024, 3, 19, 9), utc(2024, 3, 19, 13), "x", utc(2024, 3, 1)
        ),
        OverrideRecord(
            "2", "other", "nope", utc(2024, 3, 19), utc(2024, 3, 20), "x", utc(2024, 3, 2)
        ),
    ]
    who = oncall_at(s, utc(2024, 3, 19, 11), made)
    assert (who.user, who.source, who.override_id) == ("yann", "override", "1")
    shifts = final_schedule(s, utc(2024, 3, 19, 0), utc(2024, 3, 20, 0), made)
    assert [(x.start.hour, x.end.hour, x.user) for x in shifts] == [
        (0, 9, "anna"),
        (9, 13, "yann"),
        (13, 0, "anna"),
    ]


def test_final_schedule_limits_and_empty() -> None:
    s = schedule(layers=[WEEKLY])
    assert final_schedule(s, utc(2024, 3, 20), utc(2024, 3, 19)) == []
    with pytest.raises(ValueError):
        final_schedule(s, utc(2024, 1, 1), utc(2024, 1, 1) + timedelta(days=94))


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"time_zone": "Mars/Olympus"}, "unknown time zone"),
        ({"receiver": None}, "no receiver for anna, ben, carla"),
        ({"receiver": "missing"}, "undefined receiver 'missing'"),
        (
            {
                "layers": [
                    {
                        **WEEKLY,
                        "restrictions": [{"type": "weekly", "start": "09:00", "end": "17:00"}],
                    }
                ]
            },
            "needs start_day and end_day",
        ),
        ({"layers": [{**WEEKLY, "handoff_time": "25:00"}]}, "not a time of day"),
        (
            {
                "overrides": [
                    {"user": "x", "start": "2024-01-02T00:00:00Z", "end": "2024-01-01T00:00:00Z"}
                ]
            },
            "end must be after start",
        ),
    ],
)
def test_invalid_schedules_are_rejected(raw: dict[str, Any], message: str) -> None:
    fields = {"name": "primary", "receiver": "pager", "layers": [WEEKLY], **raw}
    with pytest.raises(EscalationConfigError) as err:
        parse_extensions({"schedules": [fields]}, ["pager"])
    assert message in str(err.value)
    assert err.value.problems[0][0][0] == "schedules"


def test_unquoted_yaml_handoff_time_is_minutes() -> None:
    # YAML 1.1 reads 09:30 as 570; it must still mean half past nine
    s = schedule(layers=[{**WEEKLY, "handoff_time": 570}])
    assert s.layers[0].handoff_time.hour == 9 and s.layers[0].handoff_time.minute == 30
