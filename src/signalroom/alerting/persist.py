"""Write-behind to the state store: the alert manager's many small writes, few transactions.

A flush of 100 new groups used to commit its notification-log entries, escalation states and
timeline entries one transaction each, and every ``POST /api/v2/alerts`` waited for its own
commit. ``StateWriter`` runs every write on one background task, in submission order, and
commits whatever queued up meanwhile in one transaction (group commit). A batch somebody
awaits starts as soon as the previous one is committed; one nobody awaits first lingers
(50 ms) for more writes, so a stream of POSTs makes a few large commits, not one per POST.

Callers choose per write what "done" means:

* ``await writer.write(op)``: durable on return (the notification log: a notification counts
  as sent only once its entry is committed, so a restart never repeats it);
* ``writer.submit(op)``: ordered, durable shortly after (escalation state, the timeline);
* ``writer.submit_coalesced(key, build)`` / ``await writer.write_coalesced(key, build)``: one
  pending write per key, built when its batch starts (alerts: a burst of POSTs becomes one
  upsert of the latest versions; the log entries of 100 flushes one statement).

``drain()`` waits for everything submitted so far (reads of written tables, shutdown).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from operator import itemgetter
from typing import Any

import orjson
import sqlalchemy as sa

__all__ = ["Op", "StateWriter", "executemany", "upsert"]

log = logging.getLogger("signalroom.alerting.persist")

Op = Callable[[sa.Connection], object]
"""One write, run on a connection inside the batch's transaction (in a worker thread)."""


@dataclass(slots=True)
class _Pending:
    op: Op | None  # None: a drain barrier, or a coalesced write built at batch time
    waiters: list[asyncio.Future[None]] = field(default_factory=list)
    key: Hashable | None = None


class StateWriter:
    """Ordered, batched writes to ``engine``; without an engine every write is dropped (the
    callers then keep their state in memory only)."""

    def __init__(self, engine: sa.Engine | None, *, linger: float = 0.05) -> None:
        """``linger``: how long a batch that nobody awaits waits for more writes (fewer,
        larger commits; the most a crash can lose of them)."""
        self.engine = engine
        self.linger = linger
        self._urgent = asyncio.Event()
        self._queue: list[_Pending] = []
        self._builders: dict[Hashable, Callable[[], Op | None]] = {}
        self._keyed: dict[Hashable, _Pending] = {}
        self._task: asyncio.Task[None] | None = None
        self.batches = 0  # committed transactions, for tests and the benchmark

    def submit(self, op: Op) -> None:
        """Queue ``op``; a failure is logged."""
        if self.engine is not None:
            self._queue.append(_Pending(op))
            self._kick()

    async def write(self, op: Op) -> None:
        """Queue ``op`` and return once it is committed; raises what the write raised."""
        if self.engine is None:
            return
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(op, [done]))
        self._kick(urgent=True)
        await done

    def submit_coalesced(self, key: Hashable, build: Callable[[], Op | None]) -> None:
        """Queue the write ``build()`` returns when its batch starts, once per ``key`` until
        then (``build`` runs on the event loop, so it may take state the loop owns)."""
        self._coalesced(key, build)

    async def write_coalesced(self, key: Hashable, build: Callable[[], Op | None]) -> None:
        """``submit_coalesced``, returning once the write that includes this call's data is
        committed (raises what it raised)."""
        pending = self._coalesced(key, build)
        if pending is not None:
            done = asyncio.get_running_loop().create_future()
            pending.waiters.append(done)
            self._urgent.set()
            await done

    def _coalesced(self, key: Hashable, build: Callable[[], Op | None]) -> _Pending | None:
        if self.engine is None:
            return None
        pending = self._keyed.get(key)
        if pending is None:
            pending = self._keyed[key] = _Pending(None, key=key)
            self._queue.append(pending)
        self._builders[key] = build
        self._kick()
        return pending

    async def drain(self) -> None:
        """Return once everything submitted before this call is committed (or failed)."""
        if self.engine is None or (not self._queue and self._task is None):
            return
        done = asyncio.get_running_loop().create_future()
        self._queue.append(_Pending(None, [done]))
        self._kick(urgent=True)
        await done

    @property
    def pending(self) -> int:
        return len(self._queue)

    def _kick(self, *, urgent: bool = False) -> None:
        if urgent:
            self._urgent.set()
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="alerting-state-writer"
            )

    async def _run(self) -> None:
        try:
            while self._queue:
                if not self._urgent.is_set() and self.linger > 0:
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(self.linger):
                            await self._urgent.wait()
                self._urgent.clear()
                batch, self._queue = self._queue, []
                ops: list[Op | None] = []
                for item in batch:
                    if item.key is not None:
                        del self._keyed[item.key]
                        build = self._builders.pop(item.key, None)
                        item.op = build() if build is not None else None
                    ops.append(item.op)
                try:
                    errors = await asyncio.shield(asyncio.to_thread(self._commit, ops))
                except asyncio.CancelledError:
                    # Shutdown while a batch is in flight: the thread still finishes it.
                    errors = [None] * len(batch)
                    self._settle(batch, errors)
                    raise
                self._settle(batch, errors)
        finally:
            self._task = None

    @staticmethod
    def _settle(batch: list[_Pending], errors: list[BaseException | None]) -> None:
        for item, error in zip(batch, errors, strict=True):
            if error is not None and not item.waiters:
                log.error("alerting state write failed", exc_info=error)
            for done in item.waiters:
                if done.done():
                    continue
                if error is None:
                    done.set_result(None)
                else:
                    done.set_exception(error)

    def _commit(self, ops: list[Op | None]) -> list[BaseException | None]:
        """Run ``ops`` in one transaction; if that fails, each in its own, so one bad write
        fails alone. Returns each op's error."""
        assert self.engine is not None
        real = [op for op in ops if op is not None]
        if not real:
            return [None] * len(ops)
        try:
            with self.engine.begin() as conn:
                for op in real:
                    op(conn)
            self.batches += 1
            return [None] * len(ops)
        except Exception:
            pass
        errors: list[BaseException | None] = []
        for maybe in ops:
            if maybe is None:
                errors.append(None)
                continue
            try:
                with self.engine.begin() as conn:
                    maybe(conn)
                errors.append(None)
            except Exception as exc:
                errors.append(exc)
        return errors


