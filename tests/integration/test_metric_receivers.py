"""The metric receivers through the real server and real clients: the OpenTelemetry Python
SDK exporting OTLP/HTTP metrics, and prometheus_client pushing to the Pushgateway API; values
are read back through PromQL, and pushed groups survive a restart."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    delete_from_gateway,
    push_to_gateway,
    pushadd_to_gateway,
)

from signalroom.app import Signalroom
from signalroom.config import parse_config
from signalroom.web.metrics_push import router
from signalroom.web.server import create_http_app

pytestmark = [pytest.mark.integration, pytest.mark.slow]


class _ThreadLoop(asyncio.SelectorEventLoop):
    """An event loop for a server outside the main thread, where signal handlers cannot be
    installed: say so the way the app expects (NotImplementedError)."""

    def add_signal_handler(self, *args: Any) -> None:  # type: ignore[override]
        raise NotImplementedError

    def remove_signal_handler(self, *args: Any) -> bool:
        raise NotImplementedError


@contextmanager
def running_server(data_dir: Path) -> Iterator[str]:
    """signalroom (with the push router) on a free loopback port; yields its base URL."""
    runtime = Signalroom(parse_config("server: {self_scrape: false}"), data_dir=data_dir)
    app = create_http_app(runtime)
    app.include_router(router)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_config=None, access_log=False, lifespan="on")
    server = uvicorn.Server(config)

    def serve() -> None:
        with asyncio.Runner(loop_factory=_ThreadLoop) as runner:
            runner.run(server.serve(sockets=[sock]))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "server did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)
        sock.close()


def query(base: str, promql: str) -> list[dict[str, Any]]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    assert response.status_code == 200, response.text
    result: list[dict[str, Any]] = response.json()["data"]["result"]
    return result


def values(base: str, promql: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Sample values by their labels (without the metric name)."""
    result = query(base, promql)
    labels = [tuple(sorted(r["metric"].items())) for r in result]
    return {
        tuple(p for p in pairs if p[0] != "__name__"): float(r["value"][1])
        for pairs, r in zip(labels, result, strict=True)
    }


def test_opentelemetry_sdk_exports_counters_gauges_histograms(tmp_path: Path) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
        OTLPMetricExporter,
    )
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    with running_server(tmp_path) as base:
        exporter = OTLPMetricExporter(endpoint=f"{base}/v1/metrics", timeout=10)
        reader = PeriodicExportingMetricReader(exporter, export_interval_millis=3_600_000)
        resource = Resource.create({
            "service.name": "checkout", "service.namespace": "shop",
            "service.instance.id": "pod-7", "deployment.environment": "test",
        })  # fmt: skip
        provider = MeterProvider(resource=resource, metric_readers=[reader])
        meter = provider.get_meter("test.meter", "1.0")
        orders = meter.create_counter("orders.placed", unit="{orders}", description="Orders.")
        latency = meter.create_histogram("http.server.duration", unit="s")
        queue = meter.create_up_down_counter("queue.size")
        orders.add(3, {"payment.method": "card"})
        orders.add(2, {"payment.method": "card"})
        orders.add(1, {"payment.method": "invoice"})
        for seconds in (0.002, 0.3, 0.3, 7.0):
            latency.record(seconds, {"http.route": "/cart"})
        queue.add(5)
        queue.add(-2)
        assert reader.force_flush(timeout_millis=10_000)
        provider.shutdown()

        ident = (("instance", "pod-7"), ("job", "shop/checkout"))
        assert values(base, "orders_placed_total") == {
            (*ident, ("payment_method", "card")): 5.0,
            (*ident, ("payment_method", "invoice")): 1.0,
        }
        assert list(values(base, "queue_size").values()) == [3.0]
        assert list(values(base, "http_server_duration_seconds_count").values()) == [4.0]
        assert list(values(base, "http_server_duration_seconds_sum").values()) == [
            pytest.approx(7.602)
        ]
        buckets = {
            dict(k)["le"]: v for k, v in values(base, "http_server_duration_seconds_bucket").items()
        }
        # the SDK's default boundaries: 0, 5, 10, 25, ...
        assert (buckets["0"], buckets["5"], buckets["10"], buckets["+Inf"]) == (0, 3, 4, 4)
        quantile = query(base, "histogram_quantile(0.5, http_server_duration_seconds_bucket)")
        assert 0 < float(quantile[0]["value"][1]) <= 5
        info = query(base, "target_info")
        assert info[0]["metric"]["deployment_environment"] == "test"
        assert info[0]["metric"]["job"] == "shop/checkout"
        metadata = httpx.get(f"{base}/api/v1/metadata", timeout=10).json()["data"]
        assert metadata["orders_placed_total"] == [{"type": "counter", "help": "Orders.",
                                                    "unit": ""}]  # fmt: skip
        assert metadata["http_server_duration_seconds"][0]["unit"] == "seconds"

        # JSON encoding, and a delta counter is refused by name
        body = {"resourceMetrics": [{"scopeMetrics": [{"metrics": [
            {"name": "json.gauge", "gauge": {"dataPoints": [
                {"timeUnixNano": str(time.time_ns()), "asDouble": 2.5}]}},
            {"name": "delta.hits", "sum": {"aggregationTemporality": 1, "isMonotonic": True,
                                           "dataPoints": [{"timeUnixNano": "1", "asInt": "1"}]}},
        ]}]}]}  # fmt: skip
        response = httpx.post(f"{base}/v1/metrics", json=body, timeout=10)
        assert response.status_code == 400
        assert 'metric "delta.hits"' in response.json()["message"]
        assert list(values(base, "json_gauge").values()) == [2.5]


