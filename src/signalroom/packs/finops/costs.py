"""Cost per lead and per order (seed 000, FinOps): cost sources, allocation, series.

Cost sources (all amounts in the configured currency, EUR by default):

* **AI usage**: tokens x ``price_per_1k_tokens`` / 1000, tokens per user from a PromQL query
  (``sum by (user_id) (increase(ai_tokens_total[1h]))``) or from captured events
  (``{event, distinct_id, timestamp, properties: {tokens, user_id}}``);
* **infrastructure**: an AWS cost-and-usage report CSV (``lineItem/UnblendedCost``,
  ``lineItem/UsageStartDate``, ``lineItem/UsageEndDate``, allocation tags such as
  ``resourceTags/user:team``), and fixed monthly amounts;
* **sales time**: tracked hours x ``hourly_rate`` from a CSV or JSON export (``user_id``,
  ``start``, ``end`` or ``hours``).

Every cost with a time span is prorated to the window by overlap (a CUR line item of a day
contributes 1/24 of its cost to an hour of that day; a fixed monthly amount contributes
window / length of that calendar month).

Allocation (documented in the README): user-attributed costs (AI, sales time) go to the user;
team costs (a team tag, a fixed amount with ``team``) are split among the team's users in
proportion to their leads in the window (evenly when the team had none); shared costs
(untagged) likewise across all users. ``cost_per_lead = cost / max(leads, 1)`` as in the seed,
per user, per team (``user_id="all"``) and overall (``user_id="all", team="all"``).
"""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

from signalroom.alerting.config import Duration, format_duration
from signalroom.model.labels import METRIC_NAME, Labels

__all__ = [
    "UNASSIGNED",
    "AiCostSource",
    "AiEventsSpec",
    "CostItem",
    "CostReport",
    "CurCsvSource",
    "FinopsConfig",
    "FixedMonthlyCost",
    "SalesTimeSource",
    "ai_items_from_events",
    "ai_items_from_tokens",
    "compute_costs",
    "cur_items",
    "fixed_monthly_items",
    "parse_time",
    "sales_time_items",
]

UNASSIGNED = "unassigned"
ALL = "all"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class AiEventsSpec(_Model):
    """Which captured events carry AI token usage, and where (e.g. ``ai_usage`` events with
    ``{model, tokens}``, or ``{model, input_tokens, output_tokens}``)."""

    event: str = "ai_completion"
    tokens_property: str = "tokens"  # without it: the sum of the input/output properties
    input_tokens_property: str = "input_tokens"
    output_tokens_property: str = "output_tokens"
    user_property: str = "user_id"  # falls back to the event's distinct_id
    model_property: str = "model"


class AiCostSource(_Model):
    """``price_per_1k_tokens`` applies to every model not in ``model_prices_per_1k_tokens``."""

    name: str = "ai"
    price_per_1k_tokens: float = Field(ge=0)
    model_prices_per_1k_tokens: dict[str, float] = Field(default_factory=dict)
    tokens_query: str | None = None
    events: AiEventsSpec | None = None

    def price_per_token(self, model: str | None) -> float:
        price = self.model_prices_per_1k_tokens.get(model or "", self.price_per_1k_tokens)
        return price / 1000.0

    @model_validator(mode="after")
    def _one_input(self) -> AiCostSource:
        if (self.tokens_query is None) == (self.events is None):
            raise ValueError("give exactly one of tokens_query or events")
        return self


class CurCsvSource(_Model):
    """An AWS cost-and-usage report export (CSV, header row with CUR column names)."""

    path: str
    cost_column: str = "lineItem/UnblendedCost"
    start_column: str = "lineItem/UsageStartDate"
    end_column: str = "lineItem/UsageEndDate"
    team_tag: str = "resourceTags/user:team"
    # Only line items whose tags have these values count (e.g. {"resourceTags/user:module": "crm"}).
    filters: dict[str, str] = Field(default_factory=dict)
    # CUR amounts are in USD: multiply by this to get the configured currency.
    exchange_rate: float = Field(default=1.0, gt=0)


class FixedMonthlyCost(_Model):
    name: str
    amount: float = Field(ge=0)
    team: str | None = None  # None: shared by all teams


class SalesTimeSource(_Model):
    """Tracked sales time (a Clockify/Toggl export): CSV or JSON list of entries with
    ``user_id`` and ``start`` plus ``end`` or ``hours``."""

    path: str
    hourly_rate: float = Field(default=45.0, ge=0)


class FinopsConfig(_Model):
    """The ``finops:`` key of the FreshFoodz configuration."""

    currency: str = "EUR"
    window: Duration = timedelta(hours=1)
    publish_interval: Duration = timedelta(minutes=1)
    leads_query: str = "sum by (user_id) (increase(lead_created_total[1h]))"
    orders_query: str = "sum by (user_id) (increase(order_created_total[1h]))"
    ai: list[AiCostSource] = Field(default_factory=list)
    infrastructure_csv: list[CurCsvSource] = Field(default_factory=list)
    fixed_monthly: list[FixedMonthlyCost] = Field(default_factory=list)
    sales_time: list[SalesTimeSource] = Field(default_factory=list)
    teams: dict[str, list[str]] = Field(default_factory=dict)  # team -> user ids
    budgets: dict[str, float] = Field(default_factory=dict)  # team -> budget per lead
    default_budget: float = 25.0

    def team_of(self) -> dict[str, str]:
        return {user: team for team, users in self.teams.items() for user in users}

    @property
    def window_label(self) -> str:
        return format_duration(self.window)


