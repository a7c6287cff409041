"""Differential test: the same configuration and alerts into signalroom and Alertmanager 0.25.

Both deliver to one webhook sink (different paths); the notifications must agree in receiver,
group key, status, truncation and the alerts' label sets, statuses and fingerprints.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from signalroom.alerting.testing import WebhookSink
from tests.integration.test_alertmanager_amtool import serve
from tests.support.alertmanager import AM_BINARY, real_alertmanager

pytestmark = [
    pytest.mark.integration,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which(AM_BINARY) is None, reason="Alertmanager not installed"),
]


def config(prefix: str) -> dict[str, Any]:
    def hook(name: str, **extra: Any) -> dict[str, Any]:
        return {"name": name, "webhook_configs": [{"url": f"SINK/{prefix}/{name}", **extra}]}

    return {
        "route": {
            "receiver": "team",
            "group_by": ["alertname"],
            "group_wait": "1s",
            "group_interval": "3s",
            "repeat_interval": "1h",
            "routes": [
                {"matchers": ['severity="page"'], "receiver": "pager", "continue": True},
                {
                    "matchers": ["team=db"],
                    "receiver": "db",
                    "group_by": ["alertname", "instance"],
                },
                {"matchers": ["team=~front.*"], "receiver": "front", "group_by": ["..."]},
            ],
        },
        "inhibit_rules": [
            {
                "source_matchers": ["severity=critical"],
                "target_matchers": ["severity=warning"],
                "equal": ["cluster"],
            }
        ],
        "receivers": [
            hook("team", max_alerts=2),
            hook("pager", send_resolved=False),
            hook("db"),
            hook("front"),
        ],
    }


def ts(t: datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def normalise(body: dict[str, Any]) -> tuple[Any, ...]:
    alerts = tuple(
        (
            a["status"],
            tuple(sorted(a["labels"].items())),
            a["fingerprint"],
            tuple(sorted(a["annotations"].items())),
        )
        for a in body["alerts"]
    )
    return (
        body["receiver"],
        body["groupKey"],
        body["status"],
        body["truncatedAlerts"],
        tuple(sorted(body["groupLabels"].items())),
        tuple(sorted(body["commonLabels"].items())),
        alerts,
    )


def by_path(sink: WebhookSink, prefix: str) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for path, _, body in sink.received:
        if path.startswith(f"/{prefix}/"):
            out.setdefault(path.split("/", 2)[2], []).append(normalise(body))
    for k in out:
        out[k].sort()
    return out


@contextlib.asynccontextmanager
async def both(tmp_path: Path) -> AsyncIterator[tuple[WebhookSink, list[str]]]:
    async with serve(config("ours"), tmp_path) as ours:
        theirs_cfg = json.loads(json.dumps(config("theirs")).replace("SINK", ours.sink.url))
        with real_alertmanager(theirs_cfg, tmp_path) as theirs_url:
            yield ours.sink, [ours.url, theirs_url]


async def post(urls: list[str], alerts: list[dict[str, Any]]) -> None:
    async with httpx.AsyncClient() as client:
        for url in urls:
            r = await client.post(f"{url}/api/v2/alerts", json=alerts)
            assert r.status_code == 200, r.text


async def test_same_notifications_as_alertmanager(tmp_path: Path) -> None:
    now = datetime.now(UTC)
    old = now - timedelta(minutes=10)  # older than group_wait: flushed at once
    firing: list[dict[str, Any]] = [
        {
            "labels": {
                "alertname": "HighLatency",
                "instance": f"api{i}",
                "severity": "warning",
                "cluster": "eu",
            },
            "annotations": {"summary": f"slow {i}"},
        }
        for i in range(4)
    ] + [
        {
            "labels": {
                "alertname": "Down",
                "instance": "api9",
                "severity": "critical",
                "cluster": "us",
            },
            "startsAt": ts(old),
        },
        {"labels": {"alertname": "Paging", "severity": "page", "instance": "x"}},
        {"labels": {"alertname": "DbSlow", "team": "db", "instance": "db1"}},
        {"labels": {"alertname": "DbSlow", "team": "db", "instance": "db2"}},
        {"labels": {"alertname": "Front", "team": "frontend", "instance": "f1"}},
    ]
    async with both(tmp_path) as (sink, urls):
        await post(urls, firing)
        await asyncio.sleep(2.0)
        # A critical alert in cluster eu now inhibits the eu warnings; one db alert resolves;
        # the pager alert resolves (pager has send_resolved: false).
        end = ts(datetime.now(UTC) - timedelta(milliseconds=1))
        await post(
            urls,
            [
                {
                    "labels": {
                        "alertname": "Down",
                        "instance": "api8",
                        "severity": "critical",
                        "cluster": "eu",
                    }
                },
                {"labels": {"alertname": "DbSlow", "team": "db", "instance": "db1"}, "endsAt": end},
                {
                    "labels": {"alertname": "Paging", "severity": "page", "instance": "x"},
                    "endsAt": end,
                },
            ],
        )
        await asyncio.sleep(6.5)
        ours, theirs = by_path(sink, "ours"), by_path(sink, "theirs")
    assert theirs, "Alertmanager sent nothing"
    assert sorted(ours) == sorted(theirs)
    for receiver in theirs:
        assert ours[receiver] == theirs[receiver], receiver
    # the scenario exercised what it meant to
    team = [n for n in theirs["team"] if n[4] == (("alertname", "HighLatency"),)]
    assert any(n[3] == 2 for n in team)  # truncated to max_alerts
    assert any(n[2] == "resolved" for n in theirs["db"])
