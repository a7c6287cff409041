"""The column-wise OTLP decoder (values, ids, head decisions, partial success), NumPy grouping,
the trace-id index and the newest-first search against a brute-force answer."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from signalroom.ingest.otlp_traces import decode_otlp_traces, parse_request, request_to_columns
from signalroom.traces.index import fingerprints
from signalroom.traces.model import SpanIngestError, group_rows, spans_table
from signalroom.traces.query import TraceQuery, find_trace_ids, get_trace, get_traces
from signalroom.traces.store import TraceStore

pytestmark = pytest.mark.unit

HOUR = 3600 * 10**9
TRACE = bytes.fromhex("0af7651916cd43dd8448eb211c80319c")


def _request() -> trace_service_pb2.ExportTraceServiceRequest:
    request = trace_service_pb2.ExportTraceServiceRequest()
    resource_spans = request.resource_spans.add()
    for key, value in (("service.name", "cart"), ("host.name", "h1")):
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = key, value
    scope = resource_spans.scope_spans.add()
    scope.scope.name = "shop.cart"
    root = scope.spans.add()
    root.trace_id, root.span_id, root.name, root.kind = TRACE, b"\x01" * 8, "GET /cart", 2
    root.start_time_unix_nano, root.end_time_unix_nano = 1_000, 5_000
    root.flags, root.trace_state = 0x101, "ot=th:8"
    values: list[tuple[str, str, Any]] = [
        ("s", "string_value", "é\"x"), ("i", "int_value", -7), ("d", "double_value", 1.5),
        ("b", "bool_value", True), ("raw", "bytes_value", b"\x00\xff"),
    ]  # fmt: skip
    for key, field, value in values:
        kv = root.attributes.add()
        kv.key = key
        setattr(kv.value, field, value)
    kv = root.attributes.add()
    kv.key = "list"
    kv.value.array_value.values.add().int_value = 1
    kv.value.array_value.values.add().string_value = "two"
    kv = root.attributes.add()
    kv.key = "map"
    inner = kv.value.kvlist_value.values.add()
    inner.key, inner.value.bool_value = "ok", False
    root.status.code, root.status.message = 2, "boom"
    event = root.events.add()
    event.time_unix_nano, event.name = 2_000, "retry"
    kv = event.attributes.add()
    kv.key, kv.value.int_value = "attempt", 2
    link = root.links.add()
    link.trace_id, link.span_id = b"\x02" * 16, b"\x03" * 8
    child = scope.spans.add()
    child.trace_id, child.span_id, child.parent_span_id = TRACE, b"\x04" * 8, b"\x01" * 8
    child.name, child.start_time_unix_nano, child.end_time_unix_nano = "SELECT", 2_000, 1_500
    child.flags = 0x100  # a remote parent, trace flags "not sampled"
    kv = child.attributes.add()
    kv.key, kv.value.int_value = "sampling.priority", 1  # ... but forced
    other = scope.spans.add()
    other.trace_id, other.span_id, other.name = TRACE, b"\x05" * 8, "render"
    other.start_time_unix_nano, other.flags = 3_000, 0x102  # trace flags: random, unsampled
    return request


def test_decoder_columns_values_and_head_decisions() -> None:
    body = _request().SerializeToString()
    batch = decode_otlp_traces(body, "application/x-protobuf")
    rows = batch.table.to_pylist()
    root, child, other = rows
    assert root["trace_id"] == TRACE.hex() and root["span_id"] == "01" * 8
    assert root["parent_span_id"] is None and child["parent_span_id"] == "01" * 8
    assert [r["service"] for r in rows] == ["cart"] * 3
    assert [r["scope"] for r in rows] == ["shop.cart"] * 3
    assert (root["kind"], root["start_time"], root["duration"]) == (2, 1_000, 4_000)
    assert child["duration"] == 0  # ends before it starts
    assert (root["status_code"], root["status_message"]) == (2, "boom")
    assert (other["status_code"], other["status_message"]) == (0, None)
    assert json.loads(root["attributes"]) == {
        "s": 'é"x', "i": -7, "d": 1.5, "b": True, "raw": "AP8=", "list": [1, "two"],
        "map": {"ok": False},
    }  # fmt: skip
    assert '"s":"é\\"x"' in root["attributes"]  # compact, not ASCII-escaped
    assert other["attributes"] == "{}"
    assert json.loads(root["resource"]) == {"service.name": "cart", "host.name": "h1"}
    assert json.loads(root["events"]) == [
        {"time": 2_000, "name": "retry", "attributes": {"attempt": 2}}
    ]
    assert json.loads(root["links"]) == [
        {"trace_id": "02" * 16, "span_id": "03" * 8, "attributes": {}}
    ]
    assert child["events"] is None and child["links"] is None
    assert (root["flags"], root["trace_state"]) == (0x101, "ot=th:8")
    # tracestate threshold: client-sampled; priority wins over flags; unsampled flags
    assert batch.head.to_pylist() == [True, True, False]

    # the same key/value pairs again (now from the fragment cache) give the same text
    again = decode_otlp_traces(body, "application/x-protobuf")
    assert again.table.equals(batch.table)
    # a parsed ExportTraceServiceRequest works as well as the view
    converted, rejected, _ = request_to_columns(_request())
    assert rejected == 0 and converted.table.equals(batch.table)


def test_decoder_rejects_or_partially_accepts_invalid_spans() -> None:
    request = _request()
    spans = request.resource_spans[0].scope_spans[0].spans
    spans[1].trace_id = b"\x00" * 16
    spans[2].span_id = b"\x01\x02"
    body = request.SerializeToString()
    with pytest.raises(SpanIngestError, match=r"spans\[1\]\.traceId: expected 16 non-zero"):
        decode_otlp_traces(body, "application/x-protobuf")
    batch, rejected, reason = request_to_columns(parse_request(body), partial=True)
    assert rejected == 2 and reason.startswith("resourceSpans[0].scopeSpans[0].spans[1]")
    assert batch.table.column("span_id").to_pylist() == ["01" * 8]
    assert batch.head.to_pylist() == [True]
    spans[0].start_time_unix_nano = 0
    with pytest.raises(SpanIngestError, match=r"spans\[0\]\.startTimeUnixNano: missing"):
        decode_otlp_traces(request.SerializeToString(), "application/x-protobuf")
    with pytest.raises(SpanIngestError, match="invalid OTLP"):
        decode_otlp_traces(b"\x0a\x05ab", "application/x-protobuf")


def test_group_rows_matches_python_grouping() -> None:
    rng = random.Random(4)
    rows = [
        {"service": rng.choice("abc"), "name": rng.choice(["x", "y"]), "kind": rng.randint(0, 2)}
        for _ in range(500)
    ]
    table = pa.Table.from_pylist(rows).cast(
        pa.schema([("service", pa.string()), ("name", pa.string()), ("kind", pa.int8())])
    )
    keys, inverse = group_rows(table, ["service", "name", "kind"])
    assert sorted(keys) == sorted({(r["service"], r["name"], r["kind"]) for r in rows})
    assert [keys[i] for i in inverse] == [(r["service"], r["name"], r["kind"]) for r in rows]


def test_fingerprints_are_the_leading_64_bits() -> None:
    ids = pa.array(["9e3779b97f4a7c150000000000000001", "FFFFFFFFFFFFFFFF0000000000000000"])
    assert fingerprints(ids).tolist() == [0x9E3779B97F4A7C15, 2**64 - 1]
    assert fingerprints(ids.slice(1)).tolist() == [2**64 - 1]


def _random_spans(rng: random.Random, base: int, traces: int) -> list[dict[str, Any]]:
    rows = []
    for t in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        start = base + rng.randrange(30 * HOUR)
        for s in range(rng.randint(1, 4)):
            rows.append({
                "trace_id": trace_id, "span_id": f"{t * 16 + s + 1:016x}",
                "service": rng.choice(["web", "db", "queue"]), "name": rng.choice(["a", "b"]),
                "start_time": start + s * 10**9, "duration": rng.randrange(10**9),
                "status_code": 2 if rng.random() < 0.2 else 0,
                "attributes": {"user": f"u{rng.randrange(5)}", "n": rng.randrange(3)},
            })  # fmt: skip
    return rows


def test_index_lookup_and_newest_first_search_match_brute_force(tmp_path: Path) -> None:
    rng = random.Random(11)
    base = (time.time_ns() // HOUR - 40) * HOUR
    rows = _random_spans(rng, base, 300)
    store = TraceStore(tmp_path, wal_fsync="never", row_group_rows=8).open()
    # three flushes (several files per hour partition) and a buffered tail, with duplicates
    for part in (rows[0::3], rows[1::3]):
        store.append("t", spans_table(part))
        store.table.flush()
    store.append("t", spans_table(rows[2::3] + rows[:5]))
    assert store.warm_index() > 3

    everything = spans_table(rows)
    for trace_id in {r["trace_id"] for r in rows[:40]}:
        expected = sorted(r["span_id"] for r in rows if r["trace_id"] == trace_id)
        found = get_trace(store, "t", trace_id)
        assert found is not None
        assert sorted(found.column("span_id").to_pylist()) == expected
    assert get_trace(store, "t", "f" * 32) is None

    def brute(query: TraceQuery) -> list[str]:
        last: dict[str, int] = {}
        for r in everything.to_pylist():
            attributes = json.loads(r["attributes"])
            if not query.start_ns <= r["start_time"] <= query.end_ns:
                continue
            if query.service and r["service"] != query.service:
                continue
            if query.error and r["status_code"] != 2:
                continue
            if any(str(attributes.get(k)) != v for k, v in query.tags.items()):
                continue
            last[r["trace_id"]] = max(r["start_time"], last.get(r["trace_id"], 0))
        ranked = sorted(last, key=lambda t: (-last[t], t))
        return ranked[: query.limit]

    window = {"start_ns": base + 2 * HOUR, "end_ns": base + 29 * HOUR}
    queries = [
        TraceQuery(**window, service="web", limit=5),  # type: ignore[arg-type]
        TraceQuery(**window, service="db", error=True, limit=7),  # type: ignore[arg-type]
        TraceQuery(**window, tags={"user": "u3", "n": "2"}, limit=10),  # type: ignore[arg-type]
        TraceQuery(**window, service="queue", tags={"n": "1"}, limit=500),  # type: ignore[arg-type]
    ]
    for query in queries:
        assert find_trace_ids(store, "t", query) == brute(query)
    # the columns every search decompresses are LZ4, the rest zstd
    import pyarrow.parquet as pq

    footer = pq.read_metadata(store.table.files("t")[0]).row_group(0)
    codecs = {footer.column(i).path_in_schema: footer.column(i).compression
              for i in range(footer.num_columns)}  # fmt: skip
    assert codecs["attributes"] == codecs["trace_id"] == "LZ4"
    assert codecs["service"] == codecs["span_id"] == "ZSTD"

    # compaction replaces files: lookups still find every span, the index forgets old files
    store.table.compact(now_ns=base + 100 * HOUR)
    store.warm_index()
    assert len(store.index) == len(store.table.files("t"))
    ids = [r["trace_id"] for r in rows[100:110]]
    traces = get_traces(store, "t", ids)
    assert {t: tb.num_rows for t, tb in traces.items()} == {
        t: len({r["span_id"] for r in rows if r["trace_id"] == t}) for t in ids
    }
    store.close()


def test_fingerprint_collisions_only_cost_reads(tmp_path: Path) -> None:
    store = TraceStore(tmp_path, wal_fsync="never", row_group_rows=2).open()
    # ids sharing their first 64 bits land on the same fingerprint
    rows: list[dict[str, Any]] = [
        {"trace_id": f"{7:016x}{n:016x}", "span_id": f"{n + 1:016x}", "service": "s",
         "name": "n", "start_time": 10**18 + n, "duration": 1} for n in range(9)
    ]  # fmt: skip
    store.append("t", spans_table(rows))
    store.table.flush()
    wanted = str(rows[4]["trace_id"])
    found = get_traces(store, "t", [wanted])
    assert list(found) == [wanted] and found[wanted].num_rows == 1
    assert np.unique(fingerprints(pa.array([r["trace_id"] for r in rows]))).size == 1
    store.close()


def test_search_windows_are_sized_by_rows_not_hours() -> None:
    from signalroom.traces.query import _next_window

    assert _next_window(0, 20, 0, [7, 9]) == 1  # the newest hour first, whatever its size
    # a partly filled newest hour (100 rows, 5 matches): the rate asks for 375 more rows,
    # capped at doubling (200), taken across as many hours as that needs
    assert _next_window(5, 20, 100, [50, 50, 400]) == 3
    assert _next_window(5, 20, 100, [300, 50, 400]) == 1
    assert _next_window(5, 20, 1000, [100, 100, 1000, 5000]) == 4
    assert _next_window(19, 20, 10_000, [400, 400, 400]) == 2  # 658 rows still wanted
    assert _next_window(0, 20, 500, [2000, 2000]) == 1  # no match yet: at least one hour
    assert _next_window(3, 20, 10, []) == 1
