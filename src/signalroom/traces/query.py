"""Trace search and lookup over the span store.

A search finds the trace ids with at least one span matching every condition (service,
operation, tags, duration, error, time), newest first, then loads those traces whole, as
Jaeger's query service does. DuckDB scans one snapshot's files newest hour partition first,
then windows of older hours sized by the match rate so far, and stops once ``limit`` traces
are found: every trace found later could only have older matching spans. The store's search
index (``search_index.py``) first rules out the row groups that cannot hold a matching span:
files with few candidates are read by row group (PyArrow, then the same SQL), the others
whole, and hours with no candidate are skipped. A trace is loaded through the store's
trace-id index (only the row groups holding it are read).
"""

from __future__ import annotations

import itertools
import json
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from signalroom.traces.model import STATUS_ERROR, dumps, normalise_trace_id
from signalroom.traces.search_index import SearchProbe, search_probe
from signalroom.traces.store import TraceStore, run_sql

__all__ = ["TraceQuery", "find_trace_ids", "get_trace", "get_traces", "search"]

# How far a trace may reach outside the searched window (its other spans are loaded too).
_TRACE_SLACK_NS = 3600 * 10**9
_HOUR_NS = 3600 * 10**9
_SCAN_ATTEMPTS = 4
# Columns a search reads, and the share of a file's row groups above which it reads the
# whole file (DuckDB's scan) rather than the search index's candidates (PyArrow).
_SEARCH_COLUMNS = ["trace_id", "start_time", "service", "name", "kind", "duration",
                   "status_code", "attributes", "resource"]  # fmt: skip
_WHOLE_FILE_SHARE = 0.5


@dataclass(frozen=True)
class TraceQuery:
    """What Jaeger's ``/api/traces`` search asks for. Times are unix ns, durations ns."""

    start_ns: int
    end_ns: int
    service: str | None = None
    operation: str | None = None
    tags: Mapping[str, str] = field(default_factory=dict)
    min_duration_ns: int | None = None
    max_duration_ns: int | None = None
    error: bool | None = None
    limit: int = 20


def _json_path(key: str) -> str:
    return '$."' + key.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _conditions(query: TraceQuery, params: list[Any]) -> list[str]:
    where = ["start_time >= ?", "start_time <= ?"]
    params += [query.start_ns, query.end_ns]
    if query.service:
        where.append("service = ?")
        params.append(query.service)
    if query.operation:
        where.append("name = ?")
        params.append(query.operation)
    if query.min_duration_ns is not None:
        where.append("duration >= ?")
        params.append(query.min_duration_ns)
    if query.max_duration_ns is not None:
        where.append("duration <= ?")
        params.append(query.max_duration_ns)
    error = query.error
    for key, value in query.tags.items():
        if key == "error" and value.lower() in ("true", "false"):
            error = value.lower() == "true"
            continue
        if key in ("otel.status_code", "status.code"):
            where.append("status_code = ?")
            params.append({"UNSET": 0, "OK": 1, "ERROR": 2}.get(value.upper(), -1))
            continue
        if key == "span.kind":
            from signalroom.traces.model import KIND_BY_NAME

            where.append("kind = ?")
            params.append(KIND_BY_NAME.get(value.lower(), -1))
            continue
        # Attributes are compact JSON written by ``dumps``, so a match contains the pair's
        # literal text: that cheap substring test runs first and few rows reach the parser.
        path = _json_path(key)
        literals = _pair_literals(key, value)
        test = " OR ".join("contains({column}, ?)" for _ in literals)
        where.append(
            f"((({test.format(column='attributes')}) AND json_extract_string(attributes, ?) = ?)"
            f" OR (({test.format(column='resource')}) AND json_extract_string(resource, ?) = ?))"
        )
        params += [*literals, path, value, *literals, path, value]
    if error is True:
        where.append(f"status_code = {STATUS_ERROR}")
    elif error is False:
        where.append(f"status_code <> {STATUS_ERROR}")
    return where


def _pair_literals(key: str, value: str) -> list[str]:
    """The texts a stored ``"key":value`` pair can have when its value's text is ``value``:
    a JSON string, or a bare number or boolean."""
    prefix = dumps(key) + ":"
    literals = [prefix + dumps(value)]
    try:
        bare = json.loads(value)
    except ValueError:
        bare = None
    if isinstance(bare, bool | int | float):
        literals.append(prefix + value.strip())
    return literals


