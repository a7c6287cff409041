"""amtool (Alertmanager 0.25's CLI) against signalroom's API v2 router.

A minimal FastAPI app holds only the Alertmanager router and a stub runtime; amtool adds and
queries alerts and adds, queries and expires silences, and the webhook sink sees the result.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from signalroom.alerting.manager import AlertManager
from signalroom.alerting.testing import WebhookSink, free_port
from signalroom.auth import Authenticator, AuthError
from signalroom.config import AuthConfig
from signalroom.storage.state import StateStore
from signalroom.web import alertmanager_api

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("amtool") is None, reason="amtool not installed"),
]


@dataclass
class StubRuntime:
    alertmanager: AlertManager
    authenticator: Authenticator


@dataclass
class Served:
    url: str
    am: AlertManager
    sink: WebhookSink


def build_app(am: AlertManager) -> FastAPI:
    app = FastAPI()
    app.state.runtime = StubRuntime(am, Authenticator(AuthConfig()))
    app.include_router(alertmanager_api.router)

    @app.exception_handler(AuthError)
    async def _auth(_: Request, exc: AuthError) -> JSONResponse:
        return JSONResponse(exc.message, status_code=exc.status)

    return app


@contextlib.asynccontextmanager
async def serve(section: dict[str, Any], data_dir: Path) -> AsyncIterator[Served]:
    with WebhookSink() as sink:
        section = json.loads(json.dumps(section).replace("SINK", sink.url))
        state = StateStore(f"sqlite:///{data_dir / 'state.db'}")
        state.migrate()
        am = AlertManager.from_section(section, state=state)
        await am.start()
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(build_app(am), host="127.0.0.1", port=port, log_level="warning")
        )
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        try:
            yield Served(f"http://127.0.0.1:{port}", am, sink)
        finally:
            server.should_exit = True
            await task
            await am.stop()
            state.close()


async def amtool(url: str, *args: str) -> str:
    proc = await asyncio.create_subprocess_exec(
        "amtool",
        f"--alertmanager.url={url}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, f"amtool {' '.join(args)} failed: {err.decode()}{out.decode()}"
    return out.decode()


SECTION = {
    "route": {
        "receiver": "hook",
        "group_by": ["alertname"],
        "group_wait": "200ms",
        "group_interval": "1s",
    },
    "receivers": [{"name": "hook", "webhook_configs": [{"url": "SINK/hook"}]}],
}


async def test_amtool_alerts_and_silences(tmp_path: Path) -> None:
    async with serve(SECTION, tmp_path) as s:
        await amtool(
            s.url,
            "alert",
            "add",
            "DiskFull",
            "instance=db1",
            "severity=page",
            "--annotation=summary=disk is full",
        )
        await amtool(s.url, "alert", "add", "alertname=CpuHot", "instance=web1")

        listed = json.loads(await amtool(s.url, "alert", "query", "-o", "json"))
        names = sorted(a["labels"]["alertname"] for a in listed)
        assert names == ["CpuHot", "DiskFull"]
        disk = next(a for a in listed if a["labels"]["alertname"] == "DiskFull")
        assert disk["annotations"] == {"summary": "disk is full"}
        assert disk["status"]["state"] == "active"
        assert disk["receivers"] == [{"name": "hook"}]

        # both groups are delivered
        bodies = await s.sink.await_for(2, "/hook")
        assert sorted(b["groupLabels"]["alertname"] for b in bodies) == ["CpuHot", "DiskFull"]

        out = await amtool(
            s.url,
            "silence",
            "add",
            "alertname=DiskFull",
            "instance=~db.*",
            "--comment=maintenance",
            "--author=ops",
            "--duration=1h",
        )
        sid = out.strip()
        assert len(sid) == 36

        silences = json.loads(await amtool(s.url, "silence", "query", "-o", "json"))
        assert [x["id"] for x in silences] == [sid]
        assert silences[0]["status"]["state"] == "active"
        assert {(m["name"], m["value"], m["isRegex"]) for m in silences[0]["matchers"]} == {
            ("alertname", "DiskFull", False),
            ("instance", "db.*", True),
        }

        # the silenced alert is suppressed; the default query hides it
        shown = json.loads(await amtool(s.url, "alert", "query", "-o", "json"))
        assert [a["labels"]["alertname"] for a in shown] == ["CpuHot"]
        every = json.loads(await amtool(s.url, "alert", "query", "-s", "-o", "json"))
        disk = next(a for a in every if a["labels"]["alertname"] == "DiskFull")
        assert disk["status"] == {"inhibitedBy": [], "silencedBy": [sid], "state": "suppressed"}

        await amtool(s.url, "silence", "expire", sid)
        assert json.loads(await amtool(s.url, "silence", "query", "-o", "json")) == []
        expired = json.loads(await amtool(s.url, "silence", "query", "--expired", "-o", "json"))
        assert [x["id"] for x in expired] == [sid]
        assert expired[0]["status"]["state"] == "expired"

        # expiring again is an error; an unknown id is a 404
        async with httpx.AsyncClient(base_url=s.url) as client:
            again = await client.delete(f"/api/v2/silence/{sid}")
            assert again.status_code == 500
            missing = await client.get("/api/v2/silence/00000000-0000-0000-0000-000000000000")
            assert missing.status_code == 404
            receivers = await client.get("/api/v2/receivers")
            assert receivers.json() == [{"name": "hook"}]
            groups = (await client.get("/api/v2/alerts/groups")).json()
            assert sorted(g["labels"]["alertname"] for g in groups) == ["CpuHot", "DiskFull"]
            assert all(g["receiver"] == {"name": "hook"} for g in groups)


async def test_post_alerts_validation_and_silence_errors(tmp_path: Path) -> None:
    async with serve(SECTION, tmp_path) as s, httpx.AsyncClient(base_url=s.url) as client:
        bad = await client.post(
            "/api/v2/alerts",
            json=[
                {"labels": {"alertname": "ok"}},
                {"labels": {"0bad": "x"}},
                {
                    "labels": {"alertname": "x"},
                    "startsAt": "2024-01-02T00:00:00Z",
                    "endsAt": "2024-01-01T00:00:00Z",
                },
            ],
        )
        assert bad.status_code == 400
        assert 'invalid name "0bad"' in bad.json()
        assert "start time must be before end time" in bad.json()
        # the valid one was still accepted
        alerts = (await client.get("/api/v2/alerts")).json()
        assert [a["labels"] for a in alerts] == [{"alertname": "ok"}]
        assert alerts[0]["endsAt"] > alerts[0]["startsAt"]  # resolve_timeout applied

        # Bodies orjson refuses: malformed JSON keeps the json module's message; NaN (which
        # the json module takes) reaches validation.
        broken = await client.post("/api/v2/alerts", content=b'[{"labels": ')
        assert broken.status_code == 400
        assert broken.json() == (
            'parsing alerts body from "" failed, because '
            "Expecting value: line 1 column 13 (char 12)"
        )
        nan = await client.post(
            "/api/v2/alerts", content=b'[{"labels": {"a": "b"}, "annotations": {"x": NaN}}]'
        )
        assert nan.status_code == 422
        assert nan.json() == "0: annotations.x must be a string"
        number = await client.post("/api/v2/alerts", json=[{"labels": {"a": 1}}])
        assert number.status_code == 422
        assert number.json() == "0: labels.a must be a string"

        past = await client.post(
            "/api/v2/silences",
            json={
                "matchers": [{"name": "a", "value": "b", "isRegex": False}],
                "startsAt": "2020-01-01T00:00:00Z",
                "endsAt": "2020-01-02T00:00:00Z",
                "createdBy": "me",
                "comment": "c",
            },
        )
        assert past.status_code == 400
        assert past.json() == "failed to create silence: end time can't be in the past"
        unknown = await client.post(
            "/api/v2/silences",
            json={
                "id": "nope",
                "matchers": [{"name": "a", "value": "b", "isRegex": False}],
                "startsAt": "2020-01-01T00:00:00Z",
                "endsAt": "2999-01-02T00:00:00Z",
                "createdBy": "me",
                "comment": "c",
            },
        )
        assert unknown.status_code == 404
        status = (await client.get("/api/v2/status")).json()
        assert status["cluster"]["status"] == "disabled"
        assert "receiver: hook" in status["config"]["original"]
