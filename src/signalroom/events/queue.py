"""The queue between event capture and the consumer.

:class:`EventQueue` is the interface the service uses; :class:`WALEventQueue` is the embedded
implementation: every ``put`` is one record in a write-ahead log and returns once durable, the
consumer ``get``s items and ``ack``s them after their events are stored, and the log is
checkpointed behind the oldest unacknowledged item. A crash re-delivers what was not acked
(at-least-once); the consumer's event-id dedupe makes the effect exactly-once.

At scale, Redis Streams (XADD / XREADGROUP / XACK) or Kafka (produce / poll / commit) fit the
same four calls; nothing outside this module knows the queue is a WAL.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from signalroom.ingest.posthog import (
    CaptureColumns,
    json_dumps,
    json_loads,
    posthog_columns,
    posthog_envelope,
)
from signalroom.storage.wal import WAL, FsyncPolicy

__all__ = [
    "EventQueue",
    "QueueFull",
    "QueueItem",
    "RawCapture",
    "WALEventQueue",
    "count_events",
    "decode_columns",
    "decode_item",
    "encode_item",
]

# Parsed bodies are kept in memory for the consumer only while the backlog is short.
_KEEP_PARSED_EVENTS = 200_000
# Items larger than this are appended from a worker thread (the WAL's inline-write limit: it
# would write them from a worker anyway).
_THREAD_APPEND_BYTES = 256 * 1024

log = logging.getLogger(__name__)


class QueueFull(Exception):
    """The queue holds ``max_depth_events`` events: capture answers 429 until it drains."""


@dataclass(frozen=True)
class QueueItem:
    """One captured request's events as the queue holds them (undecoded), and while in memory
    the parsed body of a :class:`RawCapture` (so the consumer need not parse it again)."""

    id: int
    payload: bytes
    events: int
    enqueued_at: float  # time.time() when it was put (or replayed)
    parsed: Any = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class RawCapture:
    """A PostHog capture body queued as sent (decompressed JSON text); the consumer turns it
    into records. Capture then costs one JSON parse (to answer 400 for a bad body) and one
    WAL append, instead of also building and encoding records. ``id_seed`` makes the ids
    given to events without a ``uuid`` the same every time the body is parsed."""

    body: bytes
    now_ns: int
    events: int
    id_seed: int
    parsed: Any = field(default=None, compare=False, repr=False)


# Items are JSON {"t": tenant, "r": records}, or this byte, a JSON header line and a raw body.
_RAW = b"\x00"


def encode_item(tenant: str, records: list[dict[str, Any]] | RawCapture) -> bytes:
    if isinstance(records, RawCapture):
        header = {"t": tenant, "k": "posthog", "now": records.now_ns, "seed": records.id_seed}
        return _RAW + json_dumps(header) + b"\n" + records.body
    return json_dumps({"t": tenant, "r": records})


def decode_columns(payload: bytes, parsed: Any = None) -> tuple[str, CaptureColumns]:
    """The tenant and capture records (as columns) of an item; ``parsed`` is its body
    already parsed. Raises ValueError (or KeyError, TypeError) for an item that cannot be
    read."""
    if payload[:1] == _RAW:
        end = payload.index(b"\n")
        header = json_loads(payload[1:end])
        body = parsed if parsed is not None else json_loads(payload[end + 1 :])
        cols = posthog_columns(body, now_ns=int(header["now"]), id_seed=int(header["seed"]))
        return str(header["t"]), cols
    data = json_loads(payload)
    return str(data["t"]), records_columns(data["r"])


def records_columns(records: Sequence[Any]) -> CaptureColumns:
    """Capture records as columns; a record that is not one (a damaged replay, say) becomes
    an error record instead of failing the batch."""
    cols = CaptureColumns()
    stamps: list[int] = []
    for record in records:
        problem = _record_problem(record)
        if problem is not None:
            entry = record if isinstance(record, dict) else {"raw": record}
            if "error" not in entry:
                entry = dict(entry, error=problem)
            cols.errors.append((len(cols.event), entry))
            continue
        cols.event.append(record["event"])
        cols.event_id.append(record["id"])
        stamps.append(record["ts"])
        cols.user.append(record["user"])
        cols.session.append(record.get("session"))
        cols.props.append(record["props"])
        cols.version.append(record.get("v"))
    cols.ts = np.array(stamps, np.int64)
    return cols


def _record_problem(record: Any) -> str | None:
    if not isinstance(record, dict):
        return "unusable queue record: not an object"
    if "error" in record:
        return str(record["error"])
    ts = record.get("ts")
    if isinstance(ts, bool) or not isinstance(ts, int) or not -(2**63) <= ts < 2**63:
        return "unusable queue record: ts is not an epoch-ns integer"
    version = record.get("v")
    ok = (
        isinstance(record.get("event"), str)
        and record["event"] != ""
        and isinstance(record.get("id"), str)
        and isinstance(record.get("user"), str)
        and isinstance(record.get("session"), str | None)
        and isinstance(record.get("props"), dict)
        and (version is None or (isinstance(version, int) and not isinstance(version, bool)))
    )
    return None if ok else "unusable queue record: a field has the wrong type"


def decode_item(payload: bytes, parsed: Any = None) -> tuple[str, list[dict[str, Any]]]:
    """The tenant and capture records of an item (see :func:`decode_columns`)."""
    if payload[:1] == _RAW:
        tenant, cols = decode_columns(payload, parsed)
        return tenant, cols.records()
    data = json_loads(payload)
    return str(data["t"]), list(data["r"])


def count_events(payload: bytes) -> int:
    """Events in an item, for the queue depth after a restart (1 if it cannot be read)."""
    try:
        if payload[:1] == _RAW:
            end = payload.index(b"\n")
            return len(posthog_envelope(json_loads(payload[end + 1 :])).events)
        return len(decode_item(payload)[1])
    except (ValueError, KeyError, TypeError):
        return 1  # the consumer dead-letters it


class EventQueue(Protocol):
    """A durable queue of captured events with acknowledgements."""

    async def open(self) -> None: ...

    async def close(self) -> None: ...

    async def put(self, tenant: str, records: list[dict[str, Any]] | RawCapture) -> int:
        """Enqueue durably; return the item id. Raises :class:`QueueFull`."""
        ...

    async def get(self, *, min_events: int, max_events: int, wait_s: float) -> list[QueueItem]:
        """Wait until ``min_events`` events are ready or the oldest has waited ``wait_s``;
        return items holding at most ``max_events`` events (at least one item) or [] when
        the wait ends with nothing ready."""
        ...

    async def ack(self, items: Sequence[QueueItem]) -> None:
        """The items' events are stored: they are never delivered again."""
        ...

    def nack(self, items: Sequence[QueueItem]) -> None:
        """Deliver the items again (the consumer could not store them)."""
        ...

    def pending(self) -> list[QueueItem]:
        """Items not yet delivered."""
        ...

    @property
    def depth_events(self) -> int:
        """Events enqueued and not yet acknowledged."""
        ...

    def oldest_age_s(self) -> float:
        """Seconds the oldest unacknowledged event has waited (consumer lag); 0 if none."""
        ...


