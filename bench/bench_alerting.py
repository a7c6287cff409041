"""Alertmanager benchmark: signalroom's alerting next to Alertmanager 0.25 in the same run.

1. Delivery latency in a burst: 1,000 alerts in 100 new groups (10 each) in one
   ``POST /api/v2/alerts``, so all 100 groups flush in the same millisecond; for every group, the
   time from the POST to the webhook notification minus ``group_wait`` (p50, p99, max).
2. Delivery latency at steady state: with those 1,000 alerts active (and notified), a new alert
   in a group of its own every 100 ms, 40 times; each one's time from its POST to its
   notification minus ``group_wait``.
3. Ingest throughput: ``POST /api/v2/alerts`` with batches of 100 new alerts, sequentially, for
   20,000 alerts: alerts/s.

Each server runs in its own process on loopback and notifies ``bench/webhook_sink.py``, a bare
asyncio receiver in a third process that notes each request's arrival when its first bytes come
in (an in-process, thread-per-request sink queued a burst of 100 notifications by ~1 ms each and
so measured itself: Alertmanager's p50 read 195 ms with it).
signalroom runs the API v2 router with a SQLite state store (alerts written behind, within
~50 ms of the 200; Alertmanager keeps them in memory only). The machine's load average goes
into the record, since both servers share the machine with whatever else runs, and so does
each server's CPU time per phase (Linux ``/proc``), which the load skews far less.

    .venv/bin/python -m bench alerting [--alerts 1000] [--groups 100] [--ingest 20000]
                                       [--no-record]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.record import record
from signalroom.alerting.testing import free_port

AM_BINARY = "/usr/bin/prometheus-alertmanager"
GROUP_WAIT = 1.0


def config(sink: str, name: str) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "hook",
            "group_by": ["alertname", "group"],
            "group_wait": f"{int(GROUP_WAIT * 1000)}ms",
            "group_interval": "5m",
            "repeat_interval": "4h",
        },
        "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{sink}/{name}"}]}],
    }


SERVE = """
import sys, json, uvicorn
from fastapi import FastAPI
from signalroom.alerting.manager import AlertManager
from signalroom.auth import Authenticator
from signalroom.config import AuthConfig
from signalroom.storage.state import StateStore
from signalroom.web import alertmanager_api

section, state_url, port = json.loads(sys.argv[1]), sys.argv[2], int(sys.argv[3])
state = StateStore(state_url)
state.migrate()
am = AlertManager.from_section(section, state=state)

class Runtime:
    alertmanager = am
    authenticator = Authenticator(AuthConfig())

