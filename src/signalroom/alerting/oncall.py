"""On-call schedules: who is on call at an instant (PagerDuty's and Grafana OnCall's model).

A schedule has a time zone, rotation layers and overrides. A layer hands its shift from one
user to the next at ``handoff_time`` local wall time every ``shift_length`` days (``daily``)
or weeks (``weekly``), the first shift starting on ``start``; restrictions limit the hours a
layer is on duty. Layers listed later win where they overlap (PagerDuty's "higher layer");
overrides win over every layer, the most recent override first.

Wall times follow the zone's daylight-saving rules: a handoff at 09:00 stays at 09:00 local
across a change. A handoff inside a gap (02:30 on a spring-forward night) happens at the
instant Python's ``zoneinfo`` maps the wall time to (fold=0, one gap length later on the
clock); in a repeated hour (autumn) it happens at the first occurrence.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from signalroom.alerting.escalation_config import WEEKDAYS, Layer, Restriction, Schedule

__all__ = [
    "OnCall",
    "OverrideRecord",
    "Shift",
    "final_schedule",
    "layer_user_at",
    "oncall_at",
    "wall_to_instant",
]

MAX_SCHEDULE_SPAN = timedelta(days=93)


@dataclass(frozen=True)
class OverrideRecord:
    """An override made through the API (config overrides have ``id`` ``config-<n>``)."""

    id: str
    schedule: str
    user: str
    start: datetime
    end: datetime
    created_by: str = ""
    created_at: datetime | None = None

    def contains(self, t: datetime) -> bool:
        return self.start <= t < self.end

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "schedule": self.schedule,
            "user": self.user,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "createdBy": self.created_by,
            "createdAt": _iso(self.created_at) if self.created_at else None,
        }


@dataclass(frozen=True)
class OnCall:
    """The answer to "who is on call in ``schedule`` at ``at``"."""

    schedule: str
    at: datetime
    user: str | None
    source: str | None  # "override" | "layer" | None (nobody)
    layer: str | None = None
    override_id: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "schedule": self.schedule,
            "at": _iso(self.at),
            "user": self.user,
            "source": self.source,
            "layer": self.layer,
            "overrideId": self.override_id,
        }


@dataclass(frozen=True)
class Shift:
    """One stretch of the final schedule: ``user`` (or nobody) from ``start`` to ``end``."""

    start: datetime
    end: datetime
    user: str | None
    source: str | None
    layer: str | None

    def to_json(self) -> dict[str, object]:
        return {
            "start": _iso(self.start),
            "end": _iso(self.end),
            "user": self.user,
            "source": self.source,
            "layer": self.layer,
        }


def _iso(t: datetime) -> str:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z")


def wall_to_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The UTC instant of local wall time ``wall`` on ``day`` (fold=0 for gaps and repeats)."""
    return datetime.combine(day, wall, tzinfo=zone).astimezone(UTC)


def _period_days(layer: Layer) -> int:
    return layer.shift_length * (1 if layer.rotation == "daily" else 7)


def _shift_index(layer: Layer, zone: ZoneInfo, t: datetime) -> int | None:
    """Which shift of the layer contains ``t`` (None before the first handoff)."""
    t_utc = t.astimezone(UTC)
    if t_utc < wall_to_instant(layer.start, layer.handoff_time, zone):
        return None
    local_day = t_utc.astimezone(zone).date()
    days = (local_day - layer.start).days
    # Compare instants, not wall times: aware datetimes sharing a tzinfo compare by wall time.
    if t_utc < wall_to_instant(local_day, layer.handoff_time, zone):
        days -= 1
    return days // _period_days(layer)


def _minute_of_day(t: time) -> int:
    return t.hour * 60 + t.minute


def _in_window(position: int, start: int, end: int) -> bool:
    if start < end:
        return start <= position < end
    return position >= start or position < end  # wraps (or start == end: always)


def restriction_allows(restriction: Restriction, local: datetime) -> bool:
    minute = local.hour * 60 + local.minute
    if restriction.type == "daily":
        return _in_window(
            minute, _minute_of_day(restriction.start), _minute_of_day(restriction.end)
        )
    assert restriction.start_day is not None and restriction.end_day is not None
    position = local.weekday() * 1440 + minute
    start = WEEKDAYS.index(restriction.start_day) * 1440 + _minute_of_day(restriction.start)
    end = WEEKDAYS.index(restriction.end_day) * 1440 + _minute_of_day(restriction.end)
    return _in_window(position, start, end)


