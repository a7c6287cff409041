"""HTTP senders, one per protocol: each owns a bounded queue and a thread that posts payloads
with retries, so a slow or restarting server delays the simulator's output but never blocks
its clock, and memory stays bounded (when a queue is full the oldest payload is dropped and
counted)."""

from __future__ import annotations

import json
import queue
import threading
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2
from opentelemetry.proto.trace.v1 import trace_pb2

from signalroom.ingest.remote_write import encode_write_request
from signalroom.simulate.companies import LogLine, OtlpPoint, Span

_RETRY_STATUS = {429, 500, 502, 503, 504}


@dataclass
class Payload:
    """One HTTP request body for a protocol's endpoint."""

    path: str
    body: bytes
    headers: dict[str, str]


@dataclass
class SenderStats:
    """Per-protocol counts of what was sent, rejected and dropped."""

    sent: int = 0
    failed: int = 0
    dropped: int = 0
    last_error: str = ""
    by_status: dict[int, int] = field(default_factory=lambda: defaultdict(int))


class Sender:
    """Posts payloads for one protocol from a bounded queue on a background thread."""

    def __init__(
        self,
        name: str,
        client: httpx.Client,
        *,
        max_queue: int = 64,
        retries: int = 3,
        backoff: float = 0.2,
    ) -> None:
        self.name = name
        self.client = client
        self.retries = retries
        self.backoff = backoff
        self.stats = SenderStats()
        self._queue: queue.Queue[Payload | None] = queue.Queue(max_queue)
        self._abandon = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"sim-{name}", daemon=True)
        self._thread.start()

    def submit(self, payload: Payload) -> None:
        while True:
            try:
                self._queue.put_nowait(payload)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                    self.stats.dropped += 1
                except queue.Empty:
                    pass

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (up to ``timeout``), then stop the thread."""
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            self._abandon.set()  # the server is not taking data: give up on the backlog
        self._thread.join(timeout)

    def _loop(self) -> None:
        while (payload := self._queue.get()) is not None and not self._abandon.is_set():
            self._post(payload)

    def _post(self, payload: Payload) -> None:
        for attempt in range(self.retries + 1):
            try:
                response = self.client.post(
                    payload.path, content=payload.body, headers=payload.headers
                )
            except httpx.HTTPError as exc:
                self.stats.last_error = f"{type(exc).__name__}: {exc}"
            else:
                self.stats.by_status[response.status_code] += 1
                if response.status_code < 300:
                    self.stats.sent += 1
                    return
                self.stats.last_error = f"{response.status_code}: {response.text[:200]}"
                if response.status_code not in _RETRY_STATUS:
                    break
            if attempt < self.retries:
                time.sleep(self.backoff * 2**attempt)
        self.stats.failed += 1


# ------------------------------------------------------------------------------ encoders


def remote_write_payload(samples: Sequence[tuple[dict[str, str], float]], ts_ms: int) -> Payload:
    body = encode_write_request([(labels, [(ts_ms, value)]) for labels, value in samples])
    return Payload(
        "/api/v1/write",
        body,
        {
            "Content-Type": "application/x-protobuf",
            "Content-Encoding": "snappy",
            "X-Prometheus-Remote-Write-Version": "0.1.0",
        },
    )


def _attributes(values: dict[str, Any]) -> list[common_pb2.KeyValue]:
    out = []
    for key, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            any_value = common_pb2.AnyValue(string_value=str(value))
        elif isinstance(value, int):
            any_value = common_pb2.AnyValue(int_value=value)
        else:
            any_value = common_pb2.AnyValue(double_value=value)
        out.append(common_pb2.KeyValue(key=key, value=any_value))
    return out


_PROTOBUF = {"Content-Type": "application/x-protobuf"}


def otlp_metrics_payload(points: Sequence[OtlpPoint], start_ns: int, now_ns: int) -> Payload:
    """Cumulative monotonic sums (and gauges), one resource per service."""
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    by_service: dict[str, dict[str, list[OtlpPoint]]] = defaultdict(lambda: defaultdict(list))
    for point in points:
        by_service[point.service][point.name].append(point)
    for service, metrics in by_service.items():
        resource_metrics = request.resource_metrics.add()
        resource_metrics.resource.attributes.extend(_attributes({"service.name": service}))
        scope = resource_metrics.scope_metrics.add()
        scope.scope.name = "signalroom.simulate"
        for name, group in metrics.items():
            metric = scope.metrics.add(name=name)
            if group[0].monotonic_sum:
                metric.sum.aggregation_temporality = (
                    metrics_pb2.AggregationTemporality.AGGREGATION_TEMPORALITY_CUMULATIVE
                )
                metric.sum.is_monotonic = True
                data_points = metric.sum.data_points
            else:
                data_points = metric.gauge.data_points
            for point in group:
                dp = data_points.add(
                    start_time_unix_nano=start_ns, time_unix_nano=now_ns, as_double=point.value
                )
                dp.attributes.extend(_attributes(point.attributes))
    return Payload("/v1/metrics", request.SerializeToString(), _PROTOBUF)


def otlp_traces_payload(spans: Sequence[Span]) -> Payload:
    request = trace_service_pb2.ExportTraceServiceRequest()
    by_service: dict[str, list[Span]] = defaultdict(list)
    for span in spans:
        by_service[span.service].append(span)
    for service, group in by_service.items():
        resource_spans = request.resource_spans.add()
        resource_spans.resource.attributes.extend(
            _attributes({"service.name": service, "deployment.environment": "demo"})
        )
        scope = resource_spans.scope_spans.add()
        scope.scope.name = "signalroom.simulate"
        for span in group:
            out = scope.spans.add(
                trace_id=bytes.fromhex(span.trace_id),
                span_id=bytes.fromhex(span.span_id),
                parent_span_id=bytes.fromhex(span.parent_id) if span.parent_id else b"",
                name=span.name,
                kind=trace_pb2.Span.SPAN_KIND_SERVER
                if span.parent_id is None
                else trace_pb2.Span.SPAN_KIND_CLIENT
                if span.service == "database"
                else trace_pb2.Span.SPAN_KIND_SERVER,
                start_time_unix_nano=span.start_ns,
                end_time_unix_nano=span.end_ns,
            )
            out.attributes.extend(_attributes(span.attributes))
            if span.error:
                out.status.code = trace_pb2.Status.STATUS_CODE_ERROR
    return Payload("/v1/traces", request.SerializeToString(), _PROTOBUF)


def loki_payload(lines: Sequence[LogLine]) -> Payload:
    streams: dict[tuple[tuple[str, str], ...], list[list[Any]]] = defaultdict(list)
    for line in lines:
        metadata = {}
        if line.trace_id:
            metadata["trace_id"] = line.trace_id
        if line.span_id:
            metadata["span_id"] = line.span_id
        value: list[Any] = [str(line.ts_ns), line.line]
        if metadata:
            value.append(metadata)
        streams[tuple(sorted(line.stream.items()))].append(value)
    body = {"streams": [{"stream": dict(k), "values": v} for k, v in streams.items()]}
    return Payload("/loki/api/v1/push", json.dumps(body).encode(), _JSON)


_JSON = {"Content-Type": "application/json"}


def posthog_payload(events: Sequence[dict[str, Any]], api_key: str) -> Payload:
    body = {"api_key": api_key, "batch": list(events)}
    return Payload("/batch", json.dumps(body).encode(), _JSON)


def sr_events_payload(events: Sequence[dict[str, Any]]) -> Payload:
    return Payload("/api/sr/events", json.dumps({"events": list(events)}).encode(), _JSON)


def rum_payloads(reports: Sequence[dict[str, Any]], per_request: int = 100) -> list[Payload]:
    """Web-vitals reports as browsers beacon them (``text/plain`` JSON, at most 100 a body)."""
    headers = {"Content-Type": "text/plain;charset=UTF-8"}
    return [
        Payload("/api/rum", json.dumps(list(reports[i : i + per_request])).encode(), headers)
        for i in range(0, len(reports), per_request)
    ]
