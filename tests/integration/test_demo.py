"""The demo end to end: a real server with demo-like config, the simulator against it at high
speed with one incident and a seasonal peak forced early, and what a user would check
afterwards: the alert fired and resolved (the webhook sink got both), dashboards have data
(PromQL over the scraped web shop, real users' web vitals, the load test's ramp, lead
protection computed from the CRM's events), the funnel shows the simulated conversion, a trace
leads to its logs, and the capacity plan measures its baseline on the running server."""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from signalroom.alerting.testing import WebhookSink
from signalroom.packs.freshfoodz.capacity import capacity_app
from signalroom.simulate import Incident, RunSummary, run
from signalroom.simulate.companies.webshop import CONFIGURED_CONVERSION, FUNNEL_STEPS
from tests.support.server import free_port, running_server
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow]

DEMO_RULES = Path(__file__).parents[2] / "examples" / "demo-rules.yml"
SPEED = 60.0  # one simulated hour per real minute, as `make run`
RUN_SECONDS = 40.0
INCIDENT = "sample_success_drop"
INCIDENT_REAL = (4.0, 18.0)  # real seconds after the simulator starts
PEAK_REAL = (20.0, 32.0)


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as running:
        yield running


def demo_rules_for_test() -> str:
    """The demo rules with windows and ``for`` shrunk further so the test fits in ~90 s."""
    text = DEMO_RULES.read_text()
    text = text.replace("[1m]", "[10s]")
    return re.sub(r"for: 20s", "for: 1s", text)


def notifications(sink: WebhookSink, alertname: str, status: str) -> list[float]:
    return [
        at
        for _, at, payload in list(sink.received)
        for alert in payload["alerts"]
        if alert["labels"].get("alertname") == alertname and alert["status"] == status
    ]


def wait_for(predicate: Any, timeout: float, what: str) -> None:
    wait_until(predicate, timeout, what)


