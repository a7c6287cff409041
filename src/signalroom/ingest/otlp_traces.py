"""OTLP/HTTP traces (``POST /v1/traces``), protobuf and JSON encodings.

OTLP/JSON writes trace and span ids as hex strings, not as the base64 that protobuf's JSON
mapping expects for ``bytes`` (a 32-digit hex id is valid base64 and would decode, wrongly, to
24 bytes), so the JSON body is parsed first and the ids are converted before ``ParseDict``.
A payload with any invalid span is rejected whole, naming the span and field (the gRPC
receiver instead answers OTLP's partial success, see ``request_to_columns``).

Decoding is column-wise: the request is parsed into a *view* of the OTLP messages, built at
import from their descriptors, in which a span's ``attributes`` (raw ``KeyValue`` bytes) and
``status`` are ``bytes`` fields (an embedded message and ``bytes`` share one wire format). Each
distinct key/value pair becomes its JSON fragment once and is cached, so a span's attributes
cost one dict lookup per pair; ids become hex with one NumPy table lookup for the batch.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import Message
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.resource.v1 import resource_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from signalroom.traces.model import SPAN_SCHEMA, SpanBatch, SpanIngestError, dumps

__all__ = ["decode_otlp_traces", "export_response", "parse_request", "request_to_columns"]

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
# Span.flags: bits 0-7 are the W3C trace flags, bits 8-9 say whether the context was remote;
# a span whose flags are all zero says nothing about sampling.
_FLAG_SAMPLED = 0x01
_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), np.uint16)
_FRAGMENTS: dict[bytes, str] = {}
_MAX_FRAGMENTS = 200_000
_STATUSES: dict[bytes, tuple[int, str | None]] = {}


def _view_classes() -> type[Message]:
    """``ExportTraceServiceRequest`` as a view whose spans carry raw attribute bytes."""
    file = descriptor_pb2.FileDescriptorProto(
        name="signalroom/otlp_trace_view.proto",
        package="signalroom.otlpview",
        syntax="proto3",
        dependency=[d.DESCRIPTOR.name for d in (common_pb2, resource_pb2, trace_pb2)],
    )
    span = file.message_type.add()
    trace_pb2.Span.DESCRIPTOR.CopyToProto(span)
    span.name = "SpanView"
    del span.nested_type[:]  # fields still name the original Event, Link and SpanKind
    del span.enum_type[:]
    for field in span.field:
        if field.name in ("attributes", "status"):
            field.type = descriptor_pb2.FieldDescriptorProto.TYPE_BYTES
            field.ClearField("type_name")
    repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
    message = descriptor_pb2.FieldDescriptorProto.TYPE_MESSAGE

    def add(name: str, fields: list[tuple[str, int, str, bool]]) -> None:
        proto = file.message_type.add(name=name)
        for field_name, number, type_name, many in fields:
            proto.field.add(name=field_name, number=number, type=message, type_name=type_name,
                            label=repeated if many else None)  # fmt: skip

    add(
        "ScopeSpansView",
        [
            ("scope", 1, ".opentelemetry.proto.common.v1.InstrumentationScope", False),
            ("spans", 2, ".signalroom.otlpview.SpanView", True),
        ],
    )
    add(
        "ResourceSpansView",
        [
            ("resource", 1, ".opentelemetry.proto.resource.v1.Resource", False),
            ("scope_spans", 2, ".signalroom.otlpview.ScopeSpansView", True),
        ],
    )
    add("RequestView", [("resource_spans", 1, ".signalroom.otlpview.ResourceSpansView", True)])
    pool = descriptor_pool.Default()
    try:
        descriptor = pool.FindMessageTypeByName("signalroom.otlpview.RequestView")
    except KeyError:
        pool.Add(file)
        descriptor = pool.FindMessageTypeByName("signalroom.otlpview.RequestView")
    view: type[Message] = message_factory.GetMessageClass(descriptor)
    return view


_RequestView = _view_classes()


def _any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return base64.b64encode(value.bytes_value).decode("ascii")
    return getattr(value, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _any_value(kv.value) for kv in kvs}


def _hex_ids_to_base64(payload: Any, where: str) -> None:
    """Rewrite OTLP/JSON hex ids in place into protobuf-JSON base64."""

    def convert(obj: dict[str, Any], path: str) -> None:
        for key in _ID_FIELDS:
            value = obj.get(key)
            if isinstance(value, str) and value:
                try:
                    obj[key] = base64.b64encode(bytes.fromhex(value)).decode("ascii")
                except ValueError:
                    raise SpanIngestError(f"{path}.{key}: {value!r} is not hex") from None

    if not isinstance(payload, dict):
        raise SpanIngestError(f"{where}: expected a JSON object")
    for r, resource_spans in enumerate(payload.get("resourceSpans") or ()):
        for s, scope_spans in enumerate(_dicts(resource_spans, "scopeSpans")):
            for i, span in enumerate(_dicts(scope_spans, "spans")):
                path = f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}]"
                convert(span, path)
                for j, link in enumerate(_dicts(span, "links")):
                    convert(link, f"{path}.links[{j}]")


def _dicts(obj: Any, key: str) -> list[dict[str, Any]]:
    items = obj.get(key) if isinstance(obj, dict) else None
    return [item for item in items if isinstance(item, dict)] if isinstance(items, list) else []


def decode_otlp_traces(body: bytes, content_type: str, content_encoding: str = "") -> SpanBatch:
    """An ``ExportTraceServiceRequest`` body to spans. Raises SpanIngestError."""
    if content_encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except Exception as exc:
            raise SpanIngestError(f"cannot decompress the gzip body: {exc}") from None
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            payload = json.loads(body)
            _hex_ids_to_base64(payload, "body")
            request: Message = trace_service_pb2.ExportTraceServiceRequest()
            json_format.ParseDict(payload, request, ignore_unknown_fields=True)
        elif kind in ("application/x-protobuf", "application/protobuf", ""):
            request = parse_request(body)
        else:
            raise SpanIngestError(
                f"unsupported Content-Type {kind!r}: use application/x-protobuf or application/json"
            )
    except SpanIngestError:
        raise
    except Exception as exc:
        raise SpanIngestError(f"invalid OTLP ExportTraceServiceRequest ({kind}): {exc}") from None
    return request_to_columns(request)[0]


def parse_request(body: bytes) -> Message:
    """A protobuf ``ExportTraceServiceRequest`` parsed into the decoding view; raises
    ``google.protobuf.message.DecodeError``."""
    view = _RequestView()
    view.ParseFromString(body)
    return view


def request_to_columns(request: Message, *, partial: bool = False) -> tuple[SpanBatch, int, str]:
    """Flatten a parsed request (an ``ExportTraceServiceRequest`` or its view) into a span
    batch, validating ids and times: (batch, spans rejected, first rejection message).

    Without ``partial`` an invalid span raises SpanIngestError naming it; with ``partial``
    (OTLP's partial success) the invalid spans are left out and counted."""
    view = _as_view(request)
    spans: list[Any] = []
    where: list[tuple[int, int, int]] = []
    resource_json: list[str] = []
    services: list[str] = []
    scopes: list[str | None] = []
    resource_of: list[int] = []
    scope_of: list[int] = []
    for r, resource_spans in enumerate(view.resource_spans):
        attrs = _attributes(resource_spans.resource.attributes)
        service = attrs.get("service.name")
        services.append(str(service) if service not in (None, "") else "unknown_service")
        resource_json.append(dumps(attrs))
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            batch = list(scope_spans.spans)
            spans += batch
            where.append((r, s, len(batch)))
            scopes.append(scope_spans.scope.name or None)
            resource_of.append(r)
            scope_of.append(len(scopes) - 1)
    n = len(spans)
    counts = np.array([count for _, _, count in where], np.int64)
    resource_index = np.repeat(np.array(resource_of, np.int64), counts)
    scope_index = np.repeat(np.array(scope_of, np.int64), counts)

    trace_ids = [span.trace_id for span in spans]
    span_ids = [span.span_id for span in spans]
    starts = np.array([span.start_time_unix_nano for span in spans], np.uint64)
    ends = np.array([span.end_time_unix_nano for span in spans], np.uint64)
    trace_hex, trace_ok = _hex_ids(trace_ids, 16)
    span_hex, span_ok = _hex_ids(span_ids, 8)
    valid = trace_ok & span_ok & (starts != 0)
    rejected, message = 0, ""
    if not valid.all():
        bad = int(np.flatnonzero(~valid)[0])
        message = _rejection(bad, where, trace_ids[bad], span_ids[bad])
        if not partial:
            raise SpanIngestError(message)
        rejected = int(n - valid.sum())

    statuses = [_status(span.status) for span in spans]
    flags = np.array([span.flags for span in spans], np.int64)
    states = [span.trace_state or None for span in spans]
    # a slice copies the repeated field out in one call; iterating it is ~3x slower
    attributes = pa.array([_attributes_json(span.attributes[:]) for span in spans], pa.string())
    columns = {
        "trace_id": trace_hex,
        "span_id": span_hex,
        "parent_span_id": pa.array(
            [p.hex() if p and p != _ZERO_SPAN else None for p in
             (span.parent_span_id for span in spans)], pa.string()),
        "service": pa.array(services, pa.string()).take(resource_index),
        "name": pa.array([span.name for span in spans], pa.string()),
        "kind": pa.array([span.kind for span in spans], pa.int8()),
        "start_time": pa.array(starts.astype(np.int64)),
        "duration": pa.array(np.where(ends > starts, ends - starts, 0).astype(np.int64)),
        "status_code": pa.array([code for code, _ in statuses], pa.int8()),
        "status_message": pa.array([message for _, message in statuses], pa.string()),
        "flags": pa.array(flags.astype(np.int32)),
        "trace_state": pa.array(states, pa.string()),
        "scope": pa.array(scopes, pa.string()).take(scope_index),
        "attributes": attributes,
        "resource": pa.array(resource_json, pa.string()).take(resource_index),
        "events": pa.array([_events_json(span.events) if span.events else None
                            for span in spans], pa.string()),
        "links": pa.array([_links_json(span.links) if span.links else None
                           for span in spans], pa.string()),
    }  # fmt: skip
    table = pa.Table.from_arrays([columns[f.name] for f in SPAN_SCHEMA], schema=SPAN_SCHEMA)
    head = _head_decisions(flags, states, attributes)
    if rejected:
        keep = pa.array(valid)
        table, head = table.filter(keep), head.filter(keep)
    return SpanBatch(table, head), rejected, message


def _as_view(request: Message) -> Message:
    if isinstance(request, _RequestView):
        return request
    view = _RequestView()
    view.ParseFromString(request.SerializeToString())
    return view


def _hex_ids(ids: list[bytes], width: int) -> tuple[pa.Array, np.ndarray[Any, np.dtype[np.bool_]]]:
    """Ids as lower-case hex strings, vectorised, and which are valid (``width`` bytes, not
    all zero); invalid ones come out as zeros."""
    joined = b"".join(ids)
    if len(joined) != width * len(ids):
        ok_length = np.array([len(i) == width for i in ids], np.bool_)
        zero = bytes(width)
        joined = b"".join(i if len(i) == width else zero for i in ids)
    else:
        ok_length = np.ones(len(ids), np.bool_)
    raw = np.frombuffer(joined, np.uint8)
    ok = ok_length & raw.reshape(len(ids), width).any(axis=1) if ids else ok_length
    chars = _HEX_PAIRS[raw]
    offsets = np.arange(0, 2 * width * len(ids) + 1, 2 * width, dtype=np.int32)
    array = pa.Array.from_buffers(
        pa.string(), len(ids), [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())]
    )
    return array, ok


