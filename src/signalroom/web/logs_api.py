"""The log APIs: Loki's HTTP API (push, query, labels, series, tail), OTLP/HTTP logs,
Elasticsearch ``_bulk`` (with the handshake routes its clients probe, under ``/es``) and
signalroom's own JSON ingest (``/api/sr/logs``).

Errors use the Prometheus envelope (``{"status": "error", "errorType", "error"}``), which is
what Loki answers too and what Grafana's Loki data source reads.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import yaml
from fastapi import APIRouter, Depends, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, Response

from signalroom.auth import AuthError
from signalroom.ingest.es_bulk import ES_VERSION, bulk_response, es_root, parse_bulk
from signalroom.ingest.loki import decode_push
from signalroom.ingest.otlp_logs import decode_otlp_logs, export_response
from signalroom.logs.logql.ast import LogQLError, LogQuery
from signalroom.logs.logql.engine import (
    QueryLimitError,
    QueryResult,
    QueryStats,
    RowPipeline,
    Rows,
    split_pushdown,
)
from signalroom.logs.logql.parser import parse, parse_duration_ns
from signalroom.logs.pipeline import IngestError, PipelineResult, records_to_batch
from signalroom.logs.ruler import RulerAPIError
from signalroom.logs.service import LogService
from signalroom.web.deps import TENANT_HEADER, Caller, require, runtime_of, tenant_of
from signalroom.web.prometheus_api import APIError, form_params, format_value, invalid_param

__all__ = ["router"]

router = APIRouter(tags=["logs"])
ELASTIC_HEADERS = {"X-Elastic-Product": "Elasticsearch"}
LOKI_VERSION = "3.0.0"
_HOUR_NS = 3600 * 10**9


def _service(request: Request | WebSocket) -> LogService:
    service: LogService | None = getattr(request.app.state.runtime, "logs", None)
    if service is None or not service.started:
        raise APIError("unavailable", "the log service is not running")
    return service


def _bad(exc: Exception) -> APIError:
    return APIError("bad_data", str(exc))


# --- parameters ----------------------------------------------------------------------------


def parse_loki_time(text: str) -> int:
    """Loki's time parameter: float unix seconds, integer seconds (≤ 10 digits) or
    nanoseconds, or RFC 3339."""
    text = text.strip()
    if "." in text:
        try:
            seconds = float(text)
        except ValueError:
            pass
        else:
            whole = math.floor(seconds)
            return whole * 10**9 + round((seconds - whole) * 1e9)
    if text.lstrip("-").isdigit():
        value = int(text)
        return value * 10**9 if len(text.lstrip("-")) <= 10 else value
    from signalroom.logs.pipeline import parse_timestamp

    try:
        return parse_timestamp(text)
    except IngestError:
        raise ValueError(f'cannot parse "{text}" to a valid timestamp') from None


def _first(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def _time(params: Mapping[str, list[str]], name: str, default: int) -> int:
    text = _first(params, name)
    if not text:
        return default
    try:
        return parse_loki_time(text)
    except ValueError as exc:
        raise invalid_param(name, exc) from None


def _limit(params: Mapping[str, list[str]], service: LogService) -> int:
    text = _first(params, "limit")
    if not text:
        return 100
    try:
        limit = int(text)
    except ValueError:
        raise invalid_param("limit", f'cannot parse "{text}" to a valid limit') from None
    if limit <= 0:
        raise invalid_param("limit", "limit must be a positive value")
    maximum = service.config.max_entries_limit
    if limit > maximum:
        raise APIError(
            "bad_data",
            f"max entries limit per query exceeded, limit > max_entries_limit ({limit} > "
            f"{maximum}) (logs.max_entries_limit)",
        )
    return limit


def _direction(params: Mapping[str, list[str]]) -> str:
    text = (_first(params, "direction") or "backward").lower()
    if text not in ("backward", "forward"):
        raise invalid_param("direction", f"must be forward or backward, got {text!r}")
    return text


def _step_ns(params: Mapping[str, list[str]], start: int, end: int) -> int:
    text = _first(params, "step")
    if not text:
        return max(math.floor((end - start) / 1e9 / 250), 1) * 10**9
    try:
        return round(float(text) * 1e9)
    except ValueError:
        pass
    try:
        return parse_duration_ns(text)
    except ValueError:
        raise invalid_param("step", f'cannot parse "{text}" to a valid duration') from None


def _parse_query(params: Mapping[str, list[str]]) -> Any:
    text = _first(params, "query")
    if not text:
        raise invalid_param("query", "query must not be empty")
    try:
        return parse(text)
    except LogQLError as exc:
        raise APIError("bad_data", str(exc)) from None


# --- encoding --------------------------------------------------------------------------------


def _seconds_json(ns: int) -> float | int:
    return ns // 10**9 if ns % 10**9 == 0 else round(ns / 1e9, 3)


def stats_json(stats: QueryStats) -> dict[str, Any]:
    """Loki's ``stats`` object (Grafana reads ``summary``)."""
    elapsed = max(stats.exec_time_s, 1e-9)
    summary = {
        "bytesProcessedPerSecond": int(stats.bytes_scanned / elapsed),
        "linesProcessedPerSecond": int(stats.lines_scanned / elapsed),
        "totalBytesProcessed": stats.bytes_scanned,
        "totalLinesProcessed": stats.lines_scanned,
        "execTime": stats.exec_time_s,
        "queueTime": 0,
        "subqueries": 0,
        "totalEntriesReturned": stats.entries_returned,
        "splits": 0,
        "shards": 0,
        "totalPostFilterLines": stats.lines_post_filter,
        "totalStructuredMetadataBytesProcessed": 0,
    }
    store = {
        "totalChunksRef": 0, "totalChunksDownloaded": 0, "chunksDownloadTime": 0,
        "queryReferencedStructuredMetadata": False,
        "chunk": {
            "headChunkBytes": 0, "headChunkLines": 0, "decompressedBytes": stats.bytes_scanned,
            "decompressedLines": stats.lines_scanned, "compressedBytes": 0, "totalDuplicates": 0,
            "postFilterLines": stats.lines_post_filter, "headChunkStructuredMetadataBytes": 0,
            "decompressedStructuredMetadataBytes": 0,
        },
    }  # fmt: skip
    return {
        "summary": summary,
        "querier": {"store": store},
        "ingester": {
            "totalReached": 0,
            "totalChunksMatched": 0,
            "totalBatches": 0,
            "totalLinesSent": 0,
            "store": store,
        },
        "cache": {},
    }


