"""The event service the application builds: capture -> queue -> consumer -> store, the
schema registry, the dead-letter queue, event metrics and analytics.

Layout under ``directory``: ``queue/`` (the queue's WAL), ``store/`` (the event table: WAL and
Parquet segments), ``dlq.sqlite``, ``schemas/`` (schemas registered at run time) and
``pii.key`` (the key PII values are hashed with; keep it to keep hashes comparable).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import time
from pathlib import Path
from typing import Any

from signalroom.events.analytics import Analytics
from signalroom.events.config import EventsConfig
from signalroom.events.consumer import Consumer
from signalroom.events.index import EventIndex
from signalroom.events.metrics import CONSUMER_LAG, DLQ_SIZE, QUEUE_DEPTH, EventMetrics
from signalroom.events.queue import EventQueue, QueueFull, RawCapture, WALEventQueue
from signalroom.events.schemas.registry import SchemaRegistry, pii_hasher
from signalroom.events.store import DeadLetterQueue, EventStore
from signalroom.storage.wal import FsyncPolicy

__all__ = ["EventService", "QueueFull"]

log = logging.getLogger(__name__)


def _pii_key(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes()
    key = secrets.token_bytes(32)
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key)
        file.flush()
        os.fsync(file.fileno())
    os.replace(tmp, path)
    return key


class EventService:
    """Everything about business events: :meth:`capture`, the dead-letter queue, GDPR erase,
    event metrics (written to ``metrics``, the TSDB, when set) and :attr:`analytics`."""

    def __init__(
        self,
        config: EventsConfig,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        metrics: Any = None,
    ) -> None:
        self.config = config
        self.directory = Path(directory)
        self.metrics = metrics
        self.directory.mkdir(parents=True, exist_ok=True)
        self.queue: EventQueue = WALEventQueue(
            self.directory / "queue",
            fsync=wal_fsync,
            segment_bytes=config.queue.segment_bytes,
            max_depth_events=config.queue.max_depth_events,
        )
        self.store = EventStore(
            self.directory / "store",
            wal_fsync=wal_fsync,
            flush_rows=config.flush_rows,
            flush_interval_s=config.flush_interval / 1000,
        )
        self.registry = SchemaRegistry(
            self.directory / "schemas", accept_unregistered=config.accept_unregistered
        )
        self.dlq = DeadLetterQueue(
            self.directory / "dlq.sqlite", max_entries=config.dlq_max_entries
        )
        self.event_metrics = EventMetrics(config.metrics)
        self.hash_pii = pii_hasher(_pii_key(self.directory / "pii.key"))
        self.consumer = Consumer(
            self.queue,
            self.store,
            self.registry,
            self.dlq,
            self.event_metrics,
            hasher=self.hash_pii,
            dedupe_ids=config.dedupe_ids,
            batch_events=config.queue.batch_events,
            batch_interval_s=config.queue.batch_interval / 1000,
            max_batch_events=config.queue.max_batch_events,
            max_event_bytes=config.max_event_bytes,
        )
        self.index = (
            EventIndex(self.store, max_rows=config.index_max_rows)
            if config.index_max_rows
            else None
        )
        self.analytics = Analytics(self.store, index=self.index)
        self._tasks: list[asyncio.Task[None]] = []
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        await asyncio.to_thread(self.dlq.open)
        await self.queue.open()
        replayed = self.queue.pending() if isinstance(self.queue, WALEventQueue) else []
        if replayed:
            found = await asyncio.to_thread(self.consumer.prime, replayed)
            log.info("events: %d re-delivered events were stored before the restart", found)
        self.started = True
        self._tasks = [
            asyncio.create_task(self.consumer.run(), name="events-consumer"),
            asyncio.create_task(self._maintain(), name="events-maintenance"),
        ]

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._tasks = []
        if self.started:
            with contextlib.suppress(Exception):
                await self.consumer.drain(timeout_s=10.0)
            with contextlib.suppress(Exception):
                await self.write_event_metrics()
            await self.queue.close()
            await asyncio.to_thread(self.store.close)
            await asyncio.to_thread(self.dlq.close)
            self.started = False

    def apply_config(self, config: EventsConfig) -> None:
        """Take a reloaded configuration (metrics, batching, limits, retention, patterns)."""
        self.config = config
        self.event_metrics.set_rules(config.metrics)
        self.registry.set_accept_unregistered(config.accept_unregistered)
        self.consumer.batch_events = config.queue.batch_events
        self.consumer.batch_interval_s = config.queue.batch_interval / 1000
        self.consumer.max_batch_events = config.queue.max_batch_events
        self.consumer.max_event_bytes = config.max_event_bytes
        self.dlq.max_entries = config.dlq_max_entries
        if isinstance(self.queue, WALEventQueue):
            self.queue.max_depth_events = config.queue.max_depth_events
        self.store.table.flush_rows = config.flush_rows
        if self.index is not None and config.index_max_rows:
            self.index.max_rows = config.index_max_rows  # turning it on or off needs a restart
        self.store.table.flush_interval_s = config.flush_interval / 1000

    # ------------------------------------------------------------------ capture

    async def capture(self, tenant: str, records: list[dict[str, Any]] | RawCapture) -> int:
        """Enqueue capture records (see :mod:`signalroom.ingest.posthog`) or a PostHog body
        durably; once this returns they survive a crash. Returns the number of events.
        Raises :class:`QueueFull`."""
        count = records.events if isinstance(records, RawCapture) else len(records)
        if count:
            await self.queue.put(tenant, records)
        return count

    async def drain(self, timeout_s: float = 30.0) -> None:
        """Wait until every captured event is stored or dead-lettered."""
        await self.consumer.drain(timeout_s)

    # ------------------------------------------------------------------ DLQ and GDPR

    async def replay_dead_letters(
        self, tenant: str, ids: list[int] | None = None, limit: int = 1000
    ) -> int:
        """Capture dead letters again (after a schema fix, say); returns how many. Those that
        fail again come back to the DLQ with their new reason."""
        letters = await asyncio.to_thread(self.dlq.take, tenant, ids, limit)
        records = []
        for letter in letters:
            record = {k: v for k, v in letter.record.items() if k not in ("error", "raw")}
            if "raw" in letter.record and "event" not in letter.record:
                record = {"error": letter.reason, "raw": letter.record["raw"], "ts": time.time_ns()}
            records.append(record)
        try:
            await self.capture(tenant, records)
        except BaseException:
            await asyncio.to_thread(self.dlq.restore, letters)
            raise
        return len(records)

    async def delete_user(self, tenant: str, user_id: str) -> dict[str, int]:
        """Erase a person's events (GDPR art. 17): queued ones are stored first, then every
        stored event and dead letter of ``user_id`` is removed."""
        await self.consumer.drain()
        events = await asyncio.to_thread(self.store.delete_user, tenant, user_id)
        if self.index is not None:
            self.index.forget_user(tenant, user_id)
            await asyncio.to_thread(self.index.refresh)  # drop the rewritten files' entries
        letters = await asyncio.to_thread(self.dlq.delete_user, tenant, user_id)
        log.info("events: erased user", extra={"events": events, "dead_letters": letters})
        return {"events_deleted": events, "dead_letters_deleted": letters}

    # ------------------------------------------------------------------ metrics

    def status(self) -> dict[str, Any]:
        return {
            "queue_depth": self.queue.depth_events,
            "consumer_lag_seconds": self.queue.oldest_age_s(),
            "dlq_size": self.dlq.size,
            "dlq_evicted": self.dlq.evicted,
            "consumer_batches": self.consumer.batches,
            "consumer_error": self.consumer.last_error,
            "store": self.store.stats(),
        }

    def update_gauges(self) -> None:
        QUEUE_DEPTH.set(self.queue.depth_events)
        CONSUMER_LAG.set(self.queue.oldest_age_s())
        DLQ_SIZE.set(self.dlq.size)

    async def write_event_metrics(self, now_ms: int | None = None) -> int:
        """Append the current event-metric series to the metric store; returns samples."""
        tsdb = self.metrics
        if tsdb is None:
            return 0
        from signalroom.tsdb import SampleBatch

        stamp = now_ms if now_ms is not None else int(time.time() * 1000)
        written = 0
        for tenant in self.event_metrics.tenants():
            series = self.event_metrics.series(tenant)
            if series:
                batch = SampleBatch.from_series([(lb, [stamp], [v]) for lb, v in series])
                await tsdb.append_async(tenant, batch)
                written += len(series)
        return written

    # ------------------------------------------------------------------ maintenance

    def apply_retention(self, now_ns: int | None = None) -> None:
        with self.store.files_lock:
            self.store.table.apply_retention(
                max_age_s=self.config.retention / 1000 or None, max_bytes=None, now_ns=now_ns
            )

    def compact(self) -> None:
        with self.store.files_lock:
            self.store.table.compact()

    async def _maintain(self) -> None:
        last_compaction = last_metrics = time.monotonic()
        warmed = False
        while True:
            await asyncio.sleep(1.0)
            try:
                self.update_gauges()
                flushed = await asyncio.to_thread(self.store.table.maybe_flush)
                if self.index is not None and (flushed or not warmed):
                    await asyncio.to_thread(self.index.refresh)  # new files, before queries
                    warmed = True
                if time.monotonic() - last_metrics >= self.config.metrics_interval / 1000:
                    last_metrics = time.monotonic()
                    await self.write_event_metrics()
                if time.monotonic() - last_compaction > 300:
                    last_compaction = time.monotonic()
                    await asyncio.to_thread(self.compact)
                    await asyncio.to_thread(self.apply_retention)
                    warmed = False
            except Exception:
                log.exception("event maintenance failed")