def upsert(engine: sa.Engine, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT (primary key) DO UPDATE`` for SQLite and PostgreSQL; run with a
    list of rows it is one executemany."""
    insert: Any
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the state store runs on SQLite or PostgreSQL only
        raise RuntimeError(f"no upsert for {engine.dialect.name}")
    key = (engine.dialect.name, table)
    cached = _upserts.get(key)
    if cached is not None:
        return cached
    stmt = insert(table)
    keys = [c.name for c in table.primary_key.columns]
    statement = _upserts[key] = stmt.on_conflict_do_update(
        index_elements=[table.c[k] for k in keys],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )
    return statement


# Built once per dialect and table: building one costs more than the rows of a batch.
_upserts: dict[tuple[str, sa.Table], Any] = {}


_Convert = Callable[[Any], Any]
_Plan = tuple[str, list[tuple[str, _Convert | None]]]

# Compared with what the engine's JSON serializer writes: orjson stands in only where it
# writes the same text (the state store's compact, non-ASCII-keeping JSON).
_JSON_PROBE = {"a": ["é", 1, True, None], "b": {"c": "d\n"}}


def _fast_processor(column_type: Any, dialect: sa.Dialect) -> _Convert | None:
    """The bind processor SQLAlchemy would run for ``column_type``, or a faster one that
    writes the same value: datetimes formatted once per instant, JSON with orjson."""
    impl = column_type.dialect_impl(dialect)
    slow: _Convert | None = impl.bind_processor(dialect)
    if slow is None:
        return None
    if isinstance(impl, sa.JSON):
        try:
            same = orjson.dumps(_JSON_PROBE).decode() == slow(_JSON_PROBE)
        except Exception:
            same = False
        if same:

            def to_json(value: Any) -> Any:
                try:
                    return orjson.dumps(value).decode()
                except TypeError:  # what orjson does not know (non-str keys, ...)
                    return slow(value)

            return to_json
    if isinstance(impl, sa.DateTime):
        # A batch of alerts shares a few instants (received at, ends at): each is
        # formatted once. Only UTC values: an equal instant in another zone formats
        # differently.
        memo: dict[datetime, Any] = {}

        def to_text(value: Any) -> Any:
            if type(value) is not datetime or value.tzinfo is not UTC:
                return slow(value)
            text = memo.get(value)
            if text is None:
                if len(memo) >= 4096:
                    memo.clear()
                text = memo[value] = slow(value)
            return text

        return to_text
    return slow


_plans: weakref.WeakKeyDictionary[sa.Dialect, dict[str, _Plan | None]] = weakref.WeakKeyDictionary()


def executemany(
    engine: sa.Engine, name: str, statement: Any, rows: Sequence[Mapping[str, Any]]
) -> Op:
    """The op that runs ``statement`` for every row, as ``conn.execute(statement, rows)``
    would: the DB-API's executemany on SQLAlchemy's own SQL text and value conversions (rows
    read back as SQLAlchemy writes them) without its per-row bookkeeping, which costs as much
    as the insert itself. The values are converted here, on the caller's thread (the event
    loop), so the writer thread runs only sqlite3's C loop, which lets go of the GIL while
    it stores a row: the loop keeps answering POSTs meanwhile. ``name`` identifies the
    statement and the columns its rows carry, the same in every call (its plan is cached
    per dialect)."""
    if not rows:
        return lambda conn: None
    plans = _plans.setdefault(engine.dialect, {})
    if name not in plans:
        # Compiled for the columns the rows carry (an insert leaves the row id out).
        compiled = statement.compile(dialect=engine.dialect, column_keys=list(rows[0]))
        order = compiled.positiontup
        if order is None:  # named parameters (psycopg): nothing to gain
            plans[name] = None
        else:
            table = statement.table
            dialect = engine.dialect
            plans[name] = (
                str(compiled),
                [(c, _fast_processor(table.c[c].type, dialect)) for c in order],
            )
    plan = plans[name]
    if plan is None:
        named = list(rows)
        return lambda conn: conn.execute(statement, named)
    sql, columns = plan
    # Column by column through map and zip: no Python-level work per value but converters.
    cols = [
        map(itemgetter(c), rows) if p is None else map(p, map(itemgetter(c), rows))
        for c, p in columns
    ]
    values = list(zip(*cols, strict=True))
    return lambda conn: conn.exec_driver_sql(sql, values)
