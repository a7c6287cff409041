"""The span store: a :class:`DurableTable` of spans, a catalog of services and operations, a
trace-id index over its files, and DuckDB over consistent snapshots (Parquet files plus
buffered rows).

Files are sorted by trace id (then time), so a trace's spans sit together in one row group of
a file; :class:`TraceIndex` names that row group, and a trace is read with PyArrow from just
those row groups. Searches go to DuckDB, newest partitions first, reading only the row groups
the :class:`SearchIndex` cannot rule out (see ``query.py``).
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from signalroom.storage.table import DurableTable
from signalroom.storage.wal import FsyncPolicy
from signalroom.traces.index import TraceIndex, fingerprints
from signalroom.traces.model import SPAN_SCHEMA, group_rows
from signalroom.traces.search_index import SearchIndex

__all__ = ["TraceStore"]

_SCAN_ATTEMPTS = 4


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


# Searches decompress every row's ``attributes`` and ``trace_id``: LZ4 there costs about a
# quarter less scan CPU than zstd for about a fifth more bytes on disk.
SPAN_COMPRESSION = {
    **{name: "zstd" for name in SPAN_SCHEMA.names},
    "trace_id": "lz4",
    "attributes": "lz4",
}


class TraceStore:
    """Durable, queryable storage of spans for every tenant."""

    def __init__(
        self,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        flush_rows: int = 500_000,
        flush_interval_s: float = 60.0,
        row_group_rows: int = 4096,
    ) -> None:
        self.table = DurableTable(
            Path(directory),
            SPAN_SCHEMA,
            wal_fsync=wal_fsync,
            flush_rows=flush_rows,
            flush_interval_s=flush_interval_s,
            time_column="start_time",
            sort_by=("trace_id",),
            partition="hour",
            row_group_rows=row_group_rows,
            dictionary_columns=["service", "name", "scope", "resource", "status_message"],
            compression=SPAN_COMPRESSION,
            name="spans",
        )
        self.index = TraceIndex()
        self.search_index = SearchIndex()
        # One DuckDB database for every query, so Parquet footers are cached across queries
        # (each query gets its own cursor: a connection, with its own registered buffer).
        self._duckdb = duckdb.connect()
        self._duckdb.execute("SET enable_object_cache = true")
        # tenant -> service -> operation -> span kinds seen
        self._catalog: dict[str, dict[str, dict[str, set[int]]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> TraceStore:
        self.table.open()
        self.rebuild_catalog()
        return self

    def close(self) -> None:
        self.table.close()

    def connect(self) -> duckdb.DuckDBPyConnection:
        """A DuckDB connection over the store's shared database; close it after use."""
        with self._lock:  # the parent connection is not thread-safe, its cursors are
            return self._duckdb.cursor()

    def rebuild_catalog(self) -> None:
        catalog: dict[str, dict[str, dict[str, set[int]]]] = {}
        for tenant in self.table.tenants():
            rows = self.query(
                tenant, None, None, "SELECT DISTINCT service, name, kind FROM {source}"
            ).to_pylist()
            services: dict[str, dict[str, set[int]]] = {}
            for row in rows:
                services.setdefault(row["service"], {}).setdefault(row["name"], set()).add(
                    row["kind"]
                )
            catalog[tenant] = services
        with self._lock:
            self._catalog = catalog

    # ------------------------------------------------------------------ writes

    async def append_async(self, tenant: str, table: pa.Table) -> int:
        """Write spans durably (WAL), then make them visible; returns the WAL LSN."""
        if table.num_rows == 0:
            return 0
        lsn = await self.table.append_async(tenant, table)
        self._note(tenant, table)
        return lsn

    def append(self, tenant: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        lsn = self.table.append(tenant, table)
        self._note(tenant, table)
        return lsn

    def _note(self, tenant: str, table: pa.Table) -> None:
        keys, _ = group_rows(table, ("service", "name", "kind"))
        with self._lock:
            services = self._catalog.setdefault(tenant, {})
            for service, name, kind in keys:
                services.setdefault(service, {}).setdefault(name, set()).add(kind)

    # ------------------------------------------------------------------ reads

    def services(self, tenant: str) -> list[str]:
        with self._lock:
            return sorted(self._catalog.get(tenant, {}))

    def operations(self, tenant: str, service: str) -> list[tuple[str, int]]:
        """(operation, span kind) pairs of ``service``."""
        with self._lock:
            ops = self._catalog.get(tenant, {}).get(service, {})
            return sorted((name, kind) for name, kinds in ops.items() for kind in kinds)

    def warm_index(self) -> int:
        """Index (trace ids and search summaries) the files written since the last call and
        forget removed ones; returns the files indexed (the maintenance loop calls this, so
        lookups rarely read ids and searches skip row groups)."""
        live = [path for tenant in self.table.tenants() for path in self.table.files(tenant)]
        self.index.retain(live)
        self.search_index.retain(live)
        built = self.index.warm(live)
        self.search_index.warm(live, lambda path: self.index.entry(path, keys=False).metadata)
        return built

    def trace_spans(
        self,
        tenant: str,
        trace_ids: Sequence[str],
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> pa.Table:
        """Every stored span of the given (normalised) trace ids with ``start_time`` in
        ``[start_ns, end_ns]``, unordered, duplicates included."""
        wanted = pa.array(list(trace_ids), pa.string())
        keys = np.unique(fingerprints(wanted))
        end = None if end_ns is None else end_ns + 1
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end)
            try:
                pieces = [snapshot.buffered.filter(pc.is_in(snapshot.buffered["trace_id"], wanted))]
                for path in snapshot.files:
                    entry = self.index.entry(path)
                    groups = entry.row_groups_of(keys)
                    if groups:
                        rows = pq.ParquetFile(path, metadata=entry.metadata).read_row_groups(
                            groups, columns=SPAN_SCHEMA.names
                        )
                        pieces.append(_conform(rows.filter(pc.is_in(rows["trace_id"], wanted))))
                break
            except FileNotFoundError:
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise
        spans = pa.concat_tables(pieces)
        if start_ns is not None or end_ns is not None:
            times = spans["start_time"]
            low = pc.greater_equal(times, start_ns) if start_ns is not None else None
            high = pc.less_equal(times, end_ns) if end_ns is not None else None
            mask = low if high is None else high if low is None else pc.and_(low, high)
            spans = spans.filter(mask)
        return spans

    def read_row_groups(
        self, path: Path, groups: Sequence[int], columns: Sequence[str]
    ) -> pa.Table:
        """``columns`` of some row groups of one file, in SPAN_SCHEMA's types."""
        metadata = self.index.entry(path, keys=False).metadata
        rows = pq.ParquetFile(path, metadata=metadata).read_row_groups(
            list(groups), columns=list(columns)
        )
        schema = pa.schema([SPAN_SCHEMA.field(name) for name in columns])
        return pa.Table.from_arrays(rows.columns, schema=schema)

    def file_rows(self, path: Path) -> int:
        """Rows in one segment file, from its footer (cached)."""
        return int(self.index.entry(path, keys=False).metadata.num_rows)

    def file_bounds(self, paths: Sequence[Path]) -> list[tuple[Path, int, int]]:
        """(path, min start_time, max start_time) of each file, from its footer (cached)."""
        out = []
        for path in paths:
            entry = self.index.entry(path, keys=False)
            out.append((path, entry.min_ts, entry.max_ts))
        return out

    def query(
        self,
        tenant: str,
        start_ns: int | None,
        end_ns: int | None,
        sql: str,
        params: list[Any] | None = None,
    ) -> pa.Table:
        """Run ``sql`` (``{source}`` stands for the tenant's spans that may overlap
        ``[start_ns, end_ns]``) over one snapshot; retry when a compaction removed a file."""
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end_ns)
            connection = self.connect()
            try:
                connection.register("buffered_spans", snapshot.buffered)
                return run_sql(connection, snapshot.files, "buffered_spans", sql, params)
            except duckdb.IOException:
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise
            finally:
                connection.close()
        raise AssertionError("unreachable")


