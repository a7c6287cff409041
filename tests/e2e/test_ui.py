"""The web UI in a real browser: headless Debian Chromium driven by playwright-core (Node).

Builds nothing: ``make ui`` builds the UI into ``src/signalroom/web/static/`` and installs
``ui/node_modules``. This test starts a real server with rules, pushes logs, a trace and a
dashboard, then runs ``npm run e2e`` (``ui/e2e/*.test.mjs``), which opens every page, asserts
on what a person sees and saves a screenshot per page to ``test-artifacts/ui/``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.server import running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
UI_DIR = ROOT / "ui"
STATIC_INDEX = ROOT / "src" / "signalroom" / "web" / "static" / "index.html"
ARTIFACTS = ROOT / "test-artifacts" / "ui"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")

SCREENSHOTS = (
    "dashboards", "dashboard", "explore-metrics", "explore-logs", "explore-traces", "trace",
    "alerting-alerts", "alerting-rules", "alerting-silences", "phone-dashboard", "phone-explore",
)  # fmt: skip
TRACE_ID = "5b8efff798038103d269b633813fc60c"

RULES = """
groups:
  - name: shop
    interval: 1s
    rules:
      - record: job:up:sum
        expr: sum by (job) (up)
      - alert: CheckoutErrorsHigh
        expr: vector(7)
        labels: {severity: critical, team: shop}
        annotations: {summary: "7 errors per second"}
"""

CONFIG = """
global: {scrape_interval: 1s, scrape_timeout: 1s, evaluation_interval: 1s}
rule_files: [rules.yml]
storage: {wal: {fsync: never}}
alerting:
  route:
    receiver: log
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
  receivers:
    - name: log
