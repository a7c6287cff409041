"""Event capture and product analytics over HTTP.

Capture, compatible with PostHog's client libraries: ``/capture``, ``/batch``, ``/e``,
``/i/v0/e``, ``/track`` (any with or without a trailing slash), ``/decide`` (minimal: no
flags); and signalroom's own ``POST /api/sr/events`` (seed-003 event structure). Capture
answers once the events are in the queue's WAL; schema checks happen in the consumer and send
bad events to the dead-letter queue (``/api/sr/events/dlq``), never to the floor.

With auth on, capture accepts a token as ``Authorization: Bearer`` or as PostHog's
``api_key``/``token`` in the body, or one of ``events.api_keys`` (tenant ``default``).

Analytics: ``/api/sr/analytics/{trends,funnels,retention,active-users,stickiness,revenue,
top-products,sql}`` take JSON bodies (POST) or query parameters (GET).
"""

from __future__ import annotations

import asyncio
import hmac
import json
import secrets
import time
from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response

from signalroom.events.analytics import AnalyticsError, FunnelStep, TrendSeries
from signalroom.events.consumer import mark_oversize
from signalroom.events.metrics import EVENTS_RECEIVED
from signalroom.events.queue import QueueFull, RawCapture
from signalroom.events.schemas.registry import SchemaError
from signalroom.events.service import EventService
from signalroom.ingest.posthog import (
    CaptureError,
    capture_json,
    json_loads,
    parse_sr_events,
    posthog_envelope,
)
from signalroom.web.deps import Caller, require, runtime_of, tenant_of
from signalroom.web.prometheus_api import APIError

__all__ = ["router"]

router = APIRouter(tags=["events"])


def _service(request: Request) -> EventService:
    service: EventService | None = getattr(runtime_of(request), "events", None)
    if service is None or not service.started:
        raise APIError("unavailable", "the event service is not running")
    return service


def _error(status: int, detail: str, code: str = "invalid_payload") -> JSONResponse:
    return JSONResponse(
        {"type": "validation_error", "code": code, "detail": detail}, status_code=status
    )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit():
        if int(declared) > limit:
            raise CaptureError(f"body exceeds max_body_bytes ({limit} bytes)", 413)
        return await request.body()  # the server holds the client to its Content-Length
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise CaptureError(f"body exceeds max_body_bytes ({limit} bytes)", 413)
        chunks.append(chunk)
    return b"".join(chunks)


def _authorise_capture(request: Request, service: EventService, api_key: str | None) -> str:
    """The tenant to write to; raises AuthError."""
    runtime = runtime_of(request)
    authenticator = runtime.authenticator
    tenant = tenant_of(request)
    header = request.headers.get("authorization")
    if not authenticator.enabled:
        return tenant
    if not header and api_key:
        for known in service.config.api_keys:
            if hmac.compare_digest(known, api_key):
                return "default"
        header = f"Bearer {api_key}"
    principal = authenticator.authenticate(header)
    authenticator.check(principal, "write", tenant, f"{request.method} {request.url.path}")
    return tenant


# What PostHog's /capture and /batch answer, encoded once.
_POSTHOG_OK = b'{"status":1}'