def layer_user_at(layer: Layer, zone: ZoneInfo, t: datetime) -> str | None:
    """The user of ``layer`` on duty at ``t``, or None (before its start, or restricted)."""
    index = _shift_index(layer, zone, t)
    if index is None:
        return None
    if layer.restrictions:
        local = t.astimezone(zone)
        if not any(restriction_allows(r, local) for r in layer.restrictions):
            return None
    return layer.users[index % len(layer.users)]


def _all_overrides(schedule: Schedule, extra: Sequence[OverrideRecord]) -> list[OverrideRecord]:
    """Config overrides first, then stored ones oldest first (so the last one wins)."""
    out = [
        OverrideRecord(f"config-{i}", schedule.name, o.user, o.start, o.end, "config")
        for i, o in enumerate(schedule.overrides)
    ]
    stored = [o for o in extra if o.schedule == schedule.name]
    epoch = datetime.min.replace(tzinfo=UTC)
    out.extend(sorted(stored, key=lambda o: (o.created_at or epoch, o.id)))
    return out


def oncall_at(schedule: Schedule, t: datetime, overrides: Sequence[OverrideRecord] = ()) -> OnCall:
    """Who is on call in ``schedule`` at ``t`` (an aware datetime)."""
    if t.tzinfo is None:
        raise ValueError("the instant needs a time zone")
    for o in reversed(_all_overrides(schedule, overrides)):
        if o.contains(t):
            return OnCall(schedule.name, t, o.user, "override", override_id=o.id)
    zone = schedule.zone
    for layer in reversed(schedule.layers):
        user = layer_user_at(layer, zone, t)
        if user is not None:
            return OnCall(schedule.name, t, user, "layer", layer=layer.name)
    return OnCall(schedule.name, t, None, None)


def _boundaries(
    schedule: Schedule, start: datetime, end: datetime, overrides: list[OverrideRecord]
) -> list[datetime]:
    zone = schedule.zone
    first = start.astimezone(zone).date() - timedelta(days=1)
    last = end.astimezone(zone).date() + timedelta(days=1)
    walls: set[time] = set()
    for layer in schedule.layers:
        walls.add(layer.handoff_time)
        for r in layer.restrictions:
            walls.update((r.start, r.end))
    points: set[datetime] = {start, end}
    day = first
    while day <= last:
        for wall in walls:
            points.add(wall_to_instant(day, wall, zone))
        day += timedelta(days=1)
    for layer in schedule.layers:
        points.add(wall_to_instant(layer.start, layer.handoff_time, zone))
    for o in overrides:
        points.update((o.start.astimezone(UTC), o.end.astimezone(UTC)))
    return sorted(p for p in points if start <= p <= end)


def final_schedule(
    schedule: Schedule,
    start: datetime,
    end: datetime,
    overrides: Sequence[OverrideRecord] = (),
) -> list[Shift]:
    """The computed schedule from ``start`` to ``end`` (at most 93 days): consecutive shifts,
    each with who is on call (None: nobody)."""
    if start.tzinfo is None or end.tzinfo is None:
        raise ValueError("start and end need a time zone")
    start, end = start.astimezone(UTC), end.astimezone(UTC)
    if end <= start:
        return []
    if end - start > MAX_SCHEDULE_SPAN:
        raise ValueError(f"at most {MAX_SCHEDULE_SPAN.days} days at once")
    points = _boundaries(schedule, start, end, _all_overrides(schedule, overrides))
    shifts: list[Shift] = []
    for a, b in itertools.pairwise(points):
        who = oncall_at(schedule, a, overrides)
        if shifts and (shifts[-1].user, shifts[-1].source, shifts[-1].layer) == (
            who.user,
            who.source,
            who.layer,
        ):
            prev = shifts[-1]
            shifts[-1] = Shift(prev.start, b, prev.user, prev.source, prev.layer)
        else:
            shifts.append(Shift(a, b, who.user, who.source, who.layer))
    return shifts