def _next_window(found: int, limit: int, scanned: int, upcoming: list[int]) -> int:
    """Hours to scan next, given the rows ``scanned`` so far and the rows of each hour still
    to scan: as many rows as the match rate so far says are missing (with a margin), at most
    doubling what was scanned (double when nothing matched yet); at least one hour. Rows,
    not hours, because the newest hour is usually partly filled."""
    wanted = 2 * scanned
    if found:
        wanted = min(wanted, math.ceil((limit - found) * scanned / found * 1.25))
    size, rows = 1, upcoming[0] if upcoming else 0
    while size < len(upcoming) and rows < wanted:
        rows += upcoming[size]
        size += 1
    return size


def find_trace_ids(store: TraceStore, tenant: str, query: TraceQuery) -> list[str]:
    """Ids of matching traces, the most recent (by latest matching span) first."""
    for attempt in range(_SCAN_ATTEMPTS):
        try:
            return _find_trace_ids(store, tenant, query)
        except (duckdb.IOException, FileNotFoundError):
            if attempt == _SCAN_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _index_terms(query: TraceQuery) -> tuple[bool, list[tuple[str, str]]]:
    """What the search index can test of ``query``: whether matching spans have an error
    status, and the attribute pairs they hold (read as ``_conditions`` reads the tags)."""
    error = query.error
    status_error = False
    pairs = []
    for key, value in query.tags.items():
        if key == "error" and value.lower() in ("true", "false"):
            error = value.lower() == "true"
        elif key in ("otel.status_code", "status.code"):
            status_error = value.upper() == "ERROR"
        elif key != "span.kind" and '"' not in key and "\\" not in key:
            # (a key with quotes or backslashes is escaped in the JSON path: not indexed)
            pairs.append((key, value))
    return error is True or status_error, pairs


def _probe(store: TraceStore, query: TraceQuery, files: list[Path]) -> SearchProbe | None:
    """The search index probe of ``query`` (None when it has nothing to test)."""
    error, pairs = _index_terms(query)
    durations = query.min_duration_ns is not None or query.max_duration_ns is not None
    if not (query.service or query.operation or error or pairs or durations):
        return None
    if query.service:
        services: set[str] = {query.service}
    else:
        services = set()
        for path in files:
            summary = store.search_index.get(path)
            if summary is not None:
                services |= summary.services
    connection = store.connect()
    try:
        return search_probe(
            connection, services, query.operation or None, pairs, error,
            query.min_duration_ns, query.max_duration_ns,
        )  # fmt: skip
    finally:
        connection.close()


@dataclass
class _Hour:
    """What a search reads of one hour partition: whole files, and some row groups of
    others (those the search index could not rule out)."""

    rows: int = 0
    files: list[Path] = field(default_factory=list)
    row_groups: list[tuple[Path, list[int]]] = field(default_factory=list)


