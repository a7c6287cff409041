"""The trace service the application builds: receivers feed ``ingest``; it derives RED
metrics, tail-samples, stores, and answers queries.

With tail sampling on, a batch is first written to the *pending* WAL (so an acknowledged span
survives kill -9 while its trace waits for a decision), then held by the sampler; kept traces
go to the span store (its own WAL, then segments) and the pending WAL is checkpointed below the
oldest span still waiting. On restart, pending spans are replayed and wait again. A crash
between storing a kept trace and the checkpoint can store its spans twice: reads drop the
duplicates (same trace and span id).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
from prometheus_client import Counter

from signalroom.storage.table import decode_record, encode_record
from signalroom.storage.wal import WAL, FsyncPolicy
from signalroom.traces.config import TracesConfig
from signalroom.traces.model import SPAN_SCHEMA, SpanBatch, SpanColumns
from signalroom.traces.red import SpanMetrics
from signalroom.traces.sampling import SAMPLED_SPANS, TailSampler
from signalroom.traces.store import TraceStore

if TYPE_CHECKING:
    from signalroom.auth import Authenticator
    from signalroom.traces.otlp_grpc import OtlpGrpcReceiver

__all__ = ["IngestResult", "TraceService"]

log = logging.getLogger(__name__)

SPANS_RECEIVED = Counter(
    "signalroom_traces_spans_received_total", "Spans accepted by a trace receiver.", ["receiver"]
)
_HEAD_COLUMN = "__head_keep"


@dataclass(frozen=True)
class IngestResult:
    """What one ``ingest`` call did: spans accepted, and of those stored at once."""

    accepted: int
    stored: int


class TraceService:
    """Everything about traces: ``ingest``, the ``store`` and queries over it, sampling, RED
    metrics (written to ``metrics``, the TSDB, when set), retention, and the OTLP/gRPC
    listener (``authenticator`` returns the server's current token checker for it)."""

    def __init__(
        self,
        config: TracesConfig,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        metrics: Any = None,
        authenticator: Callable[[], Authenticator | None] | None = None,
    ) -> None:
        self.config = config
        self.authenticator = authenticator
        self.grpc: OtlpGrpcReceiver | None = None
        self.directory = Path(directory)
        self.metrics = metrics
        self.store = TraceStore(
            self.directory,
            wal_fsync=wal_fsync,
            flush_rows=config.flush_rows,
            flush_interval_s=config.flush_interval / 1000,
        )
        self.sampler = TailSampler(config.sampling)
        self.red = SpanMetrics(config.red_metrics.buckets)
        self._pending_wal = WAL(self.directory / "pending", name="traces-pending", fsync=wal_fsync)
        self._in_flight: dict[int, int] = {}
        self._tokens = itertools.count(1)
        self._maintenance: asyncio.Task[None] | None = None
        self._decide_lock = asyncio.Lock()
        self._grpc_restart: asyncio.Task[None] | None = None
        self.started = False

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        await asyncio.to_thread(self._pending_wal.open)
        await asyncio.to_thread(self._replay_pending)
        self.started = True
        self._maintenance = asyncio.create_task(self._maintain(), name="traces-maintenance")
        await self._start_grpc()

    async def _start_grpc(self) -> None:
        if not self.config.otlp_grpc.enabled:
            return
        from signalroom.traces.otlp_grpc import OtlpGrpcReceiver  # grpc only when used

        receiver = OtlpGrpcReceiver(
            partial(self.ingest, receiver="otlp_grpc"),
            self.config.otlp_grpc,
            asyncio.get_running_loop(),
            self.authenticator,
        )
        try:
            await asyncio.to_thread(receiver.start)
        except RuntimeError as exc:
            # The HTTP receivers still work; a port taken by a local collector must not stop
            # the whole server.
            log.error("traces: OTLP/gRPC receiver not started: %s", exc)
            return
        self.grpc = receiver

    async def _stop_grpc(self) -> None:
        receiver, self.grpc = self.grpc, None
        if receiver is not None:
            await asyncio.to_thread(receiver.stop)

    async def _restart_grpc(self) -> None:
        await self._stop_grpc()
        if self.started:
            await self._start_grpc()

    async def stop(self) -> None:
        await self._stop_grpc()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.started:
            with contextlib.suppress(Exception):
                await self.write_red_metrics()
            # Spans still waiting for a decision stay in the pending WAL for the next start.
            await asyncio.to_thread(self._pending_wal.close)
            await asyncio.to_thread(self.store.close)
            self.started = False

    def apply_config(self, config: TracesConfig) -> None:
        """Take a reloaded configuration (sampling rules, buckets, limits, retention; the
        gRPC listener restarts when its settings changed)."""
        previous, self.config = self.config, config
        if self.started and previous.otlp_grpc != config.otlp_grpc:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                log.warning("traces: the OTLP/gRPC settings change on the next restart")
            else:
                self._grpc_restart = loop.create_task(self._restart_grpc())
        self.sampler.apply_config(config.sampling)
        self.red.set_buckets(config.red_metrics.buckets)
        self.store.table.flush_rows = config.flush_rows
        self.store.table.flush_interval_s = config.flush_interval / 1000

    def _replay_pending(self) -> None:
        replayed = 0
        for lsn, payload in self._pending_wal.replay():
            tenant, table = decode_record(payload)
            head = table.column(_HEAD_COLUMN).combine_chunks()
            spans = table.drop_columns([_HEAD_COLUMN])
            ready = self.sampler.route(tenant, spans, head, lsn)
            if ready.num_rows:
                self.store.append(tenant, ready)
            replayed += table.num_rows
        if replayed:
            log.info("traces: %d spans waiting for a sampling decision replayed", replayed)

    # ------------------------------------------------------------------ ingest

    async def ingest(
        self,
        tenant: str,
        spans: SpanBatch | SpanColumns | pa.Table,
        *,
        receiver: str = "otlp",
        head: pa.Array | None = None,
    ) -> IngestResult:
        """Accept spans durably; once this returns they survive a crash (stored, or waiting
        in the pending WAL for the sampler). Raises ValueError for an invalid tenant."""
        if isinstance(spans, SpanBatch):
            table, head = spans.table, spans.head
        elif isinstance(spans, SpanColumns):
            head = spans.head_decisions()
            table = (
                await asyncio.to_thread(spans.to_table) if len(spans) > 5000 else spans.to_table()
            )
        else:
            table = spans
            if head is None:
                head = pa.nulls(table.num_rows, pa.bool_())
        if table.num_rows == 0:
            return IngestResult(0, 0)
        SPANS_RECEIVED.labels(receiver).inc(table.num_rows)
        if self.config.red_metrics.enabled:
            self.red.observe(tenant, table)
        if not self.config.sampling.enabled:
            await self.store.append_async(tenant, table)
            SAMPLED_SPANS.labels("kept").inc(table.num_rows)
            return IngestResult(table.num_rows, table.num_rows)
        self.store.table.store.validate(tenant, table)
        payload = encode_record(tenant, table.append_column(_HEAD_COLUMN, head))
        token = next(self._tokens)
        self._in_flight[token] = self._pending_wal.last_lsn
        try:
            lsn = await self._pending_wal.append_async([payload])
            ready = self.sampler.route(tenant, table, head, lsn)
        finally:
            self._in_flight.pop(token, None)
        if ready.num_rows:
            await self.store.append_async(tenant, ready)
        return IngestResult(table.num_rows, ready.num_rows)

    async def decide(self, *, flush_all: bool = False) -> int:
        """Store the kept spans of complete traces and release the pending WAL behind them;
        returns the spans stored. ``flush_all`` decides every waiting trace now (tests)."""
        async with self._decide_lock:
            stored = 0
            for tenant, table in self.sampler.decide(flush_all=flush_all):
                await self.store.append_async(tenant, table)
                stored += table.num_rows
            safe = self.sampler.safe_lsn()
            floors = list(self._in_flight.values())
            if floors:
                safe = min(safe, min(floors))
            if safe > self._pending_wal.checkpoint_lsn:
                await asyncio.to_thread(self._pending_wal.checkpoint, safe)
            return stored

    # ------------------------------------------------------------------ derived data

    async def write_red_metrics(self, now_ms: int | None = None) -> int:
        """Append the current cumulative RED series to the metric store; returns samples."""
        tsdb = self.metrics
        if tsdb is None or not self.config.red_metrics.enabled:
            return 0
        from signalroom.tsdb import SampleBatch

        stamp = now_ms if now_ms is not None else int(time.time() * 1000)
        written = 0
        for tenant in self.red.tenants():
            series = self.red.series(tenant)
            if not series:
                continue
            batch = SampleBatch.from_series(
                [(labels, [stamp], [value]) for labels, value in series]
            )
            await tsdb.append_async(tenant, batch)
            written += len(series)
        return written

    # ------------------------------------------------------------------ maintenance

    def apply_retention(self, now_ns: int | None = None) -> None:
        self.store.table.apply_retention(
            max_age_s=self.config.retention / 1000 or None, max_bytes=None, now_ns=now_ns
        )

    async def _maintain(self) -> None:
        last_compaction = last_red = time.monotonic()
        first = True
        while True:
            await asyncio.sleep(1.0)
            try:
                if self.config.sampling.enabled or self.sampler.pending_traces:
                    await self.decide()
                if await asyncio.to_thread(self.store.table.maybe_flush) or first:
                    await asyncio.to_thread(self.store.warm_index)
                first = False
                if time.monotonic() - last_red >= self.config.red_metrics.interval / 1000:
                    last_red = time.monotonic()
                    await self.write_red_metrics()
                if time.monotonic() - last_compaction > 300:
                    last_compaction = time.monotonic()
                    await asyncio.to_thread(self.store.table.compact)
                    await asyncio.to_thread(self.apply_retention)
                    await asyncio.to_thread(self.store.warm_index)
            except Exception:
                log.exception("trace maintenance failed")

    @property
    def schema(self) -> pa.Schema:
        return SPAN_SCHEMA
