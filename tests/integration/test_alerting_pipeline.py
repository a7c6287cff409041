"""Rules to notifications on a real server: a rule file fires, the alert manager groups it and
a webhook receives Alertmanager's payload; the Prometheus and Alertmanager APIs show it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.server import running_server

pytestmark = pytest.mark.integration

RULES = """
groups:
  - name: demo
    interval: 1s
    rules:
      - record: job:signalroom_up:sum
        expr: sum by (job) (up)
      - alert: CheckoutErrorsHigh
        expr: vector(7) > 5
        labels: {severity: critical, team: shop}
        annotations:
          summary: "{{ $value }} errors per second"
"""


class Sink(BaseHTTPRequestHandler):
    received: list[dict[str, Any]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Sink.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[str]:
    Sink.received = []
    server = HTTPServer(("127.0.0.1", 0), Sink)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/hook"
    server.shutdown()


def wait_for(predicate, timeout: float = 30.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_rule_fires_and_webhook_receives_it(tmp_path: Path, webhook: str) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}}
rule_files: [rules.yml]
alerting:
  route:
    receiver: shop
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
  receivers:
    - name: shop
      webhook_configs: [{{url: '{webhook}'}}]
"""
    with running_server(tmp_path, config) as server, server.client() as client:
        wait_for(lambda: Sink.received)
        payload = Sink.received[0]
        assert payload["version"] == "4"
        assert payload["receiver"] == "shop"
        assert payload["status"] == "firing"
        alert = payload["alerts"][0]
        assert alert["labels"] == {"alertname": "CheckoutErrorsHigh", "severity": "critical",
                                   "team": "shop"}  # fmt: skip
        assert alert["annotations"] == {"summary": "7 errors per second"}

        groups = client.get("/api/v1/rules").json()["data"]["groups"]
        rules = {rule["name"]: rule for rule in groups[0]["rules"]}
        assert rules["CheckoutErrorsHigh"]["state"] == "firing"
        assert rules["job:signalroom_up:sum"]["health"] == "ok"
        firing = client.get("/api/v1/alerts").json()["data"]["alerts"]
        assert [a["labels"]["alertname"] for a in firing] == ["CheckoutErrorsHigh"]
        alerts_v2 = client.get("/api/v2/alerts").json()
        assert alerts_v2[0]["labels"]["alertname"] == "CheckoutErrorsHigh"

        def recorded() -> bool:
            result = client.get("/api/v1/query", params={"query": "job:signalroom_up:sum"})
            return bool(result.json()["data"]["result"])

        wait_for(recorded)

        def alerts_series() -> list[dict[str, Any]]:
            query = {"query": 'ALERTS{alertstate="firing"}'}
            result: list[dict[str, Any]] = client.get("/api/v1/query", params=query).json()["data"][
                "result"
            ]
            return result

        wait_for(alerts_series, timeout=10)
        assert alerts_series()[0]["metric"]["alertname"] == "CheckoutErrorsHigh"
        metrics = client.get("/metrics").text
        assert "prometheus_rule_group_iterations_total{rule_group=" in metrics


def test_invalid_rule_file_on_reload_keeps_running_rules(tmp_path: Path) -> None:
    (tmp_path / "rules.yml").write_text(RULES)
    config = "rule_files: [rules.yml]\nglobal: {evaluation_interval: 1s}\n"
    with running_server(tmp_path, config) as server, server.client() as client:
        (tmp_path / "rules.yml").write_text("groups:\n  - name: x\n    rules:\n      - alert: A\n")
        answer = client.post("/-/reload")
        assert answer.status_code == 400
        assert "rules.yml" in answer.json()["error"]
        names = [
            r["name"]
            for g in client.get("/api/v1/rules").json()["data"]["groups"]
            for r in g["rules"]
        ]
        assert "CheckoutErrorsHigh" in names


@pytest.mark.slow
def test_rule_alerts_reach_an_external_alertmanager(tmp_path: Path) -> None:
    from tests.support.alertmanager import real_alertmanager

    (tmp_path / "rules.yml").write_text(RULES)
    null_receiver = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    (tmp_path / "am").mkdir()
    with real_alertmanager(null_receiver, tmp_path / "am") as url:
        address = url.removeprefix("http://")
        config = f"""
global: {{evaluation_interval: 1s, external_labels: {{cluster: eu1}}}}
server: {{self_scrape: false}}
rule_files: [rules.yml]
alerting:
  alertmanagers:
    - static_configs: [{{targets: ['{address}']}}]
"""
        with running_server(tmp_path, config):

            def received() -> list[dict[str, Any]]:
                import httpx

                alerts: list[dict[str, Any]] = httpx.get(f"http://{address}/api/v2/alerts").json()
                return alerts

            wait_for(received)
            alert = received()[0]
            assert alert["labels"]["alertname"] == "CheckoutErrorsHigh"
            assert alert["labels"]["cluster"] == "eu1"
            assert alert["generatorURL"].startswith("http://127.0.0.1:")


def test_enabled_pack_brings_its_rules(tmp_path: Path) -> None:
    config = "packs: [freshfoodz]\nserver: {self_scrape: false}\n"
    with running_server(tmp_path, config) as server, server.client() as client:
        groups = client.get("/api/v1/rules").json()["data"]["groups"]
        files = {group["file"] for group in groups}
        assert any("packs/freshfoodz/rules" in name for name in files)
        names = {rule["name"] for group in groups for rule in group["rules"]}
        expected = {"SampleSuccessRateLow", "EventCateringSLABreach", "CostPerLeadBudgetExceeded"}
        assert expected <= names
