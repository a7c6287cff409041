"""Lead protection "6 months + 60 days + 10 days with stop-clock" (seed 002), in pure Python.

A lead is protected for the salesperson who created it. Calendar arithmetic happens on the
Europe/Berlin wall clock (``created_at`` local + 6 months, then + 60 and + 10 calendar days);
hold time ("stop the clock") is added afterwards as elapsed time. Every rule and assumption is
written down in the pack's README; ``lead_protection.sql`` implements the same definition and the
tests hold both (and the metric series) to agreement.

States (``STATES``), for a lead at instant ``now``::

    protected      now <  reminder_at        (created + 6 months + hold)
    reminder_due   now <  grace_at           (created + 6 months + 60 days + hold)
    grace          now <  expires_at         (created + 6 months + 70 days + hold)
    expired        now >= expires_at
    released       released_at <= now        (the salesperson gave the lead up; wins over all)

Reminders (``REMINDERS``) fall due at ``reminder_at`` ("first"), ``grace_at`` ("second") and
24 hours before ``expires_at`` ("final"); a reminder counts as due once its instant has passed
and the lead had not been released before it.
"""

from __future__ import annotations

import calendar
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final
from zoneinfo import ZoneInfo

__all__ = [
    "BERLIN",
    "GRACE_DAYS",
    "PROTECTION_MONTHS",
    "REMINDERS",
    "REMINDER_DAYS",
    "STATES",
    "Hold",
    "Lead",
    "LeadState",
    "add_months",
    "counted_hold",
    "evaluate",
    "evaluate_lead",
    "local_deadline",
    "state_counts",
]

BERLIN: Final = ZoneInfo("Europe/Berlin")
PROTECTION_MONTHS: Final = 6
REMINDER_DAYS: Final = 60
GRACE_DAYS: Final = 10
FINAL_REMINDER_BEFORE: Final = timedelta(hours=24)
STATES: Final = ("protected", "reminder_due", "grace", "expired", "released")
REMINDERS: Final = ("first", "second", "final")


@dataclass(frozen=True, slots=True)
class Lead:
    """A lead row: ``created_at`` and ``released_at`` are timezone-aware instants."""

    lead_id: str
    user_id: str
    created_at: datetime
    released_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class Hold:
    """A stop-clock hold on a lead; ``end_at`` None means still open (counts up to ``now``)."""

    lead_id: str
    start_at: datetime
    end_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class LeadState:
    """A lead's protection at one instant."""

    lead_id: str
    user_id: str
    state: str
    hold: timedelta
    reminder_at: datetime
    grace_at: datetime
    expires_at: datetime
    reminders_due: int


def add_months(value: datetime, months: int) -> datetime:
    """``value`` plus whole calendar months on its own wall clock; the day is clamped to the
    target month's length (31 Aug + 6 months = 28 Feb, or 29 Feb in a leap year), like
    PostgreSQL's ``timestamp + interval 'N months'``."""
    index = value.year * 12 + (value.month - 1) + months
    year, month = divmod(index, 12)
    day = min(value.day, calendar.monthrange(year, month + 1)[1])
    return value.replace(year=year, month=month + 1, day=day)


def _to_utc_local(local: datetime) -> datetime:
    """A Berlin wall-clock time as a UTC instant, resolved as PostgreSQL's ``AT TIME ZONE``
    does: a time skipped by the spring DST jump is read with the offset before the jump
    (02:30 -> 03:30 CEST), a time repeated in autumn as standard time (the later instant)."""
    naive = local.replace(tzinfo=None)
    early = naive.replace(tzinfo=BERLIN, fold=0)
    late = naive.replace(tzinfo=BERLIN, fold=1)
    if early.utcoffset() == late.utcoffset():
        return early.astimezone(UTC)
    early_utc, late_utc = early.astimezone(UTC), late.astimezone(UTC)
    back = early_utc.astimezone(BERLIN).replace(tzinfo=None)
    if back != naive:  # a nonexistent local time: zoneinfo's fold=0 uses the pre-jump offset
        return early_utc
    return max(early_utc, late_utc)  # ambiguous: standard time, the later instant


def local_deadline(created_at: datetime, months: int, days: int) -> datetime:
    """``created_at`` on the Berlin wall clock + ``months`` + ``days`` calendar days, as UTC."""
    local = created_at.astimezone(BERLIN).replace(tzinfo=None)
    shifted = add_months(local, months) + timedelta(days=days)
    return _to_utc_local(shifted)


def _merged(
    holds: Iterable[Hold], lower: datetime, now: datetime
) -> list[tuple[datetime, datetime]]:
    """Hold windows clipped to [lower, now] and merged, so overlaps count once."""
    spans = sorted(
        (max(h.start_at, lower), min(h.end_at or now, now))
        for h in holds
        if max(h.start_at, lower) < min(h.end_at or now, now)
    )
    merged: list[tuple[datetime, datetime]] = []
    for start, end in spans:
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1] = (merged[-1][0], end)
        else:
            merged.append((start, end))
    return merged


def counted_hold(
    created_at: datetime, base_expiry: datetime, holds: Iterable[Hold], now: datetime
) -> timedelta:
    """Hold time that stops the clock: merged windows up to ``now``, in order, as long as each
    started while the lead was still protected (a hold after expiry does not revive it)."""
    total = timedelta(0)
    for start, end in _merged(holds, created_at, now):
        if start >= base_expiry + total:
            break
        total += end - start
    return total


def evaluate_lead(lead: Lead, holds: Sequence[Hold], now: datetime) -> LeadState:
    """The protection state of one lead at ``now`` (an aware datetime)."""
    reminder_local = local_deadline(lead.created_at, PROTECTION_MONTHS, 0)
    grace_local = local_deadline(lead.created_at, PROTECTION_MONTHS, REMINDER_DAYS)
    expiry_local = local_deadline(lead.created_at, PROTECTION_MONTHS, REMINDER_DAYS + GRACE_DAYS)
    hold = counted_hold(lead.created_at, expiry_local, holds, now)
    reminder_at, grace_at, expires_at = (
        reminder_local + hold,
        grace_local + hold,
        expiry_local + hold,
    )
    released = lead.released_at is not None and lead.released_at <= now
    if released:
        state = "released"
    elif now < reminder_at:
        state = "protected"
    elif now < grace_at:
        state = "reminder_due"
    elif now < expires_at:
        state = "grace"
    else:
        state = "expired"
    cutoff = now if lead.released_at is None else min(now, lead.released_at)
    due = sum(
        1 for at in (reminder_at, grace_at, expires_at - FINAL_REMINDER_BEFORE) if at <= cutoff
    )
    return LeadState(
        lead.lead_id, lead.user_id, state, hold, reminder_at, grace_at, expires_at, due
    )


def evaluate(leads: Iterable[Lead], holds: Iterable[Hold], now: datetime) -> list[LeadState]:
    """Every lead's state at ``now``; holds are matched to leads by ``lead_id``."""
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    by_lead: dict[str, list[Hold]] = defaultdict(list)
    for hold in holds:
        by_lead[hold.lead_id].append(hold)
    return [evaluate_lead(lead, by_lead.get(lead.lead_id, []), now) for lead in leads]


def state_counts(states: Iterable[LeadState]) -> dict[str, int]:
    """Number of leads per state, every state present (0 when none)."""
    counts = dict.fromkeys(STATES, 0)
    for s in states:
        counts[s.state] += 1
    return counts
