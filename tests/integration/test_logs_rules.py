"""LogQL rules and error groups on a real server: logs pushed with Loki's push API fire a LogQL
alerting rule into signalroom's alert manager (a webhook receives it), a LogQL recording rule's
series is queryable with PromQL, and a stack trace becomes an error group that raises a
"new error group" alert and can be listed and resolved through the API."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from signalroom.alerting.testing import WebhookSink
from tests.support.server import running_server
from tests.support.wait import wait_until

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

LOG_RULES = """
groups:
  - name: shop-logs
    interval: 1s
    rules:
      - alert: ShopLogErrors
        expr: sum by (service) (count_over_time({service="shop"} |= "error" [1m])) > 5
        labels: {severity: page}
        annotations:
          summary: "{{ $labels.service }}: {{ $value }} error lines in a minute"
      - record: service:log_errors:count1m
        expr: sum by (service) (count_over_time({service=~".+"} |= "error" [1m]))
"""

METRIC_RULES = """
groups:
  - name: error-groups
    interval: 1s
    rules:
      - alert: NewErrorGroup
        expr: count by (service, type, fingerprint) (log_error_group_new) > 0
"""

TRACEBACK = """Traceback (most recent call last):
  File "/app/shop/views.py", line 42, in checkout
    order = place_order(cart)
  File "/app/shop/payments.py", line 88, in charge
    raise PaymentError(msg)
shop.payments.PaymentError: card 4242 declined"""


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as running:
        yield running


def wait_for(predicate: Callable[[], object], timeout: float = 30.0) -> None:
    wait_until(predicate, timeout, "the condition")


def received_alerts(sink: WebhookSink) -> dict[str, dict[str, Any]]:
    return {
        alert["labels"]["alertname"]: alert
        for payload in sink.bodies()
        for alert in payload["alerts"]
    }


def push(client: httpx.Client, service: str, lines: list[str]) -> None:
    now = time.time_ns()
    values = [[str(now - (len(lines) - i) * 1_000_000), line] for i, line in enumerate(lines)]
    response = client.post(
        "/loki/api/v1/push", json={"streams": [{"stream": {"service": service}, "values": values}]}
    )
    assert response.status_code == 204, response.text


def test_logql_rules_and_error_groups(tmp_path: Path, sink: WebhookSink) -> None:
    (tmp_path / "log-rules.yml").write_text(LOG_RULES)
    (tmp_path / "rules.yml").write_text(METRIC_RULES)
    config = f"""
global: {{evaluation_interval: 1s}}
rule_files: [rules.yml]
logs:
  ruler:
    rule_files: [log-rules.yml]
    evaluation_interval: 1s
alerting:
  route:
    receiver: hook
    group_by: [alertname]
    group_wait: 1s
    group_interval: 1s
  receivers:
    - name: hook
      webhook_configs: [{{url: '{sink.url}'}}]
"""
    with running_server(tmp_path, config) as server, server.client() as client:
        push(client, "shop", [f"error: checkout {i} failed" for i in range(8)] + ["ok"] * 4)
        push(client, "cart", ["error: cart 1 failed", "fine"])
        push(client, "shop", ["request failed\n" + TRACEBACK])

        # The LogQL alerting rule fires into the alert manager and reaches the webhook.
        wait_for(lambda: "ShopLogErrors" in received_alerts(sink))
        alert = received_alerts(sink)["ShopLogErrors"]
        assert alert["labels"] == {"alertname": "ShopLogErrors", "service": "shop",
                                   "severity": "page"}  # fmt: skip
        assert alert["annotations"] == {"summary": "shop: 8 error lines in a minute"}

        # The recording rule's series is in the metric store.
        def recorded() -> dict[str, str]:
            data = client.get(
                "/api/v1/query", params={"query": "service:log_errors:count1m"}
            ).json()["data"]
            return {r["metric"]["service"]: r["value"][1] for r in data["result"]}

        wait_for(lambda: recorded().keys() == {"shop", "cart"})
        assert recorded() == {"shop": "8", "cart": "1"}

        # Loki's ruler API lists the groups.
        listing = client.get("/loki/api/v1/rules")
        assert listing.status_code == 200
        (namespace,) = yaml.safe_load(listing.text).values()
        assert namespace[0]["name"] == "shop-logs"
        assert [r.get("alert") or r.get("record") for r in namespace[0]["rules"]] == [
            "ShopLogErrors",
            "service:log_errors:count1m",
        ]
        prom = client.get("/prometheus/api/v1/rules").json()["data"]["groups"]
        assert prom[0]["rules"][0]["state"] == "firing"

        # The traceback became an error group, and a rule alerted on the new group.
        groups = client.get("/api/sr/logs/error-groups").json()["data"]["groups"]
        assert len(groups) == 1
        group = groups[0]
        assert group["type"] == "shop.payments.PaymentError"
        assert group["message"] == "card <id> declined"
        assert group["services"] == ["shop"] and group["count"] == 1
        assert group["frames"] == [
            "/app/shop/payments.py:charge",
            "/app/shop/views.py:checkout",
        ]
        wait_for(lambda: "NewErrorGroup" in received_alerts(sink))
        labels = received_alerts(sink)["NewErrorGroup"]["labels"]
        assert labels["fingerprint"] == group["fingerprint"]
        assert (labels["service"], labels["type"]) == ("shop", "shop.payments.PaymentError")
        assert "signalroom_log_error_groups_new_total" in client.get("/metrics").text

        # The same fault again only counts; resolving hides the group from the default list.
        push(client, "shop", [TRACEBACK.replace("4242", "1111")])
        fp = group["fingerprint"]
        assert client.get(f"/api/sr/logs/error-groups/{fp}").json()["data"]["count"] == 2
        resolved = client.post(f"/api/sr/logs/error-groups/{fp}/resolve")
        assert resolved.status_code == 200
        assert resolved.json()["data"]["status"] == "resolved"
        assert client.get("/api/sr/logs/error-groups").json()["data"]["groups"] == []
        listed = client.get("/api/sr/logs/error-groups", params={"status": "resolved"}).json()
        assert [g["fingerprint"] for g in listed["data"]["groups"]] == [fp]
        assert client.post("/api/sr/logs/error-groups/0000000000000000/resolve").status_code == 404

    # Groups survive a restart (state store), still resolved.
    with running_server(tmp_path, config, data_dir=server.data_dir) as again, again.client() as c:
        listed = c.get("/api/sr/logs/error-groups", params={"status": "all"}).json()
        assert [(g["fingerprint"], g["status"], g["count"]) for g in listed["data"]["groups"]] == [
            (fp, "resolved", 2)
        ]


API_GROUP = """
name: checkout-errors
interval: 1s
rules:
  - record: shop:checkout_errors:count1m
    expr: sum(count_over_time({service="shop"} |= "checkout" [1m]))
  - alert: CheckoutErrors
    expr: sum(count_over_time({service="shop"} |= "checkout" [1m])) > 1000
    for: 5m
    annotations: {summary: too many}