def _plan(
    store: TraceStore, files: list[Path], buffered: pa.Table, probe: SearchProbe | None
) -> dict[int, _Hour]:
    """Per hour partition (newest first) what to read, skipping what cannot match."""
    plan: dict[int, _Hour] = {}
    hours, rows = np.unique(buffered["start_time"].to_numpy() // _HOUR_NS, return_counts=True)
    for hour, count in zip(hours.tolist(), rows.tolist(), strict=True):
        plan.setdefault(hour, _Hour()).rows += count
    for path, _, max_ts in store.file_bounds(files):
        part = plan.setdefault(max_ts // _HOUR_NS, _Hour())  # a file holds one partition
        summary = store.search_index.get(path) if probe is not None else None
        if probe is None or summary is None:  # nothing to test, or not summarised yet
            part.files.append(path)
            part.rows += store.file_rows(path)
            continue
        groups = np.flatnonzero(probe.row_groups(summary))
        if len(groups) > _WHOLE_FILE_SHARE * len(summary.rows):
            part.files.append(path)
            part.rows += store.file_rows(path)
        elif len(groups):
            part.row_groups.append((path, groups.tolist()))
            part.rows += int(summary.rows[groups].sum())
    return {hour: plan[hour] for hour in sorted(plan, reverse=True) if plan[hour].rows}


def _find_trace_ids(store: TraceStore, tenant: str, query: TraceQuery) -> list[str]:
    params: list[Any] = []
    where = " AND ".join(_conditions(query, params))
    limit = int(query.limit)
    sql = (
        f"SELECT trace_id, max(start_time) AS last FROM {{source}} WHERE {where}"
        f" GROUP BY trace_id ORDER BY last DESC LIMIT {limit}"
    )
    # only the columns the conditions name: row groups read by PyArrow are decoded whole
    columns = ["trace_id"] + [c for c in _SEARCH_COLUMNS[1:] if re.search(rf"\b{c}\b", where)]
    snapshot = store.table.snapshot(tenant, query.start_ns, query.end_ns + 1)
    buffered = snapshot.buffered.select(columns)
    plan = _plan(store, snapshot.files, buffered, _probe(store, query, snapshot.files))
    hours = list(plan)
    found: dict[str, int] = {}
    connection = store.connect()
    try:
        scanned = 0
        while hours:
            size = _next_window(len(found), limit, scanned, [plan[h].rows for h in hours])
            window, hours = hours[:size], hours[size:]
            files = [path for hour in window for path in plan[hour].files]
            # the search index's candidates, read beside the buffered rows
            pieces = [buffered] + [
                store.read_row_groups(path, groups, columns)
                for hour in window
                for path, groups in plan[hour].row_groups
            ]
            connection.register("rows_in_memory", pa.concat_tables(pieces))
            low, high = min(window) * _HOUR_NS, (max(window) + 1) * _HOUR_NS
            part = f"start_time >= {int(low)} AND start_time < {int(high)}"
            table = run_sql(connection, files, "rows_in_memory", sql, params, part, columns)
            for trace_id, last in zip(
                table["trace_id"].to_pylist(), table["last"].to_pylist(), strict=True
            ):
                found[trace_id] = max(last, found.get(trace_id, last))
            scanned += sum(plan[h].rows for h in window)
            # Everything not scanned yet is older than ``low``.
            if sum(last >= low for last in found.values()) >= limit:
                break
    finally:
        connection.close()
    ranked = sorted(found.items(), key=lambda item: item[1], reverse=True)
    return [trace_id for trace_id, _ in ranked[:limit]]


def get_traces(
    store: TraceStore,
    tenant: str,
    trace_ids: list[str],
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> dict[str, pa.Table]:
    """Every span of each trace, by trace id (traces with no span are absent). Spans stored
    twice (a WAL replay after a crash) appear once."""
    if not trace_ids:
        return {}
    low = None if start_ns is None else start_ns - _TRACE_SLACK_NS
    high = None if end_ns is None else end_ns + _TRACE_SLACK_NS
    table = store.trace_spans(tenant, trace_ids, low, high)
    out: dict[str, pa.Table] = {}
    if table.num_rows == 0:
        return out
    # one row per (trace, span): the earliest copy, then spans in time order per trace
    table = table.sort_by([("trace_id", "ascending"), ("span_id", "ascending"),
                           ("start_time", "ascending")])  # fmt: skip
    ids = table.column("trace_id").to_numpy(zero_copy_only=False)
    span_ids = table.column("span_id").to_numpy(zero_copy_only=False)
    first = np.ones(len(ids), np.bool_)
    first[1:] = (ids[1:] != ids[:-1]) | (span_ids[1:] != span_ids[:-1])
    if not first.all():
        table = table.filter(pa.array(first))
    table = table.sort_by([("trace_id", "ascending"), ("start_time", "ascending")])
    ids = table.column("trace_id").to_numpy(zero_copy_only=False)
    cuts = (np.flatnonzero(ids[1:] != ids[:-1]) + 1).tolist()
    boundaries = [0, *cuts, len(ids)]
    for a, b in itertools.pairwise(boundaries):
        out[str(ids[a])] = table.slice(a, b - a)
    return out


def get_trace(
    store: TraceStore,
    tenant: str,
    trace_id: str,
    start_ns: int | None = None,
    end_ns: int | None = None,
) -> pa.Table | None:
    """One trace's spans, or None. Raises ValueError for an invalid id."""
    trace_id = normalise_trace_id(trace_id)
    return get_traces(store, tenant, [trace_id], start_ns, end_ns).get(trace_id)


def search(store: TraceStore, tenant: str, query: TraceQuery) -> list[pa.Table]:
    """Matching traces, most recent first, each as its spans."""
    ids = find_trace_ids(store, tenant, query)
    traces = get_traces(store, tenant, ids, query.start_ns, query.end_ns)
    return [traces[i] for i in ids if i in traces]