def _rejection(
    index: int, where: list[tuple[int, int, int]], trace_id: bytes, span_id: bytes
) -> str:
    path = ""
    for r, s, count in where:
        path = f"resourceSpans[{r}].scopeSpans[{s}].spans[{index}]"
        if index < count:
            break
        index -= count
    if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
        return f"{path}.traceId: expected 16 non-zero bytes, got {len(trace_id)} bytes"
    if len(span_id) != 8 or span_id == _ZERO_SPAN:
        return f"{path}.spanId: expected 8 non-zero bytes, got {len(span_id)} bytes"
    return f"{path}.startTimeUnixNano: missing"


def _attributes_json(raw: list[bytes]) -> str:
    """A span's attributes (raw ``KeyValue`` bytes) as a JSON object; each distinct key/value
    pair is decoded once and its JSON fragment cached."""
    if not raw:
        return "{}"
    cache = _FRAGMENTS
    try:
        return "{" + ",".join(map(cache.__getitem__, raw)) + "}"
    except KeyError:
        pass
    if len(cache) > _MAX_FRAGMENTS:
        cache.clear()
    for kv in raw:
        if kv not in cache:
            pair = common_pb2.KeyValue.FromString(kv)
            cache[kv] = dumps(pair.key) + ":" + dumps(_any_value(pair.value))
    return "{" + ",".join([cache[kv] for kv in raw]) + "}"


