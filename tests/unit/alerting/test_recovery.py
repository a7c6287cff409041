"""Automated recovery: real allow-listed commands (output, exit codes, timeouts), webhooks to a
loopback sink, PromQL verification on a moved clock, and the seed's SettingsSyncJobFailure
flow through the alert manager (success resolves, failure pages people)."""

from __future__ import annotations

import json
import stat
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from signalroom.alerting.alerts import Alert
from signalroom.alerting.escalation_config import (
    EscalationConfigError,
    RecoverySettings,
    VerifySpec,
    parse_extensions,
)
from signalroom.alerting.manager import AlertManager
from signalroom.alerting.notify.pipeline import Backoff
from signalroom.alerting.recovery import RecoveryRunner, promql_verifier, recovery_context
from signalroom.alerting.testing import FakeClock, WebhookSink
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

CONTEXT = recovery_context(
    "default",
    '{}:{alertname="SettingsSyncJobFailure"}',
    {"alertname": "SettingsSyncJobFailure"},
    [Alert(labels={"alertname": "SettingsSyncJobFailure", "component": "settings-sync-job"})],
)


def script(tmp_path: Path, name: str, body: str) -> str:
    path = tmp_path / name
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return str(path)


def runner(allow: list[str], **kwargs: Any) -> RecoveryRunner:
    return RecoveryRunner(RecoverySettings(command_allowlist=allow, **kwargs))


def command_rule(argv: list[str], timeout: str = "10s") -> Any:
    return parse_extensions(
        {
            "escalation": {
                "recovery": {
                    "command_allowlist": [argv[0]],
                    "rules": [
                        {
                            "name": "r",
                            "matchers": ['alertname="X"'],
                            "command": {"argv": argv, "timeout": timeout},
                        }
                    ],
                }
            }
        }
    ).escalation.recovery.rules[0]


async def test_echo_runs_and_output_is_captured() -> None:
    rule = command_rule(["/bin/echo", "syncing", "now"])
    result = await runner(["/bin/echo"]).run_action(rule, CONTEXT)
    assert (result.outcome, result.exit_code, result.output) == ("ok", 0, "syncing now\n")


async def test_script_sees_the_group_and_its_exit_code_counts(tmp_path: Path) -> None:
    path = script(
        tmp_path,
        "recover.sh",
        'echo "rule=$SIGNALROOM_RECOVERY_RULE alert=$SIGNALROOM_ALERTNAME"\n'
        'echo "$SIGNALROOM_ALERTS" >&2\nexit 3\n',
    )
    result = await runner([path]).run_action(command_rule([path]), CONTEXT)
    assert (result.outcome, result.exit_code) == ("failed", 3)
    first, second = result.output.splitlines()
    assert first == "rule=r alert=SettingsSyncJobFailure"
    assert json.loads(second)[0]["labels"]["component"] == "settings-sync-job"


async def test_timeout_kills_the_process_group(tmp_path: Path) -> None:
    marker = tmp_path / "survived"
    path = script(tmp_path, "hang.sh", f"echo started\n(sleep 3; touch {marker}) &\nsleep 30\n")
    result = await runner([path]).run_action(command_rule([path], "500ms"), CONTEXT)
    assert result.outcome == "timeout"
    assert result.output == "started\n"
    assert result.exit_code is not None and result.exit_code < 0  # killed by a signal
    import asyncio

    await asyncio.sleep(3.5)
    assert not marker.exists()  # the background child was killed with its group


async def test_output_is_truncated_at_the_limit(tmp_path: Path) -> None:
    path = script(tmp_path, "loud.sh", "head -c 100000 /dev/zero | tr '\\0' x\n")
    result = await runner([path], output_limit=1000).run_action(command_rule([path]), CONTEXT)
    assert result.ok and result.truncated and result.output == "x" * 1000


