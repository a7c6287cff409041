"""Latency histograms, error kinds and the report's metric values on known data."""

from __future__ import annotations

import math

import httpx
import numpy as np
import pytest

from signalroom.loadtest.cli import is_loopback_url
from signalroom.loadtest.plan import LoadPlan, Stage, parse_threshold
from signalroom.loadtest.report import evaluate_thresholds, summary
from signalroom.loadtest.runner import LatencyHistogram, RunStats, error_kind

pytestmark = pytest.mark.unit


def test_percentiles_of_known_data() -> None:
    # 1..1000 ms: the nearest-rank p50 is 500 ms, p95 950 ms, p99 990 ms.
    hist = LatencyHistogram()
    hist.record(np.arange(1, 1001) / 1000.0)
    assert hist.count == 1000
    assert hist.min == pytest.approx(0.001) and hist.max == pytest.approx(1.0)
    assert hist.mean == pytest.approx(0.5005)
    for q, exact in [(50, 0.5), (90, 0.9), (95, 0.95), (99, 0.99), (100, 1.0)]:
        assert hist.percentile(q) == pytest.approx(exact, rel=0.006)


def test_percentiles_match_numpy_on_skewed_data() -> None:
    rng = np.random.default_rng(7)
    data = rng.lognormal(mean=-4.0, sigma=1.0, size=50_000)
    hist = LatencyHistogram()
    for chunk in np.array_split(data, 7):  # recorded in batches, as the runner does
        hist.record(chunk)
    qs = [50, 90, 95, 99]
    np.testing.assert_allclose(
        hist.percentiles(qs), np.percentile(data, qs, method="inverted_cdf"), rtol=0.006
    )


def test_single_value_and_empty_and_merge() -> None:
    empty = LatencyHistogram()
    assert math.isnan(empty.percentile(95)) and math.isnan(empty.mean)
    one = LatencyHistogram()
    one.record([0.0123])
    # Clamped to the observed range, so a single value comes back exactly.
    assert one.percentile(50) == 0.0123 and one.percentile(99) == 0.0123
    other = LatencyHistogram()
    other.record([0.5, 0.5, 0.5])
    one.merge(other)
    assert one.count == 4 and one.max == 0.5
    assert one.percentile(25) == pytest.approx(0.0123, rel=0.006)
    assert one.percentile(50) == pytest.approx(0.5, rel=0.006)
    with pytest.raises(ValueError):
        one.merge(LatencyHistogram(precision=0.05))


def test_error_kinds() -> None:
    request = httpx.Request("GET", "http://127.0.0.1/")
    assert error_kind(200, None) is None
    assert error_kind(302, None) is None
    assert error_kind(404, None) == "HTTP 404"
    assert error_kind(503, None) == "HTTP 503"
    assert error_kind(None, httpx.ReadTimeout("slow", request=request)) == "timeout"
    assert error_kind(None, TimeoutError()) == "timeout"
    assert error_kind(None, httpx.ConnectError("refused", request=request)) == (
        "connection refused or reset"
    )
    assert error_kind(None, httpx.RemoteProtocolError("eof", request=request)) == (
        "connection error"
    )


def test_thresholds_against_recorded_requests() -> None:
    plan = LoadPlan("http://127.0.0.1:1/", stages=(Stage(1, 100),), start_rate=100)
    stats = RunStats(plan)
    # 95 fast successes (10 ms) and 5 slow 503s (400 ms).
    for _ in range(95):
        stats.on_start()
        stats.on_done(0.010, 200, None)
    for _ in range(5):
        stats.on_start()
        stats.on_done(0.400, 503, None)
    stats.finished_at = stats.started_at + 2.0
    checks = {
        "p(95)<50": True,  # p95 is the 95th of 100 values: 10 ms
        "p(96)<50": False,
        "avg<30": True,  # (95*10 + 5*400) / 100 = 29.5 ms
        "max<=400": True,
        "med<10.1": True,
    }
    thresholds = tuple(parse_threshold("http_req_duration", e) for e in checks)
    thresholds += (
        parse_threshold("http_req_failed", "rate<0.01"),
        parse_threshold("http_req_failed", "rate<=0.05"),
        parse_threshold("http_reqs", "count==100"),
        parse_threshold("http_reqs", "rate>=50"),  # 100 over 2 s
    )
    results = evaluate_thresholds(stats, thresholds)
    assert [r.ok for r in results] == [*checks.values(), False, True, True, True]
    assert results[2].observed == pytest.approx(29.5)
    report = summary(stats, results)
    assert report["requests"] == 100 and report["failed"] == 5
    assert report["error_rate"] == pytest.approx(0.05)
    assert report["status_codes"] == {"200": 95, "503": 5}
    assert report["errors"] == {"HTTP 503": 5}
    assert report["latency_ms"]["p99"] == pytest.approx(400, rel=0.006)
    assert report["passed"] is False


def test_no_requests_fails_latency_thresholds() -> None:
    plan = LoadPlan("http://127.0.0.1:1/", stages=(Stage(1, 1),), start_rate=1)
    stats = RunStats(plan)
    stats.finished_at = stats.started_at + 1
    [result] = evaluate_thresholds(stats, (parse_threshold("http_req_duration", "p(95)<500"),))
    assert not result.ok


@pytest.mark.parametrize(
    ("url", "loopback"),
    [
        ("http://127.0.0.1:8080/x", True),
        ("http://localhost/", True),
        ("http://[::1]:9/", True),
        ("http://127.8.0.1/", True),
        ("https://example.com/", False),
        ("http://10.0.0.1/", False),
    ],
)
def test_loopback_detection(url: str, loopback: bool) -> None:
    assert is_loopback_url(url) is loopback
