"""Receivers against real servers on loopback: e-mail to an aiosmtpd server (STARTTLS, auth),
Slack, PagerDuty and MS Teams to an HTTP sink; and the manager across a restart."""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import parse_alertmanager_config
from signalroom.alerting.manager import AlertManager
from signalroom.alerting.notify import build_integrations
from signalroom.alerting.notify.pipeline import FlushContext
from signalroom.alerting.testing import WebhookSink, free_port
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.integration

NOW = datetime.now(UTC)
GROUP_KEY = '{}:{alertname="DiskFull"}'


def ctx() -> FlushContext:
    return FlushContext(
        now=NOW,
        group_key=GROUP_KEY,
        group_labels={"alertname": "DiskFull"},
        receiver="ops",
        repeat_interval=timedelta(hours=4),
    )


def alerts(resolved: bool = False) -> list[Alert]:
    return [
        Alert(
            labels={"alertname": "DiskFull", "instance": f"db{i}", "severity": "critical"},
            annotations={"summary": f"disk {i} full"},
            starts_at=NOW - timedelta(minutes=5),
            ends_at=NOW - timedelta(seconds=1) if resolved else None,
            generator_url=f"http://prom/graph?{i}",
        )
        for i in (1, 2)
    ]


def receiver(text: str) -> Any:
    cfg = parse_alertmanager_config(text)
    return build_integrations(cfg.receivers[0], "http://am.example")


# --- e-mail ---------------------------------------------------------------------------------


