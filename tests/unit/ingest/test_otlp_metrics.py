"""OTLP metrics translation (names, units, labels, resources, types) and the HTTP mapping,
on a real TSDB in a temporary directory."""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from google.protobuf import json_format
from opentelemetry.proto.collector.metrics.v1 import metrics_service_pb2
from opentelemetry.proto.common.v1 import common_pb2
from opentelemetry.proto.metrics.v1 import metrics_pb2

from signalroom.ingest.otlp_metrics import (
    OTLPMetricsError,
    decode_export_request,
    handle_otlp_metrics,
    metric_name,
    normalize_label,
    translate,
)
from signalroom.model.labels import Labels
from signalroom.model.samples import is_stale_nan
from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb import TSDB

pytestmark = pytest.mark.unit

T_NS = 1_700_000_000_000 * 1_000_000
T_MS = 1_700_000_000_000
PB = {"content-type": "application/x-protobuf"}


def attrs(**values: object) -> list[common_pb2.KeyValue]:
    out = []
    for key, value in values.items():
        kv = common_pb2.KeyValue(key=key.replace("__", "."))
        if isinstance(value, bool):
            kv.value.bool_value = value
        elif isinstance(value, int):
            kv.value.int_value = value
        elif isinstance(value, float):
            kv.value.double_value = value
        else:
            kv.value.string_value = str(value)
        out.append(kv)
    return out


def request_with(
    *metrics: metrics_pb2.Metric, resource: dict[str, object] | None = None
) -> metrics_service_pb2.ExportMetricsServiceRequest:
    request = metrics_service_pb2.ExportMetricsServiceRequest()
    rm = request.resource_metrics.add()
    rm.resource.attributes.extend(
        attrs(**(resource if resource is not None else {"service__name": "api"}))
    )
    rm.scope_metrics.add().metrics.extend(metrics)
    return request


def gauge(name: str, value: float, unit: str = "", **labels: object) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit, description="a gauge")
    point = metric.gauge.data_points.add(time_unix_nano=T_NS, as_double=value)
    point.attributes.extend(attrs(**labels))
    return metric


def counter(
    name: str,
    value: int,
    *,
    unit: str = "",
    temporality: int = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE,
    monotonic: bool = True,
) -> metrics_pb2.Metric:
    metric = metrics_pb2.Metric(name=name, unit=unit)
    metric.sum.aggregation_temporality = metrics_pb2.AggregationTemporality.ValueType(temporality)
    metric.sum.is_monotonic = monotonic
    metric.sum.data_points.add(time_unix_nano=T_NS, as_int=value)
    return metric


def samples(request: metrics_service_pb2.ExportMetricsServiceRequest) -> dict[Labels, float]:
    translated = translate(request, now_ms=T_MS)
    batch = translated.batch
    assert batch.series is not None
    return {
        batch.series[int(i)]: float(v)
        for i, v in zip(batch.series_index, batch.values, strict=True)
    }


@pytest.mark.parametrize(
    ("name", "unit", "kind", "monotonic", "expected"),
    [
        ("http.server.duration", "s", "histogram", False, "http_server_duration_seconds"),
        ("http.server.request.size", "By", "histogram", False, "http_server_request_size_bytes"),
        ("requests", "{requests}", "sum", True, "requests_total"),
        ("requests_total", "", "sum", True, "requests_total"),
        ("cpu.utilization", "1", "gauge", False, "cpu_utilization_ratio"),
        ("cpu.utilization", "1", "sum", False, "cpu_utilization"),
        ("speed", "m/s", "gauge", False, "speed_meters_per_second"),
        ("packets", "{packets}/s", "gauge", False, "packets_per_second"),
        ("latency_seconds", "s", "gauge", False, "latency_seconds"),
        ("2xx.count", "", "gauge", False, "_2xx_count"),
        ("a..b--c", "", "gauge", False, "a_b_c"),
        ("memory", "MiBy", "gauge", False, "memory_mebibytes"),
        ("temp", "Cel", "gauge", False, "temp_celsius"),
    ],
)
def test_metric_names(name: str, unit: str, kind: str, monotonic: bool, expected: str) -> None:
    assert metric_name(name, unit, kind=kind, monotonic=monotonic) == expected


@pytest.mark.parametrize(
    ("key", "expected"),
    [("http.method", "http_method"), ("0day", "key_0day"), ("_private", "key_private"),
     ("__reserved", "__reserved"), ("ok_name", "ok_name")],
)  # fmt: skip
def test_label_names(key: str, expected: str) -> None:
    assert normalize_label(key) == expected


