"""The trace HTTP APIs on the real application: the OpenTelemetry SDK exporting over
OTLP/HTTP, OTLP/JSON, Zipkin v2, the Jaeger query API, critical path, trace to logs, 400s."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signalroom.app import Signalroom
from signalroom.config import parse_config
from signalroom.web.server import create_http_app

pytestmark = pytest.mark.integration

NOW_US = time.time_ns() // 1000


CONFIG = "server: {self_scrape: false}\nstorage: {wal: {fsync: never}}\n"


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    runtime = Signalroom(parse_config(CONFIG), data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as test_client:
        yield test_client


def jaeger(client: TestClient, path: str, **params: Any) -> Any:
    response = client.get(path, params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["errors"] is None
    return body["data"]


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, TestClient]]:
    """The application on a real socket (uvicorn in a thread), for clients that bring their
    own HTTP stack, plus a TestClient-like reader over the same server."""
    import asyncio
    import threading

    import httpx
    import uvicorn

    from tests.support.server import free_port

    runtime = Signalroom(parse_config(CONFIG), data_dir=tmp_path)
    app = create_http_app(runtime)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    ready = threading.Event()
    stop = threading.Event()

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.should_exit = True
        await task

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as reader:
        try:
            yield url, reader  # type: ignore[misc]
        finally:
            stop.set()
            thread.join(30)


def test_opentelemetry_sdk_exports_and_jaeger_finds_the_trace(
    served: tuple[str, TestClient],
) -> None:
    url, client = served
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.trace import SpanKind, Status, StatusCode

    exporter = OTLPSpanExporter(endpoint=f"{url}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": "checkout"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.tests")
    with tracer.start_as_current_span("POST /orders", kind=SpanKind.SERVER) as root:
        root.set_attribute("http.status_code", 500)
        root.set_attribute("customer.tier", "gold")
        with tracer.start_as_current_span("SELECT orders", kind=SpanKind.CLIENT) as child:
            child.add_event("retry", {"attempt": 2})
            child.set_status(Status(StatusCode.ERROR, "deadlock"))
    provider.shutdown()
    trace_id = format(root.get_span_context().trace_id, "032x")

    assert jaeger(client, "/api/services") == ["checkout"]
    assert jaeger(client, "/api/services/checkout/operations") == ["POST /orders", "SELECT orders"]
    [trace] = jaeger(client, f"/api/traces/{trace_id}")
    assert trace["traceID"] == trace_id
    spans = {s["operationName"]: s for s in trace["spans"]}
    assert set(spans) == {"POST /orders", "SELECT orders"}
    child_span = spans["SELECT orders"]
    assert child_span["references"] == [
        {"refType": "CHILD_OF", "traceID": trace_id, "spanID": spans["POST /orders"]["spanID"]}
    ]
    tags = {t["key"]: t for t in child_span["tags"]}
    assert tags["error"] == {"key": "error", "type": "bool", "value": True}
    assert tags["otel.status_description"]["value"] == "deadlock"
    assert tags["span.kind"]["value"] == "client"
    assert child_span["logs"][0]["fields"][0] == {
        "key": "event",
        "type": "string",
        "value": "retry",
    }
    root_tags = {t["key"]: t for t in spans["POST /orders"]["tags"]}
    assert root_tags["http.status_code"] == {
        "key": "http.status_code",
        "type": "int64",
        "value": 500,
    }
    process = trace["processes"][child_span["processID"]]
    assert process["serviceName"] == "checkout"

    # search: by tag (typed int matched as text), by error, by duration, none for a miss
    found = jaeger(client, "/api/traces", service="checkout", tags='{"http.status_code":"500"}')
    assert [t["traceID"] for t in found] == [trace_id]
    found = jaeger(client, "/api/traces", service="checkout", tags="customer.tier=gold")
    assert [t["traceID"] for t in found] == [trace_id]
    # every tag must hold on one span: the error is on the child, the tier on the root
    assert (
        jaeger(client, "/api/traces", service="checkout", tags="customer.tier=gold error=true")
        == []
    )
    found = jaeger(client, "/api/traces", service="checkout", tags="error=true")
    assert [t["traceID"] for t in found] == [trace_id]
    assert jaeger(client, "/api/traces", service="checkout", tags="customer.tier=silver") == []
    assert jaeger(client, "/api/traces", service="checkout", minDuration="1h") == []
    found = jaeger(client, "/api/traces", service="checkout", operation="SELECT orders",
                   lookback="2h", limit="5")  # fmt: skip
    assert len(found) == 1 and len(found[0]["spans"]) == 2  # the whole trace comes back

    path = client.get(f"/api/sr/traces/{trace_id}/critical-path").json()["data"]
    assert path["segments"][0]["span_id"] == spans["POST /orders"]["spanID"]
    assert {s["spanID"] for s in path["spans"]} == {s["spanID"] for s in spans.values()}


def test_otlp_json_with_hex_ids_and_dependencies(client: TestClient) -> None:
    trace_id = "5b8efff798038103d269b633813fc60c"
    start = NOW_US * 1000

    def span(service_span: str, parent: str | None, name: str, offset_ms: int, ms: int) -> Any:
        out = {"traceId": trace_id, "spanId": service_span, "name": name, "kind": 2,
               "startTimeUnixNano": str(start + offset_ms * 10**6),
               "endTimeUnixNano": str(start + (offset_ms + ms) * 10**6),
               "attributes": [{"key": "route", "value": {"stringValue": name}}]}  # fmt: skip
        if parent:
            out["parentSpanId"] = parent
        return out

    def resource(service: str, spans: list[Any]) -> Any:
        return {
            "resource": {
                "attributes": [{"key": "service.name", "value": {"stringValue": service}}]
            },
            "scopeSpans": [{"scope": {"name": "manual"}, "spans": spans}],
        }

    body = {
        "resourceSpans": [
            resource("frontend", [span("eee19b7ec3c1b174", None, "GET /", 0, 100)]),
            resource("orders", [span("eee19b7ec3c1b175", "eee19b7ec3c1b174", "list", 10, 50)]),
            resource("db", [span("eee19b7ec3c1b176", "eee19b7ec3c1b175", "query", 20, 30)]),
        ]
    }
    response = client.post("/v1/traces", content=json.dumps(body),
                           headers={"content-type": "application/json"})  # fmt: skip
    assert response.status_code == 200, response.text
    assert response.json() == {}
    [trace] = jaeger(client, f"/api/traces/{trace_id.upper()}")
    assert sorted(s["spanID"] for s in trace["spans"]) == [
        "eee19b7ec3c1b174", "eee19b7ec3c1b175", "eee19b7ec3c1b176"
    ]  # fmt: skip
    deps = jaeger(client, "/api/dependencies", endTs=str(NOW_US // 1000 + 60_000),
                  lookback=str(3_600_000))  # fmt: skip
    assert deps == [
        {"parent": "frontend", "child": "orders", "callCount": 1},
        {"parent": "orders", "child": "db", "callCount": 1},
    ]
    path = client.get(f"/api/sr/traces/{trace_id}/critical-path").json()["data"]
    assert [(s["service"], (s["end_ns"] - s["start_ns"]) // 10**6) for s in path["segments"]] == [
        ("frontend", 10), ("orders", 10), ("db", 30), ("orders", 10), ("frontend", 40)
    ]  # fmt: skip
    assert path["durationNs"] == 100 * 10**6

    # trace -> logs: a log line carrying the trace id is found through it
    log_line = {"streams": [{"stream": {"service": "orders"},
                             "values": [[str(start), f"listing orders trace_id={trace_id}"]]}]}  # fmt: skip  # noqa: E501
    assert client.post("/loki/api/v1/push", json=log_line).status_code == 204
    logs = client.get(f"/api/sr/traces/{trace_id}/logs").json()["data"]
    assert [row["line"] for row in logs] == [f"listing orders trace_id={trace_id}"]
    # ... and one carrying it as Loki structured metadata (upper case, as some clients send it)
    tagged = {"streams": [{"stream": {"service": "orders"},
                           "values": [[str(start + 1), "order stored", {"trace_id": trace_id.upper()}]]}]}  # fmt: skip  # noqa: E501
    assert client.post("/loki/api/v1/push", json=tagged).status_code == 204
    logs = client.get(f"/api/sr/traces/{trace_id}/logs").json()["data"]
    assert sorted(row["line"] for row in logs) == [
        f"listing orders trace_id={trace_id}",
        "order stored",
    ]
    # ... and still once the lines are in segment files (stored as templates + variables)
    runtime = client.app.state.runtime  # type: ignore[attr-defined]
    runtime.logs.store.table.flush()
    assert runtime.logs.store.table.snapshot("default").files
    logs = client.get(f"/api/sr/traces/{trace_id}/logs").json()["data"]
    assert sorted(row["line"] for row in logs) == [
        f"listing orders trace_id={trace_id}",
        "order stored",
    ]


def test_zipkin_v2_sample(client: TestClient) -> None:
    ts = NOW_US
    sample = [
        {"traceId": "463ac35c9f6413ad", "id": "463ac35c9f6413ad", "name": "get /api",
         "kind": "SERVER", "timestamp": ts, "duration": 207000,
         "localEndpoint": {"serviceName": "frontend", "ipv4": "192.168.99.1"},
         "tags": {"http.method": "GET", "http.path": "/api"}},
        {"traceId": "463ac35c9f6413ad", "parentId": "463ac35c9f6413ad", "id": "72485a3953bb6124",
         "name": "get", "kind": "CLIENT", "timestamp": ts + 1000, "duration": 150000,
         "localEndpoint": {"serviceName": "frontend"},
         "remoteEndpoint": {"serviceName": "backend", "port": 9000},
         "annotations": [{"timestamp": ts + 2000, "value": "wire send"}],
         "tags": {"error": "connection reset"}},
    ]  # fmt: skip
    response = client.post("/api/v2/spans", json=sample)
    assert response.status_code == 202, response.text
    [trace] = jaeger(client, "/api/traces/463ac35c9f6413ad")
    assert trace["traceID"] == "0000000000000000463ac35c9f6413ad"
    spans = {s["spanID"]: s for s in trace["spans"]}
    client_span = spans["72485a3953bb6124"]
    assert client_span["duration"] == 150000 and client_span["startTime"] == ts + 1000
    tags = {t["key"]: t["value"] for t in client_span["tags"]}
    assert tags["error"] is True and tags["otel.status_description"] == "connection reset"
    assert tags["peer.service"] == "backend" and tags["net.peer.port"] == 9000
    assert client_span["logs"] == [
        {
            "timestamp": ts + 2000,
            "fields": [{"key": "event", "type": "string", "value": "wire send"}],
        }
    ]
    found = jaeger(client, "/api/traces", service="frontend", tags='{"http.method":"GET"}')
    assert len(found) == 1


@pytest.mark.parametrize(
    ("path", "content", "content_type", "message"),
    [
        ("/v1/traces", b"\xff\x00garbage", "application/x-protobuf", "invalid OTLP"),
        ("/v1/traces", b"{not json", "application/json", "invalid OTLP"),
        ("/v1/traces", b"<xml/>", "text/xml", "unsupported Content-Type"),
        ("/v1/traces",
         json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
             {"traceId": "abcd", "spanId": "eee19b7ec3c1b174", "startTimeUnixNano": "1"}]}]}]}).encode(),  # noqa: E501
         "application/json", "resourceSpans[0].scopeSpans[0].spans[0].traceId"),
        ("/v1/traces",
         json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": [
             {"traceId": "zz", "spanId": "eee19b7ec3c1b174"}]}]}]}).encode(),
         "application/json", "is not hex"),
        ("/api/v2/spans", b'{"traceId": "1"}', "application/json", "JSON array"),
        ("/api/v2/spans", b'[{"traceId": "xyz", "id": "1", "timestamp": 1}]', "application/json",
         "span[0].traceId"),
        ("/api/v2/spans", b'[{"traceId": "1", "id": "1"}]', "application/json",
         "span[0].timestamp"),
    ],
)  # fmt: skip
def test_malformed_payloads_get_400_and_change_nothing(
    client: TestClient, path: str, content: bytes, content_type: str, message: str
) -> None:
    response = client.post(path, content=content, headers={"content-type": content_type})
    assert response.status_code == 400, response.text
    assert message in response.json()["error"]
    assert jaeger(client, "/api/services") == []


def test_jaeger_errors_use_jaeger_envelope(client: TestClient) -> None:
    response = client.get("/api/traces/0000000000000000000000000000abcd")
    assert response.status_code == 404
    assert response.json()["errors"] == [{"code": 404, "msg": "trace not found"}]
    response = client.get("/api/traces/not-an-id")
    assert response.status_code == 400
    response = client.get("/api/traces", params={"service": "x", "minDuration": "fast"})
    assert response.status_code == 400
    assert "minDuration" in response.json()["errors"][0]["msg"]
    assert client.get("/api/traces").status_code == 400  # service is required


def test_otlp_http_export_checks_token_scope_and_tenant(tmp_path: Path) -> None:
    """/v1/traces authenticates inline (not as a FastAPI dependency): same 401/403/400s, and
    spans land in the caller's tenant."""
    from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

    from signalroom.auth import hash_token

    tokens = "".join(
        f"{{name: {name}, sha256: {hash_token(token)}, scopes: [{scope}]}},"
        for name, token, scope in (("r", "sr_read", "read"), ("w", "sr_write", "write"))
    )
    config = CONFIG + f"auth: {{tokens: [{tokens}]}}\n"
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    kv = resource_spans.resource.attributes.add()
    kv.key, kv.value.string_value = "service.name", "billing"
    span = resource_spans.scope_spans.add().spans.add()
    span.trace_id, span.span_id, span.name = bytes(range(1, 17)), bytes(range(1, 9)), "charge"
    span.start_time_unix_nano = NOW_US * 1000
    span.end_time_unix_nano = NOW_US * 1000 + 5_000_000
    body = request.SerializeToString()
    protobuf = {"content-type": "application/x-protobuf"}
    runtime = Signalroom(parse_config(config), data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as client:
        assert client.post("/v1/traces", content=body, headers=protobuf).status_code == 401
        reader = {**protobuf, "authorization": "Bearer sr_read"}
        forbidden = client.post("/v1/traces", content=body, headers=reader)
        assert forbidden.status_code == 403
        assert "lacks scope 'write'" in forbidden.json()["error"]
        writer = {**protobuf, "authorization": "Bearer sr_write"}
        bad = client.post("/v1/traces", content=body, headers={**writer, "X-Scope-OrgID": "a/b"})
        assert bad.status_code == 400
        ok = client.post("/v1/traces", content=body, headers={**writer, "X-Scope-OrgID": "shop"})
        assert ok.status_code == 200, ok.text
        assert ok.headers["content-type"] == "application/x-protobuf"
        assert trace_service_pb2.ExportTraceServiceResponse.FromString(ok.content) == (
            trace_service_pb2.ExportTraceServiceResponse()
        )
        read = {"authorization": "Bearer sr_read"}
        shop = client.get("/api/services", headers={**read, "X-Scope-OrgID": "shop"})
        assert shop.json()["data"] == ["billing"]
        assert client.get("/api/services", headers=read).json()["data"] == []
