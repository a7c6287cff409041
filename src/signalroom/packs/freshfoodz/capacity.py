"""Seasonal pre-provisioning calculator (seed 002): ``signalroom capacity plan``.

For every component, from its measured baseline load (per second), the season's multiplier and
a headroom fraction::

    target      = baseline_load * multiplier * (1 + headroom)
    instances   = max(min_instances, ceil(target / capacity_per_instance))
    connections = instances * connections_per_instance
    queue       = ceil(target * queue_buffer_seconds)
    start       = season start - lead_time_days        (provisioning must begin by then)

Arithmetic is decimal so that 100 * 3 * 1.2 / 60 is exactly 6 instances, not 7.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from signalroom.packs.freshfoodz.seasons import DEFAULT_CALENDAR, Season, SeasonCalendar

__all__ = [
    "Baseline",
    "ComponentPlan",
    "Plan",
    "capacity_app",
    "capacity_plan",
    "load_baseline",
    "plan",
]


@dataclass(frozen=True, slots=True)
class Baseline:
    """One component's measured baseline and how it scales."""

    component: str
    load_per_second: float
    capacity_per_instance: float
    connections_per_instance: int = 0
    queue_buffer_seconds: float = 0.0
    min_instances: int = 1
    lead_time_days: int = 14

    def __post_init__(self) -> None:
        if self.load_per_second < 0:
            raise ValueError(f"{self.component}: load_per_second must be >= 0")
        if self.capacity_per_instance <= 0:
            raise ValueError(f"{self.component}: capacity_per_instance must be > 0")


@dataclass(frozen=True, slots=True)
class ComponentPlan:
    """What one component needs during the season."""

    component: str
    target_load_per_second: float
    instances: int
    connections: int
    queue_capacity: int
    provision_by: date


@dataclass(frozen=True, slots=True)
class Plan:
    """The capacity plan of one season."""

    season: str
    multiplier: float
    headroom: float
    season_start: date
    provisioning_starts: date
    components: tuple[ComponentPlan, ...]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        return json.loads(json.dumps(out, default=str))  # type: ignore[no-any-return]


def _dec(value: float) -> Decimal:
    return Decimal(str(value))


def plan(
    baseline: Sequence[Baseline], season: Season, headroom: float, *, today: date | None = None
) -> Plan:
    """The plan for the next start of ``season`` on or after ``today`` (default: today)."""
    if headroom < 0:
        raise ValueError("headroom must be >= 0")
    if not baseline:
        raise ValueError("baseline has no components")
    start = season.next_start(today or date.today())
    factor = _dec(season.multiplier) * (1 + _dec(headroom))
    parts = []
    for b in baseline:
        target = _dec(b.load_per_second) * factor
        instances = max(b.min_instances, math.ceil(target / _dec(b.capacity_per_instance)))
        parts.append(
            ComponentPlan(
                component=b.component,
                target_load_per_second=float(target),
                instances=instances,
                connections=instances * b.connections_per_instance,
                queue_capacity=math.ceil(target * _dec(b.queue_buffer_seconds)),
                provision_by=start - timedelta(days=b.lead_time_days),
            )
        )
    return Plan(
        season=season.name,
        multiplier=season.multiplier,
        headroom=headroom,
        season_start=start,
        provisioning_starts=min(p.provision_by for p in parts),
        components=tuple(parts),
    )


def load_baseline(data: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> list[Baseline]:
    """Components from ``{components: [{component, load_per_second, ...}]}`` or the list."""
    items = data["components"] if isinstance(data, Mapping) else data
    return [Baseline(**dict(item)) for item in items]


def render_plan(p: Plan) -> str:
    """The plan as a plain-text table."""
    lines = [
        f"season {p.season} x{p.multiplier:g} from {p.season_start}, headroom {p.headroom:.0%}",
        f"provisioning must start by {p.provisioning_starts}",
        f"{'component':<20} {'target/s':>10} {'instances':>9} {'conns':>7} {'queue':>9} "
        "provision_by",
    ]
    for c in p.components:
        lines.append(
            f"{c.component:<20} {c.target_load_per_second:>10.2f} {c.instances:>9} "
            f"{c.connections:>7} {c.queue_capacity:>9} {c.provision_by}"
        )
    return "\n".join(lines)


capacity_app = typer.Typer(
    help="Seasonal capacity planning (FreshFoodz pack).", no_args_is_help=True
)


@capacity_app.command("plan")
def capacity_plan(
    baseline: Annotated[
        Path, typer.Option("--baseline", "-b", help="YAML/JSON file with the measured components.")
    ],
    season: Annotated[str, typer.Option("--season", "-s", help="Season name, e.g. christmas.")],
    headroom: Annotated[float, typer.Option(help="Extra capacity fraction, 0.3 = 30 %.")] = 0.3,
    calendar: Annotated[
        Path | None, typer.Option(help="Season calendar YAML (default: the pack's seasons).")
    ] = None,
    today: Annotated[
        str | None, typer.Option(help="Plan as of this date (YYYY-MM-DD); default today.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """From the measured baseline, the season's multiplier and a headroom: what each component
    needs and the date provisioning must start."""
    try:
        components = load_baseline(yaml.safe_load(baseline.read_text()))
        cal = (
            SeasonCalendar.from_mapping(yaml.safe_load(calendar.read_text()))
            if calendar
            else DEFAULT_CALENDAR
        )
        result = plan(
            components,
            cal.season(season),
            headroom,
            today=date.fromisoformat(today) if today else None,
        )
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else render_plan(result))
