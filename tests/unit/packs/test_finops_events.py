"""AI cost from captured events: ``ai_usage`` events with model and tokens, read back from a
real events store, priced per model, allocated to the user who caused them."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalroom.events.config import EventsConfig
from signalroom.events.service import EventService
from signalroom.ingest.posthog import parse_sr_events
from signalroom.packs.finops import FinopsConfig, FinopsService
from signalroom.packs.finops.service import store_events_source
from signalroom.tsdb import TSDB, TSDBOptions

pytestmark = pytest.mark.unit

W1 = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
W0 = W1 - timedelta(hours=1)


def usage(user: str, minutes: int, **props: object) -> dict[str, object]:
    at = W0 + timedelta(minutes=minutes)
    return {"event_name": "ai_usage", "user_id": user, "timestamp": at.isoformat(),
            "properties": props}  # fmt: skip


async def test_ai_cost_from_ai_usage_events(tmp_path: Path) -> None:
    config = FinopsConfig.model_validate(
        {
            "ai": [
                {
                    "price_per_1k_tokens": 0.5,
                    "model_prices_per_1k_tokens": {"gpt-4o": 5.0},
                    "events": {"event": "ai_usage"},
                }
            ]
        }
    )
    events = EventService(
        EventsConfig.model_validate({"accept_unregistered": ["*"]}), tmp_path / "events"
    )
    await events.start()
    tsdb = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        batch = parse_sr_events(
            [
                usage("sales-1", 5, model="gpt-4o", tokens=2000),  # 2000 * 5 / 1000 = 10
                usage("sales-1", 15, model="gpt-4o-mini", tokens=4000),  # default price: 2
                usage(
                    "bot",
                    20,
                    model="gpt-4o-mini",
                    input_tokens=600,
                    output_tokens=400,
                    user_id="sales-2",
                ),  # user_id property wins: 1000 * 0.5 / 1000 = 0.5
                usage("sales-2", 70, model="gpt-4o", tokens=10**6),  # after the window
                usage("sales-3", -5, model="gpt-4o", tokens=10**6),  # before it
                {
                    "event_name": "lead_created",
                    "user_id": "sales-1",
                    "timestamp": (W0 + timedelta(minutes=1)).isoformat(),
                    "properties": {"lead_id": "l1", "tokens": 10**6},
                },
            ],
            now_ns=time.time_ns(),
        )
        await events.capture("default", batch.records)
        await events.drain()
        service = FinopsService(
            config, tsdb, events_source=store_events_source(lambda: events, config)
        )
        items = service.cost_items(W0, W1)
        assert sorted((i.user_id, round(i.amount, 9)) for i in items) == [
            ("sales-1", 12.0),
            ("sales-2", 0.5),
        ]
        report = service.compute(W1 + timedelta(minutes=1))
        assert report.user_cost("sales-1") == pytest.approx(12.0)
        # no events service (disabled, or not started yet): no AI cost, no error
        assert store_events_source(lambda: None, config)(W0, W1) == []
    finally:
        tsdb.close()
        await events.stop()
