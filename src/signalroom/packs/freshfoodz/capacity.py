"""Seasonal pre-provisioning calculator (seed 002): ``signalroom capacity plan``.

For every component, from its measured baseline load (per second), the season's multiplier and
a headroom fraction::

    target      = baseline_load * multiplier * (1 + headroom)
    instances   = max(min_instances, ceil(target / capacity_per_instance))
    connections = instances * connections_per_instance
    queue       = ceil(target * queue_buffer_seconds)
    start       = season start - lead_time_days        (provisioning must begin by then)

Arithmetic is decimal so that 100 * 3 * 1.2 / 60 is exactly 6 instances, not 7.

The baseline load is measured in the store when a component has a ``load_query`` (PromQL giving
its load per second, e.g. ``sum(rate(http_requests_total{service="api-leads"}[5m]))``): the peak
of that expression (summed over its series) over the last ``days`` days, every ``step``, read from a
running server (``--url``) or a stopped server's data directory (``--data-dir``). Measured loads
are rounded to 1/1000 per second, so float noise in ``rate()`` never adds an instance.
"""

from __future__ import annotations

import fcntl
import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any

import httpx
import typer
import yaml

from signalroom.packs.freshfoodz.seasons import DEFAULT_CALENDAR, Season, SeasonCalendar

__all__ = [
    "Baseline",
    "ComponentPlan",
    "Plan",
    "capacity_app",
    "capacity_plan",
    "http_range_query",
    "load_baseline",
    "measure_baseline",
    "peak_load",
    "plan",
    "store_range_query",
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
    load_query: str | None = None  # PromQL: measure load_per_second in the store

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
    """Components from ``{components: [{component, load_per_second, ...}]}`` or the list; a
    component with ``load_query`` may leave ``load_per_second`` out (0 until measured)."""
    items = data["components"] if isinstance(data, Mapping) else data
    return [
        Baseline(**{"load_per_second": 0.0, **dict(item)})
        if "load_query" in item
        else Baseline(**dict(item))
        for item in items
    ]


RangeQuery = Callable[[str, datetime, datetime, timedelta], dict[int, float]]
"""``(expr, start, end, step) -> {timestamp_ms: value summed over the result's series}``."""


def peak_load(query: RangeQuery, expr: str, now: datetime, days: float, step: timedelta) -> float:
    """The peak of ``expr`` (summed over its series) over the last ``days`` days, evaluated at
    ``now`` and every ``step`` before it."""
    steps = int(timedelta(days=days) / step)
    values = query(expr, now - steps * step, now, step)
    if not values:
        raise ValueError(f"no data for {expr!r} in the last {days:g} days")
    return round(max(values.values()), 3)


def measure_baseline(
    baseline: Sequence[Baseline],
    query: RangeQuery,
    *,
    now: datetime,
    days: float = 14,
    step: timedelta = timedelta(minutes=5),
) -> list[Baseline]:
    """``baseline`` with every ``load_query`` component's load measured in the store."""
    return [
        replace(b, load_per_second=peak_load(query, b.load_query, now, days, step))
        if b.load_query
        else b
        for b in baseline
    ]


def http_range_query(url: str, token: str | None = None) -> RangeQuery:
    """Range queries against a running server's ``/api/v1/query_range``."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def query(expr: str, start: datetime, end: datetime, step: timedelta) -> dict[int, float]:
        params: dict[str, str | float] = {
            "query": expr,
            "start": start.timestamp(),
            "end": end.timestamp(),
            "step": step.total_seconds(),
        }
        response = httpx.get(
            f"{url.rstrip('/')}/api/v1/query_range", params=params, headers=headers, timeout=60
        )
        body = response.json()
        if body.get("status") != "success":
            raise ValueError(f"{expr!r}: {body.get('error', response.text)}")
        out: dict[int, float] = {}
        for series in body["data"]["result"]:
            for ts, value in series["values"]:
                key = round(float(ts) * 1000)
                out[key] = out.get(key, 0.0) + float(value)
        return out

    return query


def store_range_query(data_dir: Path, tenant: str = "default") -> RangeQuery:
    """Range queries on a stopped server's data directory (refused while a server holds it:
    the store must not be opened twice)."""
    from signalroom.promql.engine import Engine
    from signalroom.tsdb import TSDB, TSDBOptions

    def query(expr: str, start: datetime, end: datetime, step: timedelta) -> dict[int, float]:
        with (data_dir / "LOCK").open("a+") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ValueError(
                    f"{data_dir} is in use by a running server: pass --url instead"
                ) from None
            db = TSDB(data_dir / "metrics", options=TSDBOptions()).open(background=False)
            try:
                s, e = int(start.timestamp() * 1000), int(end.timestamp() * 1000)
                result = Engine().range_query(
                    db.querier(tenant, s - 3_600_000, e), expr, s, e,
                    int(step.total_seconds() * 1000),
                )  # fmt: skip
            finally:
                db.close()
        out: dict[int, float] = {}
        for series in getattr(result.value, "series", []):
            for ts, value in zip(series.timestamps, series.values, strict=True):
                out[int(ts)] = out.get(int(ts), 0.0) + float(value)
        return out

    return query


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
    url: Annotated[
        str | None,
        typer.Option(help="Measure load_query components on this running signalroom."),
    ] = None,
    data_dir: Annotated[
        Path | None,
        typer.Option("--data-dir", help="... or in this stopped server's data directory."),
    ] = None,
    days: Annotated[float, typer.Option(help="Peak load over the last so many days.")] = 14,
    step: Annotated[
        float, typer.Option(help="Seconds between the evaluations of a load_query.")
    ] = 300,
    token: Annotated[
        str | None, typer.Option(envvar="SIGNALROOM_TOKEN", help="API token for --url.")
    ] = None,
) -> None:
    """From the measured baseline, the season's multiplier and a headroom: what each component
    needs and the date provisioning must start. Components with a ``load_query`` take their
    load per second from the store: the peak of the query over the last ``--days``."""
    try:
        components = load_baseline(yaml.safe_load(baseline.read_text()))
        if url and data_dir:
            raise ValueError("give --url or --data-dir, not both")
        measured = [c.component for c in components if c.load_query]
        if measured:
            if not (url or data_dir):
                raise ValueError(
                    f"{', '.join(measured)}: load_query needs --url or --data-dir to measure"
                )
            query = (
                http_range_query(url, token) if url else store_range_query(data_dir or Path("data"))
            )
            components = measure_baseline(
                components,
                query,
                now=datetime.now(UTC),
                days=days,
                step=timedelta(seconds=step),
            )
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
    except (OSError, KeyError, TypeError, ValueError, yaml.YAMLError, httpx.HTTPError) as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(result.to_dict(), indent=2) if as_json else render_plan(result))