@dataclass(frozen=True)
class CostItem:
    """A cost already prorated to the window: to a user, to a team, or shared (both None)."""

    cost_type: str
    amount: float
    user_id: str | None = None
    team: str | None = None


def parse_time(value: Any) -> datetime:
    """ISO 8601 (``Z`` allowed) or a datetime; naive times are UTC."""
    if isinstance(value, datetime):
        out = value
    else:
        out = datetime.fromisoformat(str(value).strip().replace("Z", "+00:00"))
    return out if out.tzinfo is not None else out.replace(tzinfo=UTC)


def _overlap(start: datetime, end: datetime, w0: datetime, w1: datetime) -> float:
    """The share of [start, end) inside [w0, w1); an instant counts fully when inside."""
    if end <= start:
        return 1.0 if w0 <= start < w1 else 0.0
    inside = (min(end, w1) - max(start, w0)).total_seconds()
    return max(0.0, inside) / (end - start).total_seconds()


def ai_items_from_tokens(
    source: AiCostSource, tokens_by_user: Mapping[str, float]
) -> list[CostItem]:
    """AI cost from tokens per user in the window (the result of ``tokens_query``)."""
    price = source.price_per_1k_tokens / 1000.0
    return [
        CostItem("ai", tokens * price, user_id=user or None)
        for user, tokens in tokens_by_user.items()
        if tokens > 0 and math.isfinite(tokens)
    ]


def _event_tokens(spec: AiEventsSpec, props: Mapping[str, Any]) -> float:
    if props.get(spec.tokens_property) is not None:
        tokens = float(props[spec.tokens_property])
    else:
        tokens = float(props.get(spec.input_tokens_property) or 0) + float(
            props.get(spec.output_tokens_property) or 0
        )
    return tokens if math.isfinite(tokens) and tokens > 0 else 0.0


def ai_items_from_events(
    source: AiCostSource, events: Iterable[Mapping[str, Any]], w0: datetime, w1: datetime
) -> list[CostItem]:
    """AI cost from captured events in [w0, w1): tokens x the price of the event's model."""
    spec = source.events
    assert spec is not None
    cost: dict[str, float] = defaultdict(float)
    for ev in events:
        if ev.get("event") != spec.event:
            continue
        at = parse_time(ev["timestamp"])
        if not w0 <= at < w1:
            continue
        props = ev.get("properties") or {}
        user = props.get(spec.user_property) or ev.get("distinct_id") or ""
        try:
            tokens = _event_tokens(spec, props)
        except (TypeError, ValueError):
            continue
        model = props.get(spec.model_property)
        cost[str(user)] += tokens * source.price_per_token(str(model) if model else None)
    return [
        CostItem("ai", amount, user_id=user or None) for user, amount in cost.items() if amount > 0
    ]


def cur_items(source: CurCsvSource, w0: datetime, w1: datetime) -> list[CostItem]:
    """Infrastructure cost from a CUR CSV: team-tagged line items to their team, others shared."""
    out: dict[str | None, float] = defaultdict(float)
    with Path(source.path).open(newline="", encoding="utf-8-sig") as fh:
        for row in csv.DictReader(fh):
            if any(row.get(col, "") != want for col, want in source.filters.items()):
                continue
            try:
                cost = float(row[source.cost_column] or 0) * source.exchange_rate
                share = _overlap(
                    parse_time(row[source.start_column]), parse_time(row[source.end_column]), w0, w1
                )
            except (KeyError, ValueError) as exc:
                raise ValueError(f"{source.path}: bad CUR row {row!r}: {exc}") from exc
            if share:
                out[(row.get(source.team_tag) or "").strip() or None] += cost * share
    return [CostItem("infrastructure", amount, team=team) for team, amount in out.items()]


def fixed_monthly_items(
    costs: Iterable[FixedMonthlyCost], w0: datetime, w1: datetime
) -> list[CostItem]:
    """Fixed monthly amounts prorated to the window by the length of each calendar month."""
    out: list[CostItem] = []
    cursor = w0
    while cursor < w1:
        month_start = cursor.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
        nxt = (month_start + timedelta(days=32)).replace(day=1)
        part_end = min(nxt, w1)
        share = (part_end - cursor) / (nxt - month_start)
        out.extend(
            CostItem("infrastructure", c.amount * share, team=c.team) for c in costs if c.amount
        )
        cursor = part_end
    return out


def _load_entries(path: Path) -> list[Mapping[str, Any]]:
    if path.suffix.lower() == ".json":
        data = json.loads(path.read_text("utf-8"))
        if isinstance(data, dict):  # {"entries": [...]} or {"timeEntries": [...]}
            data = next((v for v in data.values() if isinstance(v, list)), [])
        return [d for d in data if isinstance(d, Mapping)]
    with path.open(newline="", encoding="utf-8-sig") as fh:
        return list(csv.DictReader(fh))