async def test_commands_outside_the_allow_list_are_refused(tmp_path: Path) -> None:
    path = script(tmp_path, "evil.sh", "touch pwned\n")
    rule = command_rule([path])
    result = await runner(["/bin/echo"]).run_action(rule, CONTEXT)
    assert result.outcome == "refused"
    assert not (tmp_path / "pwned").exists()
    with pytest.raises(
        EscalationConfigError, match=r"not in escalation\.recovery\.command_allowlist"
    ):
        parse_extensions(
            {
                "escalation": {
                    "recovery": {
                        "command_allowlist": ["/bin/echo"],
                        "rules": [{"name": "r", "matchers": [], "command": {"argv": [path]}}],
                    }
                }
            }
        )
    with pytest.raises(EscalationConfigError, match="must be an absolute path"):
        parse_extensions({"escalation": {"recovery": {"command_allowlist": ["echo"]}}})


async def test_webhook_action_posts_the_group() -> None:
    with WebhookSink() as sink:
        rules = parse_extensions(
            {
                "escalation": {
                    "recovery": {
                        "rules": [
                            {
                                "name": "sync",
                                "matchers": [],
                                "webhook": {"url": f"{sink.url}/trigger"},
                            }
                        ]
                    }
                }
            }
        )
        rule = rules.escalation.recovery.rules[0]
        result = await runner([]).run_action(rule, CONTEXT)
        assert (result.outcome, result.status_code) == ("ok", 200)
        body = sink.bodies("/trigger")[0]
        assert body["rule"] == "sync" and body["groupKey"] == CONTEXT["groupKey"]
        sink.status = 500
        result = await runner([]).run_action(rule, CONTEXT)
        assert (result.outcome, result.status_code) == ("failed", 500)


async def test_verification_polls_until_the_condition_holds() -> None:
    clock = FakeClock()
    answers = iter([False, False, True])
    asked: list[str] = []

    def verify(expr: str) -> bool:
        asked.append(expr)
        return next(answers)

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    r = RecoveryRunner(RecoverySettings(), verify, clock=clock, sleep=sleep)
    spec = VerifySpec(expr="up == 1", within=timedelta(minutes=5), interval=timedelta(seconds=30))
    result = await r.verify_until(spec)
    assert (result.ok, result.attempts, asked) == (True, 3, ["up == 1"] * 3)

    def broken(expr: str) -> bool:
        raise RuntimeError("no data")

    start = clock.now()
    result = await RecoveryRunner(
        RecoverySettings(), broken, clock=clock, sleep=sleep
    ).verify_until(spec)
    assert (result.ok, result.attempts, result.errors) == (False, 11, ["RuntimeError: no data"])
    assert clock.now() - start == timedelta(minutes=5)


def test_promql_verifier_on_the_real_engine() -> None:
    from signalroom.promql.engine import Engine

    class EmptyQuerier:
        def select(self, *args: Any, **kwargs: Any) -> Any:
            raise AssertionError("not reached for constant expressions")

    verify = promql_verifier(Engine(), lambda now_ms: EmptyQuerier())
    assert verify("vector(1) > 0") is True
    assert verify("vector(0) > 0") is False
    assert verify("scalar(vector(2))") is True


# --- the seed's flow through the alert manager --------------------------------------------------


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


def flow_section(sink: WebhookSink, argv: list[str]) -> dict[str, Any]:
    return {
        "route": {
            "receiver": "slack-ops",
            "group_by": ["alertname"],
            "group_wait": "0s",
            "group_interval": "1m",
        },
        "receivers": [
            {"name": n, "webhook_configs": [{"url": f"{sink.url}/{n}"}]}
            for n in ("slack-ops", "dev-team", "senior-engineers")
        ],
        "escalation": {
            "severity_matrix": {"warning": {"response_time": "1h", "policy": "integration"}},
            "recovery": {
                "command_allowlist": [argv[0]],
                "rules": [
                    {
                        "name": "settings-sync",
                        "matchers": ['alertname="SettingsSyncJobFailure"'],
                        "command": {"argv": argv, "timeout": "10s"},
                        "verify": {
                            "expr": "rate(settings_sync_errors_total[5m]) == 0",
                            "within": "5m",
                            "interval": "30s",
                        },
                    }
                ],
            },
        },
        "escalation_policies": [
            {
                "name": "integration",
                "levels": [
                    {"after": "0s", "targets": [{"receiver": "dev-team"}]},
                    {"after": "5m", "targets": [{"receiver": "senior-engineers"}]},
                ],
            }
        ],
    }


