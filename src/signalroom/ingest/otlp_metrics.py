"""OTLP/HTTP metrics (``POST /v1/metrics``), protobuf and JSON encodings.

Translation follows the OpenTelemetry "Prometheus and OpenMetrics compatibility" spec as
Prometheus's own OTLP receiver applies it (underscore escaping with suffixes):

- names: runs of characters outside ``[a-zA-Z0-9:]`` become one ``_``; the unit becomes a
  suffix (``s`` -> ``_seconds``, ``By`` -> ``_bytes``, ``m/s`` -> ``_meters_per_second``,
  ``{...}`` annotations dropped) unless the name already has it; monotonic sums end in
  ``_total``, gauges with unit ``1`` in ``_ratio``; a leading digit gets a ``_`` prefix;
- attributes become labels (invalid characters -> ``_``, a leading digit -> ``key_``, a single
  leading ``_`` -> ``key_``); attributes that sanitise to the same name have their values
  joined with ``;`` in the order of the original keys;
- ``service.namespace``/``service.name`` become ``job`` and ``service.instance.id``
  ``instance``; the other resource attributes go to ``target_info{job, instance, ...} 1``;
- only cumulative temporality is stored: delta sums and histograms, and exponential
  histograms (native histograms are not supported yet), are rejected with a message naming
  the metric, and the rest of the request is stored;
- histograms become classic ``_bucket{le}`` (cumulative), ``_sum`` and ``_count`` series,
  summaries ``{quantile}``, ``_sum`` and ``_count``; a point flagged
  ``FLAG_NO_RECORDED_VALUE`` becomes a staleness marker.

``handle_otlp_metrics`` maps a request to an HTTP status and an ``ExportMetricsServiceResponse``
(or a ``google.rpc.Status`` for errors) in the encoding of the request.
"""

from __future__ import annotations

import json
import logging
import re
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import numpy as np
from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.model.samples import STALE_NAN
from signalroom.storage.wal import WALError
from signalroom.tsdb.batch import MetricMetadata, SampleBatch
from signalroom.tsdb.errors import LimitError, TSDBError

__all__ = [
    "MAX_BODY_BYTES",
    "OTLPMetricsError",
    "TranslatedMetrics",
    "decode_export_request",
    "handle_otlp_metrics",
    "metric_name",
    "normalize_label",
    "translate",
]

logger = logging.getLogger("signalroom.ingest.otlp_metrics")

MAX_BODY_BYTES = 64 * 2**20
PROTOBUF = "application/x-protobuf"
JSON = "application/json"
# limits that may clear up (series go away): the sender may retry
_RETRYABLE_REASONS = frozenset(
    {"max_series_total", "max_series_per_tenant", "max_series_per_metric"}
)

_CUMULATIVE = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
_NO_RECORDED_VALUE = metrics_pb2.DATA_POINT_FLAGS_NO_RECORDED_VALUE_MASK

