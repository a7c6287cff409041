"""Aggregation groups and their timing (Alertmanager's dispatch_test.go TestAggrGroup), on a
clock moved by hand."""

from __future__ import annotations

from datetime import timedelta

import pytest

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import parse_alertmanager_config
from signalroom.alerting.dispatch import Dispatcher
from signalroom.alerting.notify.pipeline import FlushContext
from signalroom.alerting.route import build_routing_tree
from signalroom.alerting.testing import FakeClock

pytestmark = pytest.mark.unit

CONFIG = """
route:
  receiver: default
  group_by: [alertname]
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 4h
  routes:
    - matchers: [team=db]
      receiver: db
      group_by: [alertname, instance]
      continue: true
    - matchers: [severity=page]
      receiver: pager
receivers:
  - name: default
  - name: db
  - name: pager
"""


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[FlushContext, list[Alert]]] = []
        self.fail = False

    async def __call__(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        self.calls.append((ctx, alerts))
        if self.fail:
            raise RuntimeError("receiver down")


def make(clock: FakeClock) -> tuple[Dispatcher, Recorder]:
    rec = Recorder()
    route = build_routing_tree(parse_alertmanager_config(CONFIG))
    return Dispatcher(route, rec, clock=clock), rec


def alert(clock: FakeClock, ends_in: float | None = 3600, **labels: str) -> Alert:
    now = clock.now()
    return Alert(
        labels=labels,
        starts_at=now,
        ends_at=None if ends_in is None else now + timedelta(seconds=ends_in),
        updated_at=now,
    )


async def test_first_flush_after_group_wait_then_every_group_interval() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    d.process(alert(clock, alertname="A", instance="1"))
    clock.advance(29)
    assert await d.run_due() == 0
    clock.advance(2)  # 31 s
    assert await d.run_due() == 1
    ctx, alerts = rec.calls[0]
    assert ctx.group_key == '{}:{alertname="A"}'
    assert ctx.receiver == "default"
    assert ctx.repeat_interval == timedelta(hours=4)
    assert [a.labels["instance"] for a in alerts] == ["1"]
    assert alerts[0].ends_at is None  # firing alerts go out without an end time

    # a new alert joins; nothing before group_interval has passed
    d.process(alert(clock, alertname="A", instance="2"))
    clock.advance(60)
    assert await d.run_due() == 0
    clock.advance(240)  # 5 min after the first flush
    assert await d.run_due() == 1
    assert [a.labels["instance"] for a in rec.calls[1][1]] == ["1", "2"]


async def test_group_wait_counts_from_when_the_alert_arrived() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    arrived = clock.now()
    clock.advance(2)  # the batch reached the dispatcher 2 s after the POST came in
    d.process(alert(clock, alertname="A"), arrived)
    clock.advance(28)  # 30 s after arrival
    assert await d.run_due() == 1
    assert len(rec.calls) == 1


async def test_old_alert_flushes_at_once() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    a = alert(clock, alertname="Old")
    a.starts_at = clock.now() - timedelta(minutes=5)
    d.process(a)
    assert await d.run_due() == 1
    assert len(rec.calls) == 1


async def test_old_alert_does_not_hurry_a_group_that_already_flushed() -> None:
    clock = FakeClock()
    d, _ = make(clock)
    d.process(alert(clock, alertname="A"))
    clock.advance(31)
    await d.run_due()
    clock.advance(10)
    late = alert(clock, alertname="A", instance="9")
    late.starts_at = clock.now() - timedelta(hours=1)
    d.process(late)
    assert await d.run_due() == 0
    clock.advance(290)
    assert await d.run_due() == 1


async def test_resolved_alerts_leave_the_group_after_a_successful_flush() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    d.process(alert(clock, alertname="A", instance="1"))
    d.process(alert(clock, ends_in=10, alertname="A", instance="2"))
    clock.advance(31)
    await d.run_due()
    statuses = {a.labels["instance"]: a.status(clock.now()) for a in rec.calls[0][1]}
    assert statuses == {"1": "firing", "2": "resolved"}
    group = next(iter(d.groups[next(iter(d.groups))].values()))
    assert sorted(a.labels["instance"] for a in group.alerts.values()) == ["1"]


async def test_failed_flush_keeps_resolved_alerts_for_the_next_one() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    d.process(alert(clock, ends_in=10, alertname="A"))
    rec.fail = True
    clock.advance(31)
    await d.run_due()
    rec.fail = False
    clock.advance(300)
    await d.run_due()
    assert len(rec.calls) == 2
    assert rec.calls[1][1][0].status(clock.now()) == "resolved"
    assert d.cleanup() == 1  # now empty and removed


async def test_routes_and_continue_put_an_alert_in_several_groups() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    d.process(alert(clock, alertname="Slow", team="db", instance="db1", severity="page"))
    clock.advance(31)
    assert await d.run_due() == 2
    keys = sorted((c.receiver, c.group_key) for c, _ in rec.calls)
    assert keys == [
        ("db", '{}/{team="db"}:{alertname="Slow", instance="db1"}'),
        ("pager", '{}/{severity="page"}:{alertname="Slow"}'),
    ]


async def test_alert_order_in_a_notification() -> None:
    clock = FakeClock()
    d, rec = make(clock)
    for labels in (
        {"alertname": "A", "instance": "b"},
        {"alertname": "A", "job": "z"},
        {"alertname": "A", "instance": "a"},
        {"alertname": "A", "job": "a", "instance": "c"},
        {"alertname": "A"},
    ):
        d.process(alert(clock, 3600, **labels))
    clock.advance(31)
    await d.run_due()
    order = [a.labels for a in rec.calls[0][1]]
    assert order == [
        {"alertname": "A", "job": "a", "instance": "c"},
        {"alertname": "A", "job": "z"},
        {"alertname": "A", "instance": "a"},
        {"alertname": "A", "instance": "b"},
        {"alertname": "A"},
    ]


async def test_empty_groups_are_kept_until_cleanup() -> None:
    clock = FakeClock()
    d, _ = make(clock)
    d.process(alert(clock, ends_in=5, alertname="A"))
    clock.advance(31)
    await d.run_due()
    assert d.group_count() == 1
    # a new alert arriving before cleanup joins the flushed group: no new group_wait
    d.process(alert(clock, alertname="A", instance="new"))
    clock.advance(31)
    assert await d.run_due() == 0
    assert d.cleanup() == 0
