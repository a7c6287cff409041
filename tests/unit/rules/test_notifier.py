"""Delivery of rule alerts to external Alertmanagers: configuration, relabelling, discovery,
batching, queue overflow, errors without retries, draining, metrics; against real HTTP servers
on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client import CollectorRegistry, generate_latest

from signalroom.alerting.manager import config_from_section
from signalroom.alerting.testing import free_port
from signalroom.rules.notifier import (
    FanoutNotifier,
    Notifier,
    alertmanagers_from_group,
    alerts_path,
    build_alert_notifier,
    relabel_alerts,
)
from signalroom.rules.notifier_config import (
    DeliveryConfigError,
    parse_delivery_config,
    validate_delivery_section,
    without_delivery_keys,
)
from signalroom.scrape.discovery import TargetGroup
from signalroom.scrape.relabel import RelabelConfig

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]


# --- a real HTTP server that records what Alertmanagers would receive ----------------------


class Recorder:
    """Records (path, headers, JSON body) of each POST; ``status`` is its answer; while
    ``gate`` is clear, requests wait."""

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[tuple[str, dict[str, str], Any]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        rec = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                rec.arrived.set()
                rec.gate.wait(20)
                rec.requests.append((self.path, dict(self.headers.items()), body))
                self.send_response(rec.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def alerts(self) -> list[dict[str, Any]]:
        return [a for _, _, body in self.requests for a in body]

    def close(self) -> None:
        self.gate.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def recorder() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


@pytest.fixture
def recorder2() -> Iterator[Recorder]:
    rec = Recorder()
    yield rec
    rec.close()


def alert(name: str, **labels: str) -> dict[str, Any]:
    return {
        "labels": {"alertname": name, **labels},
        "annotations": {"summary": f"{name} fired"},
        "startsAt": "2024-01-01T00:00:00Z",
        "endsAt": "2024-01-01T00:04:00Z",
        "generatorURL": "http://signalroom/graph?g0.expr=up",
    }


def metrics(notifier: Notifier) -> dict[tuple[str, str], float]:
    """{(sample name, alertmanager label or ""): value} from the notifier's collector."""
    registry = CollectorRegistry()
    registry.register(notifier.collector())
    out: dict[tuple[str, str], float] = {}
    for family in registry.collect():
        for sample in family.samples:
            if "quantile" in sample.labels or "le" in sample.labels:
                continue
            out[(sample.name, sample.labels.get("alertmanager", ""))] = sample.value
    return out


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.01)


def notifier_for(section: dict[str, Any], **kwargs: Any) -> Notifier:
    return Notifier.from_section(section, **kwargs)


# --- configuration -------------------------------------------------------------------------


def test_config_defaults_follow_prometheus() -> None:
    cfg = parse_delivery_config(
        {
            "route": {"receiver": "x"},  # the Alertmanager part is not ours
            "alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}]}],
        }
    )
    (am,) = cfg.alertmanagers
    assert (am.scheme, am.path_prefix, am.timeout, am.api_version) == ("http", "", 10_000, "v2")
    assert cfg.alert_relabel_configs == []


@pytest.mark.parametrize(
    ("entry", "path", "message"),
    [
        ({"api_version": "v1"}, ("alertmanagers", 0, "api_version"), "one of [v2] but got v1"),
        ({"scheme": "ftp"}, ("alertmanagers", 0, "scheme"), "'http' or 'https'"),
        ({"timeot": "5s"}, ("alertmanagers", 0, "timeot"), "field timeot not found"),
        ({"dns_sd_configs": []}, ("alertmanagers", 0), "dns_sd_configs is not supported"),
        (
            {"relabel_configs": [{"action": "nope"}]},
            ("alertmanagers", 0, "relabel_configs"),
            'unknown relabel action "nope"',
        ),
        (
            {"static_configs": [{"targets": ["http://am:9093"]}]},
            ("alertmanagers", 0, "static_configs", 0, "targets"),
            "is not a valid hostname",
        ),
        (
            {"basic_auth": {"username": "u"}, "bearer_token": "t"},
            ("alertmanagers", 0),
            "at most one of basic_auth",
        ),
    ],
)
def test_config_errors_name_the_key(
    entry: dict[str, Any], path: tuple[Any, ...], message: str
) -> None:
    with pytest.raises(DeliveryConfigError) as info:
        parse_delivery_config({"alertmanagers": [entry]})
    assert any(p == path and message in m for p, m in info.value.problems), info.value.problems


