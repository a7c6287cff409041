"""Metric ingestion over HTTP: Prometheus remote write (``POST /api/v1/write``)."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse, Response

from signalroom.ingest.remote_write import handle_write
from signalroom.web.deps import Caller, require, runtime_of

router = APIRouter(tags=["metrics ingest"])


@router.post("/api/v1/write", status_code=204)
async def remote_write(request: Request, caller: Caller = Depends(require("write"))) -> Response:
    """Remote write 1.0: a snappy-compressed ``prometheus.WriteRequest``. Answers as Prometheus:
    204 stored, 400 invalid or partly rejected (do not retry), 415 unsupported encoding,
    429 a series limit was reached (retry later), 5xx the store failed (retry)."""
    store = runtime_of(request).metrics
    if store is None:
        return PlainTextResponse("the metric store is not running", status_code=503)
    body = await request.body()
    status, message = await asyncio.to_thread(
        handle_write, store, caller.tenant, body, dict(request.headers)
    )
    if status == 204:
        return Response(status_code=204)
    return PlainTextResponse(message + "\n", status_code=status)
