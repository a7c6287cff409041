"""Escalation of alert groups through the real alert manager: the seed's 4-level matrix,
acknowledgement, resolution, on-call targets, the timeline, and state across a restart.

Time moves only by the FakeClock; notifications go to an HTTP sink on loopback."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from signalroom.alerting.alerts import Alert
from signalroom.alerting.escalation import EscalationError
from signalroom.alerting.manager import AlertManager, TenantAlerting
from signalroom.alerting.matchers import parse_matchers
from signalroom.alerting.notify.pipeline import Backoff
from signalroom.alerting.silences import Silence
from signalroom.alerting.testing import FakeClock, WebhookSink
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

# Monday 2024-01-08 10:00 Europe/Berlin (09:00 UTC): anna's week on the managers' rotation.
START = datetime(2024, 1, 8, 9, 0, tzinfo=UTC)

SECTION: dict[str, Any] = {
    "route": {
        "receiver": "slack-ops",
        "group_by": ["alertname"],
        "group_wait": "0s",
        "group_interval": "1m",
        "repeat_interval": "1h",
    },
    "receivers": [
        {"name": name, "webhook_configs": [{"url": f"SINK/{name}"}]}
        for name in (
            "slack-ops",
            "dev-team",
            "senior-engineers",
            "managers-pager",
            "leadership",
            "anna-phone",
        )
    ],
    "escalation": {
        "severity_matrix": {
            "critical": {"priority": "P0", "response_time": "15m", "policy": "seed-matrix"},
            "warning": {"priority": "P2", "response_time": "1h"},
            "info": {"priority": "P3", "response_time": "4h"},
        },
    },
    "escalation_policies": [
        {
            "name": "seed-matrix",
            "levels": [
                {"after": "0s", "targets": [{"receiver": "dev-team"}]},
                {"after": "5m", "targets": [{"receiver": "senior-engineers"}]},
                {"after": "15m", "targets": [{"schedule": "eng-managers"}]},
                {"after": "30m", "targets": [{"receiver": "leadership"}]},
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
                    "users": ["ben", "anna"],
                }
            ],
        }
    ],
    "oncall": {"users": {"anna": {"receiver": "anna-phone"}}},
}


@dataclass
class Harness:
    am: AlertManager
    tenant: TenantAlerting
    clock: FakeClock
    sink: WebhookSink
    state: StateStore

    async def fire(self, **labels: str) -> None:
        now = self.clock.now()
        errors = await self.am.receive(
            [Alert(labels=labels, starts_at=now, ends_at=now + timedelta(days=1))]
        )
        assert errors == []

    async def resolve_alert(self, **labels: str) -> None:
        now = self.clock.now()
        await self.am.receive(
            [Alert(labels=labels, starts_at=now - timedelta(hours=1), ends_at=now)]
        )

    async def tick(self, advance: timedelta = timedelta(0)) -> None:
        """Move the clock, flush due groups, then run due escalation levels."""
        self.clock.advance(advance)
        assert self.tenant.dispatcher is not None
        await self.tenant.dispatcher.run_due(self.clock.now())
        await self.am.escalation.run_due(self.clock.now())

    def paths(self) -> list[str]:
        return [p for p, _, _ in self.sink.received]


def section_for(sink: WebhookSink, **changes: Any) -> dict[str, Any]:
    section: dict[str, Any] = json.loads(json.dumps(SECTION).replace("SINK", sink.url))
    section.update(changes)
    return section


@pytest.fixture
def sink() -> Iterator[WebhookSink]:
    with WebhookSink() as s:
        yield s


async def open_harness(
    sink: WebhookSink, db: Path, clock: FakeClock, section: dict[str, Any] | None = None
) -> Harness:
    state = StateStore(f"sqlite:///{db}")
    state.migrate()
    am = AlertManager.from_section(
        section or section_for(sink),
        state=state,
        clock=clock,
        backoff=Backoff(initial=0.01, max_interval=0.05),
    )
    await am.escalation.load()
    tenant = await am.tenant("default")
    return Harness(am, tenant, clock, sink, state)


@pytest.fixture
async def h(sink: WebhookSink, tmp_path: Path) -> AsyncIterator[Harness]:
    harness = await open_harness(sink, tmp_path / "state.db", FakeClock(START))
    yield harness
    await harness.am.stop()
    harness.state.close()


GROUP = '{}:{alertname="PaymentsDown"}'


async def test_seed_matrix_escalates_level_by_level(h: Harness) -> None:
    await h.fire(alertname="PaymentsDown", severity="critical", runbook="settings-sync-failure")
    await h.tick()
    # the route's receiver and L1 (development team, at once)
    assert h.paths() == ["/slack-ops", "/dev-team"]
    dev = h.sink.bodies("/dev-team")[0]
    assert dev["groupKey"] == GROUP
    annotations = dev["alerts"][0]["annotations"]
    assert annotations["escalation_level"] == "L1"
    assert annotations["runbook_url"] == "http://127.0.0.1:8290/runbooks/settings-sync-failure"
    # the route notification carries the runbook link too
    ops = h.sink.bodies("/slack-ops")[0]
    assert ops["alerts"][0]["annotations"]["runbook_url"].endswith(
        "/runbooks/settings-sync-failure"
    )

    await h.tick(timedelta(minutes=4, seconds=59))
    assert h.paths()[-1] == "/dev-team"  # L2 not yet
    await h.tick(timedelta(seconds=1))
    assert h.paths()[-1] == "/senior-engineers"
    await h.tick(timedelta(minutes=10))  # 15 m: L3 pages whoever is on call: anna
    assert h.paths()[-1] == "/anna-phone"
    anna = h.sink.bodies("/anna-phone")[0]["alerts"][0]["annotations"]
    assert (anna["oncall_user"], anna["oncall_schedule"]) == ("anna", "eng-managers")
    await h.tick(timedelta(minutes=15))  # 30 m: L4 leadership
    assert h.paths()[-1] == "/leadership"
    await h.tick(timedelta(hours=2))
    assert h.paths().count("/leadership") == 1  # levels are not repeated without repeat

    state = h.am.escalation.state("default", GROUP)
    assert state is not None
    assert (state.policy, state.severity, state.priority) == ("seed-matrix", "critical", "P0")
    timeline = await h.am.escalation.timeline("default", GROUP)
    kinds = [e.kind for e in timeline]
    assert kinds[0] == "triggered"
    escalated = [(e.level, e.receiver, e.outcome) for e in timeline if e.kind == "escalated"]
    assert escalated == [
        (1, "dev-team", "sent"),
        (2, "senior-engineers", "sent"),
        (3, "anna-phone", "sent"),
        (4, "leadership", "sent"),
    ]
    assert "response_overdue" in kinds  # 15 m target, nobody acknowledged
    assert "escalation_exhausted" in kinds
    notified = [e for e in timeline if e.kind == "notified"]
    assert notified[0].receiver == "slack-ops" and notified[0].integration == "webhook[0]"


async def test_acknowledgement_stops_escalation_and_unack_restarts_it(h: Harness) -> None:
    await h.fire(alertname="PaymentsDown", severity="critical")
    await h.tick()
    await h.tick(timedelta(minutes=5))
    assert h.paths()[-1] == "/senior-engineers"
    state = await h.am.escalation.acknowledge("default", GROUP, "maria", "on it")
    assert (state.status, state.acked_by, state.acked_at) == (
        "acknowledged",
        "maria",
        h.clock.now(),
    )
    # acknowledging again changes nothing
    again = await h.am.escalation.acknowledge("default", GROUP, "someone-else")
    assert again.acked_by == "maria"
    count = len(h.paths())
    await h.tick(timedelta(hours=2))  # past L3, L4 and the repeat interval
    assert len(h.paths()) == count  # no levels, and the repeat of the unchanged group held back
    assert not state.overdue  # acknowledged within the 15 m response target

    # a new alert in the group still goes to the route's receiver
    await h.fire(alertname="PaymentsDown", severity="critical", instance="b")
    await h.tick(timedelta(minutes=1))
    assert h.paths()[count:] == ["/slack-ops"]

    state = await h.am.escalation.unacknowledge("default", GROUP, "maria")
    assert state.status == "firing" and state.acked_by is None
    await h.tick()
    assert h.paths()[-1] == "/dev-team"  # back at L1
    kinds = [e.kind for e in await h.am.escalation.timeline("default", GROUP)]
    assert kinds.count("acknowledged") == 1 and kinds.count("unacknowledged") == 1
    ack = next(
        e for e in await h.am.escalation.timeline("default", GROUP) if e.kind == "acknowledged"
    )
    assert (ack.actor, dict(ack.detail)) == ("maria", {"comment": "on it"})


async def test_resolve_by_hand_and_reopen_on_a_new_alert(h: Harness) -> None:
    await h.fire(alertname="PaymentsDown", severity="critical", instance="a")
    await h.tick()
    state = await h.am.escalation.resolve("default", GROUP, "maria", "fixed the config")
    assert (state.status, state.resolved_by) == ("resolved", "maria")
    with pytest.raises(EscalationError) as err:
        await h.am.escalation.acknowledge("default", GROUP, "maria")
    assert err.value.status == 409
    before = len(h.paths())
    await h.tick(timedelta(minutes=30))
    assert "/senior-engineers" not in h.paths()
    # the same alert keeps firing: the group stays resolved (only route repeats would go out)
    assert h.am.escalation.state("default", GROUP).status == "resolved"  # type: ignore[union-attr]
    # a new alert in the group reopens it and escalation starts over
    await h.fire(alertname="PaymentsDown", severity="critical", instance="b")
    await h.tick(timedelta(minutes=1))
    assert h.am.escalation.state("default", GROUP).status == "firing"  # type: ignore[union-attr]
    assert h.paths()[before:] == ["/slack-ops", "/dev-team"]
    kinds = [e.kind for e in await h.am.escalation.timeline("default", GROUP)]
    assert kinds[:3] == ["triggered", "notified", "escalated"]
    assert kinds.index("resolved") < kinds.index("reopened")


async def test_all_alerts_resolved_ends_escalation(h: Harness) -> None:
    await h.fire(alertname="PaymentsDown", severity="critical")
    await h.tick()
    await h.resolve_alert(alertname="PaymentsDown", severity="critical")
    await h.tick(timedelta(minutes=1))
    state = h.am.escalation.state("default", GROUP)
    assert state is not None and (state.status, state.resolved_by) == ("resolved", "alertmanager")
    await h.tick(timedelta(minutes=30))
    assert "/senior-engineers" not in h.paths()


async def test_unknown_group_is_404_and_warning_has_no_policy(h: Harness) -> None:
    with pytest.raises(EscalationError) as err:
        await h.am.escalation.acknowledge("default", "nope", "maria")
    assert err.value.status == 404
    await h.fire(alertname="DiskSlow", severity="warning")
    await h.tick()
    await h.tick(timedelta(hours=1))
    key = '{}:{alertname="DiskSlow"}'
    state = h.am.escalation.state("default", key)
    assert state is not None and state.policy is None and state.priority == "P2"
    assert h.paths() == ["/slack-ops"]  # warning: response target only, no escalation policy
    kinds = [e.kind for e in await h.am.escalation.timeline("default", key)]
    assert "response_overdue" in kinds


async def test_silenced_group_holds_its_levels(h: Harness) -> None:
    await h.fire(alertname="PaymentsDown", severity="critical")
    await h.tick()
    now = h.clock.now()
    h.tenant.silences.set(
        Silence(
            matchers=parse_matchers('alertname="PaymentsDown"'),
            starts_at=now,
            ends_at=now + timedelta(minutes=20),
            created_by="maria",
            comment="maintenance",
        ),
        now,
    )
    await h.tick(timedelta(minutes=10))
    assert "/senior-engineers" not in h.paths()
    await h.tick(timedelta(minutes=11))  # silence over: the held level goes out
    assert "/senior-engineers" in h.paths()


async def test_state_and_timeline_survive_a_restart(sink: WebhookSink, tmp_path: Path) -> None:
    clock = FakeClock(START)
    db = tmp_path / "state.db"
    first = await open_harness(sink, db, clock)
    await first.fire(alertname="PaymentsDown", severity="critical")
    await first.tick()
    await first.am.escalation.acknowledge("default", GROUP, "maria")
    await first.am.stop()
    first.state.close()

    second = await open_harness(sink, db, clock)
    try:
        state = second.am.escalation.state("default", GROUP)
        assert state is not None
        assert (state.status, state.acked_by, state.policy) == (
            "acknowledged",
            "maria",
            "seed-matrix",
        )
        kinds = [e.kind for e in await second.am.escalation.timeline("default", GROUP)]
        assert kinds == ["triggered", "notified", "escalated", "acknowledged"]
        count = len(second.paths())
        await second.tick(timedelta(minutes=20))
        assert len(second.paths()) == count  # still acknowledged: nobody paged
    finally:
        await second.am.stop()
        second.state.close()


async def test_repeat_runs_the_levels_again(sink: WebhookSink, tmp_path: Path) -> None:
    section = section_for(sink)
    section["escalation_policies"] = [
        {
            "name": "seed-matrix",
            "repeat": 1,
            "repeat_interval": "10m",
            "levels": [
                {"after": "0s", "targets": [{"receiver": "dev-team"}]},
                {"after": "5m", "targets": [{"receiver": "senior-engineers"}]},
            ],
        }
    ]
    harness = await open_harness(sink, tmp_path / "s.db", FakeClock(START), section)
    try:
        await harness.fire(alertname="PaymentsDown", severity="critical")
        for _ in range(8):
            await harness.tick(timedelta(minutes=5))
        pages = [p for p in harness.paths() if p != "/slack-ops"]
        assert pages == ["/dev-team", "/senior-engineers", "/dev-team", "/senior-engineers"]
    finally:
        await harness.am.stop()
        harness.state.close()


async def test_escalation_runs_beside_delivery_but_finishes_with_the_flush(h: Harness) -> None:
    # The escalation stage does not hold up the webhook of a new group, yet once the flush is
    # done the group's escalation exists and its timeline reads triggered, then notified.
    await h.fire(alertname="PaymentsDown", severity="critical")
    await h.tick()
    state = h.am.escalation.state("default", GROUP)
    assert state is not None and state.status == "firing"
    kinds = [e.kind for e in await h.am.escalation.timeline("default", GROUP)]
    assert kinds[:2] == ["triggered", "notified"]