def test_global_alert_relabel_errors_and_section_validator(tmp_path: Path) -> None:
    raw = {"alert_relabel_configs": [{"action": "labeldrop", "regex": "x", "target_label": "y"}]}
    problems = validate_delivery_section(raw, None, tmp_path)
    assert problems and problems[0][0] == ("alert_relabel_configs",)
    assert validate_delivery_section({"route": {"receiver": "x"}}, None, tmp_path) == []


def test_relative_files_resolve_against_config_dir(tmp_path: Path) -> None:
    cfg = parse_delivery_config(
        {
            "alertmanagers": [
                {
                    "file_sd_configs": [{"files": ["am/*.yml"]}],
                    "basic_auth": {"username": "u", "password_file": "secret"},
                }
            ]
        },
        base_dir=tmp_path,
    )
    (am,) = cfg.alertmanagers
    assert am.file_sd_configs[0].files == [str(tmp_path / "am/*.yml")]
    assert am.basic_auth is not None and am.basic_auth.password_file == str(tmp_path / "secret")


def test_alertmanager_section_ignores_delivery_keys() -> None:
    section = {
        "route": {"receiver": "team"},
        "receivers": [{"name": "team"}],
        "alertmanagers": [{"static_configs": [{"targets": ["am:9093"]}]}],
        "alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
    }
    route = config_from_section(section).route
    assert route is not None and route.receiver == "team"
    assert set(without_delivery_keys(section)) == {"route", "receivers"}


# --- endpoints and relabelling -------------------------------------------------------------


@pytest.mark.parametrize(
    ("prefix", "path"),
    [("", "/api/v2/alerts"), ("/am", "/am/api/v2/alerts"), ("am/", "/am/api/v2/alerts")],
)
def test_alerts_path(prefix: str, path: str) -> None:
    assert alerts_path(prefix) == path


def test_alertmanagers_from_group_relabels_and_drops() -> None:
    cfg = parse_delivery_config(
        {
            "alertmanagers": [
                {
                    "scheme": "https",
                    "path_prefix": "/prefix",
                    "relabel_configs": [
                        {"source_labels": ["role"], "regex": "standby", "action": "drop"},
                        {"source_labels": ["__address__"], "target_label": "__address__",
                         "regex": "(.*):9093", "replacement": "${1}:9193"},
                    ],
                }
            ]
        }
    ).alertmanagers[0]  # fmt: skip
    group = TargetGroup(
        "g", ({"__address__": "a:9093"}, {"__address__": "b:9093", "role": "standby"}), {}
    )
    kept, dropped = alertmanagers_from_group(group, cfg)
    assert [t.url for t in kept] == ["https://a:9193/prefix/api/v2/alerts"]
    assert [t.url for t in dropped] == ["https://b:9093/prefix/api/v2/alerts"]


def test_relabel_alerts_adds_missing_external_labels_then_relabels() -> None:
    src = [alert("A", cluster="own"), alert("B"), alert("C", severity="info")]
    configs = [
        RelabelConfig.from_dict({"source_labels": ["severity"], "regex": "info", "action": "drop"})
    ]
    out = relabel_alerts(src, configs, {"cluster": "eu1", "replica": "a"})
    assert [a["labels"] for a in out] == [
        {"alertname": "A", "cluster": "own", "replica": "a"},
        {"alertname": "B", "cluster": "eu1", "replica": "a"},
    ]
    assert src[0]["labels"] == {"alertname": "A", "cluster": "own"}  # not mutated
    assert out[0]["annotations"] == src[0]["annotations"]


# --- sending ---------------------------------------------------------------------------------


async def test_batches_payload_and_headers(recorder: Recorder) -> None:
    n = notifier_for(
        {
            "alertmanagers": [
                {
                    "path_prefix": "/am",
                    "basic_auth": {"username": "prom", "password": "s3cret"},
                    "static_configs": [{"targets": [recorder.address]}],
                }
            ]
        },
        max_batch_size=256,
    )
    await n.start()
    try:
        n.send([alert(f"A{i}") for i in range(600)])
        assert await n.flush()
    finally:
        await n.stop()
    assert [len(body) for _, _, body in recorder.requests] == [256, 256, 88]
    path, headers, body = recorder.requests[0]
    assert path == "/am/api/v2/alerts"
    assert headers["Content-Type"] == "application/json"
    assert headers["User-Agent"].startswith("signalroom/")
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"prom:s3cret").decode()
    assert body[0] == alert("A0")
    assert [a["labels"]["alertname"] for a in recorder.alerts()] == [f"A{i}" for i in range(600)]
    url = f"http://{recorder.address}/am/api/v2/alerts"
    m = metrics(n)
    assert m[("prometheus_notifications_sent_total", url)] == 600
    assert m[("prometheus_notifications_errors_total", url)] == 0
    assert m[("prometheus_notifications_latency_seconds_count", url)] == 3
    assert m[("prometheus_notifications_queue_capacity", "")] == 10_000