# OTel (UCUM) units to Prometheus unit words, from the compatibility spec.
_UNITS = {
    "d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds",
    "us": "microseconds", "ns": "nanoseconds",
    "By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes",
    "TiBy": "tebibytes", "KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes",
    "TBy": "terabytes",
    "m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
    "Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}  # fmt: skip
_PER_UNITS = {
    "s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month",
    "y": "year",
}  # fmt: skip
_NAME_SPLIT = re.compile(r"[^a-zA-Z0-9:]+")
_LABEL_INVALID = re.compile(r"[^a-zA-Z0-9_]")
_UNIT_INVALID = re.compile(r"[^a-zA-Z0-9]+")


class OTLPMetricsError(ValueError):
    """The request cannot be taken; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- names ----------------------------------------------------------------------------------


def _unit_word(unit: str, table: Mapping[str, str]) -> str:
    unit = unit.strip()
    if not unit or "{" in unit or "}" in unit:
        return ""
    word = table.get(unit, unit)
    return _UNIT_INVALID.sub("_", word).strip("_")


def metric_name(name: str, unit: str = "", *, kind: str = "gauge", monotonic: bool = False) -> str:
    """The Prometheus name of an OTel metric (``kind``: gauge, sum, histogram, summary)."""
    tokens = [t for t in _NAME_SPLIT.split(name) if t]
    main, _, per = unit.partition("/")
    main_word = _unit_word(main, _UNITS)
    if main_word and main_word not in tokens:
        tokens.append(main_word)
    if per:
        per_word = _unit_word(per, _PER_UNITS)
        if per_word and per_word not in tokens:
            tokens += ["per", per_word]
    if kind == "sum" and monotonic:
        tokens = [t for t in tokens if t != "total"] + ["total"]
    if unit == "1" and kind == "gauge":
        tokens = [t for t in tokens if t != "ratio"] + ["ratio"]
    result = "_".join(tokens)
    if result[:1].isdigit():
        result = "_" + result
    return result


def prometheus_unit(unit: str) -> str:
    """The unit as Prometheus metadata names it (``s`` -> ``seconds``)."""
    main, _, per = unit.partition("/")
    words = _unit_word(main, _UNITS)
    per_word = _unit_word(per, _PER_UNITS) if per else ""
    if per_word:
        words = f"{words}_per_{per_word}" if words else f"per_{per_word}"
    return words


def normalize_label(name: str) -> str:
    """A valid Prometheus label name for an OTel attribute key."""
    if not name:
        return name
    label = _LABEL_INVALID.sub("_", name)
    if label[0].isdigit():
        return "key_" + label
    if label.startswith("_") and not label.startswith("__"):
        return "key" + label
    return label


def _format_float(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, no exponent."""
    if value != value:
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(float(value))), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# -- attributes -----------------------------------------------------------------------------


def _any_text(value: common_pb2.AnyValue) -> str:
    kind = value.WhichOneof("value")
    if kind is None:
        return ""
    if kind == "string_value":
        return value.string_value
    if kind == "bool_value":
        return "true" if value.bool_value else "false"
    if kind == "int_value":
        return str(value.int_value)
    if kind == "double_value":
        return _format_float(value.double_value)
    if kind == "bytes_value":
        return value.bytes_value.hex()
    return json.dumps(_any_json(value), separators=(",", ":"), ensure_ascii=False)


def _any_json(value: common_pb2.AnyValue) -> Any:
    kind = value.WhichOneof("value")
    if kind == "array_value":
        return [_any_json(v) for v in value.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _any_json(kv.value) for kv in value.kvlist_value.values}
    if kind in ("int_value", "double_value", "bool_value", "string_value"):
        return getattr(value, kind)
    return _any_text(value)


def _attribute_labels(attributes: Iterable[common_pb2.KeyValue]) -> dict[str, str]:
    """Sanitised label names; collisions joined with ``;`` in the order of the keys."""
    raw = sorted((kv.key, _any_text(kv.value)) for kv in attributes)
    labels: dict[str, str] = {}
    for key, value in raw:
        name = normalize_label(key)
        if not name or not value:
            continue
        labels[name] = f"{labels[name]};{value}" if name in labels else value
    return labels


_JOB_KEYS = ("service.name", "service.namespace", "service.instance.id")


def _resource_identity(
    attributes: Iterable[common_pb2.KeyValue],
) -> tuple[dict[str, str], dict[str, str]]:
    """(job/instance labels, target_info labels of the other attributes)."""
    attrs = list(attributes)
    values = {kv.key: _any_text(kv.value) for kv in attrs}
    identity: dict[str, str] = {}
    name = values.get("service.name", "")
    namespace = values.get("service.namespace", "")
    if name:
        identity["job"] = f"{namespace}/{name}" if namespace else name
    if values.get("service.instance.id"):
        identity["instance"] = values["service.instance.id"]
    info = _attribute_labels(kv for kv in attrs if kv.key not in _JOB_KEYS)
    return identity, info


# -- decoding -------------------------------------------------------------------------------