def encode_query_result(result: QueryResult) -> dict[str, Any]:
    """The ``data`` of a Loki query response."""
    if result.kind == "streams":
        payload: Any = [
            {
                "stream": s.labels,
                "values": [[str(t), line] for t, line in zip(s.timestamps, s.lines, strict=True)],
            }
            for s in result.streams
        ]
    elif result.kind == "scalar":
        at = int(result.steps_ns[0])
        payload = [_seconds_json(at), format_value(float(result.scalar or 0.0))]
    elif result.kind == "vector":
        stamp = _seconds_json(int(result.steps_ns[0]))
        payload = [
            {"metric": s.labels, "value": [stamp, format_value(float(s.values[0]))]}
            for s in result.series
        ]
    else:
        stamps = [_seconds_json(t) for t in result.steps_ns.tolist()]
        payload = []
        for s in result.series:
            present = np.flatnonzero(~np.isnan(s.values)).tolist()
            payload.append(
                {
                    "metric": s.labels,
                    "values": [[stamps[i], format_value(float(s.values[i]))] for i in present],
                }
            )
    return {"resultType": result.kind, "result": payload, "stats": stats_json(result.stats)}


def _success(data: Any) -> JSONResponse:
    return JSONResponse({"status": "success", "data": data})


async def _run_query(service: LogService, work: Any) -> QueryResult:
    timeout = service.config.query_timeout / 1000
    try:
        result: QueryResult = await asyncio.wait_for(asyncio.to_thread(work), timeout + 1)
    except TimeoutError:
        raise APIError("timeout", "query timed out (logs.query_timeout)") from None
    except QueryLimitError as exc:
        raise APIError("execution", str(exc)) from None
    except LogQLError as exc:
        raise APIError("bad_data", str(exc)) from None
    return result


