"""The durability contract of logs, spans and events: WAL first, then the Arrow buffer.

``DurableTable.append`` writes the batch to the WAL (one record: tenant + Arrow IPC stream) and
only then adds it to the segment store's buffer, so once it returns the rows survive kill -9.
``flush`` writes the buffer to Parquet and then checkpoints the WAL up to the last LSN whose rows
are all in files.

Two windows need care:

* **Concurrent appends.** LSNs are assigned inside the WAL, so an append with a smaller LSN can
  reach the buffer after one with a larger LSN. A flush may therefore hold LSN 7 but not LSN 6
  (still waiting for its fsync). Each append registers itself before it calls the WAL, noting
  ``wal.last_lsn`` at that moment (its LSN will be larger). A flush only declares covered the
  LSNs up to the smallest such in-flight floor; LSNs above it that the flush did write are listed
  explicitly ("flushed above"). WAL LSNs are consecutive, so once the gap below a listed LSN
  is written too, the covered LSN moves past it and the list shrinks again.
* **Crash between flush and checkpoint.** The covered LSN and the flushed-above list are
  committed atomically with the Parquet files (``SegmentStore.flush(state=...)``, also copied
  into each file's key-value metadata). On open, WAL records at or below the covered LSN or in
  the list are skipped, so replay never adds rows that are already in files.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import pyarrow as pa

from signalroom.storage.segments import (
    CompactionResult,
    RetentionResult,
    SegmentSnapshot,
    SegmentStats,
    SegmentStore,
)
from signalroom.storage.wal import WAL, FsyncPolicy

__all__ = ["DurableTable", "decode_record", "encode_record"]

log = logging.getLogger(__name__)

_RECORD_VERSION = 1
_STATE_COVERED = "wal_covered_lsn"
_STATE_ABOVE = "wal_flushed_above"


def encode_record(tenant: str, table: pa.Table) -> bytes:
    """WAL record: version byte, tenant length byte, tenant (ASCII), Arrow IPC stream."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    name = tenant.encode("ascii")
    body: bytes = sink.getvalue().to_pybytes()
    return bytes((_RECORD_VERSION, len(name))) + name + body


def decode_record(payload: bytes) -> tuple[str, pa.Table]:
    if len(payload) < 2 or payload[0] != _RECORD_VERSION:
        raise ValueError("not a signalroom table record (unknown version)")
    end = 2 + payload[1]
    tenant = payload[2:end].decode("ascii")
    reader = pa.ipc.open_stream(pa.py_buffer(payload)[end:])
    return tenant, reader.read_all()


