"""Zipkin v2 JSON spans (``POST /api/v2/spans``): a JSON array of span objects.

Mapped as the OpenTelemetry Collector's zipkin receiver maps them: ``localEndpoint.serviceName``
is the service, ``kind`` becomes the span kind, ``tags`` the attributes (an ``error`` tag makes
the status an error), ``annotations`` the events, ``remoteEndpoint`` the ``peer.*`` attributes.
Times are microseconds. ``debug: true`` forces the trace to be kept by the tail sampler.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

from signalroom.traces.model import (
    KIND_BY_NAME,
    STATUS_ERROR,
    STATUS_UNSET,
    SpanColumns,
    SpanIngestError,
    dumps,
    normalise_trace_id,
)

__all__ = ["decode_zipkin"]

_HEX = frozenset("0123456789abcdef")


def _span_id(value: Any, where: str, *, required: bool) -> str | None:
    if value in (None, "") and not required:
        return None
    if not isinstance(value, str) or not 1 <= len(value) <= 16 or not set(value.lower()) <= _HEX:
        raise SpanIngestError(f"{where}: expected 16 hex digits, got {value!r}")
    text = value.lower().rjust(16, "0")
    if text == "0" * 16:
        if required:
            raise SpanIngestError(f"{where}: the id is all zeros")
        return None
    return text


def _micros(value: Any, where: str, *, required: bool) -> int:
    if value is None and not required:
        return 0
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise SpanIngestError(f"{where}: expected microseconds as a number, got {value!r}")
    return int(value)


def decode_zipkin(body: bytes, content_type: str = "", content_encoding: str = "") -> SpanColumns:
    """Zipkin v2 JSON to span columns. Raises SpanIngestError naming the span and field."""
    if content_encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except Exception as exc:
            raise SpanIngestError(f"cannot decompress the gzip body: {exc}") from None
    kind = content_type.split(";")[0].strip().lower()
    if kind and kind not in ("application/json", "text/plain"):
        raise SpanIngestError(
            f"unsupported Content-Type {kind!r}: only Zipkin v2 JSON (application/json) is taken"
        )
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise SpanIngestError(f"invalid JSON: {exc}") from None
    if not isinstance(payload, list):
        raise SpanIngestError("expected a JSON array of Zipkin v2 spans")
    out = SpanColumns()
    for i, span in enumerate(payload):
        where = f"span[{i}]"
        if not isinstance(span, dict):
            raise SpanIngestError(f"{where}: expected a JSON object")
        raw_trace = span.get("traceId")
        if not isinstance(raw_trace, str):
            raise SpanIngestError(f"{where}.traceId: missing or not a string")
        try:
            trace_id = normalise_trace_id(raw_trace)
        except ValueError as exc:
            raise SpanIngestError(f"{where}.traceId: {exc}") from None
        span_id = _span_id(span.get("id"), f"{where}.id", required=True)
        assert span_id is not None
        parent = _span_id(span.get("parentId"), f"{where}.parentId", required=False)
        start = _micros(span.get("timestamp"), f"{where}.timestamp", required=True)
        duration = _micros(span.get("duration"), f"{where}.duration", required=False)
        local = span.get("localEndpoint") or {}
        remote = span.get("remoteEndpoint") or {}
        if not isinstance(local, dict) or not isinstance(remote, dict):
            raise SpanIngestError(f"{where}: localEndpoint and remoteEndpoint must be objects")
        tags = span.get("tags") or {}
        if not isinstance(tags, dict) or not all(isinstance(v, str) for v in tags.values()):
            raise SpanIngestError(f"{where}.tags: expected an object of string values")
        zipkin_kind = span.get("kind")
        if zipkin_kind is not None and (
            not isinstance(zipkin_kind, str) or zipkin_kind.lower() not in KIND_BY_NAME
        ):
            raise SpanIngestError(
                f"{where}.kind: expected CLIENT, SERVER, PRODUCER or CONSUMER, got {zipkin_kind!r}"
            )
        annotations = span.get("annotations") or []
        if not isinstance(annotations, list):
            raise SpanIngestError(f"{where}.annotations: expected an array")
        events = []
        for j, annotation in enumerate(annotations):
            if not isinstance(annotation, dict) or not isinstance(annotation.get("value"), str):
                raise SpanIngestError(f"{where}.annotations[{j}]: expected timestamp and value")
            stamp = _micros(annotation.get("timestamp"), f"{where}.annotations[{j}]", required=True)
            events.append({"time": stamp * 1000, "name": annotation["value"], "attributes": {}})
        attributes: dict[str, Any] = dict(tags)
        error = "error" in attributes
        message = attributes.pop("error", None) if error else None
        for key, attr in (("serviceName", "peer.service"), ("ipv4", "net.peer.ip"),
                          ("ipv6", "net.peer.ip"), ("port", "net.peer.port")):  # fmt: skip
            if remote.get(key) not in (None, ""):
                attributes.setdefault(attr, remote[key])
        resource: dict[str, Any] = {
            "service.name": str(local.get("serviceName") or "unknown_service")
        }
        if local.get("ipv4"):
            resource["host.ip"] = local["ipv4"]
        out.trace_id.append(trace_id)
        out.span_id.append(span_id)
        out.parent_span_id.append(parent)
        out.service.append(resource["service.name"])
        out.name.append(str(span.get("name") or ""))
        out.kind.append(KIND_BY_NAME[zipkin_kind.lower()] if zipkin_kind else 0)
        out.start_time.append(start * 1000)
        out.duration.append(duration * 1000)
        out.status_code.append(STATUS_ERROR if error else STATUS_UNSET)
        out.status_message.append(message or None)
        out.flags.append(0)
        out.trace_state.append(None)
        out.scope.append(None)
        out.attributes.append(dumps(attributes))
        out.resource.append(dumps(resource))
        out.events.append(dumps(events) if events else None)
        out.links.append(None)
        out.head_keep.append(True if span.get("debug") is True else None)
    return out