class WALEventQueue:
    """:class:`EventQueue` on a :class:`~signalroom.storage.wal.WAL` in ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        fsync: FsyncPolicy = "batch",
        segment_bytes: int = 64 * 2**20,
        max_depth_events: int = 1_000_000,
    ) -> None:
        self._wal = WAL(
            Path(directory), name="events-queue", fsync=fsync, segment_bytes=segment_bytes
        )
        self.max_depth_events = max_depth_events
        self._ready: collections.deque[QueueItem] = collections.deque()
        self._ready_events = 0
        self._unacked: dict[int, QueueItem] = {}  # delivered, not acked
        self._unacked_events = 0
        self._acked: set[int] = set()  # acked above the covered LSN
        self._covered = 0  # every LSN <= this is acked
        self._pending_events = 0  # put() calls waiting for their WAL write
        self._wakeup: asyncio.Event | None = None
        self._checkpoint_lock = asyncio.Lock()

    # ------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        self._wakeup = asyncio.Event()
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        self._wal.open()
        self._covered = self._wal.checkpoint_lsn
        seen: set[int] = set()
        for lsn, payload in self._wal.replay():
            events = count_events(payload)
            self._ready.append(QueueItem(lsn, payload, events, time.time()))
            self._ready_events += events
            seen.add(lsn)
        # LSNs the WAL lost to repair (torn tail, corruption) can never be acked: skip them.
        self._acked = {
            lsn for lsn in range(self._covered + 1, self._wal.last_lsn + 1) if lsn not in seen
        }
        self._advance()
        if self._ready:
            log.info("events: %d queued events replayed from the WAL", self._ready_events)

    async def close(self) -> None:
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        if self._covered > self._wal.checkpoint_lsn:
            self._wal.checkpoint(self._covered)
        self._wal.close()

    # ------------------------------------------------------------------ producer

    async def put(self, tenant: str, records: list[dict[str, Any]] | RawCapture) -> int:
        count = records.events if isinstance(records, RawCapture) else len(records)
        if self.depth_events + count > self.max_depth_events:
            raise QueueFull(
                f"event queue holds {self.depth_events} events (max_depth_events "
                f"{self.max_depth_events}); retry later"
            )
        payload = encode_item(tenant, records)
        self._pending_events += count
        try:
            if len(payload) > _THREAD_APPEND_BYTES:
                # A worker thread writes and fsyncs it (sharing fsyncs with the others):
                # fewer hand-offs than append_async's write in a worker, fsync in the WAL's
                # flusher thread, each waiting for the GIL (measured: +25 % /batch rate).
                lsn = await asyncio.to_thread(self._wal.append, [payload])
            else:
                lsn = await self._wal.append_async([payload])
        finally:
            self._pending_events -= count
        parsed = records.parsed if isinstance(records, RawCapture) else None
        if self._ready_events > _KEEP_PARSED_EVENTS:
            parsed = None
        self._ready.append(QueueItem(lsn, payload, count, time.time(), parsed))
        self._ready_events += count
        assert self._wakeup is not None
        self._wakeup.set()
        return lsn

    # ------------------------------------------------------------------ consumer

    async def get(self, *, min_events: int, max_events: int, wait_s: float) -> list[QueueItem]:
        assert self._wakeup is not None
        deadline = time.monotonic() + wait_s
        while True:
            if self._ready:
                age = time.time() - self._ready[0].enqueued_at
                if self._ready_events >= min_events or age >= wait_s:
                    return self._take(max_events)
                timeout = min(deadline - time.monotonic(), wait_s - age)
            else:
                timeout = deadline - time.monotonic()
            if timeout <= 0:
                return self._take(max_events) if self._ready else []
            self._wakeup.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wakeup.wait(), timeout)

    def _take(self, max_events: int) -> list[QueueItem]:
        taken: list[QueueItem] = []
        total = 0
        while self._ready and (not taken or total + self._ready[0].events <= max_events):
            item = self._ready.popleft()
            taken.append(item)
            total += item.events
            self._unacked[item.id] = item
        self._ready_events -= total
        self._unacked_events += total
        return taken

    async def ack(self, items: Sequence[QueueItem]) -> None:
        for item in items:
            if self._unacked.pop(item.id, None) is not None:
                self._unacked_events -= item.events
                self._acked.add(item.id)
        self._advance()
        if self._covered > self._wal.checkpoint_lsn and not self._checkpoint_lock.locked():
            async with self._checkpoint_lock:
                await asyncio.to_thread(self._wal.checkpoint, self._covered)

    def pending(self) -> list[QueueItem]:
        """Items not yet delivered (after a restart: the re-delivered ones)."""
        return list(self._ready)

    def nack(self, items: Sequence[QueueItem]) -> None:
        """Give delivered items back (the consumer failed): they are delivered again first."""
        for item in reversed(items):
            if self._unacked.pop(item.id, None) is not None:
                self._unacked_events -= item.events
                self._ready.appendleft(item)
                self._ready_events += item.events

    def _advance(self) -> None:
        acked, covered = self._acked, self._covered
        while covered + 1 in acked:
            covered += 1
            acked.discard(covered)
        self._covered = covered

    # ------------------------------------------------------------------ state

    @property
    def depth_events(self) -> int:
        return self._ready_events + self._unacked_events + self._pending_events

    @property
    def ready_events(self) -> int:
        return self._ready_events

    def oldest_age_s(self) -> float:
        oldest = [item.enqueued_at for item in self._unacked.values()]
        if self._ready:
            oldest.append(self._ready[0].enqueued_at)
        return max(0.0, time.time() - min(oldest)) if oldest else 0.0
