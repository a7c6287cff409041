"""The log store: a :class:`DurableTable` of log rows, a stream catalog and DuckDB scans.

Rows are sorted by ``(stream_id, timestamp)`` inside each hourly Parquet file, so a stream
selector prunes row groups by statistics and a stream's lines sit together (they compress
well). Scans run DuckDB over a consistent snapshot (files + buffered rows) with the stream
selector, the time range and the line filters pushed into SQL; what LogQL does after that
(parsers, label filters, formatting) runs on the Arrow batches DuckDB streams back.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import pyarrow as pa

from signalroom.logs.logql.ast import LabelMatcher, LineFilter
from signalroom.logs.model import LOG_SCHEMA, parse_labels
from signalroom.storage.table import DurableTable
from signalroom.storage.wal import FsyncPolicy

__all__ = ["LogStore", "StreamInfo"]

_SCAN_ATTEMPTS = 4


@dataclass
class StreamInfo:
    """One stream of one tenant, with the time span of its lines."""

    id: int
    text: str
    labels: dict[str, str]
    min_ts: int
    max_ts: int


@dataclass(frozen=True)
class Hidden:
    """Lines of these streams older than ``cutoff_ns`` are past their retention."""

    stream_ids: tuple[int, ...]
    cutoff_ns: int


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def line_filter_sql(stage: LineFilter, params: list[Any]) -> str:
    """One LogQL line filter as a DuckDB condition (``contains`` / ``regexp_matches``)."""
    function = "contains" if stage.op in ("|=", "!=") else "regexp_matches"
    parts = []
    for value in stage.values:
        params.append(value)
        parts.append(f"{function}(line, ?)")
    condition = "(" + " OR ".join(parts) + ")"
    return condition if stage.op in ("|=", "|~") else f"NOT {condition}"


class LogStore:
    """Durable, queryable storage of log lines for every tenant."""

    def __init__(
        self,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        flush_rows: int = 500_000,
        flush_interval_s: float = 60.0,
        partition: Literal["hour", "day"] = "hour",
        row_group_rows: int = 128_000,
        compression_level: int | None = None,
    ) -> None:
        self.table = DurableTable(
            Path(directory),
            LOG_SCHEMA,
            wal_fsync=wal_fsync,
            flush_rows=flush_rows,
            flush_interval_s=flush_interval_s,
            time_column="timestamp",
            sort_by=("stream_id",),
            partition=partition,
            row_group_rows=row_group_rows,
            compression_level=compression_level,
            dictionary_columns=["stream", "trace_id", "span_id", "metadata"],
            name="logs",
        )
        self._catalog: dict[str, dict[int, StreamInfo]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> LogStore:
        self.table.open()
        self.rebuild_catalog()
        return self

    def close(self) -> None:
        self.table.close()

    def rebuild_catalog(self) -> None:
        """Read every tenant's streams and their time spans from files and buffer."""
        catalog: dict[str, dict[int, StreamInfo]] = {}
        for tenant in self.table.tenants():
            sql = (
                "SELECT stream_id, any_value(stream), min(timestamp), max(timestamp) "
                "FROM {source} GROUP BY stream_id"
            )
            streams: dict[int, StreamInfo] = {}
            for row in self._run(tenant, None, None, sql, [], lambda r: r.fetchall()):
                sid, text, low, high = int(row[0]), str(row[1]), int(row[2]), int(row[3])
                info = streams.get(sid)
                if info is None:
                    streams[sid] = StreamInfo(sid, text, parse_labels(text), low, high)
                else:
                    info.min_ts, info.max_ts = min(info.min_ts, low), max(info.max_ts, high)
            catalog[tenant] = streams
        with self._lock:
            self._catalog = catalog

    # ------------------------------------------------------------------ writes

    async def append_async(self, tenant: str, table: pa.Table) -> int:
        """Write rows durably (WAL), then make them visible; returns the WAL LSN."""
        if table.num_rows == 0:
            return 0
        lsn = await self.table.append_async(tenant, table)
        self._note_streams(tenant, table)
        return lsn

    def append(self, tenant: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        lsn = self.table.append(tenant, table)
        self._note_streams(tenant, table)
        return lsn

    def _note_streams(self, tenant: str, table: pa.Table) -> None:
        grouped = table.group_by("stream_id").aggregate(
            [("stream", "min"), ("timestamp", "min"), ("timestamp", "max")]
        )
        rows = zip(
            grouped.column("stream_id").to_pylist(),
            grouped.column("stream_min").to_pylist(),
            grouped.column("timestamp_min").to_pylist(),
            grouped.column("timestamp_max").to_pylist(),
            strict=True,
        )
        with self._lock:
            streams = self._catalog.setdefault(tenant, {})
            for sid, text, low, high in rows:
                info = streams.get(sid)
                if info is None:
                    streams[sid] = StreamInfo(sid, text, parse_labels(text), low, high)
                else:
                    info.min_ts, info.max_ts = min(info.min_ts, low), max(info.max_ts, high)

    # ------------------------------------------------------------------ reads

    def streams(
        self,
        tenant: str,
        matchers: Sequence[LabelMatcher] = (),
        start_ns: int | None = None,
        end_ns: int | None = None,
    ) -> list[StreamInfo]:
        """Streams of ``tenant`` whose labels match and whose lines overlap the time range."""
        with self._lock:
            candidates = list(self._catalog.get(tenant, {}).values())
        out = []
        for info in candidates:
            if start_ns is not None and info.max_ts < start_ns:
                continue
            if end_ns is not None and info.min_ts >= end_ns:
                continue
            if all(m.matches(info.labels.get(m.name, "")) for m in matchers):
                out.append(info)
        return out

    def scan(
        self,
        tenant: str,
        start_ns: int,
        end_ns: int,
        *,
        stream_ids: Sequence[int] | None = None,
        line_filters: Sequence[LineFilter] = (),
        columns: Sequence[str] = ("timestamp", "stream_id", "line"),
        direction: Literal["backward", "forward", "none"] = "backward",
        limit: int | None = None,
        hidden: Sequence[Hidden] = (),
        batch_rows: int = 65_536,
    ) -> Iterator[pa.RecordBatch]:
        """Rows in ``[start_ns, end_ns)`` of the given streams that pass the line filters,
        newest first (``backward``), oldest first or unordered, streamed in batches."""
        if stream_ids is not None and not stream_ids:
            return iter(())
        params: list[Any] = [start_ns, end_ns]
        where = ["timestamp >= ?", "timestamp < ?"]
        if stream_ids is not None:
            where.append("stream_id IN (" + ",".join(str(int(s)) for s in stream_ids) + ")")
        for rule in hidden:
            if rule.stream_ids:
                ids = ",".join(str(int(s)) for s in rule.stream_ids)
                where.append(f"NOT (stream_id IN ({ids}) AND timestamp < {int(rule.cutoff_ns)})")
        for stage in line_filters:
            where.append(line_filter_sql(stage, params))
        for column in columns:
            if column not in LOG_SCHEMA.names:
                raise ValueError(f"unknown column {column!r}")
        sql = "SELECT " + ", ".join(columns) + " FROM {source} WHERE " + " AND ".join(where)
        if direction != "none":
            sql += " ORDER BY timestamp " + ("DESC" if direction == "backward" else "ASC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"

        def fetch(result: duckdb.DuckDBPyRelation) -> Iterator[pa.RecordBatch]:
            reader: Iterator[pa.RecordBatch] = iter(result.to_arrow_reader(batch_rows))
            return reader

        batches: Iterator[pa.RecordBatch] = self._run(
            tenant, start_ns, end_ns, sql, params, fetch, stream=True
        )
        return batches

    def _run(
        self,
        tenant: str,
        start_ns: int | None,
        end_ns: int | None,
        sql: str,
        params: list[Any],
        fetch: Any,
        *,
        stream: bool = False,
    ) -> Any:
        """Run ``sql`` (with ``{source}`` for the tenant's rows) over one snapshot; retry when
        a compaction removed a file between snapshot and read."""
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end_ns)
            connection = duckdb.connect()
            parts = []
            if snapshot.files:
                files = ", ".join(_sql_string(str(p)) for p in snapshot.files)
                parts.append(f"SELECT * FROM read_parquet([{files}])")
            if snapshot.buffered.num_rows:
                connection.register("buffered_rows", snapshot.buffered)
                parts.append("SELECT * FROM buffered_rows")
            if not parts:
                connection.register("buffered_rows", LOG_SCHEMA.empty_table())
                parts.append("SELECT * FROM buffered_rows")
            source = "(" + " UNION ALL ".join(parts) + ")"
            try:
                result = connection.sql(sql.replace("{source}", source), params=params)
                if stream:
                    return _closing(fetch(result), connection)
                out = fetch(result)
                connection.close()
                return out
            except duckdb.IOException:
                connection.close()
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise
        raise AssertionError("unreachable")

    def stats(self) -> Any:
        return self.table.stats()


def _closing(
    batches: Iterator[pa.RecordBatch], connection: duckdb.DuckDBPyConnection
) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    finally:
        connection.close()