import gc
app = FastAPI(on_startup=[am.start, gc.freeze], on_shutdown=[am.stop])  # as app.Signalroom
app.state.runtime = Runtime()
app.include_router(alertmanager_api.router)
uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", access_log=False)
"""


def _wait_ready(url: str, proc: subprocess.Popen[bytes], path: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{url} not ready")


@contextlib.contextmanager
def signalroom_server(section: dict[str, Any], tmp: Path) -> Iterator[tuple[str, int]]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            SERVE,
            json.dumps(section),
            f"sqlite:///{tmp / 'state.db'}",
            str(port),
        ],
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, "/api/v2/status")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


@contextlib.contextmanager
def alertmanager_server(section: dict[str, Any], tmp: Path) -> Iterator[tuple[str, int]]:
    cfg = tmp / "am.yml"
    cfg.write_text(yaml.safe_dump(section))
    port = free_port()
    proc = subprocess.Popen(
        [
            AM_BINARY,
            f"--config.file={cfg}",
            f"--storage.path={tmp / 'am'}",
            f"--web.listen-address=127.0.0.1:{port}",
            "--cluster.listen-address=",
            "--log.level=warn",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, "/-/ready")
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(20)


class ExternalSink:
    """``bench/webhook_sink.py`` in its own process; ``arrivals`` asks it what came in."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        script = Path(__file__).with_name("webhook_sink.py")
        self.proc = subprocess.Popen([sys.executable, str(script), str(self.port)])

    def __enter__(self) -> ExternalSink:
        _wait_ready(self.url, self.proc, "/_arrivals")
        return self

    def __exit__(self, *exc: object) -> None:
        self.proc.terminate()
        self.proc.wait(10)

    def arrivals(self, path: str) -> list[tuple[float, Any]]:
        got = httpx.get(f"{self.url}/_arrivals", timeout=10).json()
        return [(t, body) for p, t, body in got if p == path]

    def wait_for(self, count: int, path: str, timeout: float) -> list[tuple[float, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            got = self.arrivals(path)
            if len(got) >= count or time.monotonic() > deadline:
                return got
            time.sleep(0.1)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def latency(url: str, sink: ExternalSink, name: str, alerts: int, groups: int) -> dict[str, float]:
    body = [
        {"labels": {"alertname": "Lat", "group": f"g{i % groups}", "i": str(i)}}
        for i in range(alerts)
    ]
    # The client, its connection and the encoded body are ready before the clock starts: the
    # delay is the server's, not the time httpx takes to build an SSL context or encode JSON.
    content = json.dumps(body).encode()
    with httpx.Client(timeout=60) as client:
        client.get(f"{url}/api/v2/status").raise_for_status()
        start = time.monotonic()
        r = client.post(
            f"{url}/api/v2/alerts", content=content, headers={"Content-Type": "application/json"}
        )
        posted = time.monotonic()
    r.raise_for_status()
    got = sink.wait_for(groups, f"/{name}", timeout=60)
    arrivals = [t for t, _ in got]
    notified = sum(len(body["alerts"]) for _, body in got)
    delays = [(t - start - GROUP_WAIT) * 1000 for t in arrivals]
    return {
        "post_ms": (posted - start) * 1000,
        "notifications": len(arrivals),
        "alerts_notified": notified,
        "delay_beyond_group_wait_p50_ms": statistics.median(delays),
        "delay_beyond_group_wait_p99_ms": pct(delays, 0.99),
        "delay_beyond_group_wait_max_ms": max(delays),
    }


def steady(url: str, sink: ExternalSink, name: str, count: int = 40) -> dict[str, float]:
    posted: dict[str, float] = {}
    with httpx.Client(base_url=url, timeout=60) as client:
        client.get("/api/v2/status").raise_for_status()
        for k in range(count):
            content = json.dumps([{"labels": {"alertname": "Steady", "group": f"s{k}"}}]).encode()
            posted[f"s{k}"] = time.monotonic()
            client.post(
                "/api/v2/alerts", content=content, headers={"Content-Type": "application/json"}
            ).raise_for_status()
            time.sleep(0.1)
    got = sink.wait_for(len(posted) + 100, f"/{name}", timeout=30)
    delays = [
        (t - posted[body["groupLabels"]["group"]] - GROUP_WAIT) * 1000
        for t, body in got
        if body["groupLabels"].get("alertname") == "Steady"
    ]
    return {
        "new_alerts": count,
        "notifications": len(delays),
        "delay_beyond_group_wait_p50_ms": statistics.median(delays),
        "delay_beyond_group_wait_p99_ms": pct(delays, 0.99),
        "delay_beyond_group_wait_max_ms": max(delays),
    }


def ingest(url: str, total: int, batch: int = 100) -> dict[str, float]:
    with httpx.Client(base_url=url, timeout=60) as client:
        start = time.perf_counter()
        for b in range(total // batch):
            body = [
                {
                    "labels": {
                        "alertname": "Ingest",
                        "group": f"g{(b * batch + i) % 100}",
                        "i": str(b * batch + i),
                    }
                }
                for i in range(batch)
            ]
            client.post("/api/v2/alerts", json=body).raise_for_status()
        elapsed = time.perf_counter() - start
    return {"alerts": total, "seconds": elapsed, "alerts_per_s": total / elapsed}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux): what a run cost the server,
    which the machine's load skews far less than wall-clock time."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run(name: str, server: Any, args: argparse.Namespace) -> dict[str, Any]:
    with (
        tempfile.TemporaryDirectory() as tmp,
        ExternalSink() as sink,
        server(config(sink.url, name), Path(tmp)) as (url, pid),
    ):
        before = cpu_seconds(pid)
        lat = latency(url, sink, name, args.alerts, args.groups)
        time.sleep(0.5)  # let the last flushes and writes finish
        burst_done = cpu_seconds(pid)
        calm = steady(url, sink, name)
        time.sleep(0.5)
        between = cpu_seconds(pid)
        thr = ingest(url, args.ingest)
        time.sleep(0.5)
        after = cpu_seconds(pid)
    lat["server_cpu_ms"] = (burst_done - before) * 1000
    thr["server_cpu_us_per_alert"] = (after - between) * 1e6 / args.ingest
    return {"latency": lat, "steady": calm, "ingest": thr}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--alerts", type=int, default=1000)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--ingest", type=int, default=20000)
    parser.add_argument("--no-record", action="store_true", help="print only (while tuning)")
    args = parser.parse_args()
    load_before = os.getloadavg()
    results: dict[str, Any] = {"signalroom": run("signalroom", signalroom_server, args)}
    if shutil.which(AM_BINARY):
        results["alertmanager_0_25"] = run("alertmanager", alertmanager_server, args)
    for impl, r in results.items():
        lat, thr, calm = r["latency"], r["ingest"], r["steady"]
        print(
            f"{impl:>18}: steady: delay beyond group_wait p50 "
            f"{calm['delay_beyond_group_wait_p50_ms']:.1f} ms"
            f" p99 {calm['delay_beyond_group_wait_p99_ms']:.1f} ms; burst: p50 "
            f"{lat['delay_beyond_group_wait_p50_ms']:.1f} ms"
            f" p99 {lat['delay_beyond_group_wait_p99_ms']:.1f} ms"
            f" (server CPU {lat['server_cpu_ms']:.0f} ms, POST itself {lat['post_ms']:.0f} ms);"
            f" POST {thr['alerts_per_s']:.0f}"
            f" alerts/s (server CPU {thr['server_cpu_us_per_alert']:.0f} us/alert)"
        )
    sr = results["signalroom"]
    summary = (
        f"{args.alerts} alerts active in {args.groups} groups, a new alert every 100 ms: "
        f"delay beyond group_wait p50 {sr['steady']['delay_beyond_group_wait_p50_ms']:.0f} ms"
        f" p99 {sr['steady']['delay_beyond_group_wait_p99_ms']:.0f} ms; "
        f"all {args.groups} groups new in one POST: p50 "
        f"{sr['latency']['delay_beyond_group_wait_p50_ms']:.0f} ms p99 "
        f"{sr['latency']['delay_beyond_group_wait_p99_ms']:.0f} ms "
        f"(server CPU {sr['latency']['server_cpu_ms']:.0f} ms), POST "
        f"{sr['ingest']['alerts_per_s']:.0f} alerts/s "
        f"({sr['ingest']['server_cpu_us_per_alert']:.0f} µs server CPU/alert)"
    )
    if "alertmanager_0_25" in results:
        am = results["alertmanager_0_25"]
        summary += (
            f" (Alertmanager 0.25: steady p50 {am['steady']['delay_beyond_group_wait_p50_ms']:.0f}"
            f" ms p99 {am['steady']['delay_beyond_group_wait_p99_ms']:.0f} ms, burst p50 "
            f"{am['latency']['delay_beyond_group_wait_p50_ms']:.0f} ms "
            f"p99 {am['latency']['delay_beyond_group_wait_p99_ms']:.0f} ms "
            f"({am['latency']['server_cpu_ms']:.0f} ms), "
            f"{am['ingest']['alerts_per_s']:.0f} alerts/s "
            f"({am['ingest']['server_cpu_us_per_alert']:.0f} µs/alert))"
        )
    # Other work on the machine skews both servers; keep the load next to the numbers.
    results["load_avg_1_5_15"] = {"before": load_before, "after": os.getloadavg()}
    summary += f" [load {load_before[0]:.2f} before, {os.getloadavg()[0]:.2f} after]"
    print(summary)
    if not args.no_record:
        record("alerting", results, summary)


if __name__ == "__main__":
    main()
