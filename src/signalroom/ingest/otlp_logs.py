"""OTLP/HTTP logs (``POST /v1/logs``), protobuf and JSON encodings.

Stream labels come from resource attributes (``service.name`` → ``service``,
``deployment.environment`` → ``env``, ``host.name`` → ``host``) and the record's severity
(``level``); trace and span ids go to their columns, other attributes to structured metadata.
"""

from __future__ import annotations

import gzip
import json
from typing import Any

import numpy as np
from google.protobuf import json_format
from opentelemetry.proto.collector.logs.v1 import logs_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from signalroom.logs.pipeline import EntryBatch, IngestError, normalise_level

__all__ = ["decode_otlp_logs", "export_response"]

_RESOURCE_LABELS = {
    "service.name": "service", "deployment.environment": "env",
    "deployment.environment.name": "env", "host.name": "host",
    "service.namespace": "namespace", "k8s.namespace.name": "namespace",
}  # fmt: skip
_SEVERITY_BY_NUMBER = ["unknown"] + ["trace"] * 4 + ["debug"] * 4 + ["info"] * 4 + \
    ["warn"] * 4 + ["error"] * 4 + ["fatal"] * 4  # fmt: skip


def _any_value(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind is None:
        return None
    if kind == "kvlist_value":
        return {kv.key: _any_value(kv.value) for kv in value.kvlist_value.values}
    if kind == "array_value":
        return [_any_value(v) for v in value.array_value.values]
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return getattr(value, kind)


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    return "" if value is None else str(value)


def decode_otlp_logs(body: bytes, content_type: str, content_encoding: str = "") -> EntryBatch:
    """An ``ExportLogsServiceRequest`` to entries. Raises IngestError naming the problem."""
    if content_encoding.lower() == "gzip":
        try:
            body = gzip.decompress(body)
        except Exception as exc:
            raise IngestError(f"cannot decompress the gzip body: {exc}") from None
    request = logs_service_pb2.ExportLogsServiceRequest()
    kind = content_type.split(";")[0].strip().lower()
    try:
        if kind == "application/json":
            json_format.Parse(body.decode("utf-8"), request, ignore_unknown_fields=True)
        elif kind in ("application/x-protobuf", "application/protobuf", ""):
            request.ParseFromString(body)
        else:
            raise IngestError(
                f"unsupported Content-Type {kind!r}: use application/x-protobuf or application/json"
            )
    except IngestError:
        raise
    except Exception as exc:
        raise IngestError(f"invalid OTLP ExportLogsServiceRequest ({kind}): {exc}") from None
    stream_of: dict[tuple[tuple[str, str], ...], int] = {}
    streams: list[dict[str, str]] = []
    index: list[int] = []
    stamps: list[int] = []
    lines: list[str] = []
    traces: list[str | None] = []
    spans: list[str | None] = []
    metadata: list[str | None] = []
    for resource_logs in request.resource_logs:
        resource_labels: dict[str, str] = {}
        resource_meta: dict[str, str] = {}
        for kv in resource_logs.resource.attributes:
            label = _RESOURCE_LABELS.get(kv.key)
            if label is not None:
                resource_labels.setdefault(label, _text(_any_value(kv.value)))
            else:
                resource_meta[kv.key] = _text(_any_value(kv.value))
        for scope_logs in resource_logs.scope_logs:
            scope = scope_logs.scope.name
            for record in scope_logs.log_records:
                labels = dict(resource_labels)
                if record.severity_text:
                    labels["level"] = normalise_level(record.severity_text)
                elif record.severity_number:
                    number = int(record.severity_number)
                    labels["level"] = _SEVERITY_BY_NUMBER[min(number, 24)]
                key = tuple(sorted(labels.items()))
                position = stream_of.get(key)
                if position is None:
                    position = stream_of[key] = len(streams)
                    streams.append(labels)
                index.append(position)
                stamps.append(record.time_unix_nano or record.observed_time_unix_nano)
                lines.append(_text(_any_value(record.body)))
                traces.append(record.trace_id.hex() if record.trace_id else None)
                spans.append(record.span_id.hex() if record.span_id else None)
                meta = dict(resource_meta)
                if scope:
                    meta["scope_name"] = scope
                for kv in record.attributes:
                    meta[kv.key] = _text(_any_value(kv.value))
                metadata.append(
                    json.dumps(meta, sort_keys=True, separators=(",", ":")) if meta else None
                )
    stamp_array = np.asarray(stamps, np.int64)
    if len(stamp_array):
        missing = stamp_array == 0
        if missing.any():
            import time

            stamp_array[missing] = time.time_ns()
    return EntryBatch(
        streams, np.asarray(index, np.int64), stamp_array, lines, traces, spans, metadata
    )


def export_response(content_type: str) -> tuple[bytes, str]:
    """An empty ``ExportLogsServiceResponse`` in the request's encoding."""
    response = logs_service_pb2.ExportLogsServiceResponse()
    if content_type.split(";")[0].strip().lower() == "application/json":
        return b"{}", "application/json"
    return response.SerializeToString(), "application/x-protobuf"
