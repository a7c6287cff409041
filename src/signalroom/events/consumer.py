"""The consumer: takes captured events off the queue in batches, validates them against the
schema registry, hashes or drops PII, drops duplicates by event id, writes the batch to the
event store, feeds event metrics, dead-letters what it cannot store, and acks the queue.

The queue delivers at least once; the event-id dedupe (recent ids in memory, plus a look-up in
the store for items re-delivered after a restart) makes the effect exactly-once.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from signalroom.events.metrics import (
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_STORED,
    EventMetrics,
)
from signalroom.events.queue import EventQueue, QueueItem, decode_item
from signalroom.events.schemas.registry import EventSchema, SchemaRegistry
from signalroom.events.store import EVENT_SCHEMA, DeadLetterQueue, EventStore

__all__ = ["BatchResult", "Consumer", "RecentIds", "apply_pii", "mark_oversize"]

log = logging.getLogger(__name__)


class RecentIds:
    """The last ``capacity`` (tenant, event id) keys seen, by insertion order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._keys: set[int] = set()
        self._order: collections.deque[int] = collections.deque()

    def __contains__(self, key: int) -> bool:
        return key in self._keys

    def __len__(self) -> int:
        return len(self._keys)

    def add(self, key: int) -> None:
        if self.capacity <= 0 or key in self._keys:
            return
        self._keys.add(key)
        self._order.append(key)
        while len(self._order) > self.capacity:
            self._keys.discard(self._order.popleft())


def _key(tenant: str, event_id: str) -> int:
    return hash((tenant, event_id))


def apply_pii(
    schema: EventSchema | None, props: dict[str, Any], hasher: Callable[[Any], str]
) -> dict[str, Any]:
    """``props`` with the schema's PII properties hashed or removed (a copy when changed)."""
    if schema is None or not schema.pii:
        return props
    out = None
    for name, action in schema.pii.items():
        if name in props and props[name] is not None:
            if out is None:
                out = dict(props)
            if action == "drop":
                del out[name]
            else:
                out[name] = hasher(props[name])
    return props if out is None else out


def mark_oversize(records: Sequence[dict[str, Any]], limit: int) -> None:
    """Turn events whose properties exceed ``limit`` bytes (as JSON) into dead letters. Only
    events that could be that big are measured (a cheap bound: more than 50 properties)."""
    for record in records:
        props = record.get("props")
        if isinstance(props, dict) and len(props) > 50 and "error" not in record:
            size = len(json.dumps(props, default=str))
            if size > limit:
                record["error"] = f"event of {size} bytes exceeds max_event_bytes ({limit})"
                record["raw"] = {"event": record.get("event"), "uuid": record.get("id")}
                record["props"] = {}


@dataclass
class BatchResult:
    """What one consumed batch did."""

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


class _Columns:
    __slots__ = ("event", "event_id", "props", "received", "session", "ts", "user", "version")

    def __init__(self) -> None:
        self.ts: list[int] = []
        self.event: list[str] = []
        self.event_id: list[str] = []
        self.user: list[str] = []
        self.session: list[str | None] = []
        self.props: list[str] = []
        self.version: list[int | None] = []
        self.received: list[int] = []

    def table(self) -> pa.Table:
        return pa.Table.from_arrays(
            [
                pa.array(self.ts, pa.timestamp("ns")),
                pa.array(self.event, pa.string()),
                pa.array(self.event_id, pa.string()),
                pa.array(self.user, pa.string()),
                pa.array(self.session, pa.string()),
                pa.array(self.props, pa.string()),
                pa.array(self.version, pa.int32()),
                pa.array(self.received, pa.timestamp("ns")),
            ],
            schema=EVENT_SCHEMA,
        )


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0] if reason.startswith(("unknown", "invalid")) else "envelope"