def _media(content_type: str) -> str:
    media = content_type.split(";", 1)[0].strip().lower()
    if media in ("", PROTOBUF, "application/protobuf"):
        return PROTOBUF
    if media == JSON:
        return JSON
    raise OTLPMetricsError(
        f"unsupported Content-Type {content_type!r}: send {PROTOBUF} or {JSON}", status=415
    )


def _decompress(body: bytes, content_encoding: str) -> bytes:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        if len(body) > MAX_BODY_BYTES:
            raise OTLPMetricsError(f"body is larger than the limit {MAX_BODY_BYTES} bytes", 413)
        return body
    if encoding != "gzip":
        raise OTLPMetricsError(
            f"unsupported Content-Encoding {content_encoding!r}: send gzip or none", status=415
        )
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        data = inflater.decompress(body, MAX_BODY_BYTES + 1)
    except zlib.error as exc:
        raise OTLPMetricsError(f"cannot decompress the gzip body: {exc}") from None
    if len(data) > MAX_BODY_BYTES:
        raise OTLPMetricsError(
            f"decompressed body is larger than the limit {MAX_BODY_BYTES} bytes", status=413
        )
    if not inflater.eof:
        raise OTLPMetricsError("cannot decompress the gzip body: it is truncated")
    return data


def _drop_exemplars(node: Any) -> Any:
    """Exemplars are not stored; dropping them spares OTLP/JSON's hex ids, which
    ``json_format`` would read as base64."""
    if isinstance(node, dict):
        return {k: _drop_exemplars(v) for k, v in node.items() if k != "exemplars"}
    if isinstance(node, list):
        return [_drop_exemplars(v) for v in node]
    return node


def decode_export_request(
    body: bytes, content_type: str = PROTOBUF, content_encoding: str = ""
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    """Decode an OTLP/HTTP metrics body; raises OTLPMetricsError naming the problem."""
    media = _media(content_type)
    data = _decompress(body, content_encoding)
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    if media == JSON:
        try:
            payload = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise OTLPMetricsError(f"body is not valid JSON: {exc}") from None
        if not isinstance(payload, dict):
            raise OTLPMetricsError("body must be a JSON object (an ExportMetricsServiceRequest)")
        try:
            json_format.ParseDict(_drop_exemplars(payload), request, ignore_unknown_fields=True)
        except json_format.ParseError as exc:
            raise OTLPMetricsError(
                f"invalid OTLP/JSON ExportMetricsServiceRequest: {exc}"
            ) from None
    else:
        try:
            request.ParseFromString(data)
        except DecodeError as exc:
            raise OTLPMetricsError(
                f"body is not a valid ExportMetricsServiceRequest protobuf: {exc}"
            ) from None
    return request


# -- translation ----------------------------------------------------------------------------


@dataclass
class TranslatedMetrics:
    """Samples and metadata of a request, and the data points that were not taken."""

    batch: SampleBatch
    metadata: list[MetricMetadata]
    data_points: int = 0
    rejected_points: int = 0
    problems: list[str] = field(default_factory=list)


class _Builder:
    """Collects (labels, timestamp, value) samples, one series index per distinct label set."""

    def __init__(self) -> None:
        self.index: dict[Labels, int] = {}
        self.series: list[Labels] = []
        self.rows: list[int] = []
        self.stamps: list[int] = []
        self.values: list[float] = []

    def add(self, labels: dict[str, str], timestamp: int, value: float) -> None:
        key = Labels(labels)
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.series)
            self.series.append(key)
        self.rows.append(i)
        self.stamps.append(timestamp)
        self.values.append(value)

    def batch(self) -> SampleBatch:
        return SampleBatch(
            np.array(self.rows, dtype=np.int32),
            np.array(self.stamps, dtype=np.int64),
            np.array(self.values, dtype=np.float64),
            series=self.series,
        )


def _number(point: metrics_pb2.NumberDataPoint) -> float:
    if point.WhichOneof("value") == "as_int":
        return float(point.as_int)
    return float(point.as_double)


def _stamp(time_unix_nano: int, now_ms: int) -> int:
    return time_unix_nano // 1_000_000 if time_unix_nano else now_ms


