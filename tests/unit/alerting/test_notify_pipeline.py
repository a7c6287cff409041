"""The notification pipeline: dedup decisions (notify_test.go TestDedupStageNeedsUpdate),
mute stages, time intervals, retries with their metrics, and the log across restarts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from prometheus_client import REGISTRY

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import InhibitRule, parse_alertmanager_config
from signalroom.alerting.inhibit import Inhibitor
from signalroom.alerting.matchers import parse_matchers
from signalroom.alerting.nflog import NotificationLog, NotifyEntry, ReceiverKey
from signalroom.alerting.notify.base import Integration, NotifyError
from signalroom.alerting.notify.pipeline import (
    Backoff,
    FanoutStage,
    FlushContext,
    MultiStage,
    PipelineError,
    build_receiver_stage,
    needs_update,
)
from signalroom.alerting.silences import Silence, Silences
from signalroom.alerting.timeinterval import TimeInterval
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

NOW = datetime(2024, 3, 4, 12, 0, tzinfo=UTC)  # a Monday


def entry(firing: set[int], resolved: set[int] = frozenset(), age: float = 0) -> NotifyEntry:  # type: ignore[assignment]
    ts = NOW - timedelta(minutes=age)
    return NotifyEntry("g", "r", frozenset(firing), frozenset(resolved), ts, ts)


REPEAT = timedelta(minutes=10)


@pytest.mark.parametrize(
    ("prev", "firing", "resolved", "send_resolved", "expected"),
    [
        (None, {2, 3, 4}, set(), True, True),
        (None, set(), {2, 3, 4}, True, False),
        (entry({1, 2, 3}), {2, 3, 4}, set(), True, True),
        (entry({1, 2, 3}), {1, 2}, set(), True, False),
        (entry({1, 2, 3}), {1, 2, 3}, set(), True, False),
        (entry({1, 2, 3}, age=11), {1, 2, 3}, set(), True, True),
        (entry({1, 2, 3}, {4, 5}), {1, 2}, {3, 4, 5}, True, True),
        (entry({1, 2, 3}, {4, 5}), {1, 2}, {3, 4, 5}, False, False),
        (entry({1, 2}, {3}), set(), {1, 2, 3}, True, True),
        (entry({1, 2}, {3}), set(), {1, 2, 3}, False, True),
        (entry(set(), {1, 2, 3}), set(), {1, 2, 3}, True, False),
    ],
)
def test_dedup_needs_update(
    prev: NotifyEntry | None,
    firing: set[int],
    resolved: set[int],
    send_resolved: bool,
    expected: bool,
) -> None:
    assert needs_update(prev, firing, resolved, REPEAT, NOW, send_resolved) is expected


class Recording(Integration):
    name = "webhook"

    def __init__(self, send_resolved: bool = True, failures: int = 0, retry: bool = True) -> None:
        super().__init__("r", 0, send_resolved, "http://am")
        self.sent: list[list[Alert]] = []
        self.failures = failures
        self.retry = retry

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        if self.failures:
            self.failures -= 1
            raise NotifyError("boom", retry=self.retry, reason="serverError")
        self.sent.append(list(alerts))


def ctx(**kw: object) -> FlushContext:
    base: dict[str, object] = {
        "now": NOW,
        "group_key": '{}:{alertname="A"}',
        "group_labels": {"alertname": "A"},
        "receiver": "r",
        "repeat_interval": timedelta(hours=4),
    }
    base.update(kw)
    return FlushContext(**base)  # type: ignore[arg-type]


def firing(**labels: str) -> Alert:
    return Alert(labels={"alertname": "A", **labels}, starts_at=NOW - timedelta(minutes=1))


def resolved(**labels: str) -> Alert:
    a = firing(**labels)
    a.ends_at = NOW - timedelta(seconds=1)
    return a


def stage_for(
    integ: Integration,
    *,
    nflog: NotificationLog | None = None,
    silences: Silences | None = None,
    inhibitor: Inhibitor | None = None,
    intervals: dict[str, list[TimeInterval]] | None = None,
) -> MultiStage:
    return build_receiver_stage(
        "r",
        [integ],
        inhibitor=inhibitor or Inhibitor([]),
        silences=silences or Silences(),
        nflog=nflog or NotificationLog(),
        intervals=intervals or {},
        backoff=Backoff(initial=0.001, max_interval=0.01),
    )


async def test_sends_once_then_dedups_until_something_changes() -> None:
    integ = Recording()
    log = NotificationLog()
    stage = stage_for(integ, nflog=log)
    await stage.exec(ctx(), [firing(i="1")])
    await stage.exec(ctx(now=NOW + timedelta(minutes=5)), [firing(i="1")])
    assert len(integ.sent) == 1
    e = log.query('{}:{alertname="A"}', ReceiverKey("r", "webhook", 0))
    assert e is not None and e.firing == {firing(i="1").fingerprint}
    await stage.exec(ctx(now=NOW + timedelta(minutes=6)), [firing(i="1"), firing(i="2")])
    assert len(integ.sent) == 2
    # repeat interval
    await stage.exec(ctx(now=NOW + timedelta(hours=5)), [firing(i="1"), firing(i="2")])
    assert len(integ.sent) == 3


async def test_send_resolved_false_drops_resolved_alerts_but_logs_them() -> None:
    integ = Recording(send_resolved=False)
    log = NotificationLog()
    stage = stage_for(integ, nflog=log)
    await stage.exec(ctx(), [firing(i="1"), resolved(i="2")])
    assert [[a.labels["i"] for a in batch] for batch in integ.sent] == [["1"]]
    # all resolved: nothing is sent, the log records it so it is not retried
    await stage.exec(ctx(now=NOW + timedelta(minutes=1)), [resolved(i="1")])
    assert len(integ.sent) == 1
    e = log.query('{}:{alertname="A"}', "r/webhook/0")
    assert e is not None and e.firing == frozenset() and len(e.resolved) == 1


async def test_silenced_and_inhibited_alerts_are_dropped() -> None:
    integ = Recording()
    silences = Silences()
    silences.set(
        Silence(parse_matchers('i="1"'), NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        NOW - timedelta(hours=1),
    )
    rule = InhibitRule.model_validate(
        {
            "source_matchers": ["severity=critical"],
            "target_matchers": ["i=2"],
            "equal": ["alertname"],
        }
    )
    inhibitor = Inhibitor([rule])
    inhibitor.observe(firing(severity="critical", i="src"))
    stage = stage_for(integ, silences=silences, inhibitor=inhibitor)
    await stage.exec(ctx(), [firing(i="1"), firing(i="2"), firing(i="3")])
    assert [a.labels["i"] for a in integ.sent[0]] == ["3"]


async def test_time_intervals() -> None:
    cfg = parse_alertmanager_config(
        """
