"""The escalation API on a real server: a firing group pages L1, is acknowledged over HTTP,
its timeline shows who was notified and who acknowledged; on-call queries and overrides;
runbooks as Markdown and as safe HTML."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from signalroom.alerting.alerts import Alert
from signalroom.alerting.manager import AlertManager
from signalroom.alerting.testing import WebhookSink, free_port
from signalroom.auth import Authenticator, AuthError
from signalroom.config import AuthConfig
from signalroom.storage.state import StateStore
from signalroom.web import escalation_api

pytestmark = pytest.mark.integration


@dataclass
class StubRuntime:
    alertmanager: AlertManager
    authenticator: Authenticator


SECTION: dict[str, Any] = {
    "route": {
        "receiver": "slack-ops",
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": "1s",
    },
    "receivers": [
        {"name": n, "webhook_configs": [{"url": f"SINK/{n}"}]}
        for n in ("slack-ops", "dev-team", "senior-engineers", "managers-pager")
    ],
    "escalation": {
        "severity_matrix": {
            "critical": {"priority": "P0", "response_time": "15m", "policy": "seed-matrix"}
        },
        "runbooks": {"dirs": ["RUNBOOKS"]},
    },
    "escalation_policies": [
        {
            "name": "seed-matrix",
            "levels": [
                {"after": "0s", "targets": [{"receiver": "dev-team"}]},
                {"after": "5m", "targets": [{"receiver": "senior-engineers"}]},
                {"after": "15m", "targets": [{"schedule": "eng-managers"}]},
            ],
        }
    ],
    "schedules": [
        {
            "name": "eng-managers",
            "time_zone": "Europe/Berlin",
            "receiver": "managers-pager",
            "layers": [
                {
                    "name": "weekly",
                    "rotation": "weekly",
                    "start": "2024-01-01",
                    "handoff_time": "09:00",
                    "users": ["anna", "ben"],
                }
            ],
        }
    ],
}


@dataclass
class Served:
    client: httpx.AsyncClient
    am: AlertManager
    sink: WebhookSink


@contextlib.asynccontextmanager
async def serve(tmp_path: Path) -> AsyncIterator[Served]:
    runbooks = tmp_path / "runbooks"
    runbooks.mkdir()
    (runbooks / "team-db.md").write_text(
        "# DB runbook\n\nRun `psql` <script>alert(1)</script> and see "
        "[the wiki](https://wiki.example.com/db) or [bad](javascript:alert(1)).\n"
    )
    with WebhookSink() as sink:
        text = json.dumps(SECTION).replace("SINK", sink.url).replace("RUNBOOKS", str(runbooks))
        state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        state.migrate()
        am = AlertManager.from_section(json.loads(text), state=state)
        await am.start()
        app = FastAPI()
        app.state.runtime = StubRuntime(am, Authenticator(AuthConfig()))
        app.include_router(escalation_api.router)

        @app.exception_handler(AuthError)
        async def _auth(_: Request, exc: AuthError) -> JSONResponse:
            return JSONResponse(exc.message, status_code=exc.status)

        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
                yield Served(client, am, sink)
        finally:
            server.should_exit = True
            await task
            await am.stop()
            state.close()


GROUP = '{}:{alertname="PaymentsDown"}'


def group_url(suffix: str) -> str:
    return f"/api/sr/alert-groups/{quote(GROUP, safe='')}/{suffix}"


async def test_ack_timeline_and_resolve_over_http(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        await s.am.receive(
            [
                Alert(
                    labels={
                        "alertname": "PaymentsDown",
                        "severity": "critical",
                        "runbook": "team-db",
                    }
                )
            ]
        )
        await s.sink.await_for(1, "/dev-team")
        # Both deliveries are recorded once answered (and logged); ack after that, so the
        # acknowledgement is the newest entry.
        for _ in range(500):
            kinds = [e.kind for e in await s.am.escalation.timeline("default", GROUP)]
            if {"notified", "escalated"} <= set(kinds):
                break
            await asyncio.sleep(0.01)
        r = await s.client.post(group_url("ack"), json={"by": "maria", "comment": "looking"})
        assert r.status_code == 200, r.text
        data = r.json()["data"]
        assert (data["status"], data["acknowledgedBy"], data["comment"]) == (
            "acknowledged",
            "maria",
            "looking",
        )
        assert data["nextEscalationAt"] is None

        r = await s.client.get(group_url("timeline"))
        assert r.status_code == 200
        body = r.json()["data"]
        assert body["group"]["policy"] == "seed-matrix" and body["group"]["priority"] == "P0"
        entries = body["timeline"]
        kinds = [e["kind"] for e in entries]
        assert kinds[0] == "triggered" and kinds[-1] == "acknowledged"
        escalated = next(e for e in entries if e["kind"] == "escalated")
        assert (
            escalated["level"],
            escalated["receiver"],
            escalated["integration"],
            escalated["outcome"],
        ) == (1, "dev-team", "webhook[0]", "sent")
        notified = next(e for e in entries if e["kind"] == "notified")
        assert notified["receiver"] == "slack-ops" and notified["at"].endswith("Z")
        dev = s.sink.bodies("/dev-team")[0]["alerts"][0]["annotations"]
        assert dev["runbook_url"] == "http://127.0.0.1:8290/runbooks/team-db"

        r = await s.client.get("/api/sr/alert-groups", params={"status": "acknowledged"})
        assert [g["groupKey"] for g in r.json()["data"]] == [GROUP]

        r = await s.client.delete(group_url("ack"))
        assert r.status_code == 200 and r.json()["data"]["status"] == "firing"
        r = await s.client.delete(group_url("ack"))
        assert r.status_code == 409
        r = await s.client.post(group_url("resolve"), json={"comment": "rolled back"})
        assert r.status_code == 200
        assert r.json()["data"]["resolvedBy"] == "anonymous"
        r = await s.client.post(group_url("ack"))
        assert r.status_code == 409

        missing = "/api/sr/alert-groups/" + quote('{}:{alertname="Nope"}', safe="") + "/ack"
        r = await s.client.post(missing)
        assert r.status_code == 404 and "Nope" in r.json()["error"]
        r = await s.client.get(missing.replace("/ack", "/timeline"))
        assert r.status_code == 404


async def test_oncall_overrides_and_policies(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        r = await s.client.get(
            "/api/sr/oncall", params={"schedule": "eng-managers", "at": "2024-01-08T08:00:00Z"}
        )
        assert r.status_code == 200, r.text
        assert r.json()["data"]["user"] == "ben"  # second week of [anna, ben]
        r = await s.client.get("/api/sr/oncall", params={"at": "1704700799"})  # 07:59:59 UTC
        assert [(d["schedule"], d["user"]) for d in r.json()["data"]] == [("eng-managers", "anna")]

        r = await s.client.post(
            "/api/sr/oncall/overrides",
            json={
                "schedule": "eng-managers",
                "user": "carla",
                "start": "2024-01-08T10:00:00Z",
                "end": "2024-01-08T12:00:00Z",
            },
        )
        assert r.status_code == 201, r.text
        override_id = r.json()["data"]["id"]
        r = await s.client.get(
            "/api/sr/oncall", params={"schedule": "eng-managers", "at": "2024-01-08T11:00:00Z"}
        )
        assert (r.json()["data"]["user"], r.json()["data"]["source"]) == ("carla", "override")
        r = await s.client.get(
            "/api/sr/oncall/schedules/eng-managers/shifts",
            params={"start": "2024-01-08T00:00:00Z", "end": "2024-01-09T00:00:00Z"},
        )
        assert [x["user"] for x in r.json()["data"]] == ["anna", "ben", "carla", "ben"]
        r = await s.client.delete(f"/api/sr/oncall/overrides/{override_id}")
        assert r.status_code == 200
        r = await s.client.delete(f"/api/sr/oncall/overrides/{override_id}")
        assert r.status_code == 404

        bad = await s.client.post(
            "/api/sr/oncall/overrides",
            json={
                "schedule": "eng-managers",
                "user": "x",
                "start": "2024-01-08T12:00:00Z",
                "end": "2024-01-08T10:00:00Z",
            },
        )
        assert bad.status_code == 400
        r = await s.client.get("/api/sr/oncall", params={"schedule": "nope"})
        assert r.status_code == 404
        r = await s.client.get("/api/sr/oncall", params={"schedule": "eng-managers", "at": "soon"})
        assert r.status_code == 400

        r = await s.client.get("/api/sr/escalation/policies")
        data = r.json()["data"]
        assert [lvl["after"] for lvl in data["policies"][0]["levels"]] == ["0s", "5m", "15m"]
        assert data["severityMatrix"]["critical"]["response_time"] == "15m"


async def test_runbooks_markdown_and_safe_html(tmp_path: Path) -> None:
    async with serve(tmp_path) as s:
        r = await s.client.get("/runbooks/settings-sync-failure")
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/markdown")
        assert r.text.startswith("# Settings-Sync-Job failure")

        r = await s.client.get("/runbooks/team-db", headers={"Accept": "text/html,*/*"})
        assert r.headers["content-type"].startswith("text/html")
        assert "<h1>DB runbook</h1>" in r.text
        assert "<script>" not in r.text and "&lt;script&gt;" in r.text
        assert '<a href="https://wiki.example.com/db">the wiki</a>' in r.text
        assert 'href="javascript' not in r.text
        assert "<code>psql</code>" in r.text

        r = await s.client.get("/runbooks")
        assert {"settings-sync-failure", "gateway-latency-high", "team-db"} <= set(r.json()["data"])
        for name in ("nope", "..%2Fstate.db", "%2E%2E"):
            r = await s.client.get(f"/runbooks/{name}")
            assert r.status_code == 404, name
