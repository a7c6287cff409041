"""Pushed metrics over HTTP: OTLP/HTTP (``POST /v1/metrics``) and a Pushgateway-compatible
push API (``PUT|POST|DELETE /metrics/job/<job>{/<label>/<value>}``, ``GET /api/v1/metrics``).

``GET /metrics`` stays signalroom's own metrics; only the ``/metrics/job...`` paths are here.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from signalroom.ingest.otlp_metrics import handle_otlp_metrics
from signalroom.ingest.pushgateway import PushError, PushgatewayService, parse_grouping_key
from signalroom.web.deps import Caller, require, runtime_of

__all__ = ["pushgateway_of", "router"]

router = APIRouter(tags=["metrics push"])


@router.post("/v1/metrics")
async def otlp_metrics(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """OTLP/HTTP metrics, protobuf or JSON (gzip allowed). 200 with an
    ``ExportMetricsServiceResponse`` (``partial_success`` when the store rejected samples);
    400 malformed, or delta/exponential-histogram points (the rest is stored); 415; 429; 5xx."""
    store = runtime_of(request).metrics
    if store is None:
        return PlainTextResponse("the metric store is not running", status_code=503)
    body = await request.body()
    status, payload, media = await asyncio.to_thread(
        handle_otlp_metrics, store, caller.tenant, body, dict(request.headers)
    )
    return Response(payload, status_code=status, media_type=media)


async def pushgateway_of(request: Request) -> PushgatewayService | None:
    """The runtime's Pushgateway service (None while the metric store is not running)."""
    service: PushgatewayService | None = runtime_of(request).pushgateway
    return service


def _unavailable() -> Response:
    return PlainTextResponse("the metric store is not running", status_code=503)


async def _push(request: Request, tenant: str, job: str, labels: str, *, base64: bool,
                replace: bool) -> Response:  # fmt: skip
    service = await pushgateway_of(request)
    if service is None:
        return _unavailable()
    content_type = request.headers.get("content-type", "")
    if "application/vnd.google.protobuf" in content_type.lower():
        return PlainTextResponse(
            "protobuf-delimited pushes are not supported: push the text exposition format\n",
            status_code=415,
        )
    try:
        grouping = parse_grouping_key(job, labels, job_base64=base64)
        body = await request.body()
        await asyncio.to_thread(service.push, tenant, grouping, body, replace=replace)
    except PushError as exc:
        return PlainTextResponse(f"{exc}\n", status_code=exc.status)
    return Response(status_code=200)


async def _delete(
    request: Request, tenant: str, job: str, labels: str, *, base64: bool
) -> Response:
    service = await pushgateway_of(request)
    if service is None:
        return _unavailable()
    try:
        grouping = parse_grouping_key(job, labels, job_base64=base64)
        await asyncio.to_thread(service.delete, tenant, grouping)
    except PushError as exc:
        return PlainTextResponse(f"{exc}\n", status_code=exc.status)
    return Response(status_code=202)


# Pushgateway answers 200 to a checked push and 202 to a delete.
for _prefix, _b64 in (("/metrics/job", False), ("/metrics/job@base64", True)):

    def _routes(prefix: str, b64: bool) -> None:
        for path in (f"{prefix}/{{job}}", f"{prefix}/{{job}}/{{labels:path}}"):

            @router.put(path, include_in_schema=not b64 and "labels" in path)
            async def put_group(
                request: Request,
                job: str,
                labels: str = "",
                caller: Caller = Depends(require("write")),
            ) -> Response:
                """Replace the whole group with the pushed text-format metrics."""
                return await _push(request, caller.tenant, job, labels, base64=b64, replace=True)

            @router.post(path, include_in_schema=not b64 and "labels" in path)
            async def post_group(
                request: Request,
                job: str,
                labels: str = "",
                caller: Caller = Depends(require("write")),
            ) -> Response:
                """Replace only the metric families the body carries."""
                return await _push(request, caller.tenant, job, labels, base64=b64, replace=False)

            @router.delete(path, include_in_schema=not b64 and "labels" in path)
            async def delete_group(
                request: Request,
                job: str,
                labels: str = "",
                caller: Caller = Depends(require("write")),
            ) -> Response:
                """Delete the group; its series go stale."""
                return await _delete(request, caller.tenant, job, labels, base64=b64)

    _routes(_prefix, _b64)


@router.get("/api/v1/metrics")
async def list_groups(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Pushgateway's listing of the pushed groups and their metric families."""
    service = await pushgateway_of(request)
    if service is None:
        return _unavailable()
    listing = await asyncio.to_thread(service.listing, caller.tenant)
    return JSONResponse(listing)
