"""Hourly cost computation, published every minute so PromQL sees a continuous series.

A gauge written once an hour would be visible for only the 5-minute lookback after each write,
and an alert with ``for: 30m`` could never fire; so the report of the last full window is
recomputed at every window boundary and re-appended every ``publish_interval``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from signalroom.packs.events import read_events
from signalroom.packs.finops.costs import (
    CostItem,
    CostReport,
    FinopsConfig,
    ai_items_from_events,
    ai_items_from_tokens,
    compute_costs,
    cur_items,
    fixed_monthly_items,
    sales_time_items,
)
from signalroom.promql.engine import Engine
from signalroom.tsdb import TSDB, AppendResult, MetricMetadata, SampleBatch

__all__ = ["METADATA", "EventsSource", "FinopsService", "store_events_source", "window_bounds"]

log = logging.getLogger("signalroom.packs.finops")

EventsSource = Callable[[datetime, datetime], Iterable[Mapping[str, Any]]]
"""Captured events in [start, end) (PostHog shape: event, distinct_id, timestamp, properties)."""


def store_events_source(
    events: Callable[[], Any], config: FinopsConfig, tenant: str = "default"
) -> EventsSource:
    """The AI-usage events of ``config`` from the events store (``events`` returns the running
    ``EventService``, or None)."""
    names = sorted({ai.events.event for ai in config.ai if ai.events is not None})

    def source(start: datetime, end: datetime) -> list[dict[str, Any]]:
        return [
            {"event": e, "distinct_id": user, "timestamp": at, "properties": props}
            for e, user, at, props in read_events(events(), tenant, names, start, end)
        ]

    return source


METADATA = (
    MetricMetadata("finops_cost_per_lead", "gauge", "Cost per lead in EUR"),
    MetricMetadata("finops_cost_per_order", "gauge", "Cost per order in EUR"),
    MetricMetadata("finops_cost", "gauge", "Allocated cost of the window in EUR"),
    MetricMetadata("finops_budget_per_lead", "gauge", "Budget per lead of the team in EUR"),
)


def window_bounds(config: FinopsConfig, now: datetime) -> tuple[datetime, datetime]:
    """The last full window before ``now``, aligned to the epoch (hours start at :00)."""
    size = config.window.total_seconds()
    end_s = (int(now.timestamp()) // int(size)) * int(size)
    end = datetime.fromtimestamp(end_s, UTC)
    return end - config.window, end


class FinopsService:
    """Computes :class:`CostReport` s from the configured sources and writes their series."""

    def __init__(
        self,
        config: FinopsConfig,
        tsdb: TSDB,
        *,
        tenant: str = "default",
        engine: Engine | None = None,
        events_source: EventsSource | None = None,
    ) -> None:
        self.config = config
        self.tsdb = tsdb
        self.tenant = tenant
        self.engine = engine or Engine()
        self.events_source = events_source
        self.report: CostReport | None = None
        self._task: asyncio.Task[None] | None = None

    def query_by_user(self, expr: str, at: datetime) -> dict[str, float]:
        """An instant query's result as ``user_id -> value`` (no user_id: key "")."""
        ms = int(at.timestamp() * 1000)
        span = int(self.config.window.total_seconds() * 1000) + 600_000
        querier = self.tsdb.querier(self.tenant, ms - span, ms)
        value = self.engine.instant_query(querier, expr, ms).value
        out: dict[str, float] = {}
        for sample in getattr(value, "samples", []):
            user = sample.labels.get("user_id") or ""
            out[user] = out.get(user, 0.0) + float(sample.value)
        return out

    def cost_items(self, w0: datetime, w1: datetime) -> list[CostItem]:
        items: list[CostItem] = []
        for ai in self.config.ai:
            if ai.tokens_query is not None:
                items += ai_items_from_tokens(ai, self.query_by_user(ai.tokens_query, w1))
            elif self.events_source is not None:
                items += ai_items_from_events(ai, self.events_source(w0, w1), w0, w1)
        for cur in self.config.infrastructure_csv:
            items += cur_items(cur, w0, w1)
        items += fixed_monthly_items(self.config.fixed_monthly, w0, w1)
        for st in self.config.sales_time:
            items += sales_time_items(st, w0, w1)
        return items

    def compute(self, now: datetime) -> CostReport:
        """The report of the last full window before ``now``."""
        w0, w1 = window_bounds(self.config, now)
        leads = self.query_by_user(self.config.leads_query, w1)
        orders = self.query_by_user(self.config.orders_query, w1)
        self.report = compute_costs(self.config, w1, self.cost_items(w0, w1), leads, orders)
        return self.report

    async def publish(self, at: datetime) -> AppendResult:
        """Append the current report's series at ``at`` (computing it first if due)."""
        if self.report is None or window_bounds(self.config, at)[1] != self.report.window_end:
            await asyncio.to_thread(self.compute, at)
        assert self.report is not None
        ts = int(at.timestamp() * 1000)
        batch = SampleBatch.from_series((lb, [ts], [v]) for lb, v in self.report.series())
        self.tsdb.add_metadata(self.tenant, METADATA)
        return await self.tsdb.append_async(self.tenant, batch)

    async def _loop(self) -> None:
        while True:
            try:
                result = await self.publish(datetime.now(UTC))
                if not result.ok:
                    log.warning("finops: %s", result.summary())
            except asyncio.CancelledError:
                raise
            except Exception:  # a broken CSV must not stop the next hour
                log.exception("finops: cost computation failed")
            await asyncio.sleep(self.config.publish_interval.total_seconds())

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="finops")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
