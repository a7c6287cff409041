"""``signalroom loadtest`` against a real HTTP target on a loopback port.

The target (a subprocess, so it does not share the runner's GIL) sleeps 5..23 ms per request,
answers every 20th request with 503 (exactly 5 %), records what it saw, and accepts remote
write bodies so ``--push-to`` can be checked. Every run is a few seconds at a few dozen
requests/s, on 127.0.0.1 only.
"""

from __future__ import annotations

import json
import math
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import typer
from typer.testing import CliRunner

from signalroom.ingest.remote_write import decode_write_request_full
from signalroom.loadtest.cli import loadtest
from signalroom.tsdb.keys import decode_key

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

TARGET = textwrap.dedent(
    """
    import json, sys, threading, time
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    lock = threading.Lock()
    seen = {"requests": 0, "failed": 0, "sleeps_ms": [], "writes": []}

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _answer(self, status, body, ctype="text/plain"):
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/stats":
                with lock:
                    body = json.dumps(seen).encode()
                return self._answer(200, body, "application/json")
            if self.path == "/slow":
                time.sleep(1.0)
                return self._answer(200, b"late")
            with lock:
                seen["requests"] += 1
                n = seen["requests"]
                fail = n % 20 == 0
                seen["failed"] += fail
                sleep_ms = 5 + (n % 10) * 2
                seen["sleeps_ms"].append(sleep_ms)
            time.sleep(sleep_ms / 1000)
            self._answer(503 if fail else 200, b"busy" if fail else b"ok")

        def do_POST(self):
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with lock:
                seen["writes"].append(body.hex())
            self._answer(204, b"")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    server.serve_forever()
    """
)


@pytest.fixture
def target() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-c", TARGET], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _seen(base: str) -> dict[str, Any]:
    stats: dict[str, Any] = httpx.get(f"{base}/stats", timeout=5).json()
    return stats


def _invoke(*args: str) -> tuple[int, dict[str, Any]]:
    app = typer.Typer()
    app.command()(loadtest)
    result = CliRunner().invoke(app, [*args, "--json", "--quiet"])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    start = result.stdout.find("{")
    assert start >= 0, result.output
    report: dict[str, Any] = json.loads(result.stdout[start:])
    return result.exit_code, report


def _nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(len(ordered) * q / 100) - 1)]


def test_report_matches_what_the_target_saw(target: str) -> None:
    # 20 rps -> 60 rps over 1 s, hold 1 s, back over 1 s: 40 + 60 + 40 = 140 requests. A long
    # timeout and many slots keep a loaded machine from turning slowness into drops.
    code, report = _invoke(
        f"{target}/api/leads", "--baseline-rps", "20", "--multiplier", "3",
        "--ramp", "1s", "--hold", "1s", "--timeout", "20s", "--max-in-flight", "500",
        "--threshold", "http_req_failed:rate<0.2", "--threshold", "http_req_duration:p(95)<20000",
    )  # fmt: skip
    seen = _seen(target)
    assert code == 0, report
    assert report["planned"]["requests"] == 140
    assert (report["started"], report["dropped"]) == (140, 0), report
    assert report["requests"] == seen["requests"] == 140, report
    assert report["failed"] == seen["failed"] == 7, report
    assert report["error_rate"] == pytest.approx(0.05)
    assert report["status_codes"] == {"200": 133, "503": 7}
    assert report["errors"] == {"HTTP 503": 7}
    assert report["peak_rps"] >= 30  # the ramp really went above the baseline
    latency = report["latency_ms"]
    assert latency["p50"] <= latency["p90"] <= latency["p95"] <= latency["p99"] <= latency["max"]
    # A client's latency is the target's sleep plus loopback and scheduling overhead, so each
    # percentile is at least the target's (the histogram is within 1 %); the overhead depends
    # on the machine's load, so the upper bound is only the request timeout.
    for q in (50, 90, 95, 99):
        slept = _nearest_rank(seen["sleeps_ms"], q)
        assert slept * 0.99 <= latency[f"p{q}"] <= 20_000, (q, slept, latency)
    assert latency["max"] >= max(seen["sleeps_ms"]) * 0.99
    assert latency["min"] >= 5 * 0.99
    assert all(t["ok"] for t in report["thresholds"]) and report["passed"] is True


