"""Alertmanager time intervals: does an instant fall inside one, in the interval's location.

The YAML shape and the validation messages follow Alertmanager's ``timeinterval`` package::

    time_intervals:
      - name: business-hours
        time_intervals:
          - times: [{start_time: "09:00", end_time: "17:00"}]   # end is exclusive
            weekdays: ["monday:friday"]
            days_of_month: ["1:7", "-1"]      # negative counts back from the month's end
            months: ["january:march", "12"]
            years: ["2024:2026"]
            location: Europe/Berlin           # IANA name, "UTC" or "Local"

Every field present must match (AND); within a field any range may match (OR). An absent
field matches everything.
"""

from __future__ import annotations

import calendar
import re
from collections.abc import Iterable
from datetime import UTC, datetime, tzinfo
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_serializer, field_validator

__all__ = [
    "NamedTimeInterval",
    "TimeInterval",
    "TimeRange",
    "any_contains",
    "load_location",
]

_WEEKDAYS = {
    "sunday": 0,
    "monday": 1,
    "tuesday": 2,
    "wednesday": 3,
    "thursday": 4,
    "friday": 5,
    "saturday": 6,
}
_WEEKDAY_NAMES = {v: k for k, v in _WEEKDAYS.items()}
_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTH_NAMES = {v: k for k, v in _MONTHS.items()}
_VALID_TIME = re.compile(r"^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)")
_GO_INT = re.compile(r"[+-]?[0-9]+")


def _go_atoi(text: str) -> int:
    if not _GO_INT.fullmatch(text):
        raise ValueError(f'strconv.Atoi: parsing "{text}": invalid syntax')
    return int(text)


def _split_range(text: str) -> tuple[str, str]:
    text = text.lower()
    if ":" in text:
        parts = text.split(":")
        if len(parts) != 2:
            raise ValueError(f"couldn't parse range {text}, invalid format")
        return parts[0], parts[1]
    return text, text


def _weekday(text: str) -> int:
    if text not in _WEEKDAYS:
        raise ValueError(f"{text} is not a valid weekday")
    return _WEEKDAYS[text]


def _month(text: str) -> int:
    if text in _MONTHS:
        return _MONTHS[text]
    try:
        return _go_atoi(text)
    except ValueError:
        raise ValueError(f"{text} is not a valid month") from None


def _parse_clock(text: str) -> int:
    if not _VALID_TIME.match(text):
        raise ValueError(f"couldn't parse timestamp {text}, invalid format")
    hours, minutes = text.split(":")
    return int(hours) * 60 + int(minutes)