route: {receiver: r}
receivers: [{name: r}]
time_intervals:
  - name: weekdays
    time_intervals: [{weekdays: ['monday:friday']}]
  - name: nights
    time_intervals: [{times: [{start_time: '00:00', end_time: '06:00'}]}]
"""
    )
    intervals = cfg.time_interval_map()
    integ = Recording()
    stage = stage_for(integ, intervals=intervals)
    await stage.exec(ctx(mute_time_intervals=("weekdays",)), [firing()])
    assert integ.sent == []  # Monday noon is muted
    await stage.exec(ctx(active_time_intervals=("nights",)), [firing()])
    assert integ.sent == []  # not active at noon
    await stage.exec(
        ctx(active_time_intervals=("weekdays",), mute_time_intervals=("nights",)), [firing()]
    )
    assert len(integ.sent) == 1


def _sample(name: str, labels: dict[str, str]) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def test_retries_until_success_and_counts_attempts() -> None:
    before_total = _sample("alertmanager_notifications_total", {"integration": "webhook"})
    before_failed = _sample(
        "alertmanager_notifications_failed_total",
        {"integration": "webhook", "reason": "serverError"},
    )
    integ = Recording(failures=2)
    stage = stage_for(integ)
    await stage.exec(ctx(), [firing()])
    assert len(integ.sent) == 1
    assert (
        _sample("alertmanager_notifications_total", {"integration": "webhook"}) == before_total + 3
    )
    assert (
        _sample(
            "alertmanager_notifications_failed_total",
            {"integration": "webhook", "reason": "serverError"},
        )
        == before_failed + 2
    )


async def test_unrecoverable_error_stops_retrying_and_logs_nothing() -> None:
    integ = Recording(failures=5, retry=False)
    log = NotificationLog()
    stage = stage_for(integ, nflog=log)
    with pytest.raises(PipelineError, match="unrecoverable error after 1 attempts"):
        await stage.exec(ctx(), [firing()])
    assert integ.failures == 4
    assert log.entries() == []


async def test_retry_stops_at_the_flush_deadline() -> None:
    import asyncio

    integ = Recording(failures=10_000)
    stage = stage_for(integ)
    deadline = asyncio.get_running_loop().time() + 0.2
    with pytest.raises(PipelineError, match="notify retry canceled after"):
        await stage.exec(ctx(deadline=deadline), [firing()])


async def test_notification_log_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    with StateStore(url) as store:
        store.migrate()
        integ = Recording()
        log = NotificationLog("t1", store.engine)
        await stage_for(integ, nflog=log).exec(ctx(), [firing(i="1")])
    with StateStore(url) as store:
        log2 = NotificationLog("t1", store.engine)
        assert log2.load() == 1
        integ2 = Recording()
        await stage_for(integ2, nflog=log2).exec(
            ctx(now=NOW + timedelta(minutes=1)), [firing(i="1")]
        )
        assert integ2.sent == []  # no duplicate after the restart
        await stage_for(integ2, nflog=log2).exec(
            ctx(now=NOW + timedelta(minutes=2)), [firing(i="1"), firing(i="2")]
        )
        assert len(integ2.sent) == 1
        # another tenant's log is separate
        assert NotificationLog("t2", store.engine).load() == 0


async def test_a_silence_added_after_the_pipeline_was_built_mutes_the_next_flush() -> None:
    # With no silences the stage skips the per-alert check; it must notice a new one.
    integ = Recording()
    silences = Silences()
    stage = stage_for(integ, silences=silences)
    await stage.exec(ctx(), [firing(i="1")])
    silences.set(
        Silence(parse_matchers('i="2"'), NOW - timedelta(hours=1), NOW + timedelta(hours=1)),
        NOW - timedelta(hours=1),
    )
    await stage.exec(
        ctx(now=NOW + timedelta(minutes=1)), [firing(i="1"), firing(i="2"), firing(i="3")]
    )
    assert [[a.labels["i"] for a in batch] for batch in integ.sent] == [["1"], ["1", "3"]]
    assert silences.mutes(firing(i="2").labels, NOW) != []
    assert silences.mutes(firing(i="1").labels, NOW) == []


async def test_an_expired_silence_mutes_nothing() -> None:
    integ = Recording()
    silences = Silences()
    sid = silences.set(
        Silence(parse_matchers('i="1"'), NOW - timedelta(hours=2), NOW + timedelta(hours=1)),
        NOW - timedelta(hours=2),
    )
    silences.expire(sid, NOW - timedelta(hours=1))
    assert not silences.empty()
    await stage_for(integ, silences=silences).exec(ctx(), [firing(i="1")])
    assert [[a.labels["i"] for a in batch] for batch in integ.sent] == [["1"]]


class _Failing:
    def __init__(self, error: Exception) -> None:
        self.error = error
        self.seen: list[FlushContext] = []

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        self.seen.append(ctx)
        raise self.error


class _Passing:
    def __init__(self) -> None:
        self.seen: list[FlushContext] = []

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        ctx.firing = [a.fingerprint for a in alerts]
        self.seen.append(ctx)
        return ctx, alerts


@pytest.mark.parametrize("others", [0, 1])
async def test_fanout_fails_alike_with_one_or_more_integrations(others: int) -> None:
    failing = _Failing(ValueError("bad URL"))
    passing = [_Passing() for _ in range(others)]
    outer = ctx()
    with pytest.raises(PipelineError) as raised:
        await FanoutStage([failing, *passing]).exec(outer, [firing()])
    assert str(raised.value) == "bad URL"
    # every integration works on its own copy of the context
    assert failing.seen[0] is not outer
    assert all(p.seen[0] is not outer and p.seen[0].firing for p in passing)
    assert outer.firing == []


async def test_fanout_of_one_integration_hands_back_the_callers_context() -> None:
    passing = _Passing()
    outer = ctx()
    alerts = [firing()]
    got, out = await FanoutStage([passing]).exec(outer, alerts)
    assert got is outer and out == alerts and outer.firing == []
    assert passing.seen[0].firing == [alerts[0].fingerprint]


def test_the_webhook_payload_is_alertmanagers_template_data() -> None:
    from signalroom.alerting.notify.templates import template_data, template_json

    a = firing(i="1", team="db")
    a.annotations = {"summary": "x", "runbook_url": "http://rb"}
    b = resolved(i="2", team="db")
    b.annotations = {"summary": "x"}
    c = firing(i="3")
    c.generator_url = "http://prom/graph"
    for alerts in ([a, b, c], [b], [a], []):
        want = template_data("r.x", {"alertname": "A"}, alerts, NOW, "http://am").to_json()
        got = template_json("r.x", {"alertname": "A"}, alerts, NOW, "http://am")
        assert got == want and list(got) == list(want)
    assert template_json("r", {}, [b], NOW, "")["status"] == "resolved"
    assert template_json("r", {}, [a, b], NOW, "")["commonLabels"] == {
        "alertname": "A",
        "team": "db",
    }
