"""The trace APIs: OTLP/HTTP traces (``/v1/traces``), Zipkin v2 (``/api/v2/spans``), Jaeger's
query API (``/api/services``, ``/api/operations``, ``/api/traces``, ``/api/dependencies``),
and signalroom's own trace views (``/api/sr/traces/{id}/critical-path`` and ``/logs``).

Ingest errors use the Prometheus envelope like every other receiver; the Jaeger routes answer
Jaeger's envelope (``{"data": null, "errors": [{"code", "msg"}]}``), which Grafana reads.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import asdict
from typing import Any

import duckdb
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from signalroom.ingest.otlp_traces import decode_otlp_traces, export_response
from signalroom.ingest.zipkin import decode_zipkin
from signalroom.traces.graph import critical_path, dependencies
from signalroom.traces.jaeger import jaeger_response, jaeger_trace
from signalroom.traces.model import SpanIngestError, normalise_trace_id
from signalroom.traces.query import TraceQuery, get_trace, get_traces, search
from signalroom.traces.service import TraceService
from signalroom.web.deps import Caller, authorize, require
from signalroom.web.prometheus_api import APIError

__all__ = ["router"]

router = APIRouter(tags=["traces"])
_US = 1000
_HOUR_NS = 3600 * 10**9
_DECODE_IN_THREAD_BYTES = 64 * 1024
_GO_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_UNIT_NS = {"ns": 1, "us": 1000, "µs": 1000, "μs": 1000, "ms": 10**6, "s": 10**9,
            "m": 60 * 10**9, "h": 3600 * 10**9}  # fmt: skip


class JaegerError(Exception):
    """A Jaeger query API failure, answered in Jaeger's envelope."""

    def __init__(self, code: int, message: str) -> None:
        self.code = code
        self.message = message
        super().__init__(message)


def _jaeger_error(exc: JaegerError) -> JSONResponse:
    body = {"data": None, "total": 0, "limit": 0, "offset": 0,
            "errors": [{"code": exc.code, "msg": exc.message}]}  # fmt: skip
    return JSONResponse(body, status_code=exc.code)


def _service(request: Request) -> TraceService:
    service: TraceService | None = getattr(request.app.state.runtime, "traces", None)
    if service is None or not service.started:
        raise APIError("unavailable", "the trace service is not running")
    return service


def _jaeger_service(request: Request) -> TraceService:
    try:
        return _service(request)
    except APIError as exc:
        raise JaegerError(503, exc.message) from None


def parse_go_duration(text: str) -> int:
    """A Go duration (``1.5s``, ``100ms``, ``2h45m``) in nanoseconds; raises ValueError."""
    value = text.strip()
    if value == "0":
        return 0
    position, total = 0, 0.0
    for match in _GO_DURATION.finditer(value):
        if match.start() != position:
            break
        total += float(match.group(1)) * _UNIT_NS[match.group(2)]
        position = match.end()
    if position != len(value) or not value:
        raise ValueError(f"invalid duration {text!r}: use a Go duration such as 100ms or 1.5s")
    return round(total)


def parse_tags(params: Any) -> dict[str, str]:
    """Jaeger's ``tags`` (a JSON object, as Grafana and the Jaeger UI send it) and ``tag``
    (repeated ``key:value``) parameters; ``tags`` may also be logfmt ``k=v k2="v 2"``."""
    tags: dict[str, str] = {}
    for raw in params.getlist("tags"):
        text = raw.strip()
        if not text:
            continue
        if text.startswith("{"):
            try:
                parsed = json.loads(text)
            except ValueError as exc:
                raise JaegerError(400, f"malformed 'tags' parameter: {exc}") from None
            if not isinstance(parsed, dict):
                raise JaegerError(400, "malformed 'tags' parameter: expected a JSON object")
            tags.update({str(k): _tag_text(v) for k, v in parsed.items()})
            continue
        for match in re.finditer(r'([^\s=]+)=("(?:[^"\\]|\\.)*"|\S*)', text):
            value = match.group(2)
            tags[match.group(1)] = json.loads(value) if value.startswith('"') else value
    for raw in params.getlist("tag"):
        key, sep, value = raw.partition(":")
        if not sep or not key:
            raise JaegerError(400, f"malformed 'tag' parameter {raw!r}: expected key:value")
        tags[key] = value
    return tags


def _tag_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return value if isinstance(value, str) else json.dumps(value)


def _int_param(params: Any, name: str) -> int | None:
    text = params.get(name)
    if text in (None, ""):
        return None
    try:
        return int(text)
    except ValueError:
        raise JaegerError(
            400, f"unable to parse param '{name}': {text!r} is not an integer"
        ) from None


def _duration_param(params: Any, name: str) -> int | None:
    text = params.get(name)
    if text in (None, ""):
        return None
    try:
        return parse_go_duration(text)
    except ValueError as exc:
        raise JaegerError(400, f"unable to parse param '{name}': {exc}") from None


