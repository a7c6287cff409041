"""The FreshFoodz season calendar (seed 002): load multipliers and T-minus milestones.

Defaults: asparagus (Spargel) April-June 3x, Oktoberfest September 4x, Christmas
November-December 5x; outside every season the multiplier is 1. Seasons are whole days on the
Europe/Berlin calendar, ``start`` and ``end`` inclusive; where seasons overlap the highest
multiplier wins. A calendar is configurable from a mapping (YAML) with
:meth:`SeasonCalendar.from_mapping`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from signalroom.packs.freshfoodz.lead_protection import BERLIN

__all__ = [
    "DEFAULT_CALENDAR",
    "DEFAULT_MILESTONES",
    "Milestone",
    "Season",
    "SeasonCalendar",
    "season_load_multiplier",
]


@dataclass(frozen=True, slots=True)
class Milestone:
    """A preparation step ``days_before`` the season starts (T-minus)."""

    name: str
    days_before: int


DEFAULT_MILESTONES: tuple[Milestone, ...] = (
    Milestone("capacity-plan", 42),
    Milestone("provisioning-start", 28),
    Milestone("load-test", 14),
    Milestone("code-freeze", 7),
    Milestone("war-room", 1),
)


@dataclass(frozen=True, slots=True)
class Season:
    """A recurring season: (month, day) bounds, inclusive, and its load multiplier."""

    name: str
    start: tuple[int, int]
    end: tuple[int, int]
    multiplier: float
    milestones: tuple[Milestone, ...] = DEFAULT_MILESTONES

    def __post_init__(self) -> None:
        if self.multiplier <= 0:
            raise ValueError(f"season {self.name}: multiplier must be > 0")
        if self.end < self.start:
            raise ValueError(f"season {self.name}: end {self.end} before start {self.start}")
        date(2024, *self.start), date(2024, *self.end)

    def start_date(self, year: int) -> date:
        return date(year, *self.start)

    def end_date(self, year: int) -> date:
        return date(year, *self.end)

    def contains(self, day: date) -> bool:
        return self.start <= (day.month, day.day) <= self.end

    def next_start(self, after: date) -> date:
        """The first start of this season on or after ``after``."""
        first = self.start_date(after.year)
        return first if first >= after else self.start_date(after.year + 1)

    def milestone_dates(self, year: int) -> list[tuple[Milestone, date]]:
        """The season's milestones in ``year``, earliest first."""
        start = self.start_date(year)
        dated = [(m, start - timedelta(days=m.days_before)) for m in self.milestones]
        return sorted(dated, key=lambda item: item[1])


@dataclass(frozen=True, slots=True)
class SeasonCalendar:
    """The seasons of a year, looked up by name or by day."""

    seasons: tuple[Season, ...] = field(default_factory=tuple)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> SeasonCalendar:
        """From ``{seasons: [{name, start: "MM-DD", end: "MM-DD", multiplier,
        milestones: {name: days_before}}]}`` (or the list alone)."""
        items = data["seasons"] if isinstance(data, Mapping) else data
        seasons = []
        for item in items:
            milestones = item.get("milestones")
            seasons.append(
                Season(
                    name=str(item["name"]),
                    start=_month_day(item["start"]),
                    end=_month_day(item["end"]),
                    multiplier=float(item["multiplier"]),
                    milestones=DEFAULT_MILESTONES
                    if milestones is None
                    else tuple(Milestone(str(k), int(v)) for k, v in milestones.items()),
                )
            )
        return cls(tuple(seasons))

    def season(self, name: str) -> Season:
        for s in self.seasons:
            if s.name == name:
                return s
        known = ", ".join(s.name for s in self.seasons)
        raise KeyError(f"unknown season {name!r} (known: {known})")

    def active(self, at: datetime | date) -> Season | None:
        """The season in force on ``at``'s Berlin calendar day (highest multiplier first)."""
        day = _berlin_day(at)
        hits = [s for s in self.seasons if s.contains(day)]
        return max(hits, key=lambda s: s.multiplier) if hits else None

    def multiplier(self, at: datetime | date) -> float:
        season = self.active(at)
        return season.multiplier if season else 1.0

    def upcoming_milestones(
        self, at: datetime | date, days: int
    ) -> list[tuple[str, Milestone, date]]:
        """(season, milestone, date) falling in the next ``days`` days from ``at``, in order."""
        day = _berlin_day(at)
        out: list[tuple[str, Milestone, date]] = []
        for s in self.seasons:
            for year in (day.year, day.year + 1):
                for m, when in s.milestone_dates(year):
                    if day <= when <= day + timedelta(days=days):
                        out.append((s.name, m, when))
        return sorted(out, key=lambda item: (item[2], item[0]))


def _month_day(value: Any) -> tuple[int, int]:
    month, day = (int(part) for part in str(value).split("-"))
    return (month, day)


def _berlin_day(at: datetime | date) -> date:
    if isinstance(at, datetime):
        if at.tzinfo is None:
            raise ValueError("datetime must be timezone-aware")
        return at.astimezone(BERLIN).date()
    return at


DEFAULT_CALENDAR = SeasonCalendar(
    (
        Season("asparagus", (4, 1), (6, 30), 3.0),
        Season("oktoberfest", (9, 1), (9, 30), 4.0),
        Season("christmas", (11, 1), (12, 31), 5.0),
    )
)


def season_load_multiplier(
    at: datetime | date, calendar: SeasonCalendar = DEFAULT_CALENDAR
) -> float:
    """The load multiplier in force at ``at`` (1.0 outside every season)."""
    return calendar.multiplier(at)
