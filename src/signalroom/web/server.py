"""The HTTP server: one FastAPI application on uvicorn serving every API of signalroom."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import signal
import time
from collections.abc import AsyncIterator
from typing import Any

import uvicorn
from fastapi import Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import REGISTRY, Gauge
from prometheus_client.exposition import choose_encoder
from starlette.exceptions import HTTPException as StarletteHTTPException

import signalroom
from signalroom.app import Signalroom
from signalroom.auth import AuthError
from signalroom.web import (
    alertmanager_api,
    escalation_api,
    events_api,
    inbox,
    logs_api,
    metrics_ingest,
    metrics_push,
    prometheus_api,
    rum_api,
    traces_api,
    ui,
)
from signalroom.web.deps import Caller, require, runtime_of
from signalroom.web.middleware import BodyLimitMiddleware, RequestContextMiddleware

log = logging.getLogger("signalroom.web")

ERROR_TYPES = {
    400: "bad_data",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "bad_data",
    413: "payload_too_large",
    422: "execution",
    429: "limit_exceeded",
    499: "canceled",
    500: "internal",
    503: "unavailable",
}

BUILD_INFO = Gauge(
    "signalroom_build_info",
    "A metric with a constant 1 labelled by signalroom's version.",
    ["version"],
)
BUILD_INFO.labels(signalroom.__version__).set(1)
CONFIG_RELOAD_SUCCESS = Gauge(
    "signalroom_config_last_reload_successful", "Whether the last configuration reload succeeded."
)
CONFIG_RELOAD_TIME = Gauge(
    "signalroom_config_last_reload_success_timestamp_seconds", "Time of the last successful reload."
)


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> JSONResponse:
    """Errors in the Prometheus API envelope, so every client parses them the same way."""
    body = {"status": "error", "errorType": ERROR_TYPES.get(status, "internal"), "error": message}
    return JSONResponse(body, status_code=status, headers=headers)


def create_http_app(runtime: Signalroom) -> FastAPI:
    """Build the ASGI application around a (not yet started) ``Signalroom``."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await runtime.start()
        _record_reload(runtime)
        loop = asyncio.get_running_loop()
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGHUP, lambda: asyncio.ensure_future(_reload(runtime)))
        try:
            yield
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGHUP)
            await runtime.stop()

    app = FastAPI(
        title="signalroom",
        version=signalroom.__version__,
        description="Metrics, alerting, logs, traces, events and business KPIs in one program.",
        lifespan=lifespan,
    )
    app.state.runtime = runtime
    app.add_middleware(BodyLimitMiddleware, limit=lambda: runtime.config.limits.max_request_body)
    app.add_middleware(RequestContextMiddleware)
    _install_error_handlers(app)
    _add_lifecycle_routes(app)
    app.include_router(prometheus_api.router)
    app.include_router(metrics_ingest.router)
    app.include_router(metrics_push.router)
    app.include_router(logs_api.router)
    app.include_router(alertmanager_api.router)
    app.include_router(escalation_api.router)
    app.include_router(traces_api.router)
    app.include_router(events_api.router)
    app.include_router(inbox.router)
    app.include_router(rum_api.router)
    app.include_router(ui.router)  # last: its page routes must not shadow an API
    return app


async def _reload(runtime: Signalroom) -> Any:
    result = await runtime.reload()
    _record_reload(runtime)
    return result


def _record_reload(runtime: Signalroom) -> None:
    CONFIG_RELOAD_SUCCESS.set(1 if runtime.last_reload_ok else 0)
    if runtime.last_reload_ok:
        CONFIG_RELOAD_TIME.set(runtime.last_reload_at)


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(AuthError)
    async def auth_error(request: Request, exc: AuthError) -> JSONResponse:
        headers = {"WWW-Authenticate": 'Bearer realm="signalroom"'} if exc.status == 401 else None
        return error_response(exc.status, exc.message, headers)

    @app.exception_handler(prometheus_api.APIError)
    async def api_error(request: Request, exc: prometheus_api.APIError) -> JSONResponse:
        return prometheus_api.failure(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail), getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = []
        for error in exc.errors():
            where = ".".join(str(p) for p in error.get("loc", ()))
            problems.append(f"{where}: {error.get('msg')}")
        return error_response(400, "invalid request: " + "; ".join(problems))

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"path": request.url.path})
        return error_response(500, f"internal error ({type(exc).__name__}); see the server log")


def _add_lifecycle_routes(app: FastAPI) -> None:
    @app.get("/-/healthy", response_class=PlainTextResponse, tags=["lifecycle"])
    async def healthy() -> str:
        """Liveness: the process serves HTTP. Needs no token."""
        return "signalroom is Healthy.\n"

    @app.get("/-/ready", response_class=PlainTextResponse, tags=["lifecycle"])
    async def ready(request: Request) -> Response:
        """Readiness: storage is open and the server takes traffic. Needs no token."""
        if runtime_of(request).ready:
            return PlainTextResponse("signalroom is Ready.\n")
        return PlainTextResponse("Service Unavailable", status_code=503)

    @app.api_route("/-/reload", methods=["POST", "PUT"], tags=["lifecycle"])
    async def reload(request: Request, caller: Caller = Depends(require("admin"))) -> Response:
        """Re-read the configuration file. An invalid file keeps the running configuration
        and answers 400 with every problem, each naming file and line."""
        result = await _reload(runtime_of(request))
        if not result.ok:
            return error_response(400, result.message)
        return JSONResponse(
            {
                "status": "success",
                "data": {"message": result.message, "restartNeeded": result.restart_needed},
            }
        )

    @app.get("/metrics", tags=["lifecycle"])
    async def metrics(request: Request, caller: Caller = Depends(require("read"))) -> Response:
        """signalroom's own metrics in the Prometheus exposition format (OpenMetrics on request)."""
        encoder, content_type = choose_encoder(request.headers.get("accept", ""))
        return Response(encoder(REGISTRY), media_type=content_type)

    @app.get("/api/sr/status", tags=["status"])
    async def status(request: Request, caller: Caller = Depends(require("read"))) -> dict[str, Any]:
        """What is running: version, uptime, configuration digest, storage."""
        runtime = runtime_of(request)
        stores: dict[str, Any] = {}
        if runtime.metrics is not None:
            stores["metrics"] = {
                "headSeries": runtime.metrics.stats(caller.tenant)["headStats"]["numSeries"]
            }
        if runtime.logs is not None:
            stores["logs"] = dataclasses.asdict(runtime.logs.store.stats())
        return {
            "status": "success",
            "data": {
                "version": signalroom.__version__,
                "startedAt": runtime.started_at,
                "uptimeSeconds": round(time.time() - runtime.started_at, 3),
                "ready": runtime.ready,
                "configDigest": runtime.config.digest(),
                "configFile": str(runtime.config_path) if runtime.config_path else None,
                "lastReloadSuccessful": runtime.last_reload_ok,
                "dataDir": str(runtime.data_dir),
                "authEnabled": runtime.authenticator.enabled,
                "tenant": caller.tenant,
                "stores": stores,
            },
        }


def serve(runtime: Signalroom) -> None:
    """Run the server until SIGINT/SIGTERM, then shut down gracefully, flushing storage."""
    app = create_http_app(runtime)
    config = uvicorn.Config(
        app,
        host=runtime.listen.host,
        port=runtime.listen.port,
        log_config=None,
        access_log=False,
        server_header=False,
        timeout_graceful_shutdown=max(1, runtime.config.server.shutdown_timeout // 1000),
        lifespan="on",
    )
    uvicorn.Server(config).run()
