"""The consumer: takes captured events off the queue in batches, validates them against the
schema registry, hashes or drops PII, drops duplicates by event id, writes the batch to the
event store, feeds event metrics, dead-letters what it cannot store, and acks the queue.

The queue delivers at least once; the event-id dedupe (recent ids in memory, plus a look-up in
the store for items re-delivered after a restart) makes the effect exactly-once.

A batch is handled as columns (:class:`~signalroom.ingest.posthog.CaptureColumns`), not as a
dict per event: the rows of one event name are validated together (see
:meth:`~signalroom.events.schemas.registry.EventSchema.errors`), duplicates are found with set
operations, and the Arrow table is built from the columns, properties serialised by orjson
straight into one buffer. The per-event Python work left is reading the envelope and
serialising the properties.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import operator
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from signalroom.events.metrics import (
    EVENTS_DEAD_LETTERED,
    EVENTS_DUPLICATE,
    EVENTS_STORED,
    EventMetrics,
)
from signalroom.events.queue import EventQueue, QueueItem, decode_columns
from signalroom.events.schemas.registry import EventSchema, SchemaRegistry
from signalroom.events.store import EVENT_SCHEMA, DeadLetterQueue, EventStore
from signalroom.ingest.posthog import CaptureColumns, json_dumps

__all__ = ["BatchResult", "Consumer", "RecentIds", "apply_pii", "mark_oversize"]

log = logging.getLogger(__name__)

_NO_IDS: frozenset[str] = frozenset()
# Events with more properties than this are measured against max_event_bytes (a cheap bound).
_MEASURE_ABOVE_PROPERTIES = 50


class RecentIds:
    """Event ids stored lately, per tenant: at least the last ``capacity`` of them (ids are
    forgotten a batch at a time, so up to one batch more)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._ids: dict[str, set[str]] = {}
        self._order: collections.deque[tuple[str, list[str]]] = collections.deque()
        self._size = 0

    def __contains__(self, key: tuple[str, str]) -> bool:
        tenant, event_id = key
        return event_id in self._ids.get(tenant, _NO_IDS)

    def __len__(self) -> int:
        return self._size

    def of(self, tenant: str) -> set[str] | frozenset[str]:
        """The remembered ids of ``tenant`` (do not modify)."""
        return self._ids.get(tenant, _NO_IDS)

    def add(self, tenant: str, ids: Iterable[str]) -> None:
        """Remember ``ids`` (distinct ids; those already known are skipped)."""
        if self.capacity <= 0:
            return
        known = self._ids.setdefault(tenant, set())
        fresh = list(ids)
        if not known.isdisjoint(fresh):
            fresh = [i for i in fresh if i not in known]
        if not fresh:
            return
        known.update(fresh)
        self._order.append((tenant, fresh))
        self._size += len(fresh)
        while self._order and self._size - len(self._order[0][1]) >= self.capacity:
            old_tenant, old = self._order.popleft()
            self._ids[old_tenant].difference_update(old)
            self._size -= len(old)


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


def _oversize(props: dict[str, Any], limit: int) -> str | None:
    size = len(json_dumps(props))
    return f"event of {size} bytes exceeds max_event_bytes ({limit})" if size > limit else None


def mark_oversize(records: Sequence[dict[str, Any]], limit: int) -> None:
    """Turn events whose properties exceed ``limit`` bytes (as JSON) into dead letters. Only
    events that could be that big are measured (more than 50 properties)."""
    for record in records:
        props = record.get("props")
        if (
            isinstance(props, dict)
            and len(props) > _MEASURE_ABOVE_PROPERTIES
            and "error" not in record
        ):
            reason = _oversize(props, limit)
            if reason is not None:
                record["error"] = reason
                record["raw"] = {"event": record.get("event"), "uuid": record.get("id")}
                record["props"] = {}


@dataclass
class BatchResult:
    """What one consumed batch did."""

    stored: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


# Row states while a batch is checked.
_STORE, _DUPLICATE, _DEAD = 0, 1, 2