class Consumer:
    """Moves events from ``queue`` to ``store``; :meth:`run` loops until cancelled."""

    def __init__(
        self,
        queue: EventQueue,
        store: EventStore,
        registry: SchemaRegistry,
        dlq: DeadLetterQueue,
        metrics: EventMetrics,
        *,
        hasher: Callable[[Any], str],
        dedupe_ids: int = 1_000_000,
        batch_events: int = 100,
        batch_interval_s: float = 1.0,
        max_batch_events: int = 20_000,
        max_event_bytes: int = 2**20,
    ) -> None:
        self.queue = queue
        self.store = store
        self.registry = registry
        self.dlq = dlq
        self.metrics = metrics
        self.hasher = hasher
        self.recent = RecentIds(dedupe_ids)
        self.batch_events = batch_events
        self.batch_interval_s = batch_interval_s
        self.max_batch_events = max_batch_events
        self.max_event_bytes = max_event_bytes
        self._lock = threading.Lock()
        self.batches = 0
        self.last_error: str | None = None

    # ------------------------------------------------------------------ loop

    async def run(self) -> None:
        while True:
            items = await self.queue.get(
                min_events=self.batch_events,
                max_events=self.max_batch_events,
                wait_s=self.batch_interval_s,
            )
            if items:
                await self._consume(items)

    async def _consume(self, items: list[QueueItem]) -> bool:
        try:
            await asyncio.to_thread(self.process, items)
        except Exception as exc:  # the store failed (disk full, ...): keep them queued
            self.last_error = str(exc)
            log.exception("events: storing a batch of %d queue items failed", len(items))
            self.queue.nack(items)
            await asyncio.sleep(1.0)
            return False
        await self.queue.ack(items)
        return True

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Store everything captured so far (tests, GDPR deletes, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.queue.depth_events > 0:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{self.queue.depth_events} events still queued")
            items = await self.queue.get(min_events=1, max_events=self.max_batch_events, wait_s=0)
            if not items or not await self._consume(items):
                await asyncio.sleep(0.01)

    def prime(self, items: Sequence[QueueItem]) -> int:
        """Remember the ids of re-delivered items' events that are already stored (they were
        written before a crash but not acked); returns how many were found."""
        wanted: dict[str, tuple[list[str], int, int]] = {}
        for item in items:
            try:
                tenant, records = decode_item(item.payload)
            except (ValueError, KeyError, TypeError):
                continue
            ids, low, high = wanted.get(tenant, ([], 2**63 - 1, 0))
            for r in records:
                if isinstance(r.get("id"), str) and isinstance(r.get("ts"), int):
                    ids.append(r["id"])
                    low, high = min(low, r["ts"]), max(high, r["ts"])
            wanted[tenant] = (ids, low, high)
        found = 0
        for tenant, (ids, low, high) in wanted.items():
            for event_id in self.store.existing_ids(tenant, ids, low, high):
                self.recent.add(_key(tenant, event_id))
                found += 1
        return found

    # ------------------------------------------------------------------ one batch

    def process(self, items: Sequence[QueueItem]) -> BatchResult:
        with self._lock:
            return self._process(items)

    def _process(self, items: Sequence[QueueItem]) -> BatchResult:
        result = BatchResult()
        columns: dict[str, _Columns] = {}
        letters: dict[str, list[tuple[dict[str, Any], str]]] = {}
        observed: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        new_keys: list[int] = []
        batch_keys: set[int] = set()
        registry, recent, hasher = self.registry, self.recent, self.hasher
        dumps = json.JSONEncoder(separators=(",", ":"), default=str).encode
        wants = self.metrics.wants

        def dead(tenant: str, record: dict[str, Any], reason: str) -> None:
            letters.setdefault(tenant, []).append((record, reason))
            kind = _reason_kind(reason)
            result.reasons[kind] = result.reasons.get(kind, 0) + 1

        for item in items:
            try:
                tenant, records = decode_item(item.payload, item.parsed)
            except (ValueError, KeyError, TypeError) as exc:
                dead(
                    "default",
                    {"payload": item.payload[:4096].decode("utf-8", "replace")},
                    f"undecodable queue record: {exc}",
                )
                continue
            mark_oversize(records, self.max_event_bytes)
            cols = columns.get(tenant)
            if cols is None:
                cols = columns[tenant] = _Columns()
            received = int(item.enqueued_at * 1e9)
            for r in records:
                error = r.get("error")
                if error is not None:
                    dead(tenant, r, str(error))
                    continue
                name, event_id, props = r["event"], r["id"], r["props"]
                key = _key(tenant, event_id)
                if key in recent or key in batch_keys:
                    result.duplicates += 1
                    continue
                version = r.get("v")
                schema = registry.get(name, version)
                if schema is None:
                    if version is not None and registry.get(name) is not None:
                        dead(tenant, r, f"unknown schema version: {name} v{version}")
                        continue
                    if not registry.accepts_unregistered(name):
                        dead(tenant, r, f"unknown event: no schema registered for {name!r}")
                        continue
                else:
                    problem = schema.error(props)
                    if problem is not None:
                        r = dict(r, props=apply_pii(schema, props, hasher))
                        dead(tenant, r, f"invalid: {name} v{schema.version}: {problem}")
                        continue
                    version = schema.version
                if wants(name):
                    observed.setdefault(tenant, []).append((name, props))
                batch_keys.add(key)
                new_keys.append(key)
                cols.ts.append(r["ts"])
                cols.event.append(name)
                cols.event_id.append(event_id)
                cols.user.append(r["user"])
                cols.session.append(r.get("session"))
                cols.props.append(dumps(apply_pii(schema, props, hasher)))
                cols.version.append(version)
                cols.received.append(received)
        for tenant, cols in columns.items():
            if cols.ts:
                self.store.append(tenant, cols.table())
                result.stored += len(cols.ts)
        for key in new_keys:
            recent.add(key)
        for tenant, pairs in observed.items():
            self.metrics.observe(tenant, pairs)
        for tenant, entries in letters.items():
            self.dlq.add(tenant, entries)
            result.dead_lettered += len(entries)
        EVENTS_STORED.inc(result.stored)
        if result.duplicates:
            EVENTS_DUPLICATE.inc(result.duplicates)
        for kind, count in result.reasons.items():
            EVENTS_DEAD_LETTERED.labels(kind).inc(count)
        self.batches += 1
        return result