"""

DASHBOARD: dict[str, Any] = {
    "uid": "shop-overview",
    "title": "Shop overview",
    "tags": ["shop"],
    "time": {"from": "now-15m", "to": "now"},
    "templating": {
        "list": [
            {
                "name": "job",
                "type": "query",
                "query": "label_values(up, job)",
                "multi": True,
                "includeAll": True,
                "current": {"value": ["$__all"]},
            },
        ]
    },
    "panels": [
        {
            "id": 1,
            "type": "stat",
            "title": "Targets up",
            "gridPos": {"x": 0, "y": 0, "w": 6, "h": 5},
            "targets": [{"refId": "A", "expr": 'sum(up{job=~"$job"})'}],
            "fieldConfig": {
                "defaults": {
                    "unit": "short",
                    "thresholds": {
                        "steps": [{"color": "red", "value": None}, {"color": "green", "value": 1}]
                    },
                }
            },
        },
        {
            "id": 2,
            "type": "gauge",
            "title": "Scrape duration",
            "gridPos": {"x": 6, "y": 0, "w": 6, "h": 5},
            "targets": [{"refId": "A", "expr": 'scrape_duration_seconds{job=~"$job"} * 1000'}],
            "fieldConfig": {"defaults": {"unit": "ms", "min": 0, "max": 1000}},
        },
        {
            "id": 3,
            "type": "timeseries",
            "title": "Samples scraped",
            "gridPos": {"x": 12, "y": 0, "w": 12, "h": 8},
            "targets": [
                {
                    "refId": "A",
                    "expr": 'scrape_samples_scraped{job=~"$job"}',
                    "legendFormat": "{{job}}",
                }
            ],
        },
        {
            "id": 4,
            "type": "row",
            "title": "Details",
            "collapsed": False,
            "gridPos": {"x": 0, "y": 8, "w": 24, "h": 1},
        },
        {
            "id": 5,
            "type": "table",
            "title": "Up by instance",
            "gridPos": {"x": 0, "y": 9, "w": 12, "h": 6},
            "targets": [{"refId": "A", "expr": "up"}],
        },
        {
            "id": 6,
            "type": "barchart",
            "title": "Series per job",
            "gridPos": {"x": 12, "y": 9, "w": 12, "h": 6},
            "targets": [{"refId": "A", "expr": "count by (job) (up)", "legendFormat": "{{job}}"}],
        },
    ],
}


def push_demo_data(client: httpx.Client) -> None:
    """Logs (one carrying the trace id), a three-service trace and a dashboard."""
    now_ns = time.time_ns()
    values = [[str(now_ns - i * 10**9), f"level=info msg=\"order {i} placed\" app=shop"]
              for i in range(1, 6)]  # fmt: skip
    values.insert(0, [str(now_ns), f'level=error msg="payment failed" trace_id={TRACE_ID}'])
    response = client.post(
        "/loki/api/v1/push",
        json={"streams": [{"stream": {"job": "signalroom", "app": "shop"}, "values": values}]},
    )
    assert response.status_code == 204, response.text

    def span(span_id: str, parent: str | None, name: str, offset_ms: int, ms: int) -> Any:
        out: dict[str, Any] = {
            "traceId": TRACE_ID, "spanId": span_id, "name": name, "kind": 2,
            "startTimeUnixNano": str(now_ns + offset_ms * 10**6),
            "endTimeUnixNano": str(now_ns + (offset_ms + ms) * 10**6),
        }  # fmt: skip
        if parent:
            out["parentSpanId"] = parent
        return out

    def resource(service: str, spans: list[Any]) -> Any:
        attributes = [{"key": "service.name", "value": {"stringValue": service}}]
        return {"resource": {"attributes": attributes}, "scopeSpans": [{"spans": spans}]}

    body = {
        "resourceSpans": [
            resource("frontend", [span("eee19b7ec3c1b174", None, "GET /checkout", 0, 120)]),
            resource("orders", [span("eee19b7ec3c1b175", "eee19b7ec3c1b174", "place", 10, 80)]),
            resource("db", [span("eee19b7ec3c1b176", "eee19b7ec3c1b175", "INSERT", 20, 30)]),
        ]
    }
    response = client.post(
        "/v1/traces", content=json.dumps(body), headers={"content-type": "application/json"}
    )
    assert response.status_code == 200, response.text
    response = client.put(f"/api/sr/dashboards/{DASHBOARD['uid']}", json=DASHBOARD)
    assert response.status_code == 200, response.text


def wait_for(predicate: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.2)


def test_every_page_in_headless_chromium(tmp_path: Path) -> None:
    if not STATIC_INDEX.is_file() or not (UI_DIR / "node_modules" / "playwright-core").is_dir():
        pytest.fail("the web UI is not built: run make ui")
    if not Path(CHROMIUM).is_file():
        pytest.fail(f"{CHROMIUM} is missing: scripts/install-system-deps.sh chromium")
    npm = shutil.which("npm")
    assert npm, "npm is not installed"
    (tmp_path / "rules.yml").write_text(RULES)
    with running_server(tmp_path, CONFIG) as server, server.client() as client:
        push_demo_data(client)

        def ready() -> bool:
            alerts = client.get("/api/v2/alerts").json()
            up = client.get("/api/v1/query_range", params={
                "query": "up", "start": time.time() - 60, "end": time.time(), "step": 1
            }).json()["data"]["result"]  # fmt: skip
            return bool(alerts) and bool(up) and len(up[0]["values"]) >= 3

        wait_for(ready)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        result = subprocess.run(
            [npm, "run", "e2e", "--", "--base-url", server.url],
            cwd=UI_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            env={
                **os.environ,
                "CHROMIUM_PATH": CHROMIUM,
                "SCREENSHOT_DIR": str(ARTIFACTS),
                "TRACE_ID": TRACE_ID,
            },
        )
        output = result.stdout + result.stderr
        assert result.returncode == 0, output
        assert "# fail 0" in output, output
    for page in SCREENSHOTS:
        assert (ARTIFACTS / f"{page}.png").stat().st_size > 1000, page