class _Batch:
    """One tenant's events of a batch: the items' columns end to end."""

    def __init__(self) -> None:
        self.cols = CaptureColumns()
        self.stamps: list[np.ndarray] = []
        self.received: list[np.ndarray] = []

    def finish(self) -> None:
        """Join the items' timestamps (after the last :meth:`add`)."""
        self.cols.ts = np.concatenate(self.stamps) if self.stamps else np.zeros(0, np.int64)

    def add(self, cols: CaptureColumns, received_ns: int) -> None:
        mine, offset = self.cols, len(self.cols)
        mine.errors.extend((offset + pos, record) for pos, record in cols.errors)
        mine.event += cols.event
        mine.event_id += cols.event_id
        mine.user += cols.user
        mine.session += cols.session
        mine.props += cols.props
        mine.version += cols.version
        self.stamps.append(cols.ts)
        self.received.append(np.full(len(cols), received_ns, np.int64))


def _reason_kind(reason: str) -> str:
    return reason.split(":", 1)[0] if reason.startswith(("unknown", "invalid")) else "envelope"


def _string_array(blobs: list[bytes]) -> pa.Array:
    """A string array of UTF-8 ``blobs``, built from one joined buffer (no object per row)."""
    offsets = np.zeros(len(blobs) + 1, np.int64)
    np.cumsum(np.fromiter(map(len, blobs), np.int64, len(blobs)), out=offsets[1:])
    if offsets[-1] >= 2**31:
        return pa.array([b.decode() for b in blobs], pa.large_string()).cast(pa.string())
    buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(b"".join(blobs))]
    return pa.Array.from_buffers(pa.string(), len(blobs), buffers)


def _serialise(props: list[dict[str, Any]]) -> pa.Array:
    """The JSON text of each of ``props`` as a string array.

    One ``orjson.dumps`` of the whole list costs a fraction of one call per object; the list
    is then cut at its ``},{`` separators. When the objects contain that sequence themselves
    (nested objects in lists, such strings) there are more of them than separators, and
    each object is serialised on its own instead."""
    n = len(props)
    try:
        blob = orjson.dumps(props)
    except TypeError:  # an integer beyond 64 bits, say
        return _string_array([json_dumps(p) for p in props])
    if n > 1 and blob.count(b"},{") == n - 1:
        data = np.frombuffer(blob, np.uint8)
        # '}' of "},{" ends an object; the ',' after it is dropped from the data
        ends = np.flatnonzero((data[1:-3] == 125) & (data[2:-2] == 44) & (data[3:-1] == 123)) + 1
        offsets = np.empty(n + 1, np.int64)
        offsets[0] = 0
        offsets[1:n] = ends - np.arange(n - 1)  # minus '[' and the commas before, plus '}'
        offsets[n] = len(blob) - 2 - (n - 1)
        if offsets[n] < 2**31:
            inner = np.delete(data[1:-1], ends)  # ends + 1 - 1: the commas, in data[1:-1]
            buffers = [None, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(inner)]
            return pa.Array.from_buffers(pa.string(), n, buffers)
    if n == 1:
        return _string_array([blob[1:-1]])
    dumps = orjson.dumps
    return _string_array([dumps(p) for p in props])


def _pick(values: list[Any], rows: list[int]) -> list[Any]:
    """``values`` at ``rows`` (distinct, ascending): all of them without a copy."""
    if len(rows) == len(values):
        return values
    if len(rows) == 1:
        return [values[rows[0]]]
    return list(operator.itemgetter(*rows)(values))