def pgw_registry() -> tuple[CollectorRegistry, Counter, Gauge, Histogram]:
    registry = CollectorRegistry()
    done = Counter("batch_records", "Records processed.", ["kind"], registry=registry)
    last = Gauge("batch_last_success_unixtime", "Last success.", registry=registry)
    took = Histogram("batch_duration_seconds", "Duration.", buckets=(1, 10), registry=registry)
    return registry, done, last, took


def test_prometheus_client_pushes_survive_restart(tmp_path: Path) -> None:
    with running_server(tmp_path) as base:
        gateway = base.removeprefix("http://")
        registry, done, last, took = pgw_registry()
        done.labels("a").inc(7)
        last.set(1234)
        took.observe(4)
        push_to_gateway(gateway, job="nightly", registry=registry, grouping_key={"shard": "1"})
        got = values(base, "batch_records_total")
        assert got == {(("job", "nightly"), ("kind", "a"), ("shard", "1")): 7.0}
        assert values(base, 'batch_duration_seconds_bucket{le="10.0"}') == {
            (("job", "nightly"), ("le", "10.0"), ("shard", "1")): 1.0
        }
        push_time = values(base, "push_time_seconds")[(("job", "nightly"), ("shard", "1"))]
        assert abs(push_time - time.time()) < 60

        # pushadd replaces only the families it carries
        other = CollectorRegistry()
        Gauge("batch_last_success_unixtime", "Last success.", registry=other).set(99)
        pushadd_to_gateway(gateway, job="nightly", registry=other, grouping_key={"shard": "1"})
        assert list(values(base, "batch_last_success_unixtime").values()) == [99.0]
        assert list(values(base, "batch_records_total").values()) == [7.0]

        # a job name with a slash goes base64-encoded; another group alongside
        push_to_gateway(gateway, job="team/etl", registry=other)
        listing = httpx.get(f"{base}/api/v1/metrics", timeout=10).json()
        assert listing["status"] == "success"
        assert sorted(tuple(sorted(g["labels"].items())) for g in listing["data"]) == [
            (("job", "nightly"), ("shard", "1")),
            (("job", "team/etl"),),
        ]

        # a bad grouping key is answered as Pushgateway does
        bad = httpx.put(f"{base}/metrics/job/x/instance", content=b"m 1\n", timeout=10)
        assert bad.status_code == 400
        assert "odd number of components" in bad.text

        delete_from_gateway(gateway, job="team/etl")
        assert query(base, 'batch_last_success_unixtime{job="team/etl"}') == []

    with running_server(tmp_path) as base:  # restart on the same data directory
        listing = httpx.get(f"{base}/api/v1/metrics", timeout=10).json()["data"]
        assert [g["labels"] for g in listing] == [{"job": "nightly", "shard": "1"}]
        (group,) = listing
        assert group["batch_records_total"]["metrics"][0]["value"] == "7"
        assert group["batch_last_success_unixtime"]["metrics"][0]["value"] == "99"
        assert list(values(base, "batch_records_total").values()) == [7.0]