def test_gauge_and_counter_with_resource_identity_and_target_info() -> None:
    request = request_with(
        gauge("queue.depth", 7.5, **{"queue__name": "orders"}),
        counter("jobs.done", 42),
        resource={
            "service__name": "billing",
            "service__namespace": "shop",
            "service__instance__id": "pod-1",
            "host__name": "node-a",
            "k8s.pod.uid": "u1",
        },
    )
    got = samples(request)
    assert got[Labels({"__name__": "queue_depth", "queue_name": "orders", "job": "shop/billing",
                       "instance": "pod-1"})] == 7.5  # fmt: skip
    assert got[Labels({"__name__": "jobs_done_total", "job": "shop/billing",
                       "instance": "pod-1"})] == 42  # fmt: skip
    info = Labels({"__name__": "target_info", "job": "shop/billing", "instance": "pod-1",
                   "host_name": "node-a", "k8s_pod_uid": "u1"})  # fmt: skip
    assert got[info] == 1.0
    assert len(got) == 3


def test_no_target_info_without_other_resource_attributes() -> None:
    got = samples(request_with(gauge("g", 1.0)))
    assert [labels.name for labels in got] == ["g"]


def test_colliding_attributes_are_joined() -> None:
    got = samples(request_with(gauge("g", 1.0, **{"a.b": "x", "a_b": "y"})))
    (labels,) = got
    assert labels.get("a_b") == "x;y"


def test_histogram_becomes_classic_buckets() -> None:
    metric = metrics_pb2.Metric(name="http.duration", unit="ms", description="latency")
    metric.histogram.aggregation_temporality = metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    point = metric.histogram.data_points.add(
        time_unix_nano=T_NS, count=10, sum=123.5, bucket_counts=[2, 3, 5],
        explicit_bounds=[0.1, 1.0],
    )  # fmt: skip
    point.attributes.extend(attrs(route="/a"))
    translated = translate(request_with(metric), now_ms=T_MS)
    got = samples(request_with(metric))
    base = {"job": "api", "route": "/a"}
    name = "http_duration_milliseconds"
    assert got[Labels({**base, "__name__": f"{name}_bucket", "le": "0.1"})] == 2
    assert got[Labels({**base, "__name__": f"{name}_bucket", "le": "1"})] == 5
    assert got[Labels({**base, "__name__": f"{name}_bucket", "le": "+Inf"})] == 10
    assert got[Labels({**base, "__name__": f"{name}_sum"})] == 123.5
    assert got[Labels({**base, "__name__": f"{name}_count"})] == 10
    assert len(got) == 5
    (meta,) = translated.metadata
    assert (meta.metric, meta.type, meta.help, meta.unit) == (name, "histogram", "latency",
                                                             "milliseconds")  # fmt: skip


def test_summary_quantiles() -> None:
    metric = metrics_pb2.Metric(name="rpc.latency", unit="s")
    point = metric.summary.data_points.add(time_unix_nano=T_NS, count=4, sum=2.0)
    point.quantile_values.add(quantile=0.5, value=0.4)
    point.quantile_values.add(quantile=0.99, value=0.9)
    got = samples(request_with(metric))
    name = "rpc_latency_seconds"
    assert got[Labels({"job": "api", "__name__": name, "quantile": "0.5"})] == 0.4
    assert got[Labels({"job": "api", "__name__": name, "quantile": "0.99"})] == 0.9
    assert got[Labels({"job": "api", "__name__": f"{name}_sum"})] == 2.0
    assert got[Labels({"job": "api", "__name__": f"{name}_count"})] == 4


def test_no_recorded_value_is_a_staleness_marker() -> None:
    metric = gauge("g", 3.0)
    metric.gauge.data_points[0].flags = 1
    (value,) = samples(request_with(metric)).values()
    assert is_stale_nan(value)


def test_delta_and_exponential_are_rejected_by_name() -> None:
    exp = metrics_pb2.Metric(name="exp.hist")
    exp.exponential_histogram.aggregation_temporality = (
        metrics_pb2.AGGREGATION_TEMPORALITY_CUMULATIVE
    )
    exp.exponential_histogram.data_points.add(time_unix_nano=T_NS, count=1)
    request = request_with(counter("delta.requests", 3, temporality=1), exp, gauge("ok", 1.0))
    translated = translate(request, now_ms=T_MS)
    assert translated.rejected_points == 2
    text = " ".join(translated.problems)
    assert '"delta.requests": delta temporality' in text
    assert '"exp.hist": exponential histograms' in text
    assert [labels.name for labels in samples(request)] == ["ok"]


