"""The log service the application builds: pipeline, store, query engine, syslog servers."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from signalroom.logs.config import LogsConfig
from signalroom.logs.errors import ErrorGroups
from signalroom.logs.logql.ast import LabelMatcher, LogQLError, LogQuery
from signalroom.logs.logql.engine import LogQLEngine
from signalroom.logs.logql.parser import parse
from signalroom.logs.pipeline import EntryBatch, Pipeline, PipelineResult
from signalroom.logs.store import Hidden, LogStore
from signalroom.storage.wal import FsyncPolicy

if TYPE_CHECKING:
    from signalroom.logs.ruler import LogRuler

__all__ = ["LogService"]

log = logging.getLogger(__name__)


class LogService:
    """Everything about logs: ``ingest`` (pipeline then WAL), ``engine`` (LogQL), tails,
    retention, and the syslog receivers it owns."""

    def __init__(
        self, config: LogsConfig, directory: Path, *, wal_fsync: FsyncPolicy = "batch"
    ) -> None:
        self.config = config
        self.directory = Path(directory)
        self.store = LogStore(
            self.directory,
            wal_fsync=wal_fsync,
            flush_rows=config.flush_rows,
            flush_interval_s=config.flush_interval / 1000,
        )
        self.pipeline = Pipeline(config)
        self.engine = LogQLEngine(
            self.store,
            max_series=config.max_query_series,
            timeout_s=config.query_timeout / 1000,
            hidden=self.hidden,
        )
        self._retention_rules: list[tuple[tuple[LabelMatcher, ...], int]] = []
        self._subscribers: dict[int, tuple[str, asyncio.Queue[pa.Table]]] = {}
        self._next_subscriber = 0
        self._maintenance: asyncio.Task[None] | None = None
        self._syslog: Any = None
        self.errors = ErrorGroups()
        """Error groups; the application binds them to the state and metric stores."""
        self.ruler: LogRuler | None = None
        """The LogQL ruler, when the application attached one (``LogRuler.create``)."""
        self.started = False
        self.apply_config(config)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        await asyncio.to_thread(self.store.open)
        self.started = True
        self._maintenance = asyncio.create_task(self._maintain(), name="logs-maintenance")
        await self._start_syslog()

    async def stop(self) -> None:
        if self.ruler is not None:
            await self.ruler.stop()
        if self._syslog is not None:
            await self._syslog.stop()
            self._syslog = None
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        if self.started:
            await asyncio.to_thread(self.store.close)
            self.started = False
        try:
            await asyncio.to_thread(self.errors.flush)
        except Exception:
            log.exception("could not save the error groups")

    def apply_config(self, config: LogsConfig) -> None:
        """Take a reloaded configuration (pipeline, limits, retention; syslog on restart)."""
        rules = []
        for rule in config.retention_streams:
            try:
                query = parse(rule.selector)
            except LogQLError as exc:
                raise ValueError(
                    f"logs.retention_streams selector {rule.selector!r}: {exc}"
                ) from None
            if not isinstance(query, LogQuery) or query.stages:
                raise ValueError(
                    f"logs.retention_streams selector {rule.selector!r}: expected a stream "
                    'selector such as {env="dev"}'
                )
            rules.append((query.matchers, rule.period * 1_000_000))
        if self.ruler is not None:
            self.ruler.check(config)
        previous = self.config
        self.config = config
        self._retention_rules = rules
        self.pipeline.apply_config(config)
        self.engine.max_series = config.max_query_series
        self.engine.timeout_s = config.query_timeout / 1000
        self.store.table.flush_rows = config.flush_rows
        self.store.table.flush_interval_s = config.flush_interval / 1000
        if self.ruler is not None:
            self.ruler.apply(config)
        if self.started and previous.syslog != config.syslog:
            asyncio.get_running_loop().create_task(self._restart_syslog())

    async def _start_syslog(self) -> None:
        syslog = self.config.syslog
        if syslog.udp is None and syslog.tcp is None:
            return
        from signalroom.ingest.syslog import SyslogServer

        server = SyslogServer(self, syslog)
        await server.start()
        self._syslog = server

    async def _restart_syslog(self) -> None:
        if self._syslog is not None:
            await self._syslog.stop()
            self._syslog = None
        try:
            await self._start_syslog()
        except OSError:
            log.exception("could not start the syslog receivers")

    @property
    def syslog_addresses(self) -> dict[str, tuple[str, int]]:
        """Bound syslog addresses (``udp``/``tcp``), useful with port 0."""
        return {} if self._syslog is None else dict(self._syslog.addresses)

    # ------------------------------------------------------------------ ingest

    async def ingest(self, tenant: str, batch: EntryBatch, receiver: str) -> PipelineResult:
        """Run the pipeline and write the rows durably; once this returns they are safe."""
        result = await asyncio.to_thread(self.pipeline.process, tenant, batch, receiver)
        if result.table.num_rows:
            await self.store.append_async(tenant, result.table)
            self._publish(tenant, result.table)
            try:
                await asyncio.to_thread(self.errors.observe, tenant, result.table)
            except Exception:  # the rows are stored; grouping must not fail the push
                log.exception("error grouping failed")
        return result

    def _publish(self, tenant: str, table: pa.Table) -> None:
        for owner, queue in self._subscribers.values():
            if owner == tenant:
                with contextlib.suppress(asyncio.QueueFull):
                    queue.put_nowait(table)

    def subscribe(self, tenant: str) -> tuple[int, asyncio.Queue[pa.Table]]:
        """New rows of ``tenant`` as they are stored (for tail); drop-oldest is the caller's."""
        self._next_subscriber += 1
        queue: asyncio.Queue[pa.Table] = asyncio.Queue(maxsize=1000)
        self._subscribers[self._next_subscriber] = (tenant, queue)
        return self._next_subscriber, queue

    def unsubscribe(self, token: int) -> None:
        self._subscribers.pop(token, None)

    # ------------------------------------------------------------------ retention

    def hidden(self, tenant: str, stream_ids: Sequence[int]) -> list[Hidden]:
        """Streams whose per-stream retention is shorter than the default: their older lines
        are invisible to queries until whole partitions age out."""
        if not self._retention_rules:
            return []
        now = time.time_ns()
        wanted = set(stream_ids)
        out = []
        claimed: set[int] = set()
        for matchers, period_ns in self._retention_rules:
            ids = tuple(
                s.id
                for s in self.store.streams(tenant, matchers)
                if s.id in wanted and s.id not in claimed
            )
            claimed.update(ids)  # the first matching rule wins
            if ids:
                out.append(Hidden(ids, now - period_ns))
        return out

    def apply_retention(self, now_ns: int | None = None) -> None:
        """Delete partitions older than the longest retention in force."""
        longest = max([self.config.retention, *(r.period for r in self.config.retention_streams)])
        result = self.store.table.apply_retention(
            max_age_s=longest / 1000 if longest else None, max_bytes=None, now_ns=now_ns
        )
        if result.partitions_deleted:
            self.store.rebuild_catalog()

    async def _maintain(self) -> None:
        last_compaction = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            try:
                await asyncio.to_thread(self.store.table.maybe_flush)
                if time.monotonic() - last_compaction > 300:
                    last_compaction = time.monotonic()
                    await asyncio.to_thread(self.store.table.compact)
                    await asyncio.to_thread(self.apply_retention)
            except Exception:
                log.exception("log store maintenance failed")
