"""``POST /api/rum``: web vitals from browsers (see :mod:`signalroom.ingest.rum`).

Browsers call it from other origins, so answers carry CORS headers and ``OPTIONS`` answers the
preflight a JSON ``fetch`` sends (``sendBeacon`` with ``text/plain`` needs none). With API tokens
configured, a page authenticates like PostHog's browser capture: a public key from
``events.api_keys`` as ``?api_key=`` (a beacon cannot send headers), or a bearer token with the
``write`` scope.
"""

from __future__ import annotations

import asyncio
import hmac
import time

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from signalroom.auth import AuthError
from signalroom.ingest.rum import MAX_BODY_BYTES, RumError, RumHistograms, parse_reports
from signalroom.web.deps import runtime_of, tenant_of

__all__ = ["router"]

router = APIRouter(tags=["real-user monitoring"])

_CORS_HEADERS = {
    "Access-Control-Allow-Methods": "POST, OPTIONS",
    "Access-Control-Allow-Headers": "Content-Type, Authorization, X-Scope-OrgID",
    "Access-Control-Max-Age": "86400",
}


def _cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    return {"Access-Control-Allow-Origin": origin or "*", "Vary": "Origin", **_CORS_HEADERS}


def _error(request: Request, status: int, message: str) -> JSONResponse:
    body = {"status": "error", "errorType": "bad_data", "error": message}
    return JSONResponse(body, status_code=status, headers=_cors(request))


def _tenant(request: Request) -> str:
    """The tenant to count for; raises AuthError."""
    runtime = runtime_of(request)
    authenticator = runtime.authenticator
    tenant = tenant_of(request)
    if not authenticator.enabled:
        return tenant
    header = request.headers.get("authorization")
    key = request.query_params.get("api_key")
    if not header and key:
        if any(hmac.compare_digest(k, key) for k in runtime.config.events.api_keys):
            return "default"
        header = f"Bearer {key}"
    principal = authenticator.authenticate(header)
    authenticator.check(principal, "write", tenant, f"{request.method} {request.url.path}")
    return tenant


class _State:
    """The histograms of one application, and a lock so each series' samples are appended in
    time order."""

    def __init__(self) -> None:
        self.histograms = RumHistograms()
        self.lock = asyncio.Lock()
        self.last_ms = 0

    def stamp(self) -> int:
        """Now in ms, after the previous stamp: two requests never write one series twice at
        the same timestamp."""
        self.last_ms = max(int(time.time() * 1000), self.last_ms + 1)
        return self.last_ms


def _state(request: Request) -> _State:
    state: _State | None = getattr(request.app.state, "rum", None)
    if state is None:
        state = request.app.state.rum = _State()
    return state


@router.options("/api/rum", include_in_schema=False)
async def rum_preflight(request: Request) -> Response:
    return Response(status_code=204, headers=_cors(request))


@router.post("/api/rum")
async def rum(request: Request) -> Response:
    """Web-vitals reports (one object or a list, JSON or a ``text/plain`` beacon). 204 when
    counted; 400 naming the bad report and field; 413 above 64 KiB; 401/403 without a key."""
    try:
        tenant = _tenant(request)
    except AuthError as exc:
        return _error(request, exc.status, exc.message)
    length = request.headers.get("content-length")
    if length is not None and length.isdigit() and int(length) > MAX_BODY_BYTES:
        return _error(request, 413, f"body exceeds {MAX_BODY_BYTES} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_BODY_BYTES:
            return _error(request, 413, f"body exceeds {MAX_BODY_BYTES} bytes")
    try:
        reports = parse_reports(bytes(body))
    except RumError as exc:
        return _error(request, exc.status, str(exc))
    store = runtime_of(request).metrics
    if store is None:
        return _error(request, 503, "the metric store is not running")
    state = _state(request)
    async with state.lock:
        batch, _counted = state.histograms.observe(tenant, reports, state.stamp())
        if batch is not None:
            store.add_metadata(tenant, state.histograms.metadata())
            result = await store.append_async(tenant, batch)
            if not result.ok:
                status = 429 if any(e.retryable for e in result.errors) else 400
                return _error(request, status, result.summary())
    return Response(status_code=204, headers=_cors(request))