def test_demo_end_to_end(tmp_path: Path, sink: WebhookSink) -> None:
    (tmp_path / "demo-rules.yml").write_text(demo_rules_for_test())
    target_port = free_port()
    config = f"""
global: {{scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s,
          external_labels: {{environment: demo}}}}
scrape_configs:
  - job_name: webshop
    static_configs: [{{targets: ['127.0.0.1:{target_port}']}}]
rule_files: [demo-rules.yml]
packs: [freshfoodz]
alerting:
  route:
    receiver: sink
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
    repeat_interval: 1h
  receivers:
    - name: sink
      webhook_configs: [{{url: '{sink.url}', send_resolved: true}}]
"""
    with running_server(tmp_path, config) as server, server.client() as client:
        result: list[RunSummary] = []
        schedule = [
            Incident(
                INCIDENT, INCIDENT_REAL[0] * SPEED, (INCIDENT_REAL[1] - INCIDENT_REAL[0]) * SPEED
            ),
            Incident("seasonal_peak", PEAK_REAL[0] * SPEED, (PEAK_REAL[1] - PEAK_REAL[0]) * SPEED),
        ]
        simulator = threading.Thread(
            target=lambda: result.append(
                run(server.url, seed=7, speed=SPEED, duration=RUN_SECONDS, schedule=schedule,
                    metrics_port=target_port)
            )
        )  # fmt: skip
        simulator.start()
        simulator.join(RUN_SECONDS + 30)
        simulation_ended = time.monotonic()
        assert result, "the simulator did not finish"
        summary = result[0]
        assert INCIDENT in summary.scenarios_seen
        for name, stats in summary.senders.items():
            assert stats.failed == 0 and stats.dropped == 0, (name, stats.last_error)
            assert stats.sent > 0, name

        # the incident's alert fired, notified the sink and resolved while traffic went on
        fired = notifications(sink, "SampleSuccessRateLow", "firing")
        resolved = notifications(sink, "SampleSuccessRateLow", "resolved")
        assert fired, f"no firing notification; got {sink.bodies()}"
        assert resolved, "the alert did not resolve after the incident ended"
        assert min(fired) < min(resolved) < simulation_ended

        # dashboards have data: the web shop's golden signals, scraped from the simulator
        end = time.time()
        by_service = client.get(
            "/api/v1/query",
            params={"query": "sum by (service) (rate(http_requests_total[20s]))", "time": end - 3},
        ).json()["data"]["result"]
        services = {r["metric"]["service"] for r in by_service}
        assert {"frontend", "backend", "payment", "api-leads"} <= services
        assert all(float(r["value"][1]) > 0 for r in by_service)
        p95 = client.get(
            "/api/v1/query",
            params={
                "query": "histogram_quantile(0.95, sum by (le) "
                '(rate(http_request_duration_seconds_bucket{service="backend"}[20s])))',
                "time": end - 3,
            },
        ).json()["data"]["result"]
        assert p95 and 0 < float(p95[0]["value"][1]) < 10

        # the funnel: every simulated visitor arrived, conversion is what the shop simulated
        steps = [name for name, _ in FUNNEL_STEPS]
        viewed = summary.funnel_counts["product_viewed"]
        purchased = summary.funnel_counts["purchase_completed"]
        assert viewed > 50

        def funnel() -> dict[str, Any]:
            response = client.post("/api/sr/analytics/funnels", json={"steps": steps})
            assert response.status_code == 200, response.text
            data: dict[str, Any] = response.json()["data"]
            return data

        wait_for(lambda: funnel()["steps"][0]["count"] == viewed, 20, "all events consumed")
        data = funnel()
        assert [s["count"] for s in data["steps"]] == [summary.funnel_counts[s] for s in steps]
        assert data["conversion_rate"] == pytest.approx(purchased / viewed)
        assert abs(data["conversion_rate"] - CONFIGURED_CONVERSION) < 0.1

        # a checkout trace spans the four services and its logs are linked to it
        traces = client.get(
            "/api/traces", params={"service": "payment", "lookback": "1h", "limit": 5}
        ).json()["data"]
        assert traces
        trace = traces[0]
        services_in_trace = {p["serviceName"] for p in trace["processes"].values()}
        assert services_in_trace == {"frontend", "backend", "payment", "database"}
        logs = client.get(f"/api/sr/traces/{trace['traceID']}/logs").json()["data"]
        assert len(logs) >= 2
        assert any("checkout started" in row["line"] for row in logs)
        span_ids = {s["spanID"] for s in trace["spans"]}
        assert {row["spanID"] for row in logs} <= span_ids

        def query(expr: str) -> list[dict[str, Any]]:
            body = client.get("/api/v1/query", params={"query": expr}).json()
            assert body["status"] == "success", body
            result: list[dict[str, Any]] = body["data"]["result"]
            return result

        # real users' web vitals, beaconed to /api/rum, as histograms by page and device
        pages = query("sum by (page) (web_vitals_lcp_seconds_count)")
        assert {r["metric"]["page"] for r in pages} == {"/", "/product/:id", "/checkout"}
        devices = query("sum by (device) (web_vitals_inp_seconds_count)")
        assert {r["metric"]["device"] for r in devices} == {"mobile", "desktop"}
        p75 = query("histogram_quantile(0.75, sum by (le) (web_vitals_lcp_seconds_bucket))")
        assert 0.5 < float(p75[0]["value"][1]) < 4
        for vital in ("cls", "fcp_seconds", "ttfb_seconds"):
            assert query(f"web_vitals_{vital}_count"), vital

        # the seasonal peak: the load test ramped the shop to 5x and pushed its seconds
        assert len(summary.loadtests) == 1, summary.loadtests
        peak = summary.loadtests[0]
        assert peak["requests"] > 100 and peak["failed"] == 0 and peak["push_failures"] == 0
        planned = query('max_over_time(signalroom_loadtest_planned_rate{test="seasonal-peak"}[5m])')
        assert float(planned[0]["value"][1]) == pytest.approx(20.0)
        achieved = query(
            'max_over_time(signalroom_loadtest_requests_per_second{test="seasonal-peak"}[5m])'
        )
        assert float(achieved[0]["value"][1]) >= 15
        season = query("season_load_multiplier")
        assert season and float(season[0]["value"][1]) >= 1

        # lead protection computed from the CRM's lead events: reminders fell due and went out
        def reminders() -> tuple[float, float] | None:
            due = query("sum(lead_reminder_due_total)")
            sent = query("sum(lead_reminder_sent_total)")
            if not due or not sent:
                return None
            return float(due[0]["value"][1]), float(sent[0]["value"][1])

        wait_for(lambda: (r := reminders()) is not None and r[0] > 0 and r[0] == r[1], 30,
                 "lead reminders sent")  # fmt: skip
        states = query("lead_protection_state")
        assert len(states) == 5
        assert sum(float(r["value"][1]) for r in states) > 5
        titles = {d["title"] for d in client.get("/api/sr/dashboards").json()["data"]}
        assert "Season War Room" in titles
        # the enabled packs' runbooks are served next to the configured ones
        runbook = client.get("/runbooks/settings-sync-failure")
        assert runbook.status_code == 200, runbook.text
        assert "settings" in runbook.text.lower()
        assert client.get("/runbooks/lead-protection-reminders").status_code == 200

        # the capacity plan measures its baseline on the running server
        baseline = tmp_path / "baseline.yml"
        baseline.write_text(
            "components:\n"
            "  - {component: shop, capacity_per_instance: 10, connections_per_instance: 5,\n"
            "     load_query: 'sum(rate(http_requests_total[10s]))'}\n"
        )
        app = typer.Typer()
        app.add_typer(capacity_app, name="capacity")
        plan = CliRunner().invoke(
            app,
            ["capacity", "plan", "-b", str(baseline), "-s", "christmas", "--headroom", "0",
             "--url", server.url, "--days", "0.01", "--step", "5", "--json"],
        )  # fmt: skip
        assert plan.exit_code == 0, plan.output
        component = json.loads(plan.output)["components"][0]
        assert component["target_load_per_second"] > 5 * 15  # the peak was measured, x5
        assert component["instances"] == math.ceil(component["target_load_per_second"] / 10)
