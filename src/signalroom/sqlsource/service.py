"""The SQL sources of the configuration, each run every ``interval`` in the background."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence

from signalroom.sqlsource.config import SqlSourceConfig
from signalroom.sqlsource.runner import RunResult, SqlSourceRunner, write_run
from signalroom.tsdb import TSDB

__all__ = ["SqlSourceService"]

log = logging.getLogger("signalroom.sqlsource")


class SqlSourceService:
    """Runs every configured source on its schedule and writes the series to ``tsdb``.

    Queries are blocking SQLAlchemy calls made in a worker thread; a failing source is
    reported through its ``sql_source_up`` series and logged, never raised.
    """

    def __init__(self, configs: Sequence[SqlSourceConfig], tsdb: TSDB) -> None:
        self.tsdb = tsdb
        self.runners = [SqlSourceRunner(c) for c in configs]
        self._tasks: list[asyncio.Task[None]] = []
        self.last_results: dict[str, RunResult] = {}

    async def run_once(self, runner: SqlSourceRunner) -> RunResult:
        """Run one source now and store its series (timestamp: when the run started)."""
        at_ms = int(time.time() * 1000)
        result = await asyncio.to_thread(runner.run)
        self.tsdb.add_metadata(runner.config.tenant, runner.metadata())
        appended = await write_run(self.tsdb, runner.config.tenant, result, at_ms)
        if not appended.ok:
            log.warning("SQL source %s: %s", runner.config.name, appended.summary())
        self.last_results[runner.config.name] = result
        return result

    async def run_all_once(self) -> dict[str, RunResult]:
        results = await asyncio.gather(*(self.run_once(r) for r in self.runners))
        return {r.config.name: res for r, res in zip(self.runners, results, strict=True)}

    async def _loop(self, runner: SqlSourceRunner) -> None:
        interval = runner.config.interval.total_seconds()
        while True:
            began = time.monotonic()
            try:
                await self.run_once(runner)
            except asyncio.CancelledError:
                raise
            except Exception:  # the store refused the batch, ...: keep the schedule
                log.exception("SQL source %s: run failed", runner.config.name)
            await asyncio.sleep(max(0.0, interval - (time.monotonic() - began)))

    async def start(self) -> None:
        for runner in self.runners:
            self._tasks.append(
                asyncio.create_task(self._loop(runner), name=f"sql-source-{runner.config.name}")
            )

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._tasks.clear()
        for runner in self.runners:
            await asyncio.to_thread(runner.dispose)