def translate(
    request: metrics_service_pb2.ExportMetricsServiceRequest, *, now_ms: int | None = None
) -> TranslatedMetrics:
    """Turn an export request into a sample batch per the Prometheus compatibility spec."""
    now = int(time.time() * 1000) if now_ms is None else now_ms
    out = _Builder()
    metadata: dict[str, MetricMetadata] = {}
    result_points = 0
    rejected: dict[str, tuple[str, int]] = {}  # metric -> (why, points)

    def reject(name: str, why: str, points: int) -> None:
        _, before = rejected.get(name, (why, 0))
        rejected[name] = (why, before + points)

    for resource_metrics in request.resource_metrics:
        identity, info = _resource_identity(resource_metrics.resource.attributes)
        newest = -1
        for scope_metrics in resource_metrics.scope_metrics:
            for metric in scope_metrics.metrics:
                kind = metric.WhichOneof("data")
                if kind is None:
                    continue
                data = getattr(metric, kind)
                points = data.data_points
                result_points += len(points)
                if kind == "exponential_histogram":
                    reject(metric.name, "exponential histograms (native histograms) are not "
                           "supported", len(points))  # fmt: skip
                    continue
                if kind in ("sum", "histogram") and data.aggregation_temporality != _CUMULATIVE:
                    temporality = (
                        metrics_pb2.AggregationTemporality.Name(data.aggregation_temporality)
                        .removeprefix("AGGREGATION_TEMPORALITY_")
                        .lower()
                    )
                    reject(metric.name, f"{temporality} temporality is not supported, only "
                           "cumulative", len(points))  # fmt: skip
                    continue
                monotonic = kind == "sum" and data.is_monotonic
                as_kind = "sum" if monotonic else ("gauge" if kind == "sum" else kind)
                name = metric_name(metric.name, metric.unit, kind=as_kind, monotonic=monotonic)
                if not name:
                    reject(metric.name or "(unnamed)", "the metric has no usable name", len(points))
                    continue
                prom_type = {"sum": "counter", "gauge": "gauge", "histogram": "histogram",
                             "summary": "summary"}[as_kind]  # fmt: skip
                metadata[name] = MetricMetadata(
                    name, prom_type, metric.description, prometheus_unit(metric.unit)
                )
                for point in points:
                    base = _attribute_labels(point.attributes)
                    base.update(identity)
                    ts = _stamp(point.time_unix_nano, now)
                    newest = max(newest, ts)
                    stale = bool(point.flags & _NO_RECORDED_VALUE)
                    if kind in ("gauge", "sum"):
                        value = STALE_NAN if stale else _number(point)
                        out.add({**base, METRIC_NAME: name}, ts, value)
                    elif kind == "histogram":
                        _histogram(out, name, base, ts, point, stale)
                    else:
                        _summary(out, name, base, ts, point, stale)
        if info and newest >= 0:
            out.add({**info, **identity, METRIC_NAME: "target_info"}, newest, 1.0)
    problems = [
        f'metric "{name}": {why}; {points} data point(s) rejected'
        for name, (why, points) in sorted(rejected.items())
    ]
    return TranslatedMetrics(
        out.batch(),
        list(metadata.values()),
        result_points,
        sum(points for _, points in rejected.values()),
        problems,
    )


def _histogram(
    out: _Builder,
    name: str,
    base: dict[str, str],
    ts: int,
    point: metrics_pb2.HistogramDataPoint,
    stale: bool,
) -> None:
    counts = np.cumsum(np.asarray(point.bucket_counts, dtype=np.float64))
    bounds = list(point.explicit_bounds)
    for i, bound in enumerate(bounds):
        value = (
            STALE_NAN if stale else (float(counts[i]) if i < len(counts) else float(point.count))
        )
        out.add({**base, METRIC_NAME: f"{name}_bucket", "le": _format_float(bound)}, ts, value)
    out.add(
        {**base, METRIC_NAME: f"{name}_bucket", "le": "+Inf"},
        ts,
        STALE_NAN if stale else float(point.count),
    )
    if point.HasField("sum") or stale:
        out.add({**base, METRIC_NAME: f"{name}_sum"}, ts, STALE_NAN if stale else point.sum)
    out.add({**base, METRIC_NAME: f"{name}_count"}, ts, STALE_NAN if stale else float(point.count))