def sales_time_items(source: SalesTimeSource, w0: datetime, w1: datetime) -> list[CostItem]:
    """Sales time cost per user: hours x rate, prorated to the window."""
    cost: dict[str, float] = defaultdict(float)
    for entry in _load_entries(Path(source.path)):
        start = parse_time(entry["start"])
        if entry.get("end") not in (None, ""):
            end = parse_time(entry["end"])
            hours = (end - start).total_seconds() / 3600.0
        else:
            hours = float(entry["hours"])
            end = start + timedelta(hours=hours)
        if entry.get("hours") not in (None, ""):
            hours = float(entry["hours"])  # tracked hours win over the span (breaks)
        share = _overlap(start, end, w0, w1)
        if share:
            cost[str(entry["user_id"])] += hours * source.hourly_rate * share
    return [CostItem("sales_time", amount, user_id=user) for user, amount in cost.items()]


@dataclass
class CostReport:
    """Costs, leads and orders of one window per user, and the series they give."""

    window_end: datetime
    window_label: str
    team_of: dict[str, str]
    cost: dict[str, dict[str, float]] = field(default_factory=dict)  # user -> type -> amount
    leads: dict[str, float] = field(default_factory=dict)
    orders: dict[str, float] = field(default_factory=dict)
    budgets: dict[str, float] = field(default_factory=dict)

    def user_cost(self, user: str) -> float:
        return sum(self.cost.get(user, {}).values())

    def cost_per_lead(self, user: str) -> float:
        return self.user_cost(user) / max(self.leads.get(user, 0.0), 1.0)

    def series(self) -> list[tuple[Labels, float]]:
        w = self.window_label
        out: list[tuple[Labels, float]] = []
        teams: dict[str, list[str]] = defaultdict(list)
        for user in sorted(self.cost):
            teams[self.team_of.get(user, UNASSIGNED)].append(user)

        def add(user: str, team: str, users: list[str]) -> None:
            cost = sum(self.user_cost(u) for u in users)
            leads = sum(self.leads.get(u, 0.0) for u in users)
            orders = sum(self.orders.get(u, 0.0) for u in users)
            for name, count in (("finops_cost_per_lead", leads), ("finops_cost_per_order", orders)):
                labels = {METRIC_NAME: name, "user_id": user, "team": team, "time_window": w}
                out.append((Labels(labels), cost / max(count, 1.0)))

        for team, users in sorted(teams.items()):
            for user in users:
                add(user, team, [user])
                for cost_type, amount in sorted(self.cost[user].items()):
                    labels = {
                        METRIC_NAME: "finops_cost",
                        "user_id": user,
                        "team": team,
                        "cost_type": cost_type,
                        "time_window": w,
                    }
                    out.append((Labels(labels), amount))
            add(ALL, team, users)
        add(ALL, ALL, sorted(self.cost))
        for team in sorted(set(teams) | set(self.budgets)):
            budget = self.budgets.get(team, self.budgets.get(ALL, 25.0))
            out.append((Labels({METRIC_NAME: "finops_budget_per_lead", "team": team}), budget))
        return out


def compute_costs(
    config: FinopsConfig,
    window_end: datetime,
    items: Iterable[CostItem],
    leads: Mapping[str, float],
    orders: Mapping[str, float],
) -> CostReport:
    """Allocate the window's cost items to users (see the module docstring)."""
    team_of = config.team_of()
    users = set(team_of) | {u for u in leads if u} | {u for u in orders if u}
    items = list(items)
    users |= {i.user_id for i in items if i.user_id}
    members: dict[str, list[str]] = defaultdict(list)
    for user in sorted(users):
        members[team_of.get(user, UNASSIGNED)].append(user)
    if not users:
        users = {UNASSIGNED}
        members[UNASSIGNED].append(UNASSIGNED)
    cost: dict[str, dict[str, float]] = {u: {} for u in users}

    def give(user: str, cost_type: str, amount: float) -> None:
        cost[user][cost_type] = cost[user].get(cost_type, 0.0) + amount

    def spread(among: list[str], cost_type: str, amount: float) -> None:
        weights = [max(leads.get(u, 0.0), 0.0) for u in among]
        total = sum(weights)
        for user, weight in zip(among, weights, strict=True):
            give(user, cost_type, amount * (weight / total if total > 0 else 1.0 / len(among)))

    for item in items:
        if item.user_id:
            give(item.user_id, item.cost_type, item.amount)
        elif item.team and members.get(item.team):
            spread(members[item.team], item.cost_type, item.amount)
        else:  # shared, or a team without users
            spread(sorted(users), item.cost_type, item.amount)
    budgets = {ALL: config.default_budget, **config.budgets}
    return CostReport(
        window_end,
        config.window_label,
        team_of,
        cost,
        {u: v for u, v in leads.items() if u},
        {u: v for u, v in orders.items() if u},
        budgets,
    )