def test_failing_threshold_exits_1(target: str) -> None:
    code, report = _invoke(
        f"{target}/", "-b", "20", "-n", "2", "--ramp", "1s", "--hold", "1s",
        "--ramp-down", "0s", "-t", "http_req_failed:rate<0.01", "-t", "http_reqs:count>=10",
    )  # fmt: skip
    assert code == 1
    assert report["passed"] is False
    by_expr = {t["threshold"]: t for t in report["thresholds"]}
    assert by_expr["rate<0.01"]["ok"] is False
    assert by_expr["rate<0.01"]["observed"] == pytest.approx(report["error_rate"])
    assert report["error_rate"] > 0.01
    assert by_expr["count>=10"]["ok"] is True


def test_plan_file_and_push_to(target: str, tmp_path: Path) -> None:
    plan = tmp_path / "christmas.yml"
    plan.write_text(
        textwrap.dedent(
            f"""
            url: {target}/orders
            startRate: 10
            stages:
              - {{duration: 1s, target: 50}}
              - {{duration: 1s, target: 50}}
            thresholds:
              http_req_duration: ["p(95)<5000"]
            """
        ),
        encoding="utf-8",
    )
    code, report = _invoke("--plan", str(plan), "--push-to", target)
    assert code == 0, report
    assert report["requests"] == 30 + 50
    assert report["push"]["failures"] == 0 and report["push"]["seconds"] >= 2
    writes = [bytes.fromhex(w) for w in _seen(target)["writes"]]
    assert writes
    totals: dict[str, float] = {}
    for body in writes:
        batch = decode_write_request_full(body, "snappy").batch
        if batch.series is not None:
            series = [dict(labels.items()) for labels in batch.series]
        else:
            series = [dict(decode_key(key)) for key in batch.keys or []]
        for labels in series:
            assert labels["target"] == f"{target}/orders"
            assert labels["job"] == "signalroom-loadtest"
        for index, value in zip(batch.series_index, batch.values, strict=True):
            name = series[index]["__name__"]
            totals[name] = totals.get(name, 0.0) + float(value)
    assert {
        "signalroom_loadtest_requests_per_second",
        "signalroom_loadtest_failed_per_second",
        "signalroom_loadtest_planned_rate",
        "signalroom_loadtest_latency_seconds",
    } <= set(totals)
    # Every second is pushed exactly once, so the per-second counts add up to the report's.
    assert totals["signalroom_loadtest_requests_per_second"] == report["requests"]
    assert totals["signalroom_loadtest_failed_per_second"] == report["failed"]


def test_timeouts_are_counted_as_such(target: str) -> None:
    code, report = _invoke(
        f"{target}/slow", "-b", "5", "-n", "1", "--ramp", "0s", "--hold", "1s",
        "--timeout", "200ms", "-t", "http_req_failed:rate<0.5",
    )  # fmt: skip
    assert code == 1
    assert report["requests"] == 5 and report["failed"] == 5
    assert report["errors"] == {"timeout": 5}
    assert report["status_codes"] == {}


def test_connection_errors_and_remote_refusal() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens there now: every request fails to connect.
    code, report = _invoke(
        f"http://127.0.0.1:{port}/", "-b", "10", "-n", "1", "--ramp", "0s", "--hold", "1s",
        "-t", "http_req_failed:rate<0.5",
    )  # fmt: skip
    assert code == 1
    assert report["requests"] == 10 and report["failed"] == 10
    assert report["errors"] == {"connection refused or reset": 10}
    app = typer.Typer()
    app.command()(loadtest)
    refused = CliRunner().invoke(app, ["https://example.com/", "--quiet"])
    assert refused.exit_code == 2
    assert "loopback" in refused.output