def load_location(name: str) -> tzinfo:
    """Go's ``time.LoadLocation``: ``""`` and ``"UTC"`` are UTC, ``"Local"`` the host zone."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        local = datetime.now().astimezone().tzinfo
        return local if local is not None else UTC
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None


class TimeRange(BaseModel):
    """Minutes of the day, ``[start_minute, end_minute)``, written ``start_time``/``end_time``."""

    model_config = ConfigDict(frozen=True)

    start_minute: int
    end_minute: int

    @classmethod
    def parse(cls, raw: Any) -> TimeRange:
        if isinstance(raw, TimeRange):
            return raw
        if not isinstance(raw, dict):
            raise ValueError("a time range must be a mapping with start_time and end_time")
        unknown = set(raw) - {"start_time", "end_time"}
        if unknown:
            raise ValueError(
                f"field {sorted(unknown)[0]} not found in type timeinterval.yamlTimeRange"
            )
        start_text = raw.get("start_time") or ""
        end_text = raw.get("end_time") or ""
        if not start_text or not end_text:
            raise ValueError("both start and end times must be provided")
        start, end = _parse_clock(str(start_text)), _parse_clock(str(end_text))
        if start >= end:
            raise ValueError("start time cannot be equal or greater than end time")
        return cls(start_minute=start, end_minute=end)

    def to_config(self) -> dict[str, str]:
        def clock(minutes: int) -> str:
            return f"{minutes // 60:02d}:{minutes % 60:02d}"

        return {"start_time": clock(self.start_minute), "end_time": clock(self.end_minute)}


Range = tuple[int, int]


class TimeInterval(BaseModel):
    """One ``time_intervals`` entry; ``contains(instant)`` says whether the instant is inside."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)

    times: list[TimeRange] | None = None
    weekdays: list[Range] | None = None
    days_of_month: list[Range] | None = None
    months: list[Range] | None = None
    years: list[Range] | None = None
    location: str | None = Field(default=None)

    @field_validator("times", mode="before")
    @classmethod
    def _times(cls, raw: Any) -> Any:
        if raw is None:
            return None
        return [TimeRange.parse(item) for item in _as_list(raw, "times")]

    @field_validator("weekdays", mode="before")
    @classmethod
    def _weekdays(cls, raw: Any) -> Any:
        if raw is None:
            return None
        out = []
        for item in _as_list(raw, "weekdays"):
            text = _scalar_text(item)
            begin_s, end_s = _split_range(text)
            begin, end = _weekday(begin_s), _weekday(end_s)
            if begin > end:
                # upstream's wording, kept so messages match Alertmanager's
                raise ValueError("start day cannot be before end day")
            out.append((begin, end))
        return out

    @field_validator("days_of_month", mode="before")
    @classmethod
    def _days_of_month(cls, raw: Any) -> Any:
        if raw is None:
            return None
        out = []
        for item in _as_list(raw, "days_of_month"):
            begin_s, end_s = _split_range(_scalar_text(item))
            begin, end = _go_atoi(begin_s), _go_atoi(end_s)
            if begin == 0 or begin < -31 or begin > 31:
                raise ValueError(f"{begin} is not a valid day of the month: out of range")
            if end == 0 or end < -31 or end > 31:
                raise ValueError(f"{end} is not a valid day of the month: out of range")
            if begin < 0 < end:
                raise ValueError("end day must be negative if start day is negative")
            check_begin = 28 + begin if begin < 0 else begin
            check_end = 28 + end if end < 0 else end
            if check_begin > check_end:
                raise ValueError(f"end day {end} is always before start day {begin}")
            out.append((begin, end))
        return out

    @field_validator("months", mode="before")
    @classmethod
    def _months(cls, raw: Any) -> Any:
        if raw is None:
            return None
        out = []
        for item in _as_list(raw, "months"):
            text = _scalar_text(item)
            begin_s, end_s = _split_range(text)
            begin, end = _month(begin_s), _month(end_s)
            for value in (begin, end):
                if value < 1 or value > 12:
                    raise ValueError(f"{text} is not a valid month: out of range")
            if begin > end:
                raise ValueError(
                    f"end month {_MONTH_NAMES[end]} is before start month {_MONTH_NAMES[begin]}"
                )
            out.append((begin, end))
        return out

    @field_validator("years", mode="before")
    @classmethod
    def _years(cls, raw: Any) -> Any:
        if raw is None:
            return None
        out = []
        for item in _as_list(raw, "years"):
            begin_s, end_s = _split_range(_scalar_text(item))
            begin, end = _go_atoi(begin_s), _go_atoi(end_s)
            if begin > end:
                raise ValueError(f"end year {end} is before start year {begin}")
            out.append((begin, end))
        return out

    @field_validator("location", mode="before")
    @classmethod
    def _location(cls, raw: Any) -> Any:
        if raw is None:
            return None
        name = str(raw)
        load_location(name)
        return name

    @field_serializer("times")
    def _ser_times(self, times: list[TimeRange] | None) -> list[dict[str, str]] | None:
        return None if times is None else [t.to_config() for t in times]

    @field_serializer("weekdays")
    def _ser_weekdays(self, ranges: list[Range] | None) -> list[str] | None:
        return None if ranges is None else [_fmt(r, _WEEKDAY_NAMES) for r in ranges]

    @field_serializer("months")
    def _ser_months(self, ranges: list[Range] | None) -> list[str] | None:
        return None if ranges is None else [_fmt(r, _MONTH_NAMES) for r in ranges]

    @field_serializer("days_of_month", "years")
    def _ser_ints(self, ranges: list[Range] | None) -> list[str] | None:
        return None if ranges is None else [_fmt(r, None) for r in ranges]

    @property
    def tz(self) -> tzinfo | None:
        return None if self.location is None else load_location(self.location)

    def contains(self, instant: datetime) -> bool:
        """Whether ``instant`` lies in this interval, judged in the interval's location.

        A naive ``instant`` is taken as UTC. Without a location the instant's own zone is used,
        as Alertmanager uses the time it is given.
        """
        if instant.tzinfo is None:
            instant = instant.replace(tzinfo=UTC)
        tz = self.tz
        t = instant.astimezone(tz) if tz is not None else instant
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(r.start_minute <= minute < r.end_minute for r in self.times):
                return False
        if self.days_of_month is not None:
            days = calendar.monthrange(t.year, t.month)[1]
            inside = False
            for begin_cfg, end_cfg in self.days_of_month:
                begin = days + begin_cfg + 1 if begin_cfg < 0 else begin_cfg
                end = days + end_cfg + 1 if end_cfg < 0 else end_cfg
                if begin > days:  # e.g. the 31st in a 30-day month: never inside
                    continue
                begin = max(-days, min(begin, days))
                end = max(-days, min(end, days))
                if begin <= t.day <= end:
                    inside = True
                    break
            if not inside:
                return False
        if self.months is not None and not any(b <= t.month <= e for b, e in self.months):
            return False
        if self.weekdays is not None:
            weekday = (t.weekday() + 1) % 7  # Go counts from Sunday = 0
            if not any(b <= weekday <= e for b, e in self.weekdays):
                return False
        return self.years is None or any(b <= t.year <= e for b, e in self.years)


def _fmt(r: Range, names: dict[int, str] | None) -> str:
    def one(v: int) -> str:
        return names[v] if names is not None else str(v)

    return one(r[0]) if r[0] == r[1] else f"{one(r[0])}:{one(r[1])}"


def _as_list(raw: Any, field: str) -> list[Any]:
    if not isinstance(raw, list | tuple):
        raise ValueError(f"{field} must be a list")
    return list(raw)


def _scalar_text(item: Any) -> str:
    if isinstance(item, bool) or not isinstance(item, str | int):
        raise ValueError(f"cannot parse {item!r} as a range")
    return str(item)


class NamedTimeInterval(BaseModel):
    """A named list of intervals (``time_intervals`` and the deprecated ``mute_time_intervals``)."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    time_intervals: list[TimeInterval] = Field(default_factory=list)

    def contains(self, instant: datetime) -> bool:
        return any_contains(self.time_intervals, instant)


def any_contains(intervals: Iterable[TimeInterval], instant: datetime) -> bool:
    """True when any interval contains the instant (how a named interval is evaluated)."""
    return any(ti.contains(instant) for ti in intervals)
