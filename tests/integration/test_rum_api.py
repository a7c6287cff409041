"""``POST /api/rum`` in a running server: what a browser sends (fetch with a CORS preflight, or
a text/plain beacon) becomes web-vitals histograms PromQL can read; bad reports are 400s."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from tests.support.server import running_server

pytestmark = pytest.mark.integration

ORIGIN = "https://shop.simone.example"


def test_browser_reports_become_histograms(tmp_path: Path) -> None:
    with running_server(tmp_path) as server, server.client() as client:
        preflight = client.options(
            "/api/rum",
            headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST",
                     "Access-Control-Request-Headers": "content-type"},
        )  # fmt: skip
        assert preflight.status_code == 204
        assert preflight.headers["access-control-allow-origin"] == ORIGIN
        assert "POST" in preflight.headers["access-control-allow-methods"]
        assert "content-type" in preflight.headers["access-control-allow-headers"].lower()

        lcp = [
            {"name": "LCP", "value": v, "rating": "good" if v <= 2500 else "poor",
             "id": f"v4-{i}", "navigationType": "navigate", "route": "/product/:id",
             "device": "mobile"}
            for i, v in enumerate([1200, 1800, 2100, 2400, 5200])
        ]  # fmt: skip
        sent = client.post("/api/rum", json=lcp, headers={"Origin": ORIGIN})
        assert sent.status_code == 204, sent.text
        assert sent.headers["access-control-allow-origin"] == ORIGIN
        # navigator.sendBeacon: one report, text/plain, no preflight
        beacon = client.post(
            "/api/rum",
            content=json.dumps({"name": "CLS", "value": 0.02, "page": "/cart?x=1", "id": "c1"}),
            headers={"Content-Type": "text/plain;charset=UTF-8"},
        )
        assert beacon.status_code == 204

        bad = client.post("/api/rum", json=[lcp[0], {"name": "LCP"}])
        assert bad.status_code == 400
        assert "report 1: value must be a finite number" in bad.json()["error"]
        assert bad.headers["access-control-allow-origin"] == "*"
        assert client.post("/api/rum", content=b"x" * 70_000).status_code == 413

        def query(expr: str) -> list[dict[str, object]]:
            body = client.get("/api/v1/query", params={"query": expr, "time": time.time()})
            result: list[dict[str, object]] = body.json()["data"]["result"]
            return result

        good_share = query(
            'sum(web_vitals_lcp_seconds_bucket{le="2.5"}) / sum(web_vitals_lcp_seconds_count)'
        )
        assert float(good_share[0]["value"][1]) == pytest.approx(0.8)  # type: ignore[index]
        by_labels = query("sum by (route, page, rating, device) (web_vitals_lcp_seconds_count)")
        assert {json.dumps(r["metric"], sort_keys=True) for r in by_labels} == {
            json.dumps({"page": "/product/:id", "rating": r, "device": "mobile"}, sort_keys=True)
            for r in ("good", "poor")
        }
        cls = query("web_vitals_cls_count")
        assert cls[0]["metric"]["page"] == "/cart"  # type: ignore[index]
        p50 = query("histogram_quantile(0.5, sum by (le) (web_vitals_lcp_seconds_bucket))")
        assert 1.5 < float(p50[0]["value"][1]) <= 2.5  # type: ignore[index]


def test_with_tokens_a_public_api_key_or_a_token_is_needed(tmp_path: Path) -> None:
    config = """
auth:
  tokens:
    - {name: writer, sha256: 2bb80d537b1da3e38bd30361aa855686bde0eacd7162fef6a25fe97bf527a25b,
       scopes: [write]}
events:
  api_keys: [phc_public_browser_key]
"""
    report = {"name": "INP", "value": 120}
    with running_server(tmp_path, config) as server, server.client() as client:
        assert client.post("/api/rum", json=report).status_code == 401
        assert client.post("/api/rum?api_key=wrong", json=report).status_code == 401
        assert (
            client.post("/api/rum?api_key=phc_public_browser_key", json=report).status_code == 204
        )
        with_token = client.post(
            "/api/rum", json=report, headers={"Authorization": "Bearer secret"}
        )
        assert with_token.status_code == 204