# --- Loki query API ----------------------------------------------------------------------------


@router.api_route("/loki/api/v1/query", methods=["GET", "POST"])
async def loki_query(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Instant query: a metric query at ``time``, or the newest lines before ``time``."""
    service = _service(request)
    params = await form_params(request)
    expr = _parse_query(params)
    at = _time(params, "time", time.time_ns())
    limit = _limit(params, service)
    direction = _direction(params)
    engine = service.engine
    if isinstance(expr, LogQuery):
        query = expr

        def work() -> QueryResult:
            return engine.select_logs(
                caller.tenant,
                query,
                at - _HOUR_NS,
                at + 1,
                limit=limit,
                direction=direction,  # type: ignore[arg-type]
            )
    else:
        metric = expr

        def work() -> QueryResult:
            return engine.query_instant(caller.tenant, metric, at)

    return _success(encode_query_result(await _run_query(service, work)))


@router.api_route("/loki/api/v1/query_range", methods=["GET", "POST"])
async def loki_query_range(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Range query: lines in ``[start, end]`` (log queries) or a matrix (metric queries)."""
    service = _service(request)
    params = await form_params(request)
    expr = _parse_query(params)
    now = time.time_ns()
    end = _time(params, "end", now)
    start = _time(params, "start", end - _HOUR_NS)
    if end < start:
        raise APIError("bad_data", "end timestamp must not be before or equal to start time")
    limit = _limit(params, service)
    direction = _direction(params)
    step = _step_ns(params, start, end)
    if step <= 0:
        raise APIError(
            "bad_data", "zero or negative query resolution step widths are not accepted. "
            "Try a positive integer"
        )  # fmt: skip
    engine = service.engine
    if isinstance(expr, LogQuery):
        query = expr

        def work() -> QueryResult:
            return engine.select_logs(
                caller.tenant,
                query,
                start,
                end + 1,
                limit=limit,
                direction=direction,  # type: ignore[arg-type]
            )
    else:
        metric = expr

        def work() -> QueryResult:
            return engine.query_range(caller.tenant, metric, start, end, step)

    return _success(encode_query_result(await _run_query(service, work)))


def _range_params(params: Mapping[str, list[str]]) -> tuple[int, int]:
    now = time.time_ns()
    end = _time(params, "end", now)
    start = _time(params, "start", end - 6 * _HOUR_NS)
    return start, end


def _selector_matchers(text: str | None, name: str = "query") -> tuple[Any, ...]:
    if not text:
        return ()
    try:
        expr = parse(text)
    except LogQLError as exc:
        raise invalid_param(name, exc) from None
    if not isinstance(expr, LogQuery):
        raise invalid_param(name, 'expected a stream selector such as {app="api"}')
    return expr.matchers


@router.api_route("/loki/api/v1/labels", methods=["GET", "POST"])
@router.api_route("/loki/api/v1/label", methods=["GET", "POST"], include_in_schema=False)
async def loki_labels(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    service = _service(request)
    params = await form_params(request)
    start, end = _range_params(params)
    matchers = _selector_matchers(_first(params, "query"))
    streams = service.store.streams(caller.tenant, matchers, start, end + 1)
    names = sorted({name for s in streams for name in s.labels})
    return _success(names)


@router.api_route("/loki/api/v1/label/{name}/values", methods=["GET", "POST"])
async def loki_label_values(
    name: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    service = _service(request)
    params = await form_params(request)
    start, end = _range_params(params)
    matchers = _selector_matchers(_first(params, "query"))
    streams = service.store.streams(caller.tenant, matchers, start, end + 1)
    values = sorted({s.labels[name] for s in streams if name in s.labels})
    return _success(values)


@router.api_route("/loki/api/v1/series", methods=["GET", "POST"])
async def loki_series(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    service = _service(request)
    params = await form_params(request)
    start, end = _range_params(params)
    selectors = params.get("match[]") or params.get("match") or []
    if not selectors:
        raise invalid_param("match[]", "at least one match[] selector is required")
    seen: dict[int, dict[str, str]] = {}
    for text in selectors:
        for stream in service.store.streams(
            caller.tenant, _selector_matchers(text, "match[]"), start, end + 1
        ):
            seen[stream.id] = stream.labels
    return _success([seen[k] for k in sorted(seen, key=lambda k: sorted(seen[k].items()))])


@router.api_route("/loki/api/v1/index/stats", methods=["GET", "POST"])
async def loki_index_stats(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """How much a selector covers (Grafana shows it as the query's size estimate)."""
    service = _service(request)
    params = await form_params(request)
    start, end = _range_params(params)
    matchers = _selector_matchers(_first(params, "query"))
    streams = service.store.streams(caller.tenant, matchers, start, end + 1)
    ids = [s.id for s in streams]
    lines, size, parts = await asyncio.to_thread(
        service.store.volume, caller.tenant, ids, start, end + 1
    )
    return JSONResponse({"streams": len(streams), "chunks": parts, "entries": lines, "bytes": size})


_DETECT_SAMPLE_LINES = 1000


@router.api_route("/loki/api/v1/detected_fields", methods=["GET", "POST"])
async def loki_detected_fields(
    request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    """Fields found by parsing the newest lines of a query (JSON or logfmt) and in their
    structured metadata, with a type and the number of distinct values: what Grafana's
    field suggestions and Logs Drilldown ask for."""
    service = _service(request)
    params = await form_params(request)
    start, end = _range_params(params)
    expr = _parse_query(params)
    if not isinstance(expr, LogQuery):
        raise invalid_param("query", 'expected a log query such as {app="api"}')
    try:
        limit = int(_first(params, "limit") or 1000)
    except ValueError:
        raise invalid_param("limit", "not an integer") from None
    query = expr

    def work() -> QueryResult:
        return service.engine.select_logs(
            caller.tenant, query, start, end + 1, limit=_DETECT_SAMPLE_LINES
        )

    result = await _run_query(service, work)
    lines = [line for stream in result.streams for line in stream.lines]
    return JSONResponse({"fields": detect_fields(lines)[:limit], "limit": limit})


def detect_fields(lines: list[str]) -> list[dict[str, Any]]:
    """Loki's ``detected_fields`` entries for sample lines: label, type (int, float,
    duration, bytes, boolean or string), cardinality and the parsers that found it."""
    values: dict[str, set[str]] = {}
    parsers: dict[str, set[str]] = {}
    for line in lines:
        found: dict[str, str] = {}
        parser = "json"
        if line.startswith("{"):
            try:
                found = _flat_json(json.loads(line))
            except ValueError:
                found = {}
        if not found:
            parser = "logfmt"
            found = {k: v.strip('"') for k, v in _LOGFMT.findall(line) if v}
        for key, value in found.items():
            values.setdefault(key, set()).add(value)
            parsers.setdefault(key, set()).add(parser)
    return [
        {
            "label": key,
            "type": _field_type(values[key]),
            "cardinality": len(values[key]),
            "parsers": sorted(parsers[key]),
        }
        for key in sorted(values)
    ]


_LOGFMT = re.compile(r'([A-Za-z_][\w.\-]*)=("(?:[^"\\]|\\.)*"|\S*)')
_DURATION = re.compile(r"^(?:\d+(?:\.\d+)?(?:ns|us|µs|ms|s|m|h))+$")
_BYTES = re.compile(r"^\d+(?:\.\d+)?\s?(?:[KMGTPE]i?)?B$", re.IGNORECASE)


def _flat_json(value: Any, prefix: str = "") -> dict[str, str]:
    if not isinstance(value, dict):
        return {}
    out: dict[str, str] = {}
    for key, item in value.items():
        name = f"{prefix}{key}"
        if isinstance(item, dict):
            out.update(_flat_json(item, name + "_"))
        elif not isinstance(item, list):
            out[name] = json.dumps(item) if isinstance(item, bool) or item is None else str(item)
    return out


def _field_type(samples: set[str]) -> str:
    def all_match(check: Any) -> bool:
        return all(check(v) for v in samples)

    def is_int(text: str) -> bool:
        return text.lstrip("-").isdigit()

    def is_float(text: str) -> bool:
        try:
            return math.isfinite(float(text))
        except ValueError:
            return False

    if all_match(is_int):
        return "int"
    if all_match(is_float):
        return "float"
    if all_match(lambda v: v in ("true", "false")):
        return "boolean"
    if all_match(_DURATION.match):
        return "duration"
    if all_match(_BYTES.match):
        return "bytes"
    return "string"


@router.get("/loki/api/v1/status/buildinfo")
async def loki_buildinfo(caller: Caller = Depends(require("read"))) -> Response:
    return JSONResponse(
        {
            "version": LOKI_VERSION,
            "revision": "signalroom",
            "branch": "",
            "buildUser": "",
            "buildDate": "",
            "goVersion": "",
        }
    )


@router.websocket("/loki/api/v1/tail")
async def loki_tail(websocket: WebSocket) -> None:
    """Live lines matching a log query: ``{"streams": [...], "dropped_entries": null}``
    messages, first the lines since ``start`` (up to ``limit``), then new ones as stored."""
    runtime = websocket.app.state.runtime
    try:
        principal = runtime.authenticator.authenticate(websocket.headers.get("authorization"))
        tenant = tenant_of(websocket)  # type: ignore[arg-type]
        runtime.authenticator.check(principal, "read", tenant, "tail")
        service = _service(websocket)
        params = {k: [v] for k, v in websocket.query_params.items()}
        expr = _parse_query(params)
        if not isinstance(expr, LogQuery):
            raise APIError("bad_data", "tail needs a log query, not a metric query")
        limit = _limit(params, service)
        start = _time(params, "start", time.time_ns() - _HOUR_NS)
    except (AuthError, APIError) as exc:
        await websocket.close(code=1008, reason=str(exc)[:120])
        return
    await websocket.accept()
    token, queue = service.subscribe(tenant)
    try:
        initial = await asyncio.to_thread(
            service.engine.select_logs, tenant, expr, start, time.time_ns() + 1,
            limit=limit, direction="forward",
        )  # fmt: skip
        if initial.streams:
            await websocket.send_text(json.dumps(_tail_message(initial)))
        pushed, rest = split_pushdown(expr.stages)
        stages = [*pushed, *rest]
        receiver = asyncio.create_task(websocket.receive_text())
        while True:
            getter = asyncio.create_task(queue.get())
            done, _ = await asyncio.wait({getter, receiver}, return_when=asyncio.FIRST_COMPLETED)
            if receiver in done:
                getter.cancel()
                break
            table: pa.Table = getter.result()
            message = _tail_batch(service, tenant, expr, stages, table)
            if message is not None:
                await websocket.send_text(json.dumps(message))
    except (WebSocketDisconnect, RuntimeError):
        pass
    finally:
        service.unsubscribe(token)
        with contextlib.suppress(Exception):
            await websocket.close()


def _tail_message(result: QueryResult) -> dict[str, Any]:
    data = encode_query_result(result)
    return {"streams": data["result"], "dropped_entries": None}


def _tail_batch(
    service: LogService, tenant: str, query: LogQuery, stages: list[Any], table: pa.Table
) -> dict[str, Any] | None:
    streams = {s.id: s.labels for s in service.store.streams(tenant, query.matchers)}
    ids = table.column("stream_id").to_numpy()
    mask = np.isin(ids, np.fromiter(streams, np.int64, len(streams)))
    if not mask.any():
        return None
    table = table.filter(pa.array(mask))
    lines = table.column("line").combine_chunks()
    rows = Rows(
        table.column("timestamp").to_numpy().astype(np.int64),
        table.column("stream_id").to_numpy().astype(np.int64),
        lines,
    )
    rows = RowPipeline(stages, streams).run(rows)
    if not len(rows):
        return None
    from signalroom.logs.logql.engine import StreamEntries
    from signalroom.logs.model import format_labels

    grouped: dict[str, StreamEntries] = {}
    labels = rows.labels or [streams[s] for s in rows.sid.tolist()]
    for ts, line, row_labels in zip(rows.ts.tolist(), rows.line_list(), labels, strict=True):
        key = format_labels(row_labels)
        entry = grouped.setdefault(key, StreamEntries(dict(row_labels), [], []))
        entry.timestamps.append(ts)
        entry.lines.append(line)
    return _tail_message(QueryResult("streams", streams=list(grouped.values())))


# --- ingest ----------------------------------------------------------------------------------


def _ingested(result: PipelineResult) -> dict[str, Any]:
    return {
        "received": result.received,
        "accepted": result.table.num_rows,
        "throttled": result.throttled,
        "truncated": result.truncated,
        "redacted": result.redactions,
    }


def _throttle_headers(result: PipelineResult) -> dict[str, str]:
    return {"X-Signalroom-Throttled": str(result.throttled)} if result.throttled else {}


@router.post("/loki/api/v1/push", status_code=204)
async def loki_push(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """Loki push: snappy protobuf (``application/x-protobuf``) or JSON."""
    service = _service(request)
    body = await request.body()
    try:
        batch = decode_push(
            body,
            request.headers.get("content-type", "application/x-protobuf"),
            request.headers.get("content-encoding", ""),
        )
        result = await service.ingest(caller.tenant, batch, "loki")
    except IngestError as exc:
        raise _bad(exc) from None
    return Response(status_code=204, headers=_throttle_headers(result))


@router.post("/v1/logs")
async def otlp_logs(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """OTLP/HTTP logs, protobuf or JSON."""
    service = _service(request)
    content_type = request.headers.get("content-type", "application/x-protobuf")
    try:
        batch = decode_otlp_logs(
            await request.body(), content_type, request.headers.get("content-encoding", "")
        )
        result = await service.ingest(caller.tenant, batch, "otlp")
    except IngestError as exc:
        raise _bad(exc) from None
    body, media_type = export_response(content_type)
    return Response(body, media_type=media_type, headers=_throttle_headers(result))


@router.post("/api/sr/logs")
async def json_logs(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """signalroom's JSON ingest: one object, an array of objects, or NDJSON. Each object is a
    record (``timestamp``, ``message``, ``labels``, ``service``, ``level``, any fields)."""
    service = _service(request)
    body = await request.body()
    records: list[Any]
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        raise APIError("bad_data", "body is not UTF-8 text") from None
    try:
        payload = json.loads(text)
        records = payload if isinstance(payload, list) else [payload]
    except ValueError:
        records = []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                records.append(json.loads(line))
            except ValueError as exc:
                raise APIError("bad_data", f"line {number}: invalid JSON: {exc}") from None
    try:
        batch = records_to_batch(records, extra_label_fields=service.config.labels)
        result = await service.ingest(caller.tenant, batch, "json")
    except IngestError as exc:
        raise _bad(exc) from None
    return JSONResponse({"status": "success", "data": _ingested(result)})


# --- Elasticsearch compatibility -------------------------------------------------------------


async def _bulk(request: Request, caller: Caller, index: str | None) -> Response:
    service = _service(request)
    began = time.monotonic()
    try:
        bulk = parse_bulk(
            await request.body(),
            default_index=index,
            content_encoding=request.headers.get("content-encoding", ""),
            label_fields=tuple(service.config.labels),
        )
        await service.ingest(caller.tenant, bulk.batch, "elasticsearch")
    except IngestError as exc:
        body = {
            "error": {
                "root_cause": [{"type": "illegal_argument_exception", "reason": str(exc)}],
                "type": "illegal_argument_exception",
                "reason": str(exc),
            },
            "status": 400,
        }
        return JSONResponse(body, status_code=400, headers=ELASTIC_HEADERS)
    took = int((time.monotonic() - began) * 1000)
    return JSONResponse(bulk_response(bulk, took, 0), headers=ELASTIC_HEADERS)


@router.post("/_bulk", include_in_schema=False)
@router.put("/_bulk", include_in_schema=False)
@router.post("/es/_bulk")
@router.put("/es/_bulk", include_in_schema=False)
async def es_bulk(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """Elasticsearch bulk API (index/create actions; documents become log records)."""
    return await _bulk(request, caller, None)


@router.post("/{index}/_bulk", include_in_schema=False)
@router.put("/{index}/_bulk", include_in_schema=False)
@router.post("/es/{index}/_bulk")
@router.put("/es/{index}/_bulk", include_in_schema=False)
async def es_index_bulk(
    index: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    return await _bulk(request, caller, index)


@router.api_route("/es", methods=["GET", "HEAD"])
@router.api_route("/es/", methods=["GET", "HEAD"], include_in_schema=False)
async def es_root_route(caller: Caller = Depends(require("read"))) -> Response:
    """Elasticsearch's root document; clients read the version and the product header."""
    return JSONResponse(es_root(), headers=ELASTIC_HEADERS)


@router.get("/es/_license")
@router.get("/_license", include_in_schema=False)
async def es_license(caller: Caller = Depends(require("read"))) -> Response:
    body = {"license": {"status": "active", "uid": "signalroom", "type": "basic",
                        "mode": "basic", "issuer": "signalroom"}}  # fmt: skip
    return JSONResponse(body, headers=ELASTIC_HEADERS)


@router.get("/es/_cluster/health")
@router.get("/_cluster/health", include_in_schema=False)
async def es_health(caller: Caller = Depends(require("read"))) -> Response:
    body = {"cluster_name": "signalroom", "status": "green", "timed_out": False,
            "number_of_nodes": 1, "number_of_data_nodes": 1}  # fmt: skip
    return JSONResponse(body, headers=ELASTIC_HEADERS)


@router.api_route("/es/_index_template/{name}", methods=["GET", "PUT", "HEAD"])
@router.api_route("/es/_template/{name}", methods=["GET", "PUT", "HEAD"])
@router.api_route("/es/_ilm/policy/{name}", methods=["GET", "PUT", "HEAD"])
async def es_templates(
    name: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Template and ILM calls Logstash makes at start: accepted and ignored (signalroom has no
    mappings; retention is ``logs.retention``)."""
    if request.method == "PUT":
        return JSONResponse({"acknowledged": True}, headers=ELASTIC_HEADERS)
    return JSONResponse({}, headers=ELASTIC_HEADERS)


def es_version() -> str:
    return ES_VERSION


__all__ += ["TENANT_HEADER", "encode_query_result", "parse_loki_time", "stats_json"]
_ = runtime_of


# --- LogQL ruler (Loki's ruler API) -------------------------------------------------------------


def _ruler(service: LogService) -> Any:
    if service.ruler is None:
        raise APIError("unavailable", "the LogQL ruler is not running")
    return service.ruler


def _yaml(data: Any) -> Response:
    return Response(
        yaml.safe_dump(data, sort_keys=False, allow_unicode=True), media_type="application/yaml"
    )


def _accepted() -> Response:
    """What Loki's ruler answers to a change: stored, evaluated from the next round on."""
    body = {"status": "success", "data": None, "errorType": "", "error": ""}
    return JSONResponse(body, status_code=202)


def _plain(exc: RulerAPIError) -> Response:
    """Ruler refusals answer in plain text, as Loki's ruler does."""
    return Response(f"{exc}\n", status_code=exc.status, media_type="text/plain")


@router.get("/loki/api/v1/rules")
@router.get("/api/prom/rules", include_in_schema=False)
async def loki_rules(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Loki's ruler listing: YAML of rule groups by namespace (the rule file, or the name a
    namespace was given through this API)."""
    ruler = _ruler(_service(request))
    try:
        listing = ruler.namespace_groups(caller.tenant)
    except RulerAPIError as exc:
        return _plain(exc)
    if not listing:
        return Response("no rule groups found\n", status_code=404, media_type="text/plain")
    return _yaml(listing)


@router.get("/loki/api/v1/rules/{namespace}")
@router.get("/api/prom/rules/{namespace}", include_in_schema=False)
async def loki_rules_namespace(
    namespace: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    ruler = _ruler(_service(request))
    try:
        return _yaml(ruler.namespace_groups(caller.tenant, namespace))
    except RulerAPIError as exc:
        return _plain(exc)


@router.get("/loki/api/v1/rules/{namespace}/{group}")
@router.get("/api/prom/rules/{namespace}/{group}", include_in_schema=False)
async def loki_rule_group(
    namespace: str, group: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    ruler = _ruler(_service(request))
    try:
        return _yaml(ruler.get_group(caller.tenant, namespace, group))
    except RulerAPIError as exc:
        return _plain(exc)


@router.post("/loki/api/v1/rules/{namespace}")
@router.post("/api/prom/rules/{namespace}", include_in_schema=False)
async def loki_set_rule_group(
    namespace: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Add or replace one rule group (a YAML body, as ``cortextool``/``lokitool rules sync``
    and Grafana's rule editor send it) in ``namespace``; kept across restarts."""
    ruler = _ruler(_service(request))
    text = (await request.body()).decode("utf-8", "replace")
    # Changes run on the event loop: the rule manager starts and stops group tasks there.
    try:
        ruler.set_group(caller.tenant, namespace, text)
    except RulerAPIError as exc:
        return _plain(exc)
    return _accepted()


@router.delete("/loki/api/v1/rules/{namespace}/{group}")
@router.delete("/api/prom/rules/{namespace}/{group}", include_in_schema=False)
async def loki_delete_rule_group(
    namespace: str, group: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    ruler = _ruler(_service(request))
    try:
        ruler.delete_group(caller.tenant, namespace, group)
    except RulerAPIError as exc:
        return _plain(exc)
    return _accepted()


@router.delete("/loki/api/v1/rules/{namespace}")
@router.delete("/api/prom/rules/{namespace}", include_in_schema=False)
async def loki_delete_rule_namespace(
    namespace: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    ruler = _ruler(_service(request))
    try:
        ruler.delete_namespace(caller.tenant, namespace)
    except RulerAPIError as exc:
        return _plain(exc)
    return _accepted()


@router.get("/prometheus/api/v1/rules")
async def loki_prometheus_rules(
    request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    """The LogQL rules in Prometheus's ``/api/v1/rules`` shape, as Loki serves them."""
    ruler = _ruler(_service(request))
    params = request.query_params
    try:
        data = ruler.manager.rules_api(
            params.get("type"),
            params.getlist("rule_name[]"),
            params.getlist("rule_group[]"),
            params.getlist("file[]"),
            params.get("exclude_alerts") == "true",
        )
    except ValueError as exc:
        raise _bad(exc) from None
    return _success(data)


@router.get("/prometheus/api/v1/alerts")
async def loki_prometheus_alerts(
    request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    return _success(_ruler(_service(request)).manager.alerts_api())


# --- error groups ------------------------------------------------------------------------------


@router.get("/api/sr/logs/error-groups")
async def error_groups(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Error groups, most recently seen first. ``status``: unresolved (default), resolved or
    all; ``service`` filters; ``limit`` (default 100)."""
    service = _service(request)
    params = request.query_params
    status = params.get("status", "unresolved")
    if status not in ("unresolved", "resolved", "all"):
        raise invalid_param("status", "must be unresolved, resolved or all")
    try:
        limit = int(params.get("limit", "100"))
    except ValueError:
        raise invalid_param("limit", "not an integer") from None
    if limit <= 0:
        raise invalid_param("limit", "must be positive")
    groups = await asyncio.to_thread(
        service.errors.list,
        caller.tenant,
        status=None if status == "all" else status,
        service=params.get("service") or None,
    )
    return _success({"groups": [g.to_json() for g in groups[:limit]], "total": len(groups)})


@router.get("/api/sr/logs/error-groups/{fingerprint}")
async def error_group(
    fingerprint: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    group = await asyncio.to_thread(_service(request).errors.get, caller.tenant, fingerprint)
    if group is None:
        raise APIError("not_found", f"no error group {fingerprint}")
    return _success(group.to_json())


@router.post("/api/sr/logs/error-groups/{fingerprint}/resolve")
async def resolve_error_group(
    fingerprint: str, request: Request, caller: Caller = Depends(require("write"))
) -> Response:
    """Mark a group resolved; it reopens (as a regression) when the error occurs again."""
    group = await asyncio.to_thread(_service(request).errors.resolve, caller.tenant, fingerprint)
    if group is None:
        raise APIError("not_found", f"no error group {fingerprint}")
    return _success(group.to_json())