async def _capture(request: Request, *, posthog: bool, endpoint: str) -> Response:
    service = _service(request)
    config = service.config
    try:
        body = await _read_body(request, config.max_body_bytes)
        text = capture_json(
            body,
            content_type=request.headers.get("content-type"),
            content_encoding=request.headers.get("content-encoding"),
            compression=request.query_params.get("compression"),
            max_bytes=config.max_body_bytes,
        )
        try:
            payload = json_loads(text)
        except (ValueError, UnicodeDecodeError) as exc:
            raise CaptureError(f"body is not valid JSON: {exc}") from None
        if payload is None and request.query_params.get("data"):
            text = request.query_params["data"].encode()
            payload = json_loads(text)
        now_ns = time.time_ns()
        if posthog:
            # Queued as sent: the consumer parses the events (see RawCapture).
            shape = posthog_envelope(payload)
            api_key = shape.api_key
            raw = RawCapture(text, now_ns, len(shape.events), secrets.randbits(63), payload)
        else:
            batch = parse_sr_events(payload, now_ns=now_ns)
            api_key = batch.api_key
            mark_oversize(batch.records, config.max_event_bytes)
    except CaptureError as exc:
        return _error(exc.status, exc.message)
    except ValueError as exc:
        return _error(400, str(exc))
    tenant = _authorise_capture(request, service, api_key)
    try:
        count = await service.capture(tenant, raw if posthog else batch.records)
    except QueueFull as exc:
        return _error(429, str(exc), "queue_full")
    EVENTS_RECEIVED.labels(endpoint).inc(count)
    if posthog:
        return Response(_POSTHOG_OK, media_type="application/json")
    return JSONResponse(
        {
            "status": "ok",
            "accepted": len(batch.records) - batch.errors,
            "dead_lettered": batch.errors,
            "errors": [
                {"index": i, "reason": r["error"]}
                for i, r in enumerate(batch.records)
                if "error" in r
            ][:100],
        }
    )


_POSTHOG_PATHS = ["/capture", "/batch", "/e", "/i/v0/e", "/track", "/engage", "/s"]


async def posthog_capture(request: Request) -> Response:
    path = request.url.path.rstrip("/") or "/"
    return await _capture(request, posthog=True, endpoint=path.lstrip("/"))


for _path in _POSTHOG_PATHS:
    for _variant in (_path, _path + "/"):
        router.add_api_route(
            _variant, posthog_capture, methods=["POST", "GET"], include_in_schema=_variant == _path
        )


@router.api_route("/decide", methods=["GET", "POST"])
@router.api_route("/decide/", methods=["GET", "POST"], include_in_schema=False)
@router.api_route("/flags", methods=["GET", "POST"], include_in_schema=False)
async def decide(request: Request) -> JSONResponse:
    """PostHog's remote config for clients: no feature flags, capture enabled."""
    return JSONResponse(
        {
            "featureFlags": {},
            "featureFlagPayloads": {},
            "flags": {},
            "errorsWhileComputingFlags": False,
            "sessionRecording": False,
            "autocapture_opt_out": True,
            "capturePerformance": False,
            "supportedCompression": ["gzip", "gzip-js", "base64"],
            "config": {"enable_collect_everything": False},
        }
    )


@router.post("/api/sr/events")
async def sr_events(request: Request) -> Response:
    return await _capture(request, posthog=False, endpoint="api/sr/events")


