"""The consumer on real parts (WAL queue, event store, registry, SQLite DLQ): batching by
size and by time, schema checks and dead letters, PII, dedupe by event id within a batch,
across batches and across a restart with un-acked items."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pytest

from signalroom.events.config import EventMetric
from signalroom.events.consumer import Consumer
from signalroom.events.metrics import EventMetrics
from signalroom.events.queue import RawCapture, WALEventQueue
from signalroom.events.schemas.registry import SchemaRegistry, pii_hasher
from signalroom.events.store import DeadLetterQueue, EventStore

pytestmark = pytest.mark.unit

SIGNUP = {
    "x-event": "signup",
    "x-version": 1,
    "type": "object",
    "properties": {
        "plan": {"type": "string", "enum": ["free", "pro"]},
        "email": {"type": "string", "x-pii": "hash"},
        "phone": {"type": "string", "x-pii": "drop"},
    },
    "required": ["plan"],
}


def event(name: str, event_id: str, user: str = "u1", **props: Any) -> dict[str, Any]:
    return {
        "event": name,
        "id": event_id,
        "ts": 1_700_000_000_000_000_000,
        "user": user,
        "session": None,
        "props": props,
        "v": None,
    }


@dataclass
class Parts:
    queue: WALEventQueue
    store: EventStore
    dlq: DeadLetterQueue
    metrics: EventMetrics
    consumer: Consumer

    def stored(self, tenant: str = "t") -> list[tuple[str, str, dict[str, Any]]]:
        con = duckdb.connect()
        try:
            self.store.register(con, tenant)
            got = con.execute(
                "SELECT event, event_id, properties FROM events ORDER BY event_id"
            ).fetchall()
        finally:
            con.close()
        return [(e, i, json.loads(p)) for e, i, p in got]


async def build(root: Path, **options: Any) -> Parts:
    queue = WALEventQueue(root / "queue", fsync="never")
    await queue.open()
    store = EventStore(root / "store", wal_fsync="never")
    store.open()
    registry = SchemaRegistry(root / "schemas", accept_unregistered=["$*"])
    if registry.get("signup") is None:
        registry.register(SIGNUP)
    dlq = DeadLetterQueue(root / "dlq.sqlite")
    dlq.open()
    metrics = EventMetrics(
        [EventMetric(name="signups_total", events=["signup"], labels={"plan": "plan"})]
    )
    consumer = Consumer(queue, store, registry, dlq, metrics, hasher=pii_hasher(b"k"), **options)
    return Parts(queue, store, dlq, metrics, consumer)


async def close(parts: Parts) -> None:
    await parts.queue.close()
    parts.store.close()
    parts.dlq.close()


@pytest.fixture
async def parts(tmp_path: Path) -> AsyncIterator[Parts]:
    built = await build(tmp_path)
    yield built
    await close(built)


async def wait_for(condition: Any, timeout_s: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.01)


async def test_valid_events_are_stored_and_invalid_ones_dead_lettered(parts: Parts) -> None:
    await parts.queue.put(
        "t",
        [
            event("signup", "a", plan="pro", email="ann@example.com", phone="123"),
            event("signup", "b", plan="gold", email="bob@example.com"),
            event("checkout", "c"),
            event("$pageview", "d", path="/"),
            event("signup", "e", plan="free") | {"v": 7},
            {"error": "timestamp 'x' is not a date", "raw": {"event": "x"}, "ts": 1},
        ],
    )
    await parts.consumer.drain(5)
    stored = parts.stored()
    assert [(e, i) for e, i, _ in stored] == [("signup", "a"), ("$pageview", "d")]
    props = stored[0][2]
    assert props["plan"] == "pro" and "phone" not in props
    assert props["email"].startswith("sha256:")
    reasons = {d.event_id: d.reason for d in parts.dlq.list("t")}
    assert reasons["b"].startswith("invalid: signup v1: properties.plan")
    assert reasons["c"] == "unknown event: no schema registered for 'checkout'"
    assert reasons["e"] == "unknown schema version: signup v7"
    assert parts.dlq.count("t") == 4
    assert any(r == "timestamp 'x' is not a date" for r in reasons.values())
    # a dead-lettered invalid event keeps no clear-text PII either
    letter = next(d for d in parts.dlq.list("t") if d.event_id == "b")
    assert letter.record["props"]["email"].startswith("sha256:")
    assert parts.queue.depth_events == 0


async def test_event_metrics_count_stored_events_only(parts: Parts) -> None:
    await parts.queue.put(
        "t",
        [
            event("signup", "a", plan="pro"),
            event("signup", "a", plan="pro"),
            event("signup", "b", plan="bad"),
        ],
    )
    await parts.consumer.drain(5)
    series = {lb.to_dict()["plan"]: v for lb, v in parts.metrics.series("t")}
    assert series == {"pro": 1.0}


async def test_duplicates_are_dropped_within_and_across_batches(parts: Parts) -> None:
    await parts.queue.put("t", [event("signup", "a", plan="pro"), event("signup", "a", plan="pro")])
    items = await parts.queue.get(min_events=1, max_events=100, wait_s=0)
    first = parts.consumer.process(items)
    assert (first.stored, first.duplicates) == (1, 1)
    await parts.queue.ack(items)
    await parts.queue.put("t", [event("signup", "a", plan="pro"), event("signup", "b", plan="pro")])
    # the same id in another tenant is another event
    await parts.queue.put("other", [event("signup", "a", plan="pro")])
    items = await parts.queue.get(min_events=1, max_events=100, wait_s=0)
    second = parts.consumer.process(items)
    assert (second.stored, second.duplicates) == (2, 1)
    assert [i for _, i, _ in parts.stored()] == ["a", "b"]
    assert [i for _, i, _ in parts.stored("other")] == ["a"]


async def test_dedupe_survives_a_restart_with_unacked_items(tmp_path: Path) -> None:
    parts = await build(tmp_path)
    await parts.queue.put(
        "t", [event("signup", "a", plan="pro"), event("signup", "b", plan="free")]
    )
    items = await parts.queue.get(min_events=1, max_events=100, wait_s=0)
    parts.consumer.process(items)  # stored ... and the process dies before the ack
    await close(parts)

    again = await build(tmp_path)
    redelivered = again.queue.pending()
    assert len(redelivered) == 1
    assert again.consumer.prime(redelivered) == 2
    await again.consumer.drain(5)
    assert [i for _, i, _ in again.stored()] == ["a", "b"]  # each once
    assert again.queue.depth_events == 0
    await close(again)

    # without priming (a consumer that forgot), the redelivery would have doubled them:
    # the dedupe really is what keeps the effect exactly-once
    third = await build(tmp_path)
    await third.queue.put("t", [event("signup", "a", plan="pro")])
    await third.consumer.drain(5)
    assert [i for _, i, _ in third.stored()] == ["a", "a", "b"]
    await close(third)


async def test_a_redelivered_posthog_body_is_stored_once_even_without_uuids(
    tmp_path: Path,
) -> None:
    body = json.dumps(
        {
            "batch": [
                {"event": "signup", "distinct_id": u, "properties": {"plan": "pro"}} for u in "ab"
            ]
        }
    ).encode()
    parts = await build(tmp_path)
    await parts.queue.put("t", RawCapture(body, 10**18, 2, 99, json.loads(body)))
    items = await parts.queue.get(min_events=1, max_events=100, wait_s=0)
    parts.consumer.process(items)  # stored ... and the process dies before the ack
    ids = [i for _, i, _ in parts.stored()]
    await close(parts)

    again = await build(tmp_path)
    assert again.consumer.prime(again.queue.pending()) == 2  # the same generated ids
    await again.consumer.drain(5)
    assert [i for _, i, _ in again.stored()] == ids and len(ids) == 2
    await close(again)


async def test_batches_by_size(tmp_path: Path) -> None:
    parts = await build(tmp_path, batch_events=5, batch_interval_s=60.0, max_batch_events=100)
    task = asyncio.create_task(parts.consumer.run())
    try:
        for i in range(4):
            await parts.queue.put("t", [event("signup", f"e{i}", plan="pro")])
        await asyncio.sleep(0.2)
        assert parts.consumer.batches == 0  # 4 < batch_events, and the interval is long
        await parts.queue.put("t", [event("signup", "e4", plan="pro")])
        await wait_for(lambda: parts.consumer.batches == 1 and parts.queue.depth_events == 0)
        assert len(parts.stored()) == 5
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await close(parts)


async def test_batches_by_time(tmp_path: Path) -> None:
    parts = await build(tmp_path, batch_events=1000, batch_interval_s=0.1)
    task = asyncio.create_task(parts.consumer.run())
    try:
        await parts.queue.put("t", [event("signup", "a", plan="pro")])
        await parts.queue.put("t", [event("signup", "b", plan="pro")])
        await wait_for(lambda: parts.queue.depth_events == 0)
        assert parts.consumer.batches == 1  # both in one batch, once the oldest had waited
        assert len(parts.stored()) == 2
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        await close(parts)


async def test_max_batch_events_splits_a_backlog(tmp_path: Path) -> None:
    parts = await build(tmp_path, max_batch_events=3)
    for i in range(7):
        await parts.queue.put("t", [event("signup", f"e{i}", plan="pro")])
    await parts.consumer.drain(5)
    assert parts.consumer.batches == 3  # 3 + 3 + 1
    assert len(parts.stored()) == 7
    await close(parts)
