"""OTLP/gRPC traces: the OpenTelemetry SDK's gRPC exporter sending to the real application,
the trace found through the Jaeger API; status codes for bad input, partial success, tokens
and tenants on the gRPC metadata, the off switch."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from signalroom.app import Signalroom
from signalroom.auth import Authenticator, hash_token
from signalroom.config import AuthConfig, parse_config
from signalroom.traces.config import TracesConfig
from signalroom.traces.otlp_grpc import SERVICE_NAME
from signalroom.traces.query import get_trace
from signalroom.traces.service import TraceService
from signalroom.web.server import create_http_app
from tests.support.server import free_port

pytestmark = pytest.mark.integration

EXPORT = f"/{SERVICE_NAME}/Export"
TRACE_ID = bytes.fromhex("5b8efff798038103d269b633813fc60c")


@pytest.fixture
def app(tmp_path: Path) -> Iterator[tuple[int, TestClient]]:
    port = free_port()
    config = (
        "server: {self_scrape: false}\nstorage: {wal: {fsync: never}}\n"
        f"traces: {{otlp_grpc: {{listen: '127.0.0.1:{port}'}}}}\n"
    )
    runtime = Signalroom(parse_config(config), data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as client:
        yield port, client


def export(port: int, body: bytes, metadata: Any = None) -> bytes:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        call = channel.unary_unary(EXPORT)
        response: bytes = bytes(call(body, timeout=10, metadata=metadata))
        return response


def request(spans: list[dict[str, Any]], service: str = "checkout") -> bytes:
    message = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = message.resource_spans.add()
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", service
    scope_spans = resource_spans.scope_spans.add()
    now = time.time_ns()
    for fields in spans:
        span = scope_spans.spans.add()
        span.trace_id = fields.get("trace_id", TRACE_ID)
        span.span_id = fields["span_id"]
        span.name = fields.get("name", "GET /cart")
        span.start_time_unix_nano = fields.get("start", now)
        span.end_time_unix_nano = now + 10**6
    body: bytes = message.SerializeToString()
    return body


def test_opentelemetry_sdk_grpc_exporter_and_jaeger_finds_the_trace(
    app: tuple[int, TestClient],
) -> None:
    port, client = app
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export import SpanExportResult as Result
    from opentelemetry.trace import SpanKind

    exporter = OTLPSpanExporter(endpoint=f"127.0.0.1:{port}", insecure=True)
    results: list[Result] = []
    export_once = exporter.export

    def export_and_note(spans: Any) -> Result:
        results.append(export_once(spans))
        return results[-1]

    exporter.export = export_and_note  # type: ignore[method-assign]
    provider = TracerProvider(resource=Resource.create({"service.name": "payments"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.tests")
    with tracer.start_as_current_span("charge", kind=SpanKind.SERVER) as root:
        root.set_attribute("payment.amount", 12.5)
        with tracer.start_as_current_span("POST /psp", kind=SpanKind.CLIENT) as child:
            child.set_attribute("http.status_code", 201)
    provider.shutdown()
    assert results == [Result.SUCCESS, Result.SUCCESS]
    trace_id = format(root.get_span_context().trace_id, "032x")

    response = client.get(f"/api/traces/{trace_id}")
    assert response.status_code == 200, response.text
    [trace] = response.json()["data"]
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {"charge", "POST /psp"}
    assert spans["POST /psp"]["references"][0]["spanID"] == spans["charge"]["spanID"]
    tags = {t["key"]: t for t in spans["charge"]["tags"]}
    assert tags["payment.amount"] == {"key": "payment.amount", "type": "float64", "value": 12.5}
    assert trace["processes"][spans["charge"]["processID"]]["serviceName"] == "payments"
    assert client.get("/api/services").json()["data"] == ["payments"]
    metrics = client.get("/metrics").text
    assert 'signalroom_traces_spans_received_total{receiver="otlp_grpc"} 2.0' in metrics


def test_malformed_request_is_invalid_argument(app: tuple[int, TestClient]) -> None:
    port, _ = app
    with pytest.raises(grpc.RpcError) as caught:
        export(port, b"\x0a\xff\xff\xff\x0fnot protobuf")
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "invalid OTLP ExportTraceServiceRequest" in caught.value.details()

    # every span invalid: nothing to accept, so the request is rejected whole
    with pytest.raises(grpc.RpcError) as caught:
        export(port, request([{"span_id": b"\x01" * 8, "trace_id": b"\x00" * 16}]))
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "resourceSpans[0].scopeSpans[0].spans[0].traceId" in caught.value.details()

    # a bad tenant id in the metadata
    with pytest.raises(grpc.RpcError) as caught:
        export(port, request([{"span_id": b"\x01" * 8}]), metadata=[("x-scope-orgid", "../x")])
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_partial_success_keeps_the_valid_spans(app: tuple[int, TestClient]) -> None:
    port, client = app
    body = request(
        [
            {"span_id": b"\x01" * 8, "name": "kept"},
            {"span_id": b"\x02" * 3, "name": "short id"},
            {"span_id": b"\x03" * 8, "name": "no start", "start": 0},
        ]
    )
    response = trace_service_pb2.ExportTraceServiceResponse.FromString(export(port, body))
    assert response.partial_success.rejected_spans == 2
    assert response.partial_success.error_message == (
        "resourceSpans[0].scopeSpans[0].spans[1].spanId: expected 8 non-zero bytes, got 3 bytes"
    )
    [trace] = client.get(f"/api/traces/{TRACE_ID.hex()}").json()["data"]
    assert [s["operationName"] for s in trace["spans"]] == ["kept"]

    # fully accepted: partial_success stays unset, as OTLP requires
    full = trace_service_pb2.ExportTraceServiceResponse.FromString(
        export(port, request([{"span_id": b"\x04" * 8}]))
    )
    assert not full.HasField("partial_success")


def test_tokens_and_tenants_on_grpc_metadata(tmp_path: Path) -> None:
    token, scopes = "sr_test-token", ["write"]
    auth = Authenticator(
        AuthConfig.model_validate(
            {
                "tokens": [
                    {
                        "name": "shop",
                        "sha256": hash_token(token),
                        "scopes": scopes,
                        "tenants": ["shop"],
                    }
                ]
            }
        )
    )
    port = free_port()
    config = TracesConfig.model_validate({"otlp_grpc": {"listen": f"127.0.0.1:{port}"}})

    async def scenario() -> None:
        service = TraceService(config, tmp_path, wal_fsync="never", authenticator=lambda: auth)
        await service.start()
        try:
            body = request([{"span_id": b"\x01" * 8}])
            calls = {
                "none": None,
                "wrong": [("authorization", "Bearer nope")],
                "other tenant": [("authorization", f"Bearer {token}"), ("x-scope-orgid", "x")],
                "ok": [("authorization", f"Bearer {token}"), ("x-scope-orgid", "shop")],
            }
            codes = {}
            for name, metadata in calls.items():
                try:
                    await asyncio.to_thread(export, port, body, metadata)
                    codes[name] = grpc.StatusCode.OK
                except grpc.RpcError as exc:
                    codes[name] = exc.code()
            assert codes == {
                "none": grpc.StatusCode.UNAUTHENTICATED,
                "wrong": grpc.StatusCode.UNAUTHENTICATED,
                "other tenant": grpc.StatusCode.PERMISSION_DENIED,
                "ok": grpc.StatusCode.OK,
            }
            assert get_trace(service.store, "shop", TRACE_ID.hex()) is not None
            assert get_trace(service.store, "default", TRACE_ID.hex()) is None
        finally:
            await service.stop()

    asyncio.run(scenario())


def test_off_switch_and_exposure_guard(tmp_path: Path) -> None:
    async def started(settings: dict[str, Any]) -> Any:
        config = TracesConfig.model_validate({"otlp_grpc": settings})
        service = TraceService(config, tmp_path / str(len(settings)), wal_fsync="never")
        await service.start()
        receiver = service.grpc
        await service.stop()
        return receiver

    port = free_port()
    assert asyncio.run(started({"enabled": False, "listen": f"127.0.0.1:{port}"})) is None
    # all interfaces without API tokens: refused, the rest of the service still runs
    assert asyncio.run(started({"listen": f"0.0.0.0:{port}"})) is None
    assert asyncio.run(started({"listen": f"127.0.0.1:{port}", "max_message_size": "1MiB"}))


def test_reload_moves_the_listener(tmp_path: Path) -> None:
    first, second = free_port(), free_port()

    async def scenario() -> None:
        config = TracesConfig.model_validate({"otlp_grpc": {"listen": f"127.0.0.1:{first}"}})
        service = TraceService(config, tmp_path, wal_fsync="never")
        await service.start()
        try:
            assert service.grpc is not None and service.grpc.port == first
            service.apply_config(
                TracesConfig.model_validate({"otlp_grpc": {"listen": f"127.0.0.1:{second}"}})
            )
            for _ in range(100):
                if service.grpc is not None and service.grpc.port == second:
                    break
                await asyncio.sleep(0.05)
            await asyncio.to_thread(export, second, request([{"span_id": b"\x01" * 8}]))
            with pytest.raises(grpc.RpcError) as caught:
                await asyncio.to_thread(export, first, request([{"span_id": b"\x02" * 8}]))
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        finally:
            await service.stop()

    asyncio.run(scenario())