@router.get("/api/sr/events/status")
async def events_status(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    return {"status": "success", "data": _service(request).status()}


# --------------------------------------------------------------------------- schemas


@router.get("/api/sr/events/schemas")
async def list_schemas(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    registry = _service(request).registry
    return {"status": "success", "data": [s.describe() for s in registry.all()]}


@router.post("/api/sr/events/schemas")
async def register_schema(request: Request, caller: Caller = Depends(require("admin"))) -> Any:
    service = _service(request)
    try:
        schema = service.registry.register(await request.json())
    except (SchemaError, ValueError) as exc:
        raise APIError("bad_data", str(exc)) from None
    return {"status": "success", "data": schema.describe()}


# --------------------------------------------------------------------------- DLQ and GDPR


@router.get("/api/sr/events/dlq")
async def list_dlq(
    request: Request,
    limit: int = 100,
    after_id: int = 0,
    event: str | None = None,
    reason: str | None = None,
    caller: Caller = Depends(require("read")),
) -> Any:
    service = _service(request)
    letters = await asyncio.to_thread(
        service.dlq.list,
        caller.tenant,
        limit=max(1, min(limit, 10_000)),
        after_id=after_id,
        event=event,
        reason=reason,
    )
    total = await asyncio.to_thread(service.dlq.count, caller.tenant)
    return {"status": "success", "data": {"total": total, "items": [d.to_json() for d in letters]}}


@router.post("/api/sr/events/dlq/replay")
async def replay_dlq(request: Request, caller: Caller = Depends(require("write"))) -> Any:
    """Body (optional): ``{"ids": [...]}`` or ``{"limit": n}`` (the oldest n, default 1000)."""
    service = _service(request)
    body: dict[str, Any] = {}
    raw = await request.body()
    if raw.strip():
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise APIError("bad_data", f"body is not JSON: {exc}") from None
    ids = body.get("ids")
    if ids is not None and (not isinstance(ids, list) or not all(isinstance(i, int) for i in ids)):
        raise APIError("bad_data", "ids must be a list of integers")
    limit = body.get("limit", 1000)
    if not isinstance(limit, int) or limit < 1:
        raise APIError("bad_data", "limit must be a positive integer")
    try:
        count = await service.replay_dead_letters(caller.tenant, ids, limit)
    except QueueFull as exc:
        raise APIError("unavailable", str(exc)) from None
    return {"status": "success", "data": {"replayed": count}}


@router.delete("/api/sr/events/users/{user_id}")
async def delete_user(
    request: Request, user_id: str, caller: Caller = Depends(require("admin"))
) -> Any:
    result = await _service(request).delete_user(caller.tenant, user_id)
    return {"status": "success", "data": result}


# --------------------------------------------------------------------------- analytics


async def _params(request: Request) -> dict[str, Any]:
    if request.method == "POST":
        raw = await request.body()
        if raw.strip():
            try:
                body = json.loads(raw)
            except ValueError as exc:
                raise APIError("bad_data", f"body is not JSON: {exc}") from None
            if not isinstance(body, dict):
                raise APIError("bad_data", "body must be a JSON object")
            return body
    params: dict[str, Any] = {}
    for key, value in request.query_params.multi_items():
        if key in params:
            existing = params[key]
            params[key] = (existing if isinstance(existing, list) else [existing]) + [value]
        else:
            params[key] = value
    for key in ("series", "steps", "events", "filters"):
        if isinstance(params.get(key), str) and params[key].strip().startswith(("[", "{")):
            try:
                params[key] = json.loads(params[key])
            except ValueError as exc:
                raise APIError("bad_data", f"{key} is not JSON: {exc}") from None
    return params


def _list(value: Any) -> list[Any]:
    if value is None:
        return []
    return value if isinstance(value, list) else [value]


def _number(params: dict[str, Any], name: str, default: float) -> float:
    value = params.get(name, default)
    try:
        return float(value)
    except (TypeError, ValueError):
        raise APIError("bad_data", f"{name} must be a number") from None


async def _run(func: Any, *args: Any, **kwargs: Any) -> Any:
    try:
        result = await asyncio.to_thread(func, *args, **kwargs)
    except AnalyticsError as exc:
        raise APIError("bad_data", str(exc)) from None
    return {"status": "success", "data": result}


def _trend_series(params: dict[str, Any]) -> list[TrendSeries]:
    series = []
    for item in _list(params.get("series") or params.get("events") or params.get("event")):
        if isinstance(item, str):
            series.append(
                TrendSeries(item, str(params.get("math", "total")), params.get("property"))
            )
        elif isinstance(item, dict) and isinstance(item.get("event"), str):
            series.append(
                TrendSeries(
                    item["event"],
                    str(item.get("math", "total")),
                    item.get("property"),
                    item.get("filters"),
                )
            )
        else:
            raise APIError("bad_data", "series: each entry is an event name or {event, math, ...}")
    return series


@router.api_route("/api/sr/analytics/trends", methods=["GET", "POST"])
async def trends(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    return await _run(
        _service(request).analytics.trends,
        caller.tenant,
        _trend_series(p),
        interval=str(p.get("interval", "day")),
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
        breakdown=p.get("breakdown"),
    )


@router.api_route("/api/sr/analytics/funnels", methods=["GET", "POST"])
async def funnels(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    steps = []
    for item in _list(p.get("steps") or p.get("events")):
        if isinstance(item, str):
            steps.append(FunnelStep(item))
        elif isinstance(item, dict) and isinstance(item.get("event"), str):
            steps.append(FunnelStep(item["event"], item.get("filters")))
        else:
            raise APIError("bad_data", "steps: each entry is an event name or {event, filters}")
    window = _number(p, "window_seconds", 14 * 86_400)
    if "window_days" in p:
        window = _number(p, "window_days", 14) * 86_400
    return await _run(
        _service(request).analytics.funnel,
        caller.tenant,
        steps,
        order=str(p.get("order", "ordered")),
        window_s=window,
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
        breakdown=p.get("breakdown"),
    )


@router.api_route("/api/sr/analytics/retention", methods=["GET", "POST"])
async def retention(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    target = p.get("target_event") or p.get("event")
    if not isinstance(target, str):
        raise APIError("bad_data", "target_event is required")
    return await _run(
        _service(request).analytics.retention,
        caller.tenant,
        target_event=target,
        returning_event=p.get("returning_event"),
        period=str(p.get("period", "day")),
        periods=int(_number(p, "periods", 7)),
        retention_type=str(p.get("retention_type", "recurring")),
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
    )


@router.api_route("/api/sr/analytics/active-users", methods=["GET", "POST"])
async def active_users(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    windows = _list(p.get("windows")) or ["dau", "wau", "mau"]
    if len(windows) == 1 and "," in str(windows[0]):
        windows = str(windows[0]).split(",")
    return await _run(
        _service(request).analytics.active_users,
        caller.tenant,
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
        event=p.get("event"),
        windows=[str(w) for w in windows],
    )


@router.api_route("/api/sr/analytics/stickiness", methods=["GET", "POST"])
async def stickiness(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    if not isinstance(p.get("event"), str):
        raise APIError("bad_data", "event is required")
    return await _run(
        _service(request).analytics.stickiness,
        caller.tenant,
        event=p["event"],
        interval=str(p.get("interval", "day")),
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
    )


@router.api_route("/api/sr/analytics/revenue", methods=["GET", "POST"])
async def revenue(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    return await _run(
        _service(request).analytics.revenue,
        caller.tenant,
        event=str(p.get("event", "purchase_completed")),
        value=str(p.get("value", "total_value")),
        group_by=str(p.get("group_by", "payment_method")),
        interval=str(p.get("interval", "day")),
        visit_event=p.get("visit_event"),
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
    )


@router.api_route("/api/sr/analytics/top-products", methods=["GET", "POST"])
async def top_products(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    return await _run(
        _service(request).analytics.top_products,
        caller.tenant,
        view_event=str(p.get("view_event", "product_viewed")),
        purchase_event=str(p.get("purchase_event", "purchase_completed")),
        product=str(p.get("product", "product_id")),
        value=str(p.get("value", "total_value")),
        limit=int(_number(p, "limit", 10)),
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
    )


@router.api_route("/api/sr/analytics/sql", methods=["GET", "POST"])
async def sql(request: Request, caller: Caller = Depends(require("read"))) -> Any:
    p = await _params(request)
    query = p.get("query") or p.get("sql")
    if not isinstance(query, str) or not query.strip():
        raise APIError("bad_data", "query is required")
    service = _service(request)
    max_rows = min(
        int(_number(p, "max_rows", service.config.sql_max_rows)), service.config.sql_max_rows
    )
    return await _run(
        service.analytics.sql,
        caller.tenant,
        query,
        max_rows=max(1, max_rows),
        timeout_s=service.config.sql_timeout / 1000,
        date_from=p.get("date_from"),
        date_to=p.get("date_to"),
    )
