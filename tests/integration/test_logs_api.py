"""The log HTTP APIs on the real application: Loki push/query, OTLP, Elasticsearch bulk,
JSON ingest, syslog over UDP and TCP, tail."""

from __future__ import annotations

import json
import logging
import logging.handlers
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import cramjam
import pytest
from fastapi.testclient import TestClient
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from signalroom.app import Signalroom
from signalroom.config import parse_config
from signalroom.ingest.loki import PushRequest
from signalroom.logs.service import LogService
from signalroom.web.server import create_http_app

pytestmark = pytest.mark.integration

S = 10**9
NOW = time.time_ns() // S * S


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    config = parse_config(
        "server: {self_scrape: false}\n"
        "storage: {wal: {fsync: never}}\n"
        "logs: {syslog: {udp: '127.0.0.1:0', tcp: '127.0.0.1:0'}}\n"
    )
    runtime = Signalroom(config, data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as test_client:
        yield test_client


def push_json(client: TestClient, streams: list[dict[str, Any]]) -> None:
    response = client.post("/loki/api/v1/push", json={"streams": streams})
    assert response.status_code == 204, response.text


def query_range(client: TestClient, query: str, **params: Any) -> dict[str, Any]:
    params = {"query": query, "start": str(NOW - 3600 * S), "end": str(NOW + 60 * S), **params}
    response = client.get("/loki/api/v1/query_range", params=params)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    return dict(body["data"])


def test_loki_push_json_and_query_shapes(client: TestClient) -> None:
    values = [[str(NOW - i * S), f"level=info msg=hello{i} user=bob@example.com"] for i in range(5)]
    push_json(client, [{"stream": {"app": "shop", "env": "prod"}, "values": values}])
    data = query_range(client, '{app="shop"} |= "hello3"')
    assert data["resultType"] == "streams"
    assert data["result"] == [
        {
            "stream": {"app": "shop", "env": "prod"},
            "values": [[str(NOW - 3 * S), "level=info msg=hello3 user=[REDACTED:email]"]],
        }
    ]
    assert data["stats"]["summary"]["totalEntriesReturned"] == 1
    matrix = query_range(client, 'count_over_time({app="shop"}[1m])', step="60")
    assert matrix["resultType"] == "matrix"
    series = matrix["result"][0]
    assert series["metric"] == {"app": "shop", "env": "prod"}
    assert all(isinstance(v[1], str) for v in series["values"])
    assert sum(float(v[1]) for v in series["values"]) >= 5
    instant = client.get(
        "/loki/api/v1/query",
        params={"query": 'sum(count_over_time({app="shop"}[10m]))', "time": str(NOW + S)},
    ).json()["data"]
    assert instant["resultType"] == "vector"
    assert instant["result"] == [{"metric": {}, "value": [NOW // S + 1, "5"]}]
    labels = client.get("/loki/api/v1/labels").json()
    assert labels == {"status": "success", "data": ["app", "env"]}
    assert client.get("/loki/api/v1/label/app/values").json()["data"] == ["shop"]
    series_body = client.get("/loki/api/v1/series", params={"match[]": '{env="prod"}'}).json()
    assert series_body["data"] == [{"app": "shop", "env": "prod"}]


def test_loki_push_protobuf(client: TestClient) -> None:
    request = PushRequest()
    stream = request.streams.add(labels='{job="promtail", host="a"}')
    for i in range(3):
        entry = stream.entries.add(line=f"proto line {i} trace_id=4bf92f3577b34da6a3ce929d0e0e4736")
        entry.timestamp.seconds = NOW // S - i
        entry.structuredMetadata.add(name="pod", value="p-1")
    body = cramjam.snappy.compress_raw(request.SerializeToString())
    response = client.post(
        "/loki/api/v1/push", content=bytes(body), headers={"Content-Type": "application/x-protobuf"}
    )
    assert response.status_code == 204, response.text
    data = query_range(client, '{job="promtail"}', direction="forward")
    assert data["result"][0]["values"][0][1].startswith("proto line 2")
    service: LogService = client.app.state.runtime.logs  # type: ignore[attr-defined]
    table = service.store.table.scan("default")
    assert set(table.column("trace_id").to_pylist()) == {"4bf92f3577b34da6a3ce929d0e0e4736"}
    assert json.loads(table.column("metadata")[0].as_py()) == {"pod": "p-1"}


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (b"not json", "application/json", "invalid JSON"),
        (b'{"streams": {}}', "application/json", '"streams" array'),
        (b'{"streams": [{"stream": {"a": "b"}, "values": [["x", "l"]]}]}', "application/json",
         "streams[0].values[0][0]"),
        (b'{"streams": [{"stream": {"a": "b"}, "values": [["1", 2]]}]}', "application/json",
         "streams[0].values[0]"),
        (b'{"streams": [{"stream": {"a-b": "c"}, "values": [["1", "x"]]}]}', "application/json",
         "invalid label name 'a-b'"),
        (b"\x00garbage", "application/x-protobuf", "snappy"),
    ],
)  # fmt: skip
def test_malformed_push_is_400_naming_the_problem(
    client: TestClient, body: bytes, content_type: str, message: str
) -> None:
    response = client.post(
        "/loki/api/v1/push", content=body, headers={"Content-Type": content_type}
    )
    assert response.status_code == 400
    assert response.json()["status"] == "error"
    assert message in response.json()["error"]


def test_query_errors(client: TestClient) -> None:
    response = client.get("/loki/api/v1/query_range", params={"query": '{a="b"'})
    assert response.status_code == 400 and "parse error" in response.json()["error"]
    response = client.get("/loki/api/v1/query_range", params={"query": '{a="b"}', "limit": "9999"})
    assert response.status_code == 400 and "max_entries_limit" in response.json()["error"]


def test_elasticsearch_bulk_as_fluent_bit_sends_it(client: TestClient) -> None:
    root = client.get("/es/")
    assert root.headers["X-Elastic-Product"] == "Elasticsearch"
    assert root.json()["version"]["number"].startswith("8.")
    documents = [
        {"@timestamp": "2024-05-01T10:00:00.123Z", "log": "order 17 placed", "level": "INFO",
         "kubernetes": {"pod_name": "shop-1"}, "service": "shop"},
        {"@timestamp": "2024-05-01T10:00:01Z", "log": "payment failed", "level": "error",
         "service": "shop"},
    ]  # fmt: skip
    body = "".join(
        json.dumps({"create": {"_index": "fluent-bit"}}) + "\n" + json.dumps(d) + "\n"
        for d in documents
    )
    body += json.dumps({"delete": {"_index": "x", "_id": "1"}}) + "\n"
    response = client.post("/_bulk", content=body, headers={"Content-Type": "application/x-ndjson"})
    assert response.status_code == 200
    assert response.headers["X-Elastic-Product"] == "Elasticsearch"
    result = response.json()
    assert result["errors"] is True
    assert [next(iter(i)) for i in result["items"]] == ["create", "create", "delete"]
    assert result["items"][0]["create"]["status"] == 201
    assert result["items"][2]["delete"]["status"] == 400
    start = str(1714557600 * S - S)
    data = query_range(client, '{service="shop", level="error"}', start=start)
    line = json.loads(data["result"][0]["values"][0][1])
    assert line["log"] == "payment failed"
    bad = client.post("/logs-x/_bulk", content=b'{"index":{}}\n{not json}\n')
    assert bad.status_code == 400 and "line 2" in bad.json()["error"]["reason"]


def test_otlp_logs_protobuf_and_json(client: TestClient) -> None:
    request = logs_service_pb2.ExportLogsServiceRequest()
    resource = request.resource_logs.add()
    resource.resource.attributes.add(
        key="service.name", value=common_pb2.AnyValue(string_value="checkout")
    )
    record = resource.scope_logs.add().log_records.add()
    record.time_unix_nano = NOW
    record.severity_text = "WARNING"
    record.body.string_value = "stock low"
    record.trace_id = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
    record.attributes.add(key="sku", value=common_pb2.AnyValue(string_value="A-1"))
    response = client.post(
        "/v1/logs", content=request.SerializeToString(),
        headers={"Content-Type": "application/x-protobuf"},
    )  # fmt: skip
    assert response.status_code == 200, response.text
    data = query_range(client, '{service="checkout", level="warn"}')
    assert data["result"][0]["values"][0][1] == "stock low"
    from google.protobuf import json_format

    record.body.string_value = "json encoded"
    response = client.post(
        "/v1/logs", content=json_format.MessageToJson(request),
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert response.status_code == 200
    assert len(query_range(client, '{service="checkout"} |= "json encoded"')["result"]) == 1
    bad = client.post(
        "/v1/logs", content=b"\xff\xff", headers={"Content-Type": "application/x-protobuf"}
    )
    assert bad.status_code == 400 and "ExportLogsServiceRequest" in bad.json()["error"]


def test_json_ingest_records(client: TestClient) -> None:
    body = "\n".join(
        json.dumps(r)
        for r in [
            {"ts": NOW / S, "message": "started", "service": "crm", "env": "prod"},
            {"ts": NOW / S, "msg": "lead saved", "service": "crm", "lead_id": 7,
             "trace_id": "4BF92F3577B34DA6A3CE929D0E0E4736"},
        ]
    )  # fmt: skip
    response = client.post("/api/sr/logs", content=body)
    assert response.status_code == 200
    assert response.json()["data"]["accepted"] == 2
    data = query_range(client, '{service="crm"} | json | lead_id="7"')
    assert len(data["result"]) == 1
    bad = client.post("/api/sr/logs", content='{"ts": "yesterday", "message": "x"}')
    assert bad.status_code == 400 and "record 0: ts" in bad.json()["error"]


def wait_for(client: TestClient, query: str, count: int) -> list[str]:
    lines: list[str] = []
    for _ in range(300):  # up to 30 s: a loaded CI machine delivers datagrams late
        # Entries received now: NOW is when the module was imported, which in a full run
        # can be minutes earlier than this test.
        now = time.time_ns()
        data = query_range(client, query, start=str(now - 3600 * S), end=str(now + 60 * S))
        lines = [v[1] for s in data["result"] for v in s["values"]]
        if len(lines) >= count:
            break
        time.sleep(0.1)
    return lines


@pytest.mark.parametrize("socktype", [socket.SOCK_DGRAM, socket.SOCK_STREAM])
def test_syslog_from_python_syslog_handler(client: TestClient, socktype: int) -> None:
    service: LogService = client.app.state.runtime.logs  # type: ignore[attr-defined]
    kind = "udp" if socktype == socket.SOCK_DGRAM else "tcp"
    handler = logging.handlers.SysLogHandler(
        address=service.syslog_addresses[kind], socktype=socktype
    )
    handler.setFormatter(logging.Formatter("billing[42]: %(message)s"))
    try:
        # Through the handler itself, so no logging configuration elsewhere in the process can
        # filter the records on their way.
        for level, text in (
            (logging.ERROR, f"invoice {kind} failed"),
            (logging.WARNING, f"slow {kind}"),
        ):
            handler.handle(
                logging.makeLogRecord(
                    {
                        "levelno": level,
                        "levelname": logging.getLevelName(level),
                        "msg": text,
                        "name": "billing",
                    }
                )
            )
    finally:
        handler.close()
    everything = wait_for(client, '{service=~".+"}', 2)
    assert wait_for(client, '{service="billing", level="error"}', 1) == [
        f"invoice {kind} failed"
    ], everything
    assert wait_for(client, '{service="billing", level="warn"}', 1) == [f"slow {kind}"]


def test_syslog_rfc5424_and_3164_parsing() -> None:
    from signalroom.ingest.syslog import parse_syslog

    full = parse_syslog(
        b'<165>1 2003-10-11T22:14:15.003Z host1 evntslog 99 ID47 [exampleSDID@32473 iut="3"] '
        b"An application event"
    )
    assert (full.facility, full.severity, full.host, full.app) == ("local4", "notice", "host1",
                                                                   "evntslog")  # fmt: skip
    assert full.message == "An application event"
    assert full.metadata["exampleSDID@32473.iut"] == "3"
    assert full.timestamp_ns == 1065910455003 * 10**6
    legacy = parse_syslog(b"<34>Oct 11 22:14:15 mymachine su[12]: 'su root' failed")
    assert (legacy.severity, legacy.host, legacy.app, legacy.message) == (
        "crit", "mymachine", "su", "'su root' failed"
    )  # fmt: skip


def test_tail_websocket(client: TestClient) -> None:
    push_json(client, [{"stream": {"app": "tail"}, "values": [[str(NOW), "before"]]}])
    with client.websocket_connect(
        f'/loki/api/v1/tail?query={{app="tail"}}&start={NOW - 10 * S}'
    ) as websocket:
        first = json.loads(websocket.receive_text())
        assert first["streams"][0]["values"][0][1] == "before"
        push_json(client, [{"stream": {"app": "tail"}, "values": [[str(NOW + S), "after"]]}])
        second = json.loads(websocket.receive_text())
        assert second["streams"] == [
            {"stream": {"app": "tail"}, "values": [[str(NOW + S), "after"]]}
        ]


def test_grafana_loki_data_source_requests(client: TestClient) -> None:
    """The requests Grafana's Loki data source makes (pkg/tsdb/loki/api.go for queries and
    its health check, LanguageProvider.ts for metadata), with the parameters it sends and the
    fields it reads from each answer."""
    logfmt = [[str(NOW - (10 - i) * S), f"level={'error' if i % 3 == 0 else 'info'} "
               f"msg=\"req {i}\" duration=1{i}ms status={200 + i}"] for i in range(10)]  # fmt: skip
    json_lines = [[str(NOW - (10 - i) * S + 1), json.dumps({"level": "warn", "user": f"u{i % 2}",
                   "size": 1.5 * i, "ok": True})] for i in range(4)]  # fmt: skip
    push_json(
        client,
        [
            {"stream": {"app": "shop", "env": "prod"}, "values": logfmt},
            {"stream": {"app": "crm", "env": "prod"}, "values": json_lines},
        ],
    )
    start, end = str(NOW - 3600 * S), str(NOW + 60 * S)
    tags = {"X-Query-Tags": "Source=logsample"}

    # Health check: an instant query at t=4s that must answer a one-sample vector of 2.
    health = client.get(
        "/loki/api/v1/query",
        params={"query": "vector(1)+vector(1)", "direction": "backward", "time": str(4 * S)},
    )
    assert health.status_code == 200, health.text
    data = health.json()["data"]
    assert data["resultType"] == "vector"
    assert [float(s["value"][1]) for s in data["result"]] == [2.0]

    # Log panel / Explore: query_range with direction, limit, start/end in ns and step in ms.
    logs = client.get(
        "/loki/api/v1/query_range",
        params={
            "query": '{env="prod"} |= "req"',
            "direction": "backward",
            "limit": "3",
            "start": start,
            "end": end,
            "step": "2000ms",
        },
        headers=tags,
    ).json()
    assert logs["status"] == "success"
    assert logs["data"]["resultType"] == "streams"
    (stream,) = logs["data"]["result"]
    assert stream["stream"] == {"app": "shop", "env": "prod"}
    assert [v[0] for v in stream["values"]] == [str(NOW - k * S) for k in (1, 2, 3)]
    assert "summary" in logs["data"]["stats"]
    forward = client.get(
        "/loki/api/v1/query_range",
        params={
            "query": '{app="shop"}',
            "direction": "forward",
            "limit": "2",
            "start": start,
            "end": end,
            "step": "2000ms",
        },
    ).json()["data"]["result"]
    assert [v[1] for v in forward[0]["values"]] == [logfmt[0][1], logfmt[1][1]]

    # Logs volume histogram (Source=logvolhist): Grafana's metric query over the selector;
    # with step = range every line is counted once. level is no stream label here.
    volume = client.get(
        "/loki/api/v1/query_range",
        params={
            "query": 'sum by (level, detected_level) (count_over_time({env="prod"} '
            "| drop __error__ [1m]))",
            "direction": "backward",
            "start": start,
            "end": end,
            "step": "60000ms",
        },
        headers={"X-Query-Tags": "Source=logvolhist"},
    ).json()["data"]
    assert volume["resultType"] == "matrix"
    assert [s["metric"] for s in volume["result"]] == [{}]
    assert sum(float(v[1]) for v in volume["result"][0]["values"]) == 14

    # Query builder and autocomplete metadata.
    labels = client.get("/loki/api/v1/labels", params={"start": start, "end": end}).json()
    assert labels == {"status": "success", "data": ["app", "env"]}
    scoped = client.get(
        "/loki/api/v1/labels", params={"start": start, "end": end, "query": '{app="crm"}'}
    ).json()["data"]
    assert scoped == ["app", "env"]
    values = client.get(
        "/loki/api/v1/label/app/values",
        params={"start": start, "end": end, "query": '{env="prod"}'},
    ).json()
    assert values == {"status": "success", "data": ["crm", "shop"]}
    series = client.get(
        "/loki/api/v1/series", params={"match[]": '{app="shop"}', "start": start, "end": end}
    ).json()
    assert series == {"status": "success", "data": [{"app": "shop", "env": "prod"}]}

    # Query size estimate shown under the editor.
    stats = client.get(
        "/loki/api/v1/index/stats", params={"query": '{env="prod"}', "start": start, "end": end}
    ).json()
    assert stats["streams"] == 2
    assert stats["entries"] == 14
    assert stats["chunks"] >= 1
    expected_bytes = sum(len(v[1].encode()) for v in logfmt + json_lines)
    assert stats["bytes"] == expected_bytes  # exact while the lines are in memory
    client.app.state.runtime.logs.store.table.flush()  # type: ignore[attr-defined]
    flushed = client.get(
        "/loki/api/v1/index/stats", params={"query": '{env="prod"}', "start": start, "end": end}
    ).json()
    assert flushed["entries"] == 14
    assert abs(flushed["bytes"] - expected_bytes) <= 0.2 * expected_bytes  # estimated from files
    empty = client.get(
        "/loki/api/v1/index/stats", params={"query": '{app="none"}', "start": start, "end": end}
    ).json()
    assert empty == {"streams": 0, "chunks": 0, "entries": 0, "bytes": 0}

    # Field suggestions (Grafana 11: detected_fields).
    fields = client.get(
        "/loki/api/v1/detected_fields",
        params={"query": '{env="prod"}', "start": start, "end": end, "limit": "1000"},
    ).json()
    assert fields["limit"] == 1000
    by_label = {f["label"]: f for f in fields["fields"]}
    assert by_label["level"] == {"label": "level", "type": "string", "cardinality": 3,
                                 "parsers": ["json", "logfmt"]}  # fmt: skip
    assert by_label["status"]["type"] == "int"
    assert by_label["status"]["cardinality"] == 10
    assert by_label["duration"]["type"] == "duration"
    assert by_label["size"]["type"] == "float"
    assert by_label["ok"]["type"] == "boolean"
    assert by_label["user"] == {"label": "user", "type": "string", "cardinality": 2,
                                "parsers": ["json"]}  # fmt: skip
    bad = client.get("/loki/api/v1/detected_fields", params={"query": 'sum(rate({a="b"}[1m]))'})
    assert bad.status_code == 400