def _status(raw: bytes) -> tuple[int, str | None]:
    """(code, message or None) of a span's raw ``Status`` bytes, cached like attributes."""
    if not raw:
        return 0, None
    status = _STATUSES.get(raw)
    if status is None:
        if len(_STATUSES) > 10_000:
            _STATUSES.clear()
        parsed = trace_pb2.Status.FromString(raw)
        status = _STATUSES[raw] = (parsed.code, parsed.message or None)
    return status


def _events_json(events: Any) -> str:
    return dumps([{"time": e.time_unix_nano, "name": e.name,
                   "attributes": _attributes(e.attributes)} for e in events])  # fmt: skip


def _links_json(links: Any) -> str:
    return dumps([{"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                   "attributes": _attributes(link.attributes)} for link in links])  # fmt: skip


def _head_decisions(
    flags: np.ndarray[Any, np.dtype[np.int64]], states: list[str | None], attributes: pa.Array
) -> pa.Array:
    """Per span: True (forced or probability-sampled by the client), False ("not sampled"),
    or null (the client said nothing). ``sampling.priority`` wins, then the W3C flags, then
    an OpenTelemetry tracestate threshold."""
    known = np.zeros(len(flags), np.bool_)
    keep = np.zeros(len(flags), np.bool_)
    with_priority = pc.match_substring(attributes, '"sampling.priority":').to_numpy(
        zero_copy_only=False
    )
    for i in np.flatnonzero(with_priority).tolist():
        priority = json.loads(attributes[i].as_py()).get("sampling.priority")
        if isinstance(priority, int | float) and not isinstance(priority, bool):
            known[i], keep[i] = True, priority > 0
    unsampled = ~known & ((flags & 0xFF) != 0) & ((flags & _FLAG_SAMPLED) == 0)
    known |= unsampled
    for i, state in enumerate(states):
        if state and not known[i] and "ot=" in state and ("th:" in state or "p:" in state):
            known[i] = keep[i] = True
    return pa.array(keep, pa.bool_(), mask=~known)


_EMPTY_RESPONSE = trace_service_pb2.ExportTraceServiceResponse().SerializeToString()


def export_response(content_type: str) -> tuple[bytes, str]:
    """An empty ``ExportTraceServiceResponse`` in the request's encoding."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return b"{}", "application/json"
    return _EMPTY_RESPONSE, "application/x-protobuf"
