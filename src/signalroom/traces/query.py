"""Trace search and lookup over the span store (DuckDB SQL over one snapshot).

A search finds the trace ids with at least one span matching every condition (service,
operation, tags, duration, error, time), newest first, then loads those traces whole, as
Jaeger's query service does.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from signalroom.traces.model import STATUS_ERROR, normalise_trace_id
from signalroom.traces.store import TraceStore

__all__ = ["TraceQuery", "find_trace_ids", "get_trace", "get_traces", "search"]

# How far a trace may reach outside the searched window (its other spans are loaded too).
_TRACE_SLACK_NS = 3600 * 10**9
_SPAN_COLUMNS = "*"


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
        # A cheap substring test first, so most rows never reach the JSON parser.
        path = _json_path(key)
        where.append(
            "((contains(attributes, ?) AND json_extract_string(attributes, ?) = ?) OR "
            "(contains(resource, ?) AND json_extract_string(resource, ?) = ?))"
        )
        quoted = json.dumps(key, ensure_ascii=False)
        params += [quoted, path, value, quoted, path, value]
    if error is True:
        where.append(f"status_code = {STATUS_ERROR}")
    elif error is False:
        where.append(f"status_code <> {STATUS_ERROR}")
    return where


def find_trace_ids(store: TraceStore, tenant: str, query: TraceQuery) -> list[str]:
    """Ids of matching traces, the most recent (by latest matching span) first."""
    params: list[Any] = []
    where = _conditions(query, params)
    sql = (
        "SELECT trace_id, max(start_time) AS last FROM {source} WHERE "
        + " AND ".join(where)
        + f" GROUP BY trace_id ORDER BY last DESC LIMIT {int(query.limit)}"
    )
    table = store.query(tenant, query.start_ns, query.end_ns, sql, params)
    ids: list[str] = table.column("trace_id").to_pylist()
    return ids


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
    placeholders = ",".join("?" for _ in trace_ids)
    where = [f"trace_id IN ({placeholders})"]
    params: list[Any] = list(trace_ids)
    if low is not None:
        where.append("start_time >= ?")
        params.append(low)
    if high is not None:
        where.append("start_time <= ?")
        params.append(high)
    sql = (
        f"SELECT {_SPAN_COLUMNS} FROM {{source}} WHERE "
        + " AND ".join(where)
        + " QUALIFY row_number() OVER (PARTITION BY trace_id, span_id ORDER BY start_time) = 1"
        + " ORDER BY trace_id, start_time"
    )
    table = store.query(tenant, low, high, sql, params)
    out: dict[str, pa.Table] = {}
    if table.num_rows == 0:
        return out
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
