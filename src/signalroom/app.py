"""The composition root: builds signalroom's components from the configuration, runs them,
reloads them, and stops them so that nothing acknowledged is lost.

This is the only module that knows every component. Components stay ignorant of each other
and of the HTTP layer; the web package reaches them through the ``Signalroom`` object.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING

from signalroom.auth import Authenticator
from signalroom.config import (
    Config,
    ConfigError,
    ListenAddress,
    RetentionConfig,
    load_config,
    parse_listen,
)
from signalroom.promql.engine import Engine
from signalroom.storage.state import StateStore

if TYPE_CHECKING:
    from signalroom.storage.table import DurableTable
    from signalroom.web.prometheus_api import MetricsStore

log = logging.getLogger("signalroom.app")


class StartupError(Exception):
    """signalroom cannot start as asked; the message says why and how to fix it."""


def check_exposure(listen: ListenAddress, config: Config) -> None:
    """Refuse to serve a non-loopback address while the API has no tokens."""
    if not listen.is_loopback and not config.auth.tokens:
        raise StartupError(
            f"refusing to listen on {listen} without API tokens: anyone who can reach this "
            "address could read and change everything. Add tokens under auth.tokens "
            "(create one with `signalroom token new`), or listen on 127.0.0.1."
        )


class DataDirLock:
    """An exclusive lock on the data directory, so two servers never share one."""

    def __init__(self, data_dir: Path) -> None:
        self.path = data_dir / "LOCK"
        self._file: IO[str] | None = None

    def acquire(self) -> None:
        handle = self.path.open("a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            owner = handle.read().strip() or "another process"
            handle.close()
            raise StartupError(
                f"data directory {self.path.parent} is in use by {owner}; stop it or pass "
                "another --data-dir"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"signalroom pid {os.getpid()}\n")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        if self._file is not None:
            fcntl.flock(self._file, fcntl.LOCK_UN)
            self._file.close()
            self._file = None


@dataclass
class ReloadResult:
    ok: bool
    message: str
    restart_needed: list[str] = field(default_factory=list)


class Signalroom:
    """One running signalroom: configuration, storage and the background work around them."""

    def __init__(
        self,
        config: Config,
        *,
        data_dir: Path,
        config_path: Path | None = None,
        listen: ListenAddress | None = None,
    ) -> None:
        self.config = config
        self.config_path = config_path
        self.data_dir = data_dir
        self.listen = listen or parse_listen(config.server.listen)
        self.authenticator = Authenticator(config.auth)
        self.started_at = time.time()
        self.ready = False
        self.last_reload_ok = True
        self.last_reload_at = time.time()
        self.state: StateStore | None = None
        self.query_engine = Engine()
        self.metrics: MetricsStore | None = None
        self.tables: dict[str, DurableTable] = {}
        self._lock = DataDirLock(data_dir)
        self._maintenance: asyncio.Task[None] | None = None
        self._reload_lock = asyncio.Lock()

    # --- lifecycle -------------------------------------------------------------------

    async def start(self) -> None:
        check_exposure(self.listen, self.config)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._lock.acquire()
        try:
            url = self.config.storage.state_url or f"sqlite:///{self.data_dir / 'state.db'}"
            self.state = StateStore(url)
            revision = await asyncio.to_thread(self.state.migrate)
            log.info("state store ready", extra={"state_revision": revision})
        except BaseException:
            self._lock.release()
            raise
        self._maintenance = asyncio.create_task(self._maintain(), name="storage-maintenance")
        self.ready = True
        log.info(
            "signalroom started",
            extra={
                "listen": str(self.listen),
                "data_dir": str(self.data_dir),
                "config": self.config.digest(),
            },
        )

    async def stop(self) -> None:
        """Stop background work and flush every buffer to disk before returning."""
        self.ready = False
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
        for name, table in self.tables.items():
            await asyncio.to_thread(table.close)
            log.info("flushed and closed table", extra={"table": name})
        if self.state is not None:
            self.state.close()
        self._lock.release()
        log.info("signalroom stopped")

    def add_table(self, name: str, table: DurableTable) -> DurableTable:
        """Register an opened table: it is flushed, compacted and trimmed in the background
        and closed (flushed) on stop."""
        if name in self.tables:
            raise ValueError(f"table {name!r} is registered already")
        self.tables[name] = table
        return table

    async def _maintain(self) -> None:
        """Flush tables on time or size, and compact and apply retention now and then."""
        last_compaction = time.monotonic()
        while True:
            await asyncio.sleep(1.0)
            for name, table in list(self.tables.items()):
                try:
                    await asyncio.to_thread(table.maybe_flush)
                except Exception:
                    log.exception("flush failed", extra={"table": name})
            interval_s = self.config.storage.compaction_interval / 1000
            if time.monotonic() - last_compaction < interval_s:
                continue
            last_compaction = time.monotonic()
            for name, table in list(self.tables.items()):
                try:
                    await asyncio.to_thread(table.compact)
                    retention = self._retention_for(name)
                    await asyncio.to_thread(
                        table.apply_retention,
                        max_age_s=retention.time / 1000 or None,
                        max_bytes=retention.size or None,
                    )
                except Exception:
                    log.exception("compaction or retention failed", extra={"table": name})

    def _retention_for(self, table: str) -> RetentionConfig:
        storage = self.config.storage
        return {
            "logs": storage.logs_retention,
            "spans": storage.traces_retention,
            "events": storage.events_retention,
        }.get(table, storage.metrics_retention)

    # --- reload ----------------------------------------------------------------------

    async def reload(self) -> ReloadResult:
        """Re-read the configuration file; an invalid one keeps the running configuration."""
        async with self._reload_lock:
            result = self._reload()
            self.last_reload_ok = result.ok
            self.last_reload_at = time.time()
            level = logging.INFO if result.ok else logging.ERROR
            log.log(
                level,
                "configuration reload: " + result.message,
                extra={"restart_needed": result.restart_needed} if result.restart_needed else {},
            )
            return result

    def _reload(self) -> ReloadResult:
        if self.config_path is None:
            return ReloadResult(True, "no configuration file: built-in defaults stay in force")
        try:
            new = load_config(self.config_path)
            check_exposure(self.listen, new)
        except (ConfigError, StartupError) as exc:
            return ReloadResult(False, f"kept the running configuration: {exc}")
        restart = [
            key
            for key, before, after in (
                ("server.listen", self.config.server.listen, new.server.listen),
                ("storage.state_url", self.config.storage.state_url, new.storage.state_url),
                ("storage.wal", self.config.storage.wal, new.storage.wal),
            )
            if before != after
        ]
        self.config = new
        self.authenticator = Authenticator(new.auth)
        message = f"loaded {self.config_path} ({new.digest()})"
        if restart:
            message += "; changes to " + ", ".join(restart) + " take effect after a restart"
        return ReloadResult(True, message, restart)