GROUP = '{}:{alertname="SettingsSyncJobFailure"}'


async def run_flow(
    sink: WebhookSink, tmp_path: Path, argv: list[str], recovered: bool
) -> tuple[AlertManager, StateStore, FakeClock]:
    clock = FakeClock()
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    state.migrate()
    asked: list[str] = []

    def verify(expr: str) -> bool:
        asked.append(expr)
        return recovered and len(asked) >= 2

    am = AlertManager.from_section(
        flow_section(sink, argv),
        state=state,
        clock=clock,
        verify=verify,
        backoff=Backoff(initial=0.01, max_interval=0.05),
    )

    async def sleep(seconds: float) -> None:
        clock.advance(seconds)

    assert am.escalation.recovery is not None
    am.escalation.recovery.sleep = sleep
    tenant = await am.tenant()
    now = clock.now()
    await am.receive(
        [
            Alert(
                labels={
                    "alertname": "SettingsSyncJobFailure",
                    "severity": "warning",
                    "runbook": "settings-sync-failure",
                },
                starts_at=now,
                ends_at=now + timedelta(days=1),
            )
        ]
    )
    assert tenant.dispatcher is not None
    await tenant.dispatcher.run_due(now)
    await am.escalation.run_due(now)  # L1 is held while recovery runs
    await am.escalation.settle()
    await am.escalation.run_due(clock.now())
    return am, state, clock


async def test_settings_sync_recovery_succeeds_and_resolves(
    sink: WebhookSink, tmp_path: Path
) -> None:
    marker = tmp_path / "synced"
    path = script(tmp_path, "sync.sh", f'echo "manual sync ok"\ntouch {marker}\n')
    am, state, _ = await run_flow(sink, tmp_path, [path, "--mode=recovery"], recovered=True)
    try:
        assert marker.exists()
        group = am.escalation.state("default", GROUP)
        assert group is not None
        assert (group.status, group.recovery, group.resolved_by) == (
            "resolved",
            "succeeded",
            "recovery:settings-sync",
        )
        paths = [p for p, _, _ in sink.received]
        assert paths == ["/slack-ops"]  # nobody paged
        timeline = await am.escalation.timeline("default", GROUP)
        # the route notification and the recovery run side by side
        assert ("notified", "sent") in [(e.kind, e.outcome) for e in timeline]
        kinds = [(e.kind, e.outcome) for e in timeline if e.kind != "notified"]
        assert kinds == [
            ("triggered", "ok"),
            ("recovery_started", "ok"),
            ("recovery_action", "ok"),
            ("recovery_verified", "recovered"),
            ("resolved", "ok"),
        ]
        action = next(e for e in timeline if e.kind == "recovery_action")
        assert action.detail["output"] == "manual sync ok\n" and action.detail["exitCode"] == 0
        verified = next(e for e in timeline if e.kind == "recovery_verified")
        assert verified.detail["attempts"] == 2
    finally:
        await am.stop()
        state.close()


async def test_failed_verification_escalates_to_people(sink: WebhookSink, tmp_path: Path) -> None:
    am, state, clock = await run_flow(sink, tmp_path, ["/bin/echo", "sync"], recovered=False)
    try:
        group = am.escalation.state("default", GROUP)
        assert group is not None and (group.status, group.recovery) == ("firing", "failed")
        paths = [p for p, _, _ in sink.received]
        assert paths == ["/slack-ops", "/dev-team"]  # L1 paged once recovery failed
        body = sink.bodies("/dev-team")[0]
        assert body["alerts"][0]["annotations"]["runbook_url"].endswith(
            "/runbooks/settings-sync-failure"
        )
        clock.advance(timedelta(minutes=5))
        await am.escalation.run_due(clock.now())
        assert [p for p, _, _ in sink.received][-1] == "/senior-engineers"
        kinds = [(e.kind, e.outcome) for e in await am.escalation.timeline("default", GROUP)]
        assert ("recovery_verified", "not recovered") in kinds
        assert ("recovery_failed", "escalating") in kinds
        assert kinds.index(("recovery_failed", "escalating")) < kinds.index(("escalated", "sent"))
    finally:
        await am.stop()
        state.close()
