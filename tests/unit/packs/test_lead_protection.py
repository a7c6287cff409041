"""Edge cases of the lead-protection state machine (pure Python)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from signalroom.packs.freshfoodz.lead_protection import (
    BERLIN,
    Hold,
    Lead,
    add_months,
    evaluate,
    evaluate_lead,
    local_deadline,
    state_counts,
)

pytestmark = pytest.mark.unit


def berlin(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=BERLIN)  # type: ignore[arg-type]


def utc(*args: int) -> datetime:
    return datetime(*args).replace(tzinfo=UTC)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("start", "months", "expected"),
    [
        (datetime(2025, 8, 31), 6, datetime(2026, 2, 28)),
        (datetime(2023, 8, 31), 6, datetime(2024, 2, 29)),  # leap year
        (datetime(2024, 2, 29), 6, datetime(2024, 8, 29)),
        (datetime(2024, 2, 29), 12, datetime(2025, 2, 28)),
        (datetime(2025, 3, 31), 6, datetime(2025, 9, 30)),
        (datetime(2025, 7, 15), 6, datetime(2026, 1, 15)),
        (datetime(2025, 12, 31), 2, datetime(2026, 2, 28)),
        (datetime(2100, 8, 31), 6, datetime(2101, 2, 28)),
        (datetime(2099, 8, 31), 6, datetime(2100, 2, 28)),  # 2100 is not a leap year
    ],
)
def test_add_months_clamps_the_day(start: datetime, months: int, expected: datetime) -> None:
    assert add_months(start, months) == expected


def test_31_august_plus_six_months_on_the_berlin_wall_clock() -> None:
    lead = Lead("a", "u", berlin(2025, 8, 31, 10, 0))
    s = evaluate_lead(lead, [], utc(2025, 9, 1))
    assert s.reminder_at.astimezone(BERLIN) == berlin(2026, 2, 28, 10, 0)
    assert s.grace_at.astimezone(BERLIN) == berlin(2026, 4, 29, 10, 0)  # 60 days, CEST by then
    assert s.expires_at.astimezone(BERLIN) == berlin(2026, 5, 9, 10, 0)
    assert s.state == "protected"
    assert s.hold == timedelta(0)


def test_leap_year_expiry() -> None:
    s = evaluate_lead(Lead("a", "u", berlin(2023, 8, 31, 9, 0)), [], utc(2023, 9, 1))
    assert s.reminder_at.astimezone(BERLIN) == berlin(2024, 2, 29, 9, 0)
    assert s.expires_at.astimezone(BERLIN) == berlin(2024, 5, 9, 9, 0)


def test_dst_change_keeps_the_wall_clock_time() -> None:
    # created in winter time (UTC+1), deadline in summer time (UTC+2): 12:00 local both times
    s = evaluate_lead(Lead("a", "u", berlin(2025, 10, 28, 12, 0)), [], utc(2025, 11, 1))
    assert s.reminder_at == utc(2026, 4, 28, 10, 0)
    assert s.reminder_at.astimezone(BERLIN).hour == 12


def test_deadline_in_the_spring_gap_uses_the_offset_before_the_jump() -> None:
    # 29 Sep 2025 02:30 CEST + 6 months = 29 Mar 2026 02:30, which does not exist in Berlin
    assert local_deadline(berlin(2025, 9, 29, 2, 30), 6, 0) == utc(2026, 3, 29, 1, 30)


def test_deadline_in_the_autumn_repeat_is_standard_time() -> None:
    # 25 Apr 2026 02:30 + 6 months = 25 Oct 2026 02:30, which happens twice: take CET (later)
    assert local_deadline(berlin(2026, 4, 25, 2, 30), 6, 0) == utc(2026, 10, 25, 1, 30)


def test_created_at_in_another_zone_is_read_on_the_berlin_calendar() -> None:
    # 23:30 UTC on 31 Aug is already 1 Sep in Berlin: + 6 months = 1 Mar, not 28 Feb
    s = evaluate_lead(Lead("a", "u", utc(2025, 8, 31, 23, 30)), [], utc(2025, 9, 2))
    assert s.reminder_at.astimezone(BERLIN) == berlin(2026, 3, 1, 1, 30)


def test_overlapping_and_nested_holds_count_once() -> None:
    lead = Lead("a", "u", utc(2025, 1, 10))
    holds = [
        Hold("a", utc(2025, 2, 1), utc(2025, 2, 11)),
        Hold("a", utc(2025, 2, 5), utc(2025, 2, 15)),  # overlaps: union 1..15 Feb = 14 days
        Hold("a", utc(2025, 2, 2), utc(2025, 2, 3)),  # nested
        Hold("a", utc(2025, 3, 1), utc(2025, 3, 2)),  # separate: 1 day
    ]
    s = evaluate_lead(lead, holds, utc(2025, 6, 1))
    assert s.hold == timedelta(days=15)
    base = evaluate_lead(lead, [], utc(2025, 6, 1))
    assert s.expires_at - base.expires_at == timedelta(days=15)


def test_open_hold_counts_up_to_now() -> None:
    lead = Lead("a", "u", utc(2025, 1, 10))
    holds = [Hold("a", utc(2025, 2, 1), None)]
    assert evaluate_lead(lead, holds, utc(2025, 2, 3)).hold == timedelta(days=2)
    later = evaluate_lead(lead, holds, utc(2025, 12, 3))
    assert later.hold == timedelta(days=305)
    assert later.state == "protected"  # the clock is stopped while the hold is open


def test_holds_are_clipped_to_the_lead_and_to_now() -> None:
    lead = Lead("a", "u", utc(2025, 1, 10))
    holds = [
        Hold("a", utc(2025, 1, 1), utc(2025, 1, 12)),  # before creation: 2 days count
        Hold("a", utc(2025, 5, 1), utc(2025, 5, 20)),  # still in the future at now
    ]
    assert evaluate_lead(lead, holds, utc(2025, 4, 1)).hold == timedelta(days=2)
    assert evaluate_lead(lead, holds, utc(2025, 5, 4)).hold == timedelta(days=5)


def test_a_hold_after_expiry_does_not_revive_the_lead() -> None:
    lead = Lead("a", "u", utc(2024, 1, 10))
    late = Hold("a", utc(2025, 1, 1), utc(2025, 2, 1))
    s = evaluate_lead(lead, [late], utc(2025, 3, 1))
    assert s.hold == timedelta(0)
    assert s.state == "expired"


def test_a_hold_that_starts_in_grace_extends_past_the_base_expiry() -> None:
    lead = Lead("a", "u", utc(2025, 1, 10))
    base = evaluate_lead(lead, [], utc(2025, 1, 11))
    hold = Hold("a", base.expires_at - timedelta(days=1), base.expires_at + timedelta(days=30))
    s = evaluate_lead(lead, [hold], base.expires_at + timedelta(days=40))
    assert s.hold == timedelta(days=31)
    assert s.expires_at == base.expires_at + timedelta(days=31)
    assert s.state == "expired"  # resumed on 30 days after the base expiry, 1 day left, gone
    during = evaluate_lead(lead, [hold], base.expires_at + timedelta(days=29))
    assert (during.state, during.hold) == ("grace", timedelta(days=30))


def test_state_machine_walks_through_every_phase() -> None:
    lead = Lead("a", "u", berlin(2025, 1, 15, 9, 0))
    base = evaluate_lead(lead, [], utc(2025, 1, 16))
    eps = timedelta(microseconds=1)
    phases = [
        (base.reminder_at - eps, "protected", 0),
        (base.reminder_at, "reminder_due", 1),
        (base.grace_at - eps, "reminder_due", 1),
        (base.grace_at, "grace", 2),
        (base.expires_at - timedelta(hours=24) - eps, "grace", 2),
        (base.expires_at - timedelta(hours=24), "grace", 3),
        (base.expires_at - eps, "grace", 3),
        (base.expires_at, "expired", 3),
    ]
    for now, state, due in phases:
        s = evaluate_lead(lead, [], now)
        assert (s.state, s.reminders_due) == (state, due), now


def test_released_wins_and_stops_reminders() -> None:
    lead = Lead("a", "u", utc(2025, 1, 10), released_at=utc(2025, 7, 20))
    s = evaluate_lead(lead, [], utc(2026, 1, 1))
    assert s.state == "released"
    assert s.reminders_due == 1  # only the 6-month reminder fell due before the release
    before = evaluate_lead(lead, [], utc(2025, 7, 1))
    assert before.state == "protected"


def test_evaluate_matches_holds_by_lead_and_counts_states() -> None:
    leads = [Lead("a", "u", utc(2025, 1, 1)), Lead("b", "u", utc(2024, 1, 1))]
    states = evaluate(leads, [Hold("b", utc(2024, 2, 1), None)], utc(2025, 3, 1))
    assert [s.state for s in states] == ["protected", "protected"]
    assert state_counts(states) == {
        "protected": 2,
        "reminder_due": 0,
        "grace": 0,
        "expired": 0,
        "released": 0,
    }
    with pytest.raises(ValueError, match="aware"):
        evaluate(leads, [], datetime(2025, 1, 1))