def test_json_encoding_with_hex_exemplar_ids_and_string_integers() -> None:
    payload = {
        "resourceMetrics": [{
            "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "web"}}]},
            "scopeMetrics": [{"metrics": [{
                "name": "hits", "unit": "1",
                "sum": {"aggregationTemporality": 2, "isMonotonic": True, "dataPoints": [{
                    "timeUnixNano": str(T_NS), "asInt": "12",
                    "exemplars": [{"traceId": "5b8efff798038103d269b633813fc60c",
                                   "spanId": "eee19b7ec3c1b174", "asDouble": 1}],
                }]},
            }]}],
        }]
    }  # fmt: skip
    request = decode_export_request(json.dumps(payload).encode(), "application/json")
    got = samples(request)
    assert got == {Labels({"__name__": "hits_total", "job": "web"}): 12.0}


def test_malformed_bodies() -> None:
    with pytest.raises(OTLPMetricsError, match="not a valid ExportMetricsServiceRequest"):
        decode_export_request(b"\xff\xff\xff", "application/x-protobuf")
    with pytest.raises(OTLPMetricsError, match="not valid JSON"):
        decode_export_request(b"{nope", "application/json")
    with pytest.raises(OTLPMetricsError, match="Content-Type") as info:
        decode_export_request(b"", "text/plain")
    assert info.value.status == 415
    with pytest.raises(OTLPMetricsError, match="gzip"):
        decode_export_request(b"not gzip", "application/x-protobuf", "gzip")


# -- HTTP mapping on a real store ------------------------------------------------------------


@pytest.fixture
def tsdb(tmp_path: Path) -> Iterator[TSDB]:
    db = TSDB(tmp_path / "metrics").open(background=False)
    yield db
    db.close()


def stored(db: TSDB, name: str) -> dict[Labels, list[tuple[int, float]]]:
    querier = db.querier("default", 0, 2**62)
    out = {}
    for series in querier.select([Matcher(MatchType.EQUAL, "__name__", name)], 0, 2**62):
        out[series.labels] = list(zip(series.timestamps.tolist(), series.values.tolist(),
                                      strict=True))  # fmt: skip
    return out


def test_handle_stores_and_answers_protobuf(tsdb: TSDB) -> None:
    body = request_with(gauge("temp", 21.5, unit="Cel")).SerializeToString()
    status, payload, media = handle_otlp_metrics(tsdb, "default", gzip.compress(body),
                                                 {**PB, "Content-Encoding": "gzip"})  # fmt: skip
    assert (status, media) == (200, "application/x-protobuf")
    response = metrics_service_pb2.ExportMetricsServiceResponse.FromString(payload)
    assert not response.HasField("partial_success")
    assert stored(tsdb, "temp_celsius") == {
        Labels({"__name__": "temp_celsius", "job": "api"}): [(T_MS, 21.5)]
    }
    assert tsdb.metadata("temp_celsius")["temp_celsius"][0]["unit"] == "celsius"


def test_handle_rejects_delta_with_400_and_keeps_the_rest(tsdb: TSDB) -> None:
    body = request_with(counter("d", 1, temporality=1), gauge("kept", 2.0))
    status, payload, media = handle_otlp_metrics(
        tsdb, "default", json_format.MessageToJson(body).encode(),
        {"content-type": "application/json"},
    )  # fmt: skip
    assert (status, media) == (400, "application/json")
    message = json.loads(payload)["message"]
    assert 'metric "d"' in message and "delta" in message
    assert len(stored(tsdb, "kept")) == 1


def test_handle_partial_success_for_out_of_order(tsdb: TSDB) -> None:
    first = request_with(gauge("g", 1.0)).SerializeToString()
    assert handle_otlp_metrics(tsdb, "default", first, PB)[0] == 200
    older = request_with(gauge("g", 2.0))
    older.resource_metrics[0].scope_metrics[0].metrics[0].gauge.data_points[0].time_unix_nano = (
        T_NS - 3_600_000 * 1_000_000
    )
    status, payload, _ = handle_otlp_metrics(tsdb, "default", older.SerializeToString(), PB)
    assert status == 200
    response = metrics_service_pb2.ExportMetricsServiceResponse.FromString(payload)
    assert response.partial_success.rejected_data_points == 1
    assert "out of order" in response.partial_success.error_message


def test_handle_malformed_protobuf_is_400_with_status_body(tsdb: TSDB) -> None:
    status, payload, _ = handle_otlp_metrics(tsdb, "default", b"\x0a\xff\xff", PB)
    assert status == 400
    assert b"not a valid ExportMetricsServiceRequest" in payload
    assert payload[:2] == b"\x08\x03"  # google.rpc.Status code INVALID_ARGUMENT


def test_nan_value_is_not_stale(tsdb: TSDB) -> None:
    handle_otlp_metrics(tsdb, "default", request_with(gauge("n", math.nan)).SerializeToString(), PB)
    ((_, value),) = next(iter(stored(tsdb, "n").values()))
    assert math.isnan(value) and not is_stale_nan(value)