# --- ingest ----------------------------------------------------------------------------------


async def _decode(function: Any, body: bytes, *args: str) -> Any:
    if len(body) > _DECODE_IN_THREAD_BYTES:
        return await asyncio.to_thread(function, body, *args)
    return function(body, *args)


@router.post("/v1/traces")
async def otlp_traces(request: Request) -> Response:
    """OTLP/HTTP traces, protobuf or JSON (hex ids)."""
    # Authenticated inline: as a FastAPI dependency this sync check would hop to the thread
    # pool on every export request.
    caller = authorize(request, "write")
    service = _service(request)
    content_type = request.headers.get("content-type", "application/x-protobuf")
    body = await request.body()
    try:
        spans = await _decode(
            decode_otlp_traces, body, content_type, request.headers.get("content-encoding", "")
        )
        await service.ingest(caller.tenant, spans, receiver="otlp")
    except (SpanIngestError, ValueError) as exc:
        raise APIError("bad_data", str(exc)) from None
    payload, media_type = export_response(content_type)
    return Response(payload, media_type=media_type)


@router.post("/api/v2/spans", status_code=202)
async def zipkin_spans(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """Zipkin v2 JSON spans; answers 202 as Zipkin does."""
    service = _service(request)
    body = await request.body()
    try:
        spans = await _decode(
            decode_zipkin,
            body,
            request.headers.get("content-type", "application/json"),
            request.headers.get("content-encoding", ""),
        )
        await service.ingest(caller.tenant, spans, receiver="zipkin")
    except (SpanIngestError, ValueError) as exc:
        raise APIError("bad_data", str(exc)) from None
    return Response(status_code=202)


# --- Jaeger query API ------------------------------------------------------------------------


def _jaeger(handler: Any) -> Any:
    """Turn JaegerError into Jaeger's error envelope (route-local, other APIs keep theirs)."""
    import functools

    @functools.wraps(handler)
    async def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return await handler(*args, **kwargs)
        except JaegerError as exc:
            return _jaeger_error(exc)
        except duckdb.Error as exc:
            return _jaeger_error(JaegerError(500, f"query failed: {exc}"))

    return wrapper


@router.get("/api/services")
@_jaeger
async def services(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    """Services that have spans."""
    names = _jaeger_service(request).store.services(caller.tenant)
    return jaeger_response(names)


@router.get("/api/services/{service_name}/operations")
@_jaeger
async def service_operations(
    service_name: str, request: Request, caller: Caller = Depends(require("read"))
) -> Any:
    """Operation names of one service (the Jaeger UI's and Grafana's list)."""
    ops = _jaeger_service(request).store.operations(caller.tenant, service_name)
    return jaeger_response(sorted({name for name, _ in ops}))


@router.get("/api/operations")
@_jaeger
async def operations(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    """Operations with their span kinds: ``?service=...&spanKind=server``."""
    from signalroom.traces.model import KIND_NAMES

    name = request.query_params.get("service")
    if not name:
        raise JaegerError(400, "parameter 'service' is required")
    kind = request.query_params.get("spanKind", "").lower()
    ops = _jaeger_service(request).store.operations(caller.tenant, name)
    data = [
        {"name": op, "spanKind": KIND_NAMES[k] if k > 1 else ""}
        for op, k in ops
        if not kind or (k < len(KIND_NAMES) and KIND_NAMES[k] == kind)
    ]
    return jaeger_response(data)


@router.get("/api/traces")
@_jaeger
async def find_traces(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    """Search traces (Jaeger's parameters: service, operation, tags, minDuration, maxDuration,
    start/end in µs, lookback, limit) or fetch several by ``traceID``."""
    service = _jaeger_service(request)
    params = request.query_params
    start_us, end_us = _int_param(params, "start"), _int_param(params, "end")
    end_ns = end_us * _US if end_us is not None else time.time_ns()
    lookback = params.get("lookback")
    if start_us is not None:
        start_ns = start_us * _US
    elif lookback and lookback != "custom":
        try:
            start_ns = end_ns - parse_go_duration(lookback)
        except ValueError as exc:
            raise JaegerError(400, f"unable to parse param 'lookback': {exc}") from None
    else:
        start_ns = end_ns - _HOUR_NS
    ids = params.getlist("traceID")
    if ids:
        try:
            wanted = [normalise_trace_id(i) for i in ids]
        except ValueError as exc:
            raise JaegerError(400, str(exc)) from None
        found = await asyncio.to_thread(get_traces, service.store, caller.tenant, wanted)
        return jaeger_response([jaeger_trace(found[i]) for i in wanted if i in found])
    name = params.get("service")
    if not name:
        raise JaegerError(400, "parameter 'service' is required")
    limit = _int_param(params, "limit") or 20
    if limit <= 0:
        raise JaegerError(400, "parameter 'limit' must be positive")
    limit = min(limit, service.config.max_search_traces)
    min_duration = _duration_param(params, "minDuration")
    max_duration = _duration_param(params, "maxDuration")
    if min_duration is not None and max_duration is not None and max_duration < min_duration:
        raise JaegerError(400, "'maxDuration' should be greater than 'minDuration'")
    if start_ns > end_ns:
        raise JaegerError(400, "'start' should be before 'end'")
    query = TraceQuery(
        start_ns=start_ns,
        end_ns=end_ns,
        service=name,
        operation=params.get("operation") or None,
        tags=parse_tags(params),
        min_duration_ns=min_duration,
        max_duration_ns=max_duration,
        limit=limit,
    )
    traces = await asyncio.to_thread(search, service.store, caller.tenant, query)
    return jaeger_response([jaeger_trace(t) for t in traces])


async def _one_trace(request: Request, caller: Caller, trace_id: str) -> Any:
    service = _jaeger_service(request)
    params = request.query_params
    start_us, end_us = _int_param(params, "start"), _int_param(params, "end")
    try:
        table = await asyncio.to_thread(
            get_trace,
            service.store,
            caller.tenant,
            trace_id,
            None if start_us is None else start_us * _US,
            None if end_us is None else end_us * _US,
        )
    except ValueError as exc:
        raise JaegerError(400, str(exc)) from None
    if table is None:
        raise JaegerError(404, "trace not found")
    return table


@router.get("/api/traces/{trace_id}")
@_jaeger
async def trace_by_id(
    trace_id: str, request: Request, caller: Caller = Depends(require("read"))
) -> Any:
    """One trace by id (optionally ``start``/``end`` in µs to narrow the files read)."""
    return jaeger_response([jaeger_trace(await _one_trace(request, caller, trace_id))])


@router.get("/api/dependencies")
@_jaeger
async def service_dependencies(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    """Service call graph: ``endTs`` and ``lookback`` in milliseconds (default: the last day)."""
    service = _jaeger_service(request)
    end_ms = _int_param(request.query_params, "endTs") or int(time.time() * 1000)
    lookback_ms = _int_param(request.query_params, "lookback") or 24 * 3_600_000
    if lookback_ms <= 0:
        raise JaegerError(400, "parameter 'lookback' must be positive")
    edges = await asyncio.to_thread(
        dependencies,
        service.store,
        caller.tenant,
        (end_ms - lookback_ms) * 10**6,
        end_ms * 10**6,
    )
    return jaeger_response(
        [{"parent": e.parent, "child": e.child, "callCount": e.call_count} for e in edges]
    )


# --- signalroom's own trace views ----------------------------------------------------------


@router.get("/api/sr/traces/{trace_id}/critical-path")
@_jaeger
async def trace_critical_path(
    trace_id: str, request: Request, caller: Caller = Depends(require("read"))
) -> Any:
    """The critical path of a trace: segments in time order, with each span's share."""
    table = await _one_trace(request, caller, trace_id)
    segments = critical_path(table)
    total = sum(s.end_ns - s.start_ns for s in segments)
    shares: dict[str, int] = {}
    for s in segments:
        shares[s.span_id] = shares.get(s.span_id, 0) + s.end_ns - s.start_ns
    return {
        "status": "success",
        "data": {
            "traceID": normalise_trace_id(trace_id),
            "durationNs": total,
            "segments": [asdict(s) for s in segments],
            "spans": [{"spanID": k, "selfTimeNs": v} for k, v in shares.items()],
        },
    }


@router.get("/api/sr/traces/{trace_id}/logs")
@_jaeger
async def trace_logs(
    trace_id: str, request: Request, caller: Caller = Depends(require("read"))
) -> Any:
    """Log lines carrying this trace id (the log store's ``trace_id`` column), oldest first."""
    try:
        wanted = normalise_trace_id(trace_id)
    except ValueError as exc:
        raise JaegerError(400, str(exc)) from None
    logs = getattr(request.app.state.runtime, "logs", None)
    if logs is None or not getattr(logs, "started", False):
        raise JaegerError(503, "the log service is not running")
    limit = min(_int_param(request.query_params, "limit") or 1000, 5000)
    rows = await asyncio.to_thread(_logs_of_trace, logs, caller.tenant, wanted, limit)
    return {"status": "success", "data": rows}


def _logs_of_trace(logs: Any, tenant: str, trace_id: str, limit: int) -> list[dict[str, Any]]:
    # The log store rebuilds lines of encoded segment files (templates + variables).
    rows = logs.store.rows_with_trace_id(tenant, trace_id, limit).to_pylist()
    return [
        {"timestamp": str(r["timestamp"]), "stream": r["stream"], "line": r["line"],
         "spanID": r["span_id"]}
        for r in rows
    ]  # fmt: skip