async def test_full_queue_drops_oldest(recorder: Recorder) -> None:
    n = notifier_for(
        {"alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}]},
        queue_capacity=10,
    )
    await n.start()
    url = n.alertmanagers()[0]
    try:
        recorder.gate.clear()
        n.send([alert("first")])
        await asyncio.to_thread(recorder.arrived.wait, 10)  # in flight, held by the server
        n.send([alert(f"A{i}") for i in range(8)])
        n.send([alert(f"B{i}") for i in range(7)])  # 15 queued for 10 places
        m = metrics(n)
        assert m[("prometheus_notifications_queue_length", url)] == 10
        assert m[("prometheus_notifications_dropped_total", url)] == 5
        recorder.gate.set()
        assert await n.flush()
    finally:
        await n.stop()
    names = [a["labels"]["alertname"] for a in recorder.alerts()]
    assert names == ["first", "A5", "A6", "A7"] + [f"B{i}" for i in range(7)]


async def test_failed_batch_counts_errors_and_is_not_retried(recorder: Recorder) -> None:
    recorder.status = 500
    n = notifier_for({"alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}]})
    await n.start()
    try:
        n.send([alert("A"), alert("B")])
        assert await n.flush()
        await asyncio.sleep(0.2)
    finally:
        await n.stop()
    assert len(recorder.requests) == 1
    url = f"http://{recorder.address}/api/v2/alerts"
    m = metrics(n)
    assert m[("prometheus_notifications_errors_total", url)] == 2
    assert m[("prometheus_notifications_dropped_total", url)] == 2
    assert m[("prometheus_notifications_sent_total", url)] == 0


async def test_unreachable_alertmanager_does_not_hold_up_the_other(recorder: Recorder) -> None:
    dead = f"127.0.0.1:{free_port()}"
    n = notifier_for(
        {
            "alertmanagers": [
                {"timeout": "2s", "static_configs": [{"targets": [dead, recorder.address]}]}
            ]
        }
    )
    await n.start()
    try:
        for i in range(5):
            n.send([alert(f"A{i}")])
        await until(lambda: len(recorder.alerts()) == 5)
        assert await n.flush()
    finally:
        await n.stop()
    m = metrics(n)
    assert m[("prometheus_notifications_errors_total", f"http://{dead}/api/v2/alerts")] >= 1
    assert m[("prometheus_notifications_alertmanagers_discovered", "")] == 2
    assert m[("prometheus_notifications_sent_total", f"http://{recorder.address}/api/v2/alerts")]


async def test_global_and_per_alertmanager_alert_relabelling(
    recorder: Recorder, recorder2: Recorder
) -> None:
    n = notifier_for(
        {
            "alert_relabel_configs": [
                {"source_labels": ["severity"], "regex": "debug", "action": "drop"},
                {"target_label": "via", "replacement": "signalroom"},
            ],
            "alertmanagers": [
                {"static_configs": [{"targets": [recorder.address]}]},
                {
                    "static_configs": [{"targets": [recorder2.address]}],
                    "alert_relabel_configs": [
                        {"source_labels": ["team"], "regex": "db", "action": "keep"}
                    ],
                },
            ],
        },
        external_labels={"cluster": "eu1"},
    )
    await n.start()
    try:
        n.send([alert("A", team="db"), alert("B", team="web"), alert("C", severity="debug")])
        assert await n.flush()
    finally:
        await n.stop()
    first = {a["labels"]["alertname"]: a["labels"] for a in recorder.alerts()}
    assert first == {
        "A": {"alertname": "A", "team": "db", "cluster": "eu1", "via": "signalroom"},
        "B": {"alertname": "B", "team": "web", "cluster": "eu1", "via": "signalroom"},
    }
    assert [a["labels"]["alertname"] for a in recorder2.alerts()] == ["A"]


async def test_file_sd_discovers_and_forgets_alertmanagers(
    tmp_path: Path, recorder: Recorder, recorder2: Recorder
) -> None:
    targets = tmp_path / "am.yml"
    targets.write_text(yaml.safe_dump([{"targets": [recorder.address]}]))
    n = notifier_for(
        {"alertmanagers": [{"file_sd_configs": [{"files": [str(tmp_path / "*.yml")]}]}]},
        discovery_interval_s=0.05,
    )
    await n.start()
    try:
        assert n.alertmanagers() == [f"http://{recorder.address}/api/v2/alerts"]
        n.send([alert("A")])
        assert await n.flush()
        time.sleep(0.01)  # a different mtime
        targets.write_text(yaml.safe_dump([{"targets": [recorder2.address]}]))
        await until(lambda: n.alertmanagers() == [f"http://{recorder2.address}/api/v2/alerts"])
        n.send([alert("B")])
        assert await n.flush()
    finally:
        await n.stop()
    assert [a["labels"]["alertname"] for a in recorder.alerts()] == ["A"]
    assert [a["labels"]["alertname"] for a in recorder2.alerts()] == ["B"]


@pytest.mark.parametrize("drain", [True, False])
async def test_stop_drains_the_queue_or_counts_it_dropped(recorder: Recorder, drain: bool) -> None:
    n = notifier_for(
        {"alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}]},
        drain_on_shutdown=drain,
        max_batch_size=2,
    )
    await n.start()
    url = n.alertmanagers()[0]
    recorder.gate.clear()
    n.send([alert("first")])
    await asyncio.to_thread(recorder.arrived.wait, 10)
    n.send([alert(f"A{i}") for i in range(5)])
    threading.Timer(0.2, recorder.gate.set).start()
    await n.stop(timeout_s=10)
    names = [a["labels"]["alertname"] for a in recorder.alerts()]
    assert names == ["first"] + ([f"A{i}" for i in range(5)] if drain else [])
    assert metrics(n)[("prometheus_notifications_dropped_total", url)] == (0 if drain else 5)
    n.send([alert("late")])  # after stop: ignored, no error
    assert len(recorder.alerts()) == len(names)


async def test_reload_keeps_queues_of_unchanged_alertmanagers(
    recorder: Recorder, recorder2: Recorder
) -> None:
    section = {"alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}]}
    n = notifier_for(section)
    await n.start()
    try:
        n.send([alert("A")])
        assert await n.flush()
        url = n.alertmanagers()[0]
        section["alertmanagers"].append({"static_configs": [{"targets": [recorder2.address]}]})
        await n.apply_config(parse_delivery_config(section), {"cluster": "eu2"})
        assert len(n.alertmanagers()) == 2
        assert metrics(n)[("prometheus_notifications_sent_total", url)] == 1  # same loop
        n.send([alert("B")])
        assert await n.flush()
    finally:
        await n.stop()
    assert recorder2.alerts()[0]["labels"] == {"alertname": "B", "cluster": "eu2"}


async def test_send_from_worker_threads(recorder: Recorder) -> None:
    n = notifier_for({"alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}]})
    await n.start()
    try:
        threads = [
            threading.Thread(target=n.send, args=([alert(f"T{t}-{i}") for i in range(50)],))
            for t in range(4)
        ]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        await until(lambda: len(recorder.alerts()) == 200)
    finally:
        await n.stop()
    assert len({a["labels"]["alertname"] for a in recorder.alerts()}) == 200


# --- fan-out -------------------------------------------------------------------------------


class Broken:
    def send(self, alerts: list[dict[str, Any]]) -> None:
        raise RuntimeError("down")


class Keeper:
    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []

    def send(self, alerts: list[dict[str, Any]]) -> None:
        self.sent.extend(alerts)


def test_fanout_survives_a_failing_notifier() -> None:
    keeper = Keeper()
    FanoutNotifier([Broken(), keeper]).send([alert("A")])
    assert [a["labels"]["alertname"] for a in keeper.sent] == ["A"]


async def test_build_alert_notifier_relabels_for_the_local_manager_too(
    recorder: Recorder,
) -> None:
    local = Keeper()
    fanout, n = build_alert_notifier(
        {
            "route": {"receiver": "x"},
            "alert_relabel_configs": [{"action": "labeldrop", "regex": "replica"}],
            "alertmanagers": [{"static_configs": [{"targets": [recorder.address]}]}],
        },
        local=local,
        external_labels={"cluster": "eu1", "replica": "r1"},
    )
    await n.start()
    try:
        fanout.send([alert("A")])
        assert await n.flush()
    finally:
        await n.stop()
    expected = {"alertname": "A", "cluster": "eu1"}
    assert [a["labels"] for a in local.sent] == [expected]
    assert [a["labels"] for a in recorder.alerts()] == [expected]


def test_metric_names_in_exposition() -> None:
    registry = CollectorRegistry()
    registry.register(Notifier().collector())
    text = generate_latest(registry).decode()
    assert "prometheus_notifications_queue_capacity 10000.0" in text
    assert "prometheus_notifications_alertmanagers_discovered 0.0" in text