"""


def test_ruler_api_sets_lists_and_deletes_groups_across_restarts(tmp_path: Path) -> None:
    """Loki's ruler API (what lokitool/cortextool ``rules sync`` and Grafana's rule editor
    call): a group POSTed into a namespace is evaluated at once, listed in Loki's YAML and
    in Prometheus's JSON shape, survives a restart, and is gone after DELETE."""
    config = "logs:\n  ruler:\n    evaluation_interval: 1s\n"
    data = tmp_path / "data"
    with running_server(tmp_path, config, data_dir=data) as server, server.client() as client:
        assert client.get("/loki/api/v1/rules").status_code == 404  # nothing yet
        created = client.post(
            "/loki/api/v1/rules/team a",
            content=API_GROUP,
            headers={"Content-Type": "application/yaml"},
        )
        assert created.status_code == 202, created.text
        assert created.json() == {"status": "success", "data": None, "errorType": "", "error": ""}
        push(client, "shop", ["checkout 1 failed", "checkout 2 failed", "ok"])

        listing = yaml.safe_load(client.get("/loki/api/v1/rules").text)
        assert list(listing) == ["team a"]
        (group,) = listing["team a"]
        assert group["name"] == "checkout-errors"
        assert group["interval"] == "1s"
        assert [r.get("record") or r.get("alert") for r in group["rules"]] == [
            "shop:checkout_errors:count1m",
            "CheckoutErrors",
        ]
        assert group["rules"][1]["for"] == "5m"
        one = client.get("/loki/api/v1/rules/team a/checkout-errors")
        assert one.status_code == 200
        assert yaml.safe_load(one.text) == group
        assert yaml.safe_load(client.get("/loki/api/v1/rules/team a").text) == listing

        # Evaluated: the recording rule's series reaches the metric store.
        def recorded() -> list[Any]:
            body = client.get(
                "/api/v1/query", params={"query": "shop:checkout_errors:count1m"}
            ).json()
            return [s["value"][1] for s in body["data"]["result"]]

        wait_for(lambda: recorded() == ["2"])
        prom = client.get("/prometheus/api/v1/rules").json()["data"]["groups"]
        assert [(g["name"], g["file"]) for g in prom] == [("checkout-errors", prom[0]["file"])]
        assert [r["name"] for r in prom[0]["rules"]] == [
            "shop:checkout_errors:count1m",
            "CheckoutErrors",
        ]

        # Refusals answer 400 in plain text and change nothing.
        bad_expr = API_GROUP.replace('|= "checkout"', '|= "checkout" | nope')
        refused = client.post("/loki/api/v1/rules/team a", content=bad_expr)
        assert refused.status_code == 400
        assert refused.text.startswith("invalid rules config")
        assert client.post("/loki/api/v1/rules/other", content="rules: []").status_code == 400
        log_query = API_GROUP.replace(
            'sum(count_over_time({service="shop"} |= "checkout" [1m]))', '{service="shop"}'
        )
        assert client.post("/loki/api/v1/rules/other", content=log_query).status_code == 400
        assert list(yaml.safe_load(client.get("/loki/api/v1/rules").text)) == ["team a"]
        missing = client.get("/loki/api/v1/rules/team a/nope")
        assert (missing.status_code, missing.text.strip()) == (404, "group does not exist")

    with running_server(tmp_path, config, data_dir=data) as server, server.client() as client:
        listing = yaml.safe_load(client.get("/loki/api/v1/rules").text)
        assert [g["name"] for g in listing["team a"]] == ["checkout-errors"]
        # a second group in the namespace, then deletes
        second = API_GROUP.replace("checkout-errors", "second")
        assert client.post("/loki/api/v1/rules/team a", content=second).status_code == 202
        names = [g["name"] for g in yaml.safe_load(client.get("/loki/api/v1/rules").text)["team a"]]
        assert names == ["checkout-errors", "second"]
        assert client.delete("/loki/api/v1/rules/team a/checkout-errors").status_code == 202
        names = [g["name"] for g in yaml.safe_load(client.get("/loki/api/v1/rules").text)["team a"]]
        assert names == ["second"]
        assert client.delete("/loki/api/v1/rules/team a/checkout-errors").status_code == 404
        assert client.delete("/loki/api/v1/rules/team a").status_code == 202
        assert client.get("/loki/api/v1/rules").status_code == 404
        assert client.get("/prometheus/api/v1/rules").json()["data"]["groups"] == []
        assert client.delete("/loki/api/v1/rules/team a").status_code == 404
