"""The log store: a :class:`DurableTable` of log rows, a stream catalog and DuckDB scans.

Rows are sorted by ``(stream_id, timestamp)`` inside each hourly Parquet file, so a stream
selector prunes row groups by statistics and a stream's lines sit together (they compress
well; times are delta-encoded). Scans run DuckDB over a consistent snapshot (files + buffered
rows) with the stream selector, the time range and the line filters pushed into SQL; what LogQL
does after that (parsers, label filters, formatting) runs on the Arrow batches DuckDB streams
back. Files store each line as a template and its variables (:mod:`signalroom.logs.codec`):
a ``|= "text"`` filter runs as a UNION ALL of one-column filters (template, each id column,
...), which DuckDB evaluates inside the Parquet scan, and lines are rebuilt only for the rows
returned. Each file carries a trigram index of its templates per row group
(:mod:`signalroom.logs.ngram`), so the template side of a filter skips the row groups that
cannot hold it, and time-ordered scans read the files in growing waves from the newest (or
oldest) end, so a query that has its ``limit`` lines stops.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import duckdb
import numpy as np
import pyarrow as pa

from signalroom.logs import codec
from signalroom.logs.logql.ast import LabelMatcher, LineFilter
from signalroom.logs.model import LOG_SCHEMA, parse_labels
from signalroom.logs.ngram import TrigramIndex, build_metadata
from signalroom.storage.table import DurableTable
from signalroom.storage.wal import FsyncPolicy

__all__ = ["LogStore", "StreamInfo"]

_SCAN_ATTEMPTS = 4
# The tenant=<id> directories would otherwise become a column DuckDB adds to file rows only.
_NO_HIVE = "hive_partitioning=false"
_WAVE_ROWS = 1_000_000  # rows of files read by the first step of a time-ordered scan

# What every part of a scan's source yields: the LOG_SCHEMA columns but ``line``, and the
# encoded ones (codec.encoded_schema). Unencoded rows (older files, the buffer) carry their
# line in ``raw``. ``line`` is rebuilt (codec.line_sql) only where a query needs it: in the
# outermost SELECT, after filters and LIMIT, so a search rebuilds the lines it returns.
_LINE_PARTS = ["timestamp", "tpl", "raw", *codec.NUMBER_COLUMNS, *codec.HEX_COLUMNS]
_BASE_COLUMNS = [name for name in LOG_SCHEMA.names if name != "line"]
_ENCODED_SELECT = ", ".join([*_BASE_COLUMNS, *_LINE_PARTS[1:]])
_PLAIN_SELECT = ", ".join(
    [
        *_BASE_COLUMNS,
        "NULL::VARCHAR AS tpl",
        "line AS raw",
        *(f"NULL::BIGINT AS {name}" for name in codec.NUMBER_COLUMNS),
        *(f"NULL::VARCHAR AS {name}" for name in codec.HEX_COLUMNS),
    ]
)
_LINE = codec.line_sql()


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


# A |= filter's alternatives, each as (needle, what it prunes encoded files by: substrings
# one of which every matching row's template holds, or None when it cannot prune).
_Group = list[tuple[str, list[str] | None]]


def _prune_of(needle: str) -> tuple[str, list[str] | None]:
    texts = [b.prune for b in codec.needle_branches(needle, _LINE)]
    if any(text is None for text in texts):
        return needle, None
    return needle, [text for text in texts if text is not None]


def line_filter_sql(stage: LineFilter, params: list[Any]) -> str:
    """One LogQL line filter as a DuckDB condition over a scan's source: substrings tested on
    the encoded columns where that is exact (:func:`codec.contains_sql`), regular expressions
    on the rebuilt line."""
    parts = []
    for value in stage.values:
        if stage.op in ("|=", "!="):
            parts.append(codec.contains_sql(value, params, _LINE))
        else:
            params.append(value)
            parts.append(f"regexp_matches({_LINE}, ?)")
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
            dictionary_columns=["stream_id", "stream", "trace_id", "span_id", "metadata"],
            # Times within a stream are close: their deltas bit-pack to about nothing.
            column_encoding={"timestamp": "DELTA_BINARY_PACKED"},
            file_metadata=build_metadata,
            codec=codec.LineCodec(),
            name="logs",
        )
        self.trigrams = TrigramIndex()
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
                "FROM {source0} GROUP BY stream_id"
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
        # The first one-needle |= filter runs as a UNION ALL of its branches, each a filter on
        # one column that DuckDB evaluates in the Parquet scan before reading other columns.
        split = next((f for f in line_filters if f.op == "|=" and len(f.values) == 1), None)
        groups: list[_Group] = []
        for stage in line_filters:
            if stage is not split:
                where.append(line_filter_sql(stage, params))
            if stage.op == "|=":
                groups.append([_prune_of(value) for value in stage.values])
        for column in columns:
            if column not in LOG_SCHEMA.names:
                raise ValueError(f"unknown column {column!r}")
        inner = [c for c in columns if c != "line"]
        if "line" in columns:
            inner += [c for c in _LINE_PARTS if c not in inner]
        outer = ", ".join(_LINE + " AS line" if c == "line" else c for c in columns)
        wrap = f"SELECT {outer} FROM ({{inner}})"
        select = "SELECT " + ", ".join(inner)
        if split is None:
            sql = select + " FROM {source0} WHERE " + " AND ".join(where)
            needles: list[list[_Group]] = [groups]
        else:
            branches = codec.needle_branches(split.values[0], _LINE)
            parts, branch_params, needles = [], [], []
            for number, branch in enumerate(branches):
                earlier = [f"NOT coalesce(({b.condition}), FALSE)" for b in branches[:number]]
                conditions = [*where, branch.condition, *earlier]
                parts.append(f"{select} FROM {{source{number}}} WHERE " + " AND ".join(conditions))
                branch_params += [*params, *branch.params]
                branch_params += [p for b in branches[:number] for p in b.params]
                value = split.values[0]
                own = [[(value, None if branch.prune is None else [branch.prune])]]
                needles.append(groups + own)
            sql = "SELECT * FROM (" + " UNION ALL ".join(parts) + ") WHERE TRUE"
            params = branch_params
        if direction != "none" and "timestamp" in columns:
            return self._ordered_scan(
                tenant, start_ns, end_ns, sql, wrap, params, needles, direction, limit, batch_rows
            )
        if direction != "none":
            sql += " ORDER BY timestamp " + ("DESC" if direction == "backward" else "ASC")
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        sql = wrap.replace("{inner}", sql)

        def fetch(result: duckdb.DuckDBPyRelation) -> Iterator[pa.RecordBatch]:
            reader: Iterator[pa.RecordBatch] = iter(result.to_arrow_reader(batch_rows))
            return reader

        batches: Iterator[pa.RecordBatch] = self._run(
            tenant, start_ns, end_ns, sql, params, fetch, stream=True, needles=needles
        )
        return batches

    def _ordered_scan(
        self,
        tenant: str,
        start_ns: int,
        end_ns: int,
        sql: str,
        wrap: str,
        params: list[Any],
        needles: Sequence[Sequence[_Group]],
        direction: Literal["backward", "forward"],
        limit: int | None,
        batch_rows: int,
    ) -> Iterator[pa.RecordBatch]:
        """Rows in time order, reading the files in waves from the newest (``backward``) or
        the oldest end. A row is handed out once no file still unread can hold a row before
        it, so a query that stops after ``limit`` lines never reads the older files."""
        backward = direction == "backward"
        order = "DESC" if backward else "ASC"
        sort = [("timestamp", "descending" if backward else "ascending")]
        emitted = 0
        last: int | None = None  # time of the last row handed out, for a retry
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end_ns)
            try:
                waves = self._waves(snapshot, backward, last)
            except FileNotFoundError:
                continue
            pending: pa.Table | None = None
            try:
                for number, (files, buffered, bound) in enumerate(waves):
                    query = sql
                    wave_params = list(params)
                    if last is not None:  # after a retry: only rows not handed out yet
                        query += " AND timestamp < ?" if backward else " AND timestamp > ?"
                        wave_params.append(last)
                    query += f" ORDER BY timestamp {order}"
                    if limit is not None:
                        query += f" LIMIT {int(limit - emitted)}"
                    query = wrap.replace("{inner}", query)
                    rows = self._query_files(
                        files, buffered if number == 0 else None, query, wave_params, needles
                    )
                    pending = rows if pending is None else pa.concat_tables([pending, rows])
                    if number:
                        pending = pending.sort_by(sort)
                    if limit is not None:
                        pending = pending.slice(0, limit - emitted)
                    stamps = pending.column("timestamp").to_numpy()
                    if bound is None:
                        ready = len(stamps)
                    elif backward:
                        ready = int(np.searchsorted(-stamps, -bound, side="left"))
                    else:
                        ready = int(np.searchsorted(stamps, bound, side="left"))
                    if ready:
                        out = pending.slice(0, ready)
                        pending = pending.slice(ready)
                        emitted += out.num_rows
                        last = int(stamps[ready - 1])
                        yield from out.to_batches(batch_rows)
                    if limit is not None and emitted >= limit:
                        return
                return
            except (duckdb.IOException, FileNotFoundError):
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise

    def _waves(
        self, snapshot: Any, backward: bool, last: int | None
    ) -> list[tuple[list[Path], pa.Table, int | None]]:
        """Files in groups of about ``_WAVE_ROWS`` rows, then four times as many each time, from the
        newest or oldest end, each
        with the furthest time a later wave can hold (None for the last wave)."""
        spans = []
        for path in snapshot.files:
            low, high, rows = self.trigrams.span(path)
            if last is not None and ((backward and low >= last) or (not backward and high <= last)):
                continue
            spans.append((high if backward else low, path, rows))
        spans.sort(key=lambda item: -item[0] if backward else item[0])
        waves: list[tuple[list[Path], pa.Table, int | None]] = []
        current: list[Path] = []
        size = 0
        wave_rows = _WAVE_ROWS
        for edge, path, rows in spans:
            if current and size + rows > wave_rows:
                waves.append((current, snapshot.buffered, edge))
                current, size = [], 0
                wave_rows *= 4  # a search that finds little pays each query's setup less often
            current.append(path)
            size += rows
        waves.append((current, snapshot.buffered, None))
        return waves

    def _query_files(
        self,
        files: Sequence[Path],
        buffered: pa.Table | None,
        sql: str,
        params: list[Any],
        needles: Sequence[Sequence[_Group]],
    ) -> pa.Table:
        connection = duckdb.connect()
        try:
            sql = self._with_sources(connection, files, buffered, sql, needles)
            result = connection.sql(sql, params=params)
            table: pa.Table = result.to_arrow_table()
            return table
        finally:
            connection.close()

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
        needles: Sequence[Sequence[_Group]] = ((),),
    ) -> Any:
        """Run ``sql`` (with ``{source0}``, ``{source1}``... for the tenant's rows) over one
        snapshot; retry when a compaction removed a file between snapshot and read.
        ``needles[i]`` (groups of substrings, one of each group in every wanted line) skip row
        groups of ``{source<i>}`` by their trigram index."""
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end_ns)
            connection = duckdb.connect()
            try:
                sql = self._with_sources(
                    connection, snapshot.files, snapshot.buffered, sql, needles
                )
            except FileNotFoundError:
                connection.close()
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise
                continue
            try:
                result = connection.sql(sql, params=params)
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

    def _with_sources(
        self,
        connection: duckdb.DuckDBPyConnection,
        files: Sequence[Path],
        buffered: pa.Table | None,
        sql: str,
        needles: Sequence[Sequence[_Group]],
    ) -> str:
        for number, groups in enumerate(needles):
            source = self._source(connection, files, buffered, groups)
            sql = sql.replace(f"{{source{number}}}", source)
        return sql

    def _source(
        self,
        connection: duckdb.DuckDBPyConnection,
        files: Sequence[Path],
        buffered: pa.Table | None,
        needles: Sequence[_Group],
    ) -> str:
        """SQL for the rows of ``files`` and ``buffered``. Row groups whose trigram index rules
        out a needle are skipped: a file keeping only some is read with a ``file_row_number``
        range, which DuckDB prunes row groups by. The index of an encoded file is over its
        templates, so what a needle prunes by there is a part of it every template of a
        matching row holds (``_prune_of``)."""
        parts = []
        whole: dict[bool, list[Path]] = {True: [], False: []}  # by: is it encoded
        by_line = [[value for value, _ in group] for group in needles]
        by_template = [
            [text for _, texts in group for text in texts or ()]
            for group in needles
            if all(texts is not None for _, texts in group)
        ]
        for path in files:
            encoded = self.trigrams.encoded(path)
            select = _ENCODED_SELECT if encoded else _PLAIN_SELECT
            wanted = by_template if encoded else by_line
            groups = self.trigrams.candidates(path, wanted) if wanted else None
            if groups is None:
                whole[encoded].append(path)
                continue
            sizes = self.trigrams.row_group_rows(path)
            if len(groups) == len(sizes):
                whole[encoded].append(path)
                continue
            starts = np.concatenate(([0], np.cumsum(sizes)))
            ranges = " OR ".join(
                f"file_row_number BETWEEN {int(starts[g])} AND {int(starts[g + 1]) - 1}"
                for g in groups
            )
            if ranges:
                parts.append(
                    f"SELECT {select} FROM read_parquet("
                    f"{_sql_string(str(path))}, file_row_number=true, {_NO_HIVE}) "
                    f"WHERE {ranges}"
                )
        for encoded, paths in whole.items():
            if paths:
                names = ", ".join(_sql_string(str(p)) for p in paths)
                select = _ENCODED_SELECT if encoded else _PLAIN_SELECT
                parts.insert(0, f"SELECT {select} FROM read_parquet([{names}], {_NO_HIVE})")
        if buffered is not None and buffered.num_rows:
            connection.register("buffered_rows", buffered)
            parts.append(f"SELECT {_PLAIN_SELECT} FROM buffered_rows")
        if not parts:
            connection.register("buffered_rows", LOG_SCHEMA.empty_table())
            parts.append(f"SELECT {_PLAIN_SELECT} FROM buffered_rows")
        return "(" + " UNION ALL ".join(parts) + ")"

    def rows_with_trace_id(self, tenant: str, trace_id: str, limit: int) -> pa.Table:
        """``timestamp, stream, line, span_id`` of the lines carrying ``trace_id``, oldest
        first (at most ``limit``): what the traces API shows next to a trace."""
        parts = ", ".join(["stream", "span_id", *_LINE_PARTS])
        sql = (
            f"SELECT timestamp, stream, {_LINE} AS line, span_id FROM (SELECT {parts} "
            f"FROM {{source0}} WHERE trace_id = ? ORDER BY timestamp LIMIT {int(limit)})"
        )
        table: pa.Table = self._run(
            tenant, None, None, sql, [trace_id], lambda r: r.to_arrow_table()
        )
        return table

    def volume(
        self, tenant: str, stream_ids: Sequence[int], start_ns: int, end_ns: int
    ) -> tuple[int, int, int]:
        """``(lines, bytes, parts)`` of the streams in ``[start_ns, end_ns)``, for Loki's index
        stats: lines counted exactly (without reading the lines), bytes estimated from each
        file's average line size, parts the files (and buffer) holding them."""
        if not stream_ids:
            return 0, 0, 0
        snapshot = self.table.snapshot(tenant, start_ns, end_ns)
        ids = ",".join(str(int(s)) for s in stream_ids)
        where = (
            f"stream_id IN ({ids}) AND timestamp >= {int(start_ns)} AND timestamp < {int(end_ns)}"
        )
        lines = size = parts = 0
        connection = duckdb.connect()
        try:
            if snapshot.files:
                names = ", ".join(_sql_string(str(p)) for p in snapshot.files)
                rows = connection.sql(
                    f"SELECT filename, count(*) FROM read_parquet([{names}], filename=true, "
                    f"{_NO_HIVE}) "
                    f"WHERE {where} GROUP BY filename"
                ).fetchall()
                parts += len(rows)
                for name, count in rows:
                    lines += int(count)
                    size += int(count * self.trigrams.average_line_bytes(Path(name)))
            if snapshot.buffered.num_rows:
                connection.register("buffered_rows", snapshot.buffered)
                query = (
                    "SELECT count(*), coalesce(sum(strlen(line)), 0) FROM buffered_rows "
                    f"WHERE {where}"
                )
                found = connection.execute(query).fetchone()
                if found is not None and found[0]:
                    parts += 1
                    lines += int(found[0])
                    size += int(found[1])
        finally:
            connection.close()
        return lines, size, parts

    def stats(self) -> Any:
        return self.table.stats()


def _closing(
    batches: Iterator[pa.RecordBatch], connection: duckdb.DuckDBPyConnection
) -> Iterator[pa.RecordBatch]:
    try:
        yield from batches
    finally:
        connection.close()