@pytest.fixture
def smtp_server(tmp_path: Path) -> Iterator[tuple[int, list[Any], list[tuple[str, str]]]]:
    aiosmtpd = pytest.importorskip("aiosmtpd.controller")
    import ssl

    from aiosmtpd.smtp import AuthResult, LoginPassword

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    messages: list[Any] = []
    logins: list[tuple[str, str]] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            messages.append((envelope.mail_from, list(envelope.rcpt_tos), envelope.content))
            return "250 OK"

    def authenticator(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> Any:
        assert isinstance(data, LoginPassword)
        user, password = data.login.decode(), data.password.decode()
        logins.append((user, password))
        return AuthResult(success=(user, password) == ("am", "s3cret"), handled=False)

    port = free_port()
    controller = aiosmtpd.Controller(
        Handler(),
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticator,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield port, messages, logins
    finally:
        controller.stop()


async def test_email_over_starttls_with_auth(smtp_server: Any) -> None:
    port, messages, logins = smtp_server
    (integ,) = receiver(
        f"""
route: {{receiver: ops}}
receivers:
  - name: ops
    email_configs:
      - to: oncall@example.com, boss@example.com
        from: am@example.com
        smarthost: 127.0.0.1:{port}
        auth_username: am
        auth_password: s3cret
        tls_config: {{insecure_skip_verify: true}}
        headers: {{X-Team: storage}}
"""
    )
    await integ.notify(ctx(), alerts())
    assert logins == [("am", "s3cret")]
    ((sender, rcpts, content),) = messages
    assert sender == "am@example.com"
    assert rcpts == ["oncall@example.com", "boss@example.com"]
    msg = email.message_from_bytes(content, policy=email.policy.default)
    assert msg["Subject"] == "[FIRING:2] DiskFull (critical)"
    assert msg["X-Team"] == "storage"
    assert msg.get_content_type() == "multipart/alternative"
    plain_part, html_part = msg.get_body(("plain",)), msg.get_body(("html",))
    assert plain_part is not None and html_part is not None
    text = plain_part.get_content()
    html = html_part.get_content()
    assert " - instance = db1" in text and "Source: http://prom/graph?2" in text
    assert "2 alerts for alertname=DiskFull" in html
    assert "[2] Firing" in html


async def test_email_with_wrong_password_is_not_retried(smtp_server: Any) -> None:
    from signalroom.alerting.notify.base import NotifyError

    port, messages, _ = smtp_server
    (integ,) = receiver(
        f"""
route: {{receiver: ops}}
receivers:
  - name: ops
    email_configs:
      - {{to: a@example.com, from: b@example.com, smarthost: '127.0.0.1:{port}',
          auth_username: am, auth_password: wrong,
          tls_config: {{insecure_skip_verify: true}}}}
"""
    )
    with pytest.raises(NotifyError) as info:
        await integ.notify(ctx(), alerts())
    assert info.value.retry is False
    assert messages == []


# --- HTTP receivers -------------------------------------------------------------------------


async def test_slack_pagerduty_msteams_payloads() -> None:
    with WebhookSink() as sink:
        integs = receiver(
            f"""
route: {{receiver: ops}}
receivers:
  - name: ops
    slack_configs:
      - {{api_url: '{sink.url}/slack', channel: '#ops', send_resolved: true}}
    pagerduty_configs:
      - {{routing_key: rk, url: '{sink.url}/pd'}}
    msteams_configs:
      - {{webhook_url: '{sink.url}/teams'}}
"""
        )
        for integ in integs:
            await integ.notify(ctx(), alerts())
        resolved_ctx = ctx()
        for integ in integs:
            await integ.notify(resolved_ctx, alerts(resolved=True))
        slack = sink.bodies("/slack")
        pd = sink.bodies("/pd")
        teams = sink.bodies("/teams")
    att = slack[0]["attachments"][0]
    assert slack[0]["channel"] == "#ops"
    assert slack[0]["username"] == "Alertmanager"
    assert att["title"] == "[FIRING:2] DiskFull (critical)"
    assert att["color"] == "danger"
    assert att["title_link"] == "http://am.example/#/alerts?receiver=ops"
    assert (
        att["fallback"]
        == "[FIRING:2] DiskFull (critical) | http://am.example/#/alerts?receiver=ops"
    )
    assert slack[1]["attachments"][0]["color"] == "good"
    assert slack[1]["attachments"][0]["title"] == "[RESOLVED] DiskFull (critical)"

    assert pd[0]["event_action"] == "trigger"
    assert pd[1]["event_action"] == "resolve"
    assert (
        pd[0]["dedup_key"] == hashlib.sha256(GROUP_KEY.encode()).hexdigest() == pd[1]["dedup_key"]
    )
    assert pd[0]["routing_key"] == "rk"
    assert pd[0]["payload"]["summary"] == "[FIRING:2] DiskFull (critical)"
    assert pd[0]["payload"]["severity"] == "error"
    assert pd[0]["payload"]["custom_details"]["num_firing"] == "2"
    assert "Labels:\n - alertname = DiskFull\n" in pd[0]["payload"]["custom_details"]["firing"]
    assert pd[0]["client"] == "Alertmanager"

    assert teams[0]["type"] == "MessageCard"
    assert teams[0]["themeColor"] == "8C1A1A"
    assert teams[0]["title"] == "[FIRING:2] DiskFull (critical)"
    assert "# Alerts Firing:" in teams[0]["text"]
    assert teams[1]["themeColor"] == "2DC72D"


async def test_http_errors_retry_on_5xx_not_on_4xx() -> None:
    from signalroom.alerting.notify.base import NotifyError

    with WebhookSink(status=503) as sink:
        (integ,) = receiver(
            "route: {receiver: ops}\n"
            f"receivers: [{{name: ops, webhook_configs: [{{url: '{sink.url}/w'}}]}}]"
        )
        with pytest.raises(NotifyError) as info:
            await integ.notify(ctx(), alerts())
        assert info.value.retry
        sink.status = 400
        with pytest.raises(NotifyError) as info:
            await integ.notify(ctx(), alerts())
        assert not info.value.retry


# --- restarts -------------------------------------------------------------------------------

SECTION = """
route: {receiver: hook, group_by: [alertname], group_wait: 300ms, group_interval: 1s}
receivers: [{name: hook, webhook_configs: [{url: 'SINK/hook'}]}]
"""


async def test_restart_sends_no_duplicate_and_drops_nothing_pending(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with WebhookSink() as sink:
        cfg = parse_alertmanager_config(SECTION.replace("SINK", sink.url))
        state = StateStore(url)
        state.migrate()
        am = AlertManager(cfg, state=state)
        await am.start()
        await am.receive([Alert(labels={"alertname": "A"})])
        assert len(await sink.await_for(1)) == 1
        # a second group is received but not yet flushed when the process stops
        am2_alert = Alert(labels={"alertname": "B"})
        await am.receive([am2_alert])
        await am.stop()
        state.close()
        assert [b["groupLabels"] for b in sink.bodies()] == [{"alertname": "A"}]

        state = StateStore(url)
        am = AlertManager(cfg, state=state)
        await am.start()
        got = await sink.await_for(2)
        await asyncio.sleep(1.5)  # a group_interval more: A must not be sent again
        await am.stop()
        state.close()
    labels = [b["groupLabels"] for b in sink.bodies()]
    assert labels == [{"alertname": "A"}, {"alertname": "B"}], got