class DurableTable:
    """A SegmentStore whose appends are made durable through a WAL before they are acknowledged.

    Layout: ``<directory>/wal/`` (the WAL) and ``<directory>/segments/`` (the store).
    ``segment_options`` go to :class:`SegmentStore` (``time_column``, ``sort_by``, ...).
    """

    def __init__(
        self,
        directory: Path,
        schema: pa.Schema,
        *,
        wal_fsync: FsyncPolicy = "batch",
        wal_segment_bytes: int = 64 * 2**20,
        flush_rows: int = 500_000,
        flush_interval_s: float = 60.0,
        **segment_options: Any,
    ) -> None:
        self._directory = Path(directory)
        self._schema = schema
        self._segment_options = segment_options
        self._name = str(segment_options.get("name") or self._directory.name)
        self._wal = WAL(
            self._directory / "wal",
            name=self._name,
            segment_bytes=wal_segment_bytes,
            fsync=wal_fsync,
        )
        self._store: SegmentStore | None = None
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s

        self._lock = threading.Lock()  # pending appends, buffered LSNs; taken before the store's
        self._flush_lock = threading.Lock()  # one flush at a time
        self._tokens = itertools.count(1)
        self._in_flight: dict[int, int] = {}  # append token -> wal.last_lsn when it started
        self._buffered_lsns: list[int] = []
        self._buffered_rows = 0
        self._oldest_buffered_at: float | None = None  # time.monotonic()
        self._covered_lsn = 0  # every LSN <= this is in files
        self._flushed_above: set[int] = set()  # LSNs > covered whose rows are in files

    # ------------------------------------------------------------------ lifecycle

    @property
    def store(self) -> SegmentStore:
        if self._store is None:
            raise RuntimeError(f"table {self._name!r} is not open")
        return self._store

    @property
    def wal(self) -> WAL:
        return self._wal

    @property
    def schema(self) -> pa.Schema:
        return self._schema

    def open(self) -> DurableTable:
        """Open the WAL and the segments, and replay WAL records not yet in files."""
        if self._store is not None:
            return self
        store = SegmentStore(self._directory / "segments", self._schema, **self._segment_options)
        self._wal.open()
        try:
            self._replay(store)
        except BaseException:
            self._wal.close()
            raise
        self._store = store
        return self

    def _replay(self, store: SegmentStore) -> None:
        state = store.committed_state()
        covered = int(state.get(_STATE_COVERED, 0))
        above = {int(lsn) for lsn in state.get(_STATE_ABOVE, ())}
        if covered > self._wal.last_lsn:
            # The WAL is younger than the segments (its directory was removed): its LSNs
            # started again, so the recorded positions mean nothing for it.
            log.warning(
                "table %s: segments cover WAL LSN %d but the WAL ends at %d; replaying it all",
                self._name,
                covered,
                self._wal.last_lsn,
            )
            covered, above = 0, set()
        covered = max(covered, self._wal.checkpoint_lsn)
        while covered + 1 in above:
            covered += 1
        rows = skipped = 0
        for lsn, payload in self._wal.replay(after_lsn=covered):
            if lsn in above:
                skipped += 1
                continue
            tenant, table = decode_record(payload)
            store.append(tenant, table)
            self._buffered_lsns.append(lsn)
            rows += table.num_rows
        self._buffered_rows = rows
        self._oldest_buffered_at = time.monotonic() if rows else None
        self._covered_lsn = covered
        self._flushed_above = {lsn for lsn in above if lsn > covered}
        if covered > self._wal.checkpoint_lsn:
            self._wal.checkpoint(covered)  # the crash came between flush and checkpoint
        if rows or skipped:
            log.info(
                "table %s: replayed %d WAL records (%d rows), skipped %d already in files",
                self._name,
                len(self._buffered_lsns),
                rows,
                skipped,
            )

    def close(self) -> None:
        """Flush the buffer, then close the WAL."""
        if self._store is None:
            return
        try:
            self.flush()
        finally:
            self._wal.close()
            self._store = None

    def __enter__(self) -> DurableTable:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # ------------------------------------------------------------------ appends

    def append(self, tenant: str, batch: pa.RecordBatch | pa.Table) -> int:
        """Make ``batch`` durable in the WAL, then buffer it; return its LSN.

        Invalid input raises ValueError before anything is written."""
        store = self.store
        table = store.validate(tenant, batch)
        payload = encode_record(tenant, table)
        token = self._begin()
        try:
            lsn = self._wal.append([payload])
        except BaseException:
            self._abandon(token)
            raise
        self._buffer(store, token, tenant, table, lsn)
        return lsn

    async def append_async(self, tenant: str, batch: pa.RecordBatch | pa.Table) -> int:
        """Like :meth:`append`, waiting for the WAL without blocking the event loop."""
        store = self.store
        table = store.validate(tenant, batch)
        payload = encode_record(tenant, table)
        token = self._begin()
        write = asyncio.ensure_future(self._wal.append_async([payload]))
        try:
            lsn = await asyncio.shield(write)
        except asyncio.CancelledError:
            # The caller gave up, but the record may already be in the WAL: finish the append
            # in the background so the buffer and the WAL agree (the rows are kept, unacked).
            write.add_done_callback(
                lambda done: self._finish_detached(done, store, token, tenant, table)
            )
            raise
        except BaseException:
            self._abandon(token)
            raise
        self._buffer(store, token, tenant, table, lsn)
        return lsn

    def _finish_detached(
        self,
        write: asyncio.Future[int],
        store: SegmentStore,
        token: int,
        tenant: str,
        table: pa.Table,
    ) -> None:
        if write.cancelled() or write.exception() is not None:
            self._abandon(token)
        else:
            self._buffer(store, token, tenant, table, write.result())

    def _begin(self) -> int:
        with self._lock:
            token = next(self._tokens)
            # The LSN this append gets is larger than any LSN assigned before this point.
            self._in_flight[token] = self._wal.last_lsn
            return token

    def _abandon(self, token: int) -> None:
        with self._lock:
            self._in_flight.pop(token, None)

    def _buffer(
        self, store: SegmentStore, token: int, tenant: str, table: pa.Table, lsn: int
    ) -> None:
        # One critical section, so a flush sees either both the rows and the LSN or neither.
        with self._lock:
            store.append(tenant, table)
            self._buffered_lsns.append(lsn)
            self._in_flight.pop(token, None)
            if table.num_rows:
                self._buffered_rows += table.num_rows
                if self._oldest_buffered_at is None:
                    self._oldest_buffered_at = time.monotonic()

    # ------------------------------------------------------------------ flushing

    def flush(self) -> None:
        """Write buffered rows to Parquet, then checkpoint the WAL up to the covered LSN."""
        store = self.store
        with self._flush_lock:
            with self._lock:
                pending = store.begin_flush()
                lsns, self._buffered_lsns = self._buffered_lsns, []
                rows, self._buffered_rows = self._buffered_rows, 0
                since, self._oldest_buffered_at = self._oldest_buffered_at, None
                floor = min(self._in_flight.values(), default=None)
            if not lsns:
                return
            covered = max(lsns)
            if floor is not None:
                covered = min(covered, floor)  # an in-flight append may hold an LSN above floor
            covered = max(covered, self._covered_lsn)
            above = {lsn for lsn in self._flushed_above.union(lsns) if lsn > covered}
            while covered + 1 in above:  # LSNs are consecutive: close the gaps that filled up
                covered += 1
                above.discard(covered)
            state = {_STATE_COVERED: covered, _STATE_ABOVE: sorted(above)}
            try:
                store.write_flush(pending, state=state)
            except BaseException:
                with self._lock:
                    self._buffered_lsns = lsns + self._buffered_lsns
                    self._buffered_rows += rows
                    if since is not None:
                        current = self._oldest_buffered_at
                        self._oldest_buffered_at = since if current is None else min(since, current)
                raise
            self._covered_lsn = covered
            self._flushed_above = above
            self._wal.checkpoint(covered)

    def maybe_flush(self) -> bool:
        """Flush if the buffer holds ``flush_rows`` rows or its oldest row has waited
        ``flush_interval_s``; return whether it flushed."""
        with self._lock:
            rows, since = self._buffered_rows, self._oldest_buffered_at
        due = rows >= self.flush_rows or (
            since is not None and time.monotonic() - since >= self.flush_interval_s
        )
        if due:
            self.flush()
        return due

    # ------------------------------------------------------------------ delegation

    def scan(
        self,
        tenant: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        columns: Sequence[str] | None = None,
    ) -> pa.Table:
        return self.store.scan(tenant, start_ns, end_ns, columns)

    def files(
        self, tenant: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> list[Path]:
        return self.store.files(tenant, start_ns, end_ns)

    def buffered(self, tenant: str) -> pa.Table:
        return self.store.buffered(tenant)

    def snapshot(
        self, tenant: str, start_ns: int | None = None, end_ns: int | None = None
    ) -> SegmentSnapshot:
        return self.store.snapshot(tenant, start_ns, end_ns)

    def tenants(self) -> list[str]:
        return self.store.tenants()

    def compact(
        self, *, now_ns: int | None = None, min_files: int = 4, target_bytes: int = 256 * 2**20
    ) -> CompactionResult:
        return self.store.compact(now_ns=now_ns, min_files=min_files, target_bytes=target_bytes)

    def apply_retention(
        self, *, max_age_s: float | None, max_bytes: int | None, now_ns: int | None = None
    ) -> RetentionResult:
        return self.store.apply_retention(max_age_s=max_age_s, max_bytes=max_bytes, now_ns=now_ns)

    def stats(self) -> SegmentStats:
        return self.store.stats()

    def delete_rows(self, tenant: str, column: str, values: Sequence[Any]) -> int:
        """Flush, then remove the rows whose ``column`` is one of ``values`` from the files
        (:meth:`SegmentStore.delete_rows`); returns how many."""
        self.flush()
        return self.store.delete_rows(tenant, column, values)