def _groups(names: list[str], versions: list[int | None], rows: np.ndarray) -> list[Any]:
    """``(name, version, rows)`` of ``rows`` by event name and schema version, rows in order."""
    if not len(rows):
        return []
    if versions.count(None) == len(versions):
        encoded = pa.array(names, pa.string()).dictionary_encode()
        codes = encoded.indices.to_numpy()[rows]
        order = np.argsort(codes, kind="stable")
        bounds = np.flatnonzero(np.diff(codes[order])) + 1
        dictionary = encoded.dictionary.to_pylist()
        return [
            (dictionary[int(codes[part[0]])], None, rows[part]) for part in np.split(order, bounds)
        ]
    by_key: dict[tuple[str, int | None], list[int]] = {}
    for i in rows.tolist():
        by_key.setdefault((names[i], versions[i]), []).append(i)
    return [(name, version, np.array(r)) for (name, version), r in by_key.items()]


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
        wanted: dict[str, _Batch] = {}
        for item in items:
            try:
                tenant, cols = decode_columns(item.payload)
            except (ValueError, KeyError, TypeError):
                continue
            wanted.setdefault(tenant, _Batch()).add(cols, 0)
        found = 0
        for tenant, batch in wanted.items():
            if not len(batch.cols):
                continue
            batch.finish()
            low, high = int(batch.cols.ts.min()), int(batch.cols.ts.max())
            stored = self.store.existing_ids(tenant, batch.cols.event_id, low, high)
            self.recent.add(tenant, stored)
            found += len(stored)
        return found

    # ------------------------------------------------------------------ one batch

    def process(self, items: Sequence[QueueItem]) -> BatchResult:
        with self._lock:
            return self._process(items)

    def _process(self, items: Sequence[QueueItem]) -> BatchResult:
        result = BatchResult()
        batches: dict[str, _Batch] = {}
        letters: dict[str, list[tuple[dict[str, Any], str]]] = {}
        for item in items:
            try:
                tenant, cols = decode_columns(item.payload, item.parsed)
            except (ValueError, KeyError, TypeError) as exc:
                letters.setdefault("default", []).append(
                    (
                        {"payload": item.payload[:4096].decode("utf-8", "replace")},
                        f"undecodable queue record: {exc}",
                    )
                )
                continue
            batch = batches.get(tenant)
            if batch is None:
                batch = batches[tenant] = _Batch()
            batch.add(cols, int(item.enqueued_at * 1e9))
        tables: list[tuple[str, pa.Table]] = []
        stored_ids: list[tuple[str, list[str]]] = []
        observed: list[tuple[str, list[tuple[str, dict[str, Any]]]]] = []
        for tenant, batch in batches.items():
            table, ids, pairs, dead = self._check(tenant, batch, result)
            if table is not None:
                tables.append((tenant, table))
                stored_ids.append((tenant, ids))
            if pairs:
                observed.append((tenant, pairs))
            if dead:
                letters.setdefault(tenant, []).extend(dead)
        for tenant, table in tables:
            self.store.append(tenant, table)
            result.stored += table.num_rows
        for tenant, ids in stored_ids:
            self.recent.add(tenant, ids)
        for tenant, pairs in observed:
            self.metrics.observe(tenant, pairs)
        for tenant, entries in letters.items():
            self.dlq.add(tenant, entries)
            result.dead_lettered += len(entries)
            for _, reason in entries:
                kind = _reason_kind(reason)
                result.reasons[kind] = result.reasons.get(kind, 0) + 1
        EVENTS_STORED.inc(result.stored)
        if result.duplicates:
            EVENTS_DUPLICATE.inc(result.duplicates)
        for kind, count in result.reasons.items():
            EVENTS_DEAD_LETTERED.labels(kind).inc(count)
        self.batches += 1
        return result

    def _check(
        self, tenant: str, batch: _Batch, result: BatchResult
    ) -> tuple[
        pa.Table | None,
        list[str],
        list[tuple[str, dict[str, Any]]],
        list[tuple[dict[str, Any], str]],
    ]:
        """One tenant's rows: the table to store, its ids, the (name, properties) pairs for
        event metrics, and the dead letters in the order the events came."""
        batch.finish()
        cols = batch.cols
        n = len(cols)
        names, ids, props, versions = cols.event, cols.event_id, cols.props, cols.version
        status = np.zeros(n, np.int8)
        # (rows before, 0, record, reason) for envelope errors; (row, 1, ...) for rows
        dead: list[tuple[int, int, dict[str, Any], str]] = [
            (pos, 0, record, str(record["error"])) for pos, record in cols.errors
        ]
        early: set[int] = set()  # rows dead before the dedupe (too big)
        sizes = np.fromiter(map(len, props), np.int64, n)
        for i in np.flatnonzero(sizes > _MEASURE_ABOVE_PROPERTIES).tolist():
            reason = _oversize(props[i], self.max_event_bytes)
            if reason is not None:
                record = self._record(cols, i, props={})
                record.update(error=reason, raw={"event": names[i], "uuid": ids[i]})
                status[i] = _DEAD
                early.add(i)
                dead.append((i, 1, record, reason))
        known = self.recent.of(tenant)
        if not known.isdisjoint(ids):
            for i, event_id in enumerate(ids):
                if event_id in known and status[i] == _STORE:
                    status[i] = _DUPLICATE
        # schema checks, the rows of one event name (and version) at a time
        registry = self.registry
        out_version = np.zeros(n, np.int32)
        has_version = np.zeros(n, bool)
        invalid: dict[int, tuple[dict[str, Any], str]] = {}
        checked: list[tuple[str, EventSchema | None, np.ndarray]] = []
        for name, version, rows in _groups(names, versions, np.flatnonzero(status == _STORE)):
            schema = registry.get(name, version)
            reason = None
            if schema is None:
                if version is not None and registry.get(name) is not None:
                    reason = f"unknown schema version: {name} v{version}"
                elif not registry.accepts_unregistered(name):
                    reason = f"unknown event: no schema registered for {name!r}"
                elif version is not None:
                    out_version[rows] = version
                    has_version[rows] = True
            if reason is not None:
                for i in rows.tolist():
                    invalid[i] = (self._record(cols, i), reason)
                status[rows] = _DEAD
                continue
            if schema is not None:
                out_version[rows] = schema.version
                has_version[rows] = True
                members = rows.tolist()
                for k, problem in schema.errors(_pick(props, members)):
                    i = members[k]
                    record = self._record(cols, i, props=apply_pii(schema, props[i], self.hasher))
                    invalid[i] = (record, f"invalid: {name} v{schema.version}: {problem}")
                    status[i] = _DEAD
            checked.append((name, schema, rows))
        event_ids = pa.array(ids, pa.string())
        if pc.count_distinct(event_ids).as_py() != n:
            self._resolve_repeats(ids, status, early, invalid)
        result.duplicates += int(np.count_nonzero(status == _DUPLICATE))
        dead.extend((i, 1, record, reason) for i, (record, reason) in invalid.items())
        dead.sort(key=lambda entry: (entry[0], entry[1]))
        letters = [(record, reason) for _, _, record, reason in dead]
        # what is stored: PII hashed or dropped; event metrics see the properties as sent
        wants = self.metrics.wants
        pairs: list[tuple[str, dict[str, Any]]] = []
        out_props = props
        for name, schema, rows in checked:
            wanted = wants(name)
            if not wanted and (schema is None or not schema.pii):
                continue
            members = rows[status[rows] == _STORE].tolist()
            if wanted:
                pairs.extend((name, props[i]) for i in members)
            if schema is not None and schema.pii:
                if out_props is props:
                    out_props = list(props)
                for i in members:
                    out_props[i] = apply_pii(schema, props[i], self.hasher)
        keep = status == _STORE
        stored = int(np.count_nonzero(keep))
        if not stored:
            return None, [], pairs, letters
        if stored == n:
            index = None
            stored_props = out_props
            stored_ids = ids
            id_column = event_ids
        else:
            index = np.flatnonzero(keep)
            members = index.tolist()
            stored_props = [out_props[i] for i in members]
            stored_ids = [ids[i] for i in members]
            id_column = event_ids.take(index)

        def column(values: list[Any]) -> pa.Array:
            array = pa.array(values, pa.string())
            return array if index is None else array.take(index)

        def picked(values: np.ndarray) -> np.ndarray:
            return values if index is None else values[index]

        table = pa.Table.from_arrays(
            [
                pa.array(picked(cols.ts), pa.timestamp("ns")),
                column(names),
                id_column,
                column(cols.user),
                column(cols.session),
                _serialise(stored_props),
                pa.array(picked(out_version), pa.int32(), mask=~picked(has_version)),
                pa.array(picked(np.concatenate(batch.received)), pa.timestamp("ns")),
            ],
            schema=EVENT_SCHEMA,
        )
        return table, stored_ids, pairs, letters

    @staticmethod
    def _resolve_repeats(
        ids: list[str],
        status: np.ndarray,
        early: set[int],
        invalid: dict[int, tuple[dict[str, Any], str]],
    ) -> None:
        """Ids that come more than once in a batch: the first occurrence that is stored wins;
        later ones are duplicates (even invalid ones), earlier invalid ones dead letters."""
        counts = collections.Counter(ids)
        seen: set[str] = set()
        for i, event_id in enumerate(ids):
            if counts[event_id] < 2 or i in early or status[i] == _DUPLICATE:
                continue
            if event_id in seen:
                status[i] = _DUPLICATE
                invalid.pop(i, None)
            elif status[i] == _STORE:
                seen.add(event_id)

    @staticmethod
    def _record(cols: CaptureColumns, i: int, **changes: Any) -> dict[str, Any]:
        """Row ``i`` as a capture record (for the dead-letter queue)."""
        record = {
            "event": cols.event[i],
            "ts": int(cols.ts[i]),
            "id": cols.event_id[i],
            "user": cols.user[i],
            "session": cols.session[i],
            "props": cols.props[i],
            "v": cols.version[i],
        }
        record.update(changes)
        return record
