"""OTLP/gRPC traces: ``opentelemetry.proto.collector.trace.v1.TraceService/Export``.

A plain (thread-pool) gRPC server registered with a generic handler over raw bytes, so the
request is parsed straight into the decoding view of :mod:`signalroom.ingest.otlp_traces` and
no generated stubs are needed. Decoding runs on the gRPC worker threads; the spans are handed
to :meth:`TraceService.ingest` on the service's event loop.

Answers follow the OTLP specification: an undecodable request or one whose every span is
invalid is ``INVALID_ARGUMENT`` (not retryable) with a message naming the problem; a request
with some invalid spans stores the rest and answers OK with ``partial_success`` (rejected
count and the first reason); a failing store is ``UNAVAILABLE`` (retryable). Credentials and
tenant come from the ``authorization`` and ``x-scope-orgid`` metadata, as over HTTP.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from signalroom.auth import Authenticator, AuthError
from signalroom.config import TENANT_PATTERN
from signalroom.ingest.otlp_traces import parse_request, request_to_columns
from signalroom.listen import parse_listen
from signalroom.traces.config import OtlpGrpcConfig
from signalroom.traces.model import SpanBatch, SpanIngestError

__all__ = ["SERVICE_NAME", "OtlpGrpcReceiver"]

log = logging.getLogger(__name__)

SERVICE_NAME = "opentelemetry.proto.collector.trace.v1.TraceService"
_WORKERS = 4
_INGEST_TIMEOUT_S = 60.0
_AUTH_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
}


SpanSink = Callable[[str, SpanBatch], Coroutine[Any, Any, object]]
"""Stores one tenant's decoded spans durably (the trace service's ``ingest``)."""


class OtlpGrpcReceiver:
    """The gRPC listener of a trace service: ``ingest`` stores a tenant's spans;
    ``authenticator`` returns the current token checker (None: every caller allowed, only
    permitted on loopback)."""

    def __init__(
        self,
        ingest: SpanSink,
        config: OtlpGrpcConfig,
        loop: asyncio.AbstractEventLoop,
        authenticator: Callable[[], Authenticator | None] | None = None,
    ) -> None:
        self._ingest = ingest
        self.config = config
        self.port = 0
        self._loop = loop
        self._authenticator = authenticator
        self._server: grpc.Server | None = None

    def start(self) -> None:
        """Bind and serve; raises RuntimeError when the address cannot be bound or would
        expose an unauthenticated receiver."""
        address = parse_listen(self.config.listen)
        checker = self._authenticator() if self._authenticator is not None else None
        if not address.is_loopback and (checker is None or not checker.enabled):
            raise RuntimeError(
                f"traces.otlp_grpc.listen {self.config.listen} is not a loopback address and "
                "no API tokens are configured: configure auth.tokens or listen on 127.0.0.1"
            )
        size = self.config.max_message_size
        server = grpc.server(
            ThreadPoolExecutor(_WORKERS, thread_name_prefix="otlp-grpc"),
            handlers=[
                grpc.method_handlers_generic_handler(
                    SERVICE_NAME, {"Export": grpc.unary_unary_rpc_method_handler(self._export)}
                )
            ],
            options=[
                # Without this a second server could share the port and steal half the calls.
                ("grpc.so_reuseport", 0),
                ("grpc.max_receive_message_length", size),
                ("grpc.max_send_message_length", 4 * 1024**2),
            ],
        )
        try:
            port = server.add_insecure_port(str(address))
        except RuntimeError as exc:
            raise RuntimeError(f"cannot listen on {address} for OTLP/gRPC: {exc}") from None
        if port == 0:  # older grpcio reports a failed bind this way
            raise RuntimeError(f"cannot listen on {address} for OTLP/gRPC")
        server.start()
        self._server, self.port = server, port
        log.info("OTLP/gRPC traces receiver listening on %s:%d", address.host, port)

    def stop(self, grace_s: float = 2.0) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace_s).wait()

    # ------------------------------------------------------------------ the RPC

    def _export(self, body: bytes, context: grpc.ServicerContext) -> bytes:
        tenant = self._tenant(context)
        try:
            request = parse_request(body)
            batch, rejected, reason = request_to_columns(request, partial=True)
        except (DecodeError, SpanIngestError) as exc:
            context.abort(
                grpc.StatusCode.INVALID_ARGUMENT,
                f"invalid OTLP ExportTraceServiceRequest: {exc}",
            )
        if rejected and len(batch) == 0:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"every span was rejected: {reason}")
        if len(batch):
            future = asyncio.run_coroutine_threadsafe(self._ingest(tenant, batch), self._loop)
            try:
                future.result(_INGEST_TIMEOUT_S)
            except (SpanIngestError, ValueError) as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            except Exception as exc:
                future.cancel()
                log.warning("OTLP/gRPC export failed: %s", exc)
                context.abort(grpc.StatusCode.UNAVAILABLE, f"cannot store the spans now: {exc}")
        response = trace_service_pb2.ExportTraceServiceResponse()
        if rejected:
            response.partial_success.rejected_spans = rejected
            response.partial_success.error_message = reason
        answer: bytes = response.SerializeToString()
        return answer

    def _tenant(self, context: grpc.ServicerContext) -> str:
        metadata: dict[str, Any] = {}
        for key, value in context.invocation_metadata():
            metadata[key.lower()] = value
        tenant = str(metadata.get("x-scope-orgid", "")).strip() or "default"
        checker = self._authenticator() if self._authenticator is not None else None
        try:
            if not TENANT_PATTERN.match(tenant):
                raise AuthError(
                    400, f"invalid x-scope-orgid {tenant!r}: use 1-128 of A-Z a-z 0-9 _ . -"
                )
            if checker is not None:
                principal = checker.authenticate(metadata.get("authorization"))
                checker.check(principal, "write", tenant, f"{SERVICE_NAME}/Export")
        except AuthError as exc:
            context.abort(
                _AUTH_CODES.get(exc.status, grpc.StatusCode.PERMISSION_DENIED), exc.message
            )
        return tenant
