"""OTLP/HTTP traces (``POST /v1/traces``), protobuf and JSON encodings.

OTLP/JSON writes trace and span ids as hex strings, not as the base64 that protobuf's JSON
mapping expects for ``bytes`` (a 32-digit hex id is valid base64 and would decode, wrongly, to
24 bytes), so the JSON body is parsed first and the ids are converted before ``ParseDict``.
A payload with any invalid span is rejected whole, naming the span and field.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from google.protobuf import json_format
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from signalroom.traces.model import SpanColumns, SpanIngestError, dumps

__all__ = ["decode_otlp_traces", "export_response", "request_to_columns"]

_ID_FIELDS = ("traceId", "spanId", "parentSpanId")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
# Span.flags: bits 0-7 are the W3C trace flags, bits 8-9 say whether the context was remote;
# a span whose flags are all zero says nothing about sampling.
_FLAG_SAMPLED = 0x01


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


def decode_otlp_traces(body: bytes, content_type: str, content_encoding: str = "") -> SpanColumns:
    """An ``ExportTraceServiceRequest`` body to span columns. Raises SpanIngestError."""
    if content_encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except Exception as exc:
            raise SpanIngestError(f"cannot decompress the gzip body: {exc}") from None
    request = trace_service_pb2.ExportTraceServiceRequest()
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            payload = json.loads(body)
            _hex_ids_to_base64(payload, "body")
            json_format.ParseDict(payload, request, ignore_unknown_fields=True)
        elif kind in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise SpanIngestError(
                f"unsupported Content-Type {kind!r}: use application/x-protobuf or application/json"
            )
    except SpanIngestError:
        raise
    except Exception as exc:
        raise SpanIngestError(f"invalid OTLP ExportTraceServiceRequest ({kind}): {exc}") from None
    return request_to_columns(request)


def request_to_columns(request: trace_service_pb2.ExportTraceServiceRequest) -> SpanColumns:
    """Flatten a parsed request into columns, validating ids and times."""
    out = SpanColumns()
    trace_ids, span_ids, parents, services, names = (
        out.trace_id,
        out.span_id,
        out.parent_span_id,
        out.service,
        out.name,
    )
    kinds, starts, durations, codes, messages = (
        out.kind,
        out.start_time,
        out.duration,
        out.status_code,
        out.status_message,
    )
    flags_out, states, scopes, attrs, resources = (
        out.flags,
        out.trace_state,
        out.scope,
        out.attributes,
        out.resource,
    )
    events_out, links_out, head = out.events, out.links, out.head_keep
    for r, resource_spans in enumerate(request.resource_spans):
        resource_attrs = _attributes(resource_spans.resource.attributes)
        service = resource_attrs.get("service.name")
        service = str(service) if service not in (None, "") else "unknown_service"
        resource_json = dumps(resource_attrs)
        for s, scope_spans in enumerate(resource_spans.scope_spans):
            scope_name = scope_spans.scope.name or None
            for i, span in enumerate(scope_spans.spans):
                trace_id, span_id = span.trace_id, span.span_id
                if len(trace_id) != 16 or trace_id == _ZERO_TRACE:
                    raise SpanIngestError(
                        f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}].traceId: expected 16 "
                        f"non-zero bytes, got {len(trace_id)} bytes"
                    )
                if len(span_id) != 8 or span_id == _ZERO_SPAN:
                    raise SpanIngestError(
                        f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}].spanId: expected 8 "
                        f"non-zero bytes, got {len(span_id)} bytes"
                    )
                start, end = span.start_time_unix_nano, span.end_time_unix_nano
                if start == 0:
                    raise SpanIngestError(
                        f"resourceSpans[{r}].scopeSpans[{s}].spans[{i}].startTimeUnixNano: missing"
                    )
                parent = span.parent_span_id
                trace_ids.append(trace_id.hex())
                span_ids.append(span_id.hex())
                parents.append(parent.hex() if parent and parent != _ZERO_SPAN else None)
                services.append(service)
                names.append(span.name)
                kinds.append(span.kind)
                starts.append(start)
                durations.append(end - start if end > start else 0)
                status = span.status
                codes.append(status.code)
                messages.append(status.message or None)
                flags = span.flags
                flags_out.append(flags)
                state = span.trace_state
                states.append(state or None)
                scopes.append(scope_name)
                span_attrs = _attributes(span.attributes) if span.attributes else {}
                attrs.append(dumps(span_attrs) if span_attrs else "{}")
                resources.append(resource_json)
                if span.events:
                    events_out.append(
                        dumps(
                            [
                                {"time": e.time_unix_nano, "name": e.name,
                                 "attributes": _attributes(e.attributes)}
                                for e in span.events
                            ]
                        )
                    )  # fmt: skip
                else:
                    events_out.append(None)
                if span.links:
                    links_out.append(
                        dumps(
                            [
                                {"trace_id": link.trace_id.hex(), "span_id": link.span_id.hex(),
                                 "attributes": _attributes(link.attributes)}
                                for link in span.links
                            ]
                        )
                    )  # fmt: skip
                else:
                    links_out.append(None)
                head.append(_head_decision(flags, state, span_attrs))
    return out


def _head_decision(flags: int, state: str, attributes: dict[str, Any]) -> bool | None:
    priority = attributes.get("sampling.priority")
    if isinstance(priority, int | float) and not isinstance(priority, bool):
        return priority > 0
    if flags & 0xFF and not flags & _FLAG_SAMPLED:
        return False
    if state and "ot=" in state and ("th:" in state or "p:" in state):
        return True
    return None


def export_response(content_type: str) -> tuple[bytes, str]:
    """An empty ``ExportTraceServiceResponse`` in the request's encoding."""
    if content_type.split(";")[0].strip().lower() == "application/json":
        return b"{}", "application/json"
    return trace_service_pb2.ExportTraceServiceResponse().SerializeToString(), (
        "application/x-protobuf"
    )