def _summary(
    out: _Builder,
    name: str,
    base: dict[str, str],
    ts: int,
    point: metrics_pb2.SummaryDataPoint,
    stale: bool,
) -> None:
    for quantile in point.quantile_values:
        out.add(
            {**base, METRIC_NAME: name, "quantile": _format_float(quantile.quantile)},
            ts,
            STALE_NAN if stale else quantile.value,
        )
    out.add({**base, METRIC_NAME: f"{name}_sum"}, ts, STALE_NAN if stale else point.sum)
    out.add({**base, METRIC_NAME: f"{name}_count"}, ts, STALE_NAN if stale else float(point.count))


# -- responses ------------------------------------------------------------------------------


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def status_body(code: int, message: str, media: str) -> bytes:
    """A ``google.rpc.Status`` (the OTLP error body) in the request's encoding."""
    if media == JSON:
        return json.dumps({"code": code, "message": message}).encode()
    text = message.encode()
    return b"\x08" + _varint(code) + b"\x12" + _varint(len(text)) + text


def export_response(media: str, rejected: int = 0, message: str = "") -> bytes:
    """An ``ExportMetricsServiceResponse``, with ``partial_success`` when points were rejected."""
    response = metrics_service_pb2.ExportMetricsServiceResponse()
    if rejected or message:
        response.partial_success.rejected_data_points = rejected
        response.partial_success.error_message = message
    if media == JSON:
        text: str = json_format.MessageToJson(response, indent=None)
        return text.encode()
    body: bytes = response.SerializeToString()
    return body


# gRPC codes used in Status bodies: INVALID_ARGUMENT, RESOURCE_EXHAUSTED, UNAVAILABLE, INTERNAL
_GRPC_CODE = {400: 3, 413: 3, 415: 3, 429: 8, 500: 13, 503: 14}


def _header(headers: Mapping[str, str], name: str) -> str:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return ""


def handle_otlp_metrics(
    tsdb: Any, tenant: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, bytes, str]:
    """Store one OTLP/HTTP metrics request: (HTTP status, body, media type).

    200 stored (with ``partial_success`` when the store rejected some samples, such as out of
    order ones); 400 malformed body, or data points that cannot be stored (delta temporality,
    exponential histograms: the rest of the request is stored and the message names the
    metrics); 413 too large; 415 unsupported encoding; 429 a retryable series limit;
    500/503 the store failed (retry).
    """
    content_type = _header(headers, "content-type")
    try:
        media = _media(content_type)
    except OTLPMetricsError as exc:
        return exc.status, status_body(3, str(exc), PROTOBUF), PROTOBUF

    def error(status: int, message: str) -> tuple[int, bytes, str]:
        return status, status_body(_GRPC_CODE.get(status, 2), message, media), media

    try:
        request = decode_export_request(body, content_type, _header(headers, "content-encoding"))
        translated = translate(request)
    except OTLPMetricsError as exc:
        return error(exc.status, str(exc))
    try:
        result = tsdb.append(tenant, translated.batch)
        if translated.metadata:
            tsdb.add_metadata(tenant, translated.metadata)
    except LimitError as exc:
        return error(429 if exc.retryable else 400, f"{exc} (limit {exc.limit})")
    except (WALError, OSError) as exc:
        logger.error("OTLP metrics: storage failed: %s", exc)
        return error(500, f"storage error: {exc}")
    except TSDBError as exc:
        return error(503, f"storage unavailable: {exc}")
    if translated.problems:
        message = "; ".join(translated.problems)
        if not result.ok:
            message += "; " + result.summary()
        return error(400, message)
    if not result.ok:
        if set(result.rejected) <= _RETRYABLE_REASONS:
            return error(429, result.summary())
        return 200, export_response(media, result.rejected_samples, result.summary()), media
    return 200, export_response(media), media
