"""Spans in the JSON shapes of Jaeger's query service (``/api/traces`` and friends), which
Grafana's Jaeger data source and the Jaeger UI read.

Times are microseconds; every distinct (service, resource attributes) is one process
(``p1``, ``p2``, ...); OTLP fields without a Jaeger counterpart become tags as the
OpenTelemetry Collector's Jaeger translator writes them (``span.kind``, ``otel.status_code``,
``otel.status_description``, ``otel.scope.name``, ``error``).
"""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa

from signalroom.traces.model import KIND_NAMES, STATUS_ERROR, STATUS_OK

__all__ = ["jaeger_response", "jaeger_trace", "tag"]


def tag(key: str, value: Any) -> dict[str, Any]:
    """One Jaeger key/value with its type."""
    if isinstance(value, bool):
        return {"key": key, "type": "bool", "value": value}
    if isinstance(value, int):
        return {"key": key, "type": "int64", "value": value}
    if isinstance(value, float):
        return {"key": key, "type": "float64", "value": value}
    if isinstance(value, str):
        return {"key": key, "type": "string", "value": value}
    return {"key": key, "type": "string", "value": json.dumps(value, separators=(",", ":"))}


def jaeger_trace(spans: pa.Table) -> dict[str, Any]:
    """One trace (its spans as stored) as a Jaeger ``Trace`` object."""
    rows = spans.to_pylist()
    processes: dict[tuple[str, str], str] = {}
    process_json: dict[str, Any] = {}
    out_spans = []
    trace_id = rows[0]["trace_id"] if rows else ""
    for row in rows:
        key = (row["service"], row["resource"])
        pid = processes.get(key)
        if pid is None:
            pid = processes[key] = f"p{len(processes) + 1}"
            resource = json.loads(row["resource"])
            process_json[pid] = {
                "serviceName": row["service"],
                "tags": [tag(k, v) for k, v in resource.items() if k != "service.name"],
            }
        tags = [tag(k, v) for k, v in json.loads(row["attributes"]).items()]
        kind = row["kind"]
        if 0 < kind < len(KIND_NAMES) and kind != 1:
            tags.append(tag("span.kind", KIND_NAMES[kind]))
        code = row["status_code"]
        if code == STATUS_ERROR:
            tags.append(tag("otel.status_code", "ERROR"))
            tags.append(tag("error", True))
        elif code == STATUS_OK:
            tags.append(tag("otel.status_code", "OK"))
        if row["status_message"]:
            tags.append(tag("otel.status_description", row["status_message"]))
        if row["scope"]:
            tags.append(tag("otel.scope.name", row["scope"]))
        if row["trace_state"]:
            tags.append(tag("w3c.tracestate", row["trace_state"]))
        references = []
        if row["parent_span_id"]:
            references.append(
                {"refType": "CHILD_OF", "traceID": trace_id, "spanID": row["parent_span_id"]}
            )
        for link in json.loads(row["links"]) if row["links"] else ():
            references.append(
                {"refType": "FOLLOWS_FROM", "traceID": link["trace_id"], "spanID": link["span_id"]}
            )
        logs = []
        for event in json.loads(row["events"]) if row["events"] else ():
            fields = [tag("event", event["name"])]
            fields += [tag(k, v) for k, v in event.get("attributes", {}).items()]
            logs.append({"timestamp": event["time"] // 1000, "fields": fields})
        out_spans.append(
            {
                "traceID": trace_id,
                "spanID": row["span_id"],
                "operationName": row["name"],
                "references": references,
                "startTime": row["start_time"] // 1000,
                "duration": row["duration"] // 1000,
                "tags": tags,
                "logs": logs,
                "processID": pid,
                "warnings": None,
                "flags": row["flags"] & 0xFF,
            }
        )
    return {"traceID": trace_id, "spans": out_spans, "processes": process_json, "warnings": None}


def jaeger_response(data: Any, *, total: int | None = None) -> dict[str, Any]:
    """Jaeger's response envelope ``{data, total, limit, offset, errors}``."""
    count = len(data) if isinstance(data, list) else 0
    return {
        "data": data,
        "total": count if total is None else total,
        "limit": 0,
        "offset": 0,
        "errors": None,
    }
