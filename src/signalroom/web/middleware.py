"""ASGI middleware: request ids, access logs and self-metrics; request body size limits.

Both are plain ASGI (not Starlette's BaseHTTPMiddleware) so they add little to every request
and never buffer a body.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Callable
from typing import Any

from prometheus_client import Counter, Histogram
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from signalroom.log import request_id_var, tenant_var

access_log = logging.getLogger("signalroom.http")

HTTP_REQUESTS = Counter(
    "signalroom_http_requests_total",
    "HTTP requests served, by route, method and status code.",
    ["handler", "method", "code"],
)
HTTP_DURATION = Histogram(
    "signalroom_http_request_duration_seconds",
    "Time to serve HTTP requests, by route and method.",
    ["handler", "method"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60),
)
HTTP_REJECTED_BODIES = Counter(
    "signalroom_http_request_body_rejected_total",
    "Requests refused because their body exceeded limits.max_request_body.",
)

# The labelled children, found without prometheus_client's lock and argument checks; the
# keys are route templates, methods and codes, so these stay small.
_counters: dict[tuple[str, str, int], Any] = {}
_histograms: dict[tuple[str, str], Any] = {}

_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Probes and self-scrapes would drown the access log at info level.
_QUIET_PATHS = frozenset({"/-/healthy", "/-/ready", "/metrics"})


class RequestContextMiddleware:
    """Gives each request an id (``X-Request-ID`` if the client sent a sane one), logs it,
    and records its count and latency by route template, so paths with ids do not explode
    the metric's cardinality."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        offered = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID_RE.match(offered) else os.urandom(8).hex()
        id_token = request_id_var.set(request_id)
        tenant_token = tenant_var.set(None)
        status = 500
        started = time.perf_counter()

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = scope.get("route")
            handler = getattr(route, "path", None) or "other"
            method = scope["method"]
            counter = _counters.get((handler, method, status))
            if counter is None:
                counter = _counters[(handler, method, status)] = HTTP_REQUESTS.labels(
                    handler, method, str(status)
                )
            counter.inc()
            histogram = _histograms.get((handler, method))
            if histogram is None:
                histogram = _histograms[(handler, method)] = HTTP_DURATION.labels(handler, method)
            histogram.observe(elapsed)
            path = scope["path"]
            level = logging.DEBUG if path in _QUIET_PATHS and status < 400 else logging.INFO
            if access_log.isEnabledFor(level):
                access_log.log(
                    level,
                    f"{method} {path} {status}",
                    extra={
                        "method": method,
                        "path": path,
                        "status": status,
                        "duration_ms": round(elapsed * 1000, 3),
                        "client": (scope.get("client") or ("", 0))[0],
                    },
                )
            request_id_var.reset(id_token)
            tenant_var.reset(tenant_token)


class BodyTooLarge(HTTPException):
    """Raised from ``receive`` when a streamed body passes the limit; the app's exception
    handling turns it into a 413 like any other HTTP error."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, _too_large_message(limit, None))


class BodyLimitMiddleware:
    """Answers 413 to bodies over the limit: at once from Content-Length, or as soon as a
    streamed (chunked) body passes it. The limit is read per request so reloads apply."""

    def __init__(self, app: ASGIApp, limit: Callable[[], int]) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = self.limit()
        for name, value in scope["headers"]:
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    await _send_error(send, 400, "bad_data", "invalid Content-Length header")
                    return
                if declared > limit:
                    HTTP_REJECTED_BODIES.inc()
                    await _send_too_large(send, limit, declared)
                    return
        received = 0
        response_started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:
            HTTP_REJECTED_BODIES.inc()
            if not response_started:
                await _send_too_large(send, limit, None)


def _too_large_message(limit: int, declared: int | None) -> str:
    size = f"{declared} bytes" if declared is not None else "more"
    return (
        f"request body of {size} exceeds limits.max_request_body ({limit} bytes); "
        "send smaller batches or raise the limit in the configuration"
    )


async def _send_too_large(send: Send, limit: int, declared: int | None) -> None:
    await _send_error(send, 413, "payload_too_large", _too_large_message(limit, declared))


async def _send_error(send: Send, status: int, error_type: str, message: str) -> None:
    body = json.dumps({"status": "error", "errorType": error_type, "error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