def run_sql(
    connection: duckdb.DuckDBPyConnection,
    files: Sequence[Path],
    buffered: str,
    sql: str,
    params: list[Any] | None = None,
    buffered_where: str = "",
    columns: Sequence[str] = SPAN_SCHEMA.names,
) -> pa.Table:
    """``sql`` with ``{source}`` standing for ``columns`` of ``files`` UNION ALL the
    registered relation ``buffered`` (its rows matching ``buffered_where`` when given)."""
    where = f" WHERE {buffered_where}" if buffered_where else ""
    listed_columns = ", ".join(columns)
    parts = [f"SELECT {listed_columns} FROM {buffered}{where}"]
    if files:
        listed = ", ".join(_sql_string(str(p)) for p in files)
        parts.append(f"SELECT {listed_columns} FROM read_parquet([{listed}])")
    source = "(" + " UNION ALL ".join(parts) + ")"
    result: pa.Table = connection.sql(
        sql.replace("{source}", source), params=params or None
    ).to_arrow_table()
    return result


def _conform(table: pa.Table) -> pa.Table:
    """Rows read from a file in SPAN_SCHEMA (footers carry metadata, files may differ in
    nullability flags)."""
    return pa.Table.from_arrays(table.columns, schema=SPAN_SCHEMA)
