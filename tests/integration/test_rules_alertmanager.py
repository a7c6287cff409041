"""Rule alerts delivered to a real Alertmanager (Debian's prometheus-alertmanager) through API
v2: external labels and alert relabelling visible in ``GET /api/v2/alerts``, an unreachable
Alertmanager counted as errors without holding up the real one, and alerts from rule
evaluation (RuleManager -> FanoutNotifier -> Notifier) arriving as Prometheus sends them."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from prometheus_client import CollectorRegistry

from signalroom.alerting.testing import free_port
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.notifier import Notifier, build_alert_notifier
from tests.support.alertmanager import AM_BINARY, real_alertmanager

pytestmark = [
    pytest.mark.integration,
    pytest.mark.timeout(120),
    pytest.mark.skipif(shutil.which(AM_BINARY) is None, reason="Alertmanager not installed"),
]


@pytest.fixture(scope="module")
def alertmanager(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    null_receiver = {"route": {"receiver": "null"}, "receivers": [{"name": "null"}]}
    with real_alertmanager(null_receiver, tmp_path_factory.mktemp("am")) as url:
        yield url.removeprefix("http://")


async def am_alerts(address: str, **filters: str) -> list[dict[str, Any]]:
    params: list[tuple[str, str | int | float | bool | None]] = [
        ("filter", f'{k}="{v}"') for k, v in filters.items()
    ]
    async with httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/api/v2/alerts", params=params)
    response.raise_for_status()
    alerts: list[dict[str, Any]] = response.json()
    return alerts


async def wait_alerts(address: str, count: int, **filters: str) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 15
    while True:
        got = await am_alerts(address, **filters)
        if len(got) >= count or time.monotonic() > deadline:
            return got
        await asyncio.sleep(0.05)


def rfc3339(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def counter(notifier: Notifier, name: str, url: str) -> float:
    registry = CollectorRegistry()
    registry.register(notifier.collector())
    value = registry.get_sample_value(name, {"alertmanager": url})
    return value or 0.0


async def test_external_labels_relabelling_and_an_unreachable_alertmanager(
    alertmanager: str,
) -> None:
    dead = f"127.0.0.1:{free_port()}"
    now = datetime.now(UTC)
    fanout, notifier = build_alert_notifier(
        {
            "route": {"receiver": "null"},  # signalroom's own Alertmanager part: not ours
            "alert_relabel_configs": [
                {"source_labels": ["severity"], "regex": "debug", "action": "drop"},
                {"action": "labeldrop", "regex": "replica"},
            ],
            "alertmanagers": [
                {"timeout": "2s", "static_configs": [{"targets": [dead]}]},
                {
                    "static_configs": [{"targets": [alertmanager]}],
                    "alert_relabel_configs": [
                        {
                            "source_labels": ["team"],
                            "target_label": "owner",
                            "replacement": "team-$1",
                        }
                    ],
                },
            ],
        },
        local=ListNotifier(),
        external_labels={"cluster": "eu1", "replica": "a"},
    )
    alerts = [
        {
            "labels": {"alertname": f"Deliver{i}", "team": "db", "severity": "page", "run": "x1"},
            "annotations": {"summary": f"number {i}"},
            "startsAt": rfc3339(now),
            "endsAt": rfc3339(now + timedelta(minutes=5)),
            "generatorURL": "http://signalroom.example/graph?g0.expr=up",
        }
        for i in range(300)  # more than one batch
    ]
    alerts.append({"labels": {"alertname": "Noise", "severity": "debug", "run": "x1"}})
    await notifier.start()
    try:
        fanout.send(alerts)
        got = await wait_alerts(alertmanager, 300, run="x1")
        assert await notifier.flush(20)
    finally:
        await notifier.stop()

    assert len(got) == 300
    by_name = {a["labels"]["alertname"]: a for a in got}
    assert "Noise" not in by_name
    first = by_name["Deliver0"]
    assert first["labels"] == {
        "alertname": "Deliver0",
        "team": "db",
        "severity": "page",
        "run": "x1",
        "cluster": "eu1",
        "owner": "team-db",
    }
    assert first["annotations"] == {"summary": "number 0"}
    assert first["generatorURL"] == "http://signalroom.example/graph?g0.expr=up"
    assert first["status"]["state"] == "active"

    live = f"http://{alertmanager}/api/v2/alerts"
    down = f"http://{dead}/api/v2/alerts"
    assert counter(notifier, "prometheus_notifications_sent_total", live) == 300
    assert counter(notifier, "prometheus_notifications_errors_total", live) == 0
    assert counter(notifier, "prometheus_notifications_errors_total", down) == 300
    assert counter(notifier, "prometheus_notifications_dropped_total", down) == 300
    assert sorted(notifier.alertmanagers()) == sorted([live, down])


async def test_alert_from_rule_evaluation(alertmanager: str, tmp_path: Path) -> None:
    storage = MemoryStorage()
    fanout, notifier = build_alert_notifier(
        {"alertmanagers": [{"static_configs": [{"targets": [alertmanager]}]}]},
        external_labels={"cluster": "eu1"},
    )
    rules = tmp_path / "rules.yml"
    manager = RuleManager(
        Engine(),
        lambda: storage,
        MemoryStorageAppender(storage),
        fanout,
        external_labels={"cluster": "eu1"},
        external_url="http://signalroom.example",
        default_interval_ms=1000,
    )
    now_ms = int(time.time() * 1000)
    storage.add(Labels({"__name__": "queue_depth", "job": "worker"}), now_ms - 1000, 50.0)
    rules.write_text(
        yaml.safe_dump(
            {
                "groups": [
                    {
                        "name": "delivery",
                        "rules": [
                            {
                                "alert": "QueueBacklogRuleDelivery",
                                "expr": "queue_depth > 10",
                                "labels": {"severity": "page"},
                                "annotations": {"summary": "depth {{ $value }}"},
                            }
                        ],
                    }
                ]
            }
        )
    )
    await notifier.start()
    try:
        manager.update([str(rules)])
        (group,) = manager.groups.values()
        assert manager.eval_group(group, now_ms)
        got = await wait_alerts(alertmanager, 1, alertname="QueueBacklogRuleDelivery")
        assert await notifier.flush(20)
    finally:
        await notifier.stop()
    assert len(got) == 1
    (received,) = got
    assert received["labels"] == {
        "alertname": "QueueBacklogRuleDelivery",
        "job": "worker",
        "severity": "page",
        "cluster": "eu1",
    }
    assert received["annotations"] == {"summary": "depth 50"}
    assert received["generatorURL"].startswith("http://signalroom.example/graph?g0.expr=")
