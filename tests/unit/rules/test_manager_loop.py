"""RuleManager's evaluation loop on real (short) intervals: Prometheus's slot alignment,
missed-iteration counting, stop(), `for`-state restore and reload while running."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage, Querier, is_stale_nan
from signalroom.rules.group import Group
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.rule import AlertingRule, AlertState

pytestmark = [pytest.mark.unit, pytest.mark.timeout(60)]

INTERVAL = "100ms"
INTERVAL_MS = 100


class RecordingAppender(MemoryStorageAppender):
    """Keeps every appended sample as well, to see the timestamps rules were written at."""

    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage)
        self.samples: list[tuple[Labels, int, float]] = []

    def append_samples(self, samples: Sequence[tuple[Labels, int, float]]) -> None:
        self.samples.extend(samples)
        super().append_samples(samples)

    def times_of(self, name: str) -> list[int]:
        return [ts for lbls, ts, v in self.samples if lbls.name == name and not is_stale_nan(v)]


async def until(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.02)


def _manager(
    storage: MemoryStorage,
    querier_factory: Callable[[], Querier] | None = None,
    **kw: int,
) -> tuple[RuleManager, RecordingAppender, ListNotifier]:
    appender = RecordingAppender(storage)
    notifier = ListNotifier()
    mgr = RuleManager(
        Engine(),
        querier_factory or (lambda: storage),
        appender,
        notifier,
        **kw,  # type: ignore[arg-type]
    )
    return mgr, appender, notifier


def _group(name: str, record: str, expr: str) -> str:
    head = f"- name: {name}\n  interval: {INTERVAL}\n  rules:\n"
    return head + f"  - record: {record}\n    expr: {expr}\n"


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


async def test_groups_run_on_hash_offset_slots_and_stop(tmp_path: Path) -> None:
    rules = _write(
        tmp_path / "r.yml",
        "groups:\n" + _group("a", "one", "vector(1)") + _group("b", "two", "vector(2)"),
    )
    storage = MemoryStorage()
    mgr, appender, _ = _manager(storage)
    mgr.update([rules])
    await mgr.start()
    try:
        await until(
            lambda: len(appender.times_of("one")) >= 3 and len(appender.times_of("two")) >= 3
        )
    finally:
        await mgr.stop()
    offsets = set()
    for name, group in (("one", mgr.groups[f"{rules};a"]), ("two", mgr.groups[f"{rules};b"])):
        times = appender.times_of(name)
        # Every evaluation is at a slot of this group: whole intervals plus an offset taken
        # from the hash of its name and file (in ns; sample timestamps are truncated to ms).
        offset_ms = group.hash64() % (INTERVAL_MS * 1_000_000) // 1_000_000
        offsets.add(offset_ms)
        assert all((t - offset_ms) % INTERVAL_MS == 0 for t in times)
        assert all(b > a for a, b in itertools.pairwise(times))
    assert len(offsets) == 2  # the two groups are spread over the interval
    # Stopped: nothing runs any more.
    count = len(appender.samples)
    await asyncio.sleep(3 * INTERVAL_MS / 1000)
    assert len(appender.samples) == count


async def test_slow_group_counts_missed_iterations(tmp_path: Path) -> None:
    rules = _write(
        tmp_path / "r.yml",
        f"groups:\n- name: slow\n  interval: {INTERVAL}\n  rules:\n"
        "  - record: one\n    expr: vector(1)\n",
    )
    storage = MemoryStorage()

    def slow_querier() -> Querier:
        time.sleep(0.25)  # each evaluation takes 2.5 intervals
        return storage

    mgr, appender, _ = _manager(storage, slow_querier)
    mgr.update([rules])
    group = next(iter(mgr.groups.values()))
    await mgr.start()
    try:
        await until(lambda: group.metrics.iterations_total >= 3)
    finally:
        await mgr.stop()
    gm = group.metrics
    assert gm.iterations_missed_total >= 2
    times = appender.times_of("one")
    assert len(times) == gm.iterations_total
    # Missed slots are skipped, not caught up: gaps are 2+ intervals, still on the grid.
    gaps = [(b - a) // INTERVAL_MS for a, b in itertools.pairwise(times)]
    assert all((b - a) % INTERVAL_MS == 0 for a, b in itertools.pairwise(times))
    assert sum(g - 1 for g in gaps) <= gm.iterations_missed_total
    assert max(gaps) >= 2
    samples = {s.name: s for m in mgr.collector().collect() for s in m.samples}
    key = {"rule_group": f"{rules};slow"}
    assert samples["prometheus_rule_group_iterations_missed_total"].labels == key
    assert (
        samples["prometheus_rule_group_iterations_missed_total"].value == gm.iterations_missed_total
    )
    assert samples["prometheus_rule_group_iterations_total"].value == (
        gm.iterations_total + gm.iterations_missed_total
    )


async def test_for_state_is_restored_after_the_second_evaluation(tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000)
    storage = MemoryStorage()
    target = Labels({"__name__": "up", "instance": "a", "job": "j"})
    for back in range(60, -1, -5):
        storage.add(target, now_ms - back * 1000, 0.0)
    # Before the restart the alert had been active for 50 minutes (for: 30m => firing).
    active_at_s = now_ms // 1000 - 50 * 60
    for_state = Labels(
        {"__name__": "ALERTS_FOR_STATE", "alertname": "Down", "instance": "a", "job": "j"}
    )
    storage.add(for_state, now_ms - 2000, float(active_at_s))
    rules = _write(
        tmp_path / "r.yml",
        f"groups:\n- name: g\n  interval: {INTERVAL}\n  rules:\n"
        "  - alert: Down\n    expr: up == 0\n    for: 30m\n",
    )
    mgr, appender, notifier = _manager(storage, for_grace_period_ms=1000)
    mgr.update([rules])
    group = next(iter(mgr.groups.values()))
    rule = group.rules[0]
    assert isinstance(rule, AlertingRule) and group.should_restore and not rule.restored
    await mgr.start()
    try:
        await until(lambda: rule.restored and rule.state() == AlertState.FIRING)
    finally:
        await mgr.stop()
    alert = next(iter(rule.active.values()))
    assert alert.active_at_ms == active_at_s * 1000
    assert group.metrics.iterations_total >= 3  # restore waits for a second evaluation
    assert notifier.sent and notifier.sent[0]["labels"]["alertname"] == "Down"
    # No ALERTS series is written until restored, then they carry the restored ActiveAt.
    written = [(lbls, v) for lbls, _, v in appender.samples if lbls.name == "ALERTS_FOR_STATE"]
    assert written and all(v == float(active_at_s) for _, v in written)


async def test_for_state_without_history_starts_pending(tmp_path: Path) -> None:
    storage = MemoryStorage()
    now_ms = int(time.time() * 1000)
    storage.add(Labels({"__name__": "up", "instance": "a"}), now_ms, 0.0)
    rules = _write(
        tmp_path / "r.yml",
        f"groups:\n- name: g\n  interval: {INTERVAL}\n  rules:\n"
        "  - alert: Down\n    expr: up == 0\n    for: 30m\n",
    )
    mgr, _, _ = _manager(storage, for_grace_period_ms=1000)
    mgr.update([rules])
    rule = next(iter(mgr.groups.values())).rules[0]
    assert isinstance(rule, AlertingRule)
    await mgr.start()
    try:
        await until(lambda: rule.restored)
    finally:
        await mgr.stop()
    assert rule.state() == AlertState.PENDING


RELOAD = """
groups:
- name: alerts
  interval: {interval}
  rules:
  - alert: Down
    expr: up == 0
- name: recs
  interval: 100ms
  rules:
  - record: {record}
    expr: sum(up)
"""


async def test_reload_while_running_keeps_state(tmp_path: Path) -> None:
    storage = MemoryStorage()
    now_ms = int(time.time() * 1000)
    storage.add(Labels({"__name__": "up", "instance": "a"}), now_ms, 0.0)
    path = tmp_path / "r.yml"
    rules = _write(path, RELOAD.format(interval="100ms", record="up:sum"))
    mgr, appender, _ = _manager(storage)
    mgr.update([rules])
    await mgr.start()
    try:
        alerts = mgr.groups[f"{rules};alerts"]
        recs = mgr.groups[f"{rules};recs"]
        rule = alerts.rules[0]
        assert isinstance(rule, AlertingRule)
        await until(lambda: rule.state() == AlertState.FIRING and recs.metrics.iterations_total > 0)
        alert = next(iter(rule.active.values()))

        # Only "recs" changes: "alerts" keeps running as the very same group.
        _write(path, RELOAD.format(interval="100ms", record="up:total"))
        mgr.update([rules])
        assert mgr.groups[f"{rules};alerts"] is alerts
        new_recs = mgr.groups[f"{rules};recs"]
        assert new_recs is not recs and recs.stopped
        before = alerts.metrics.iterations_total
        await until(
            lambda: (
                alerts.metrics.iterations_total > before + 1
                and len(appender.times_of("up:total")) >= 2
            )
        )
        # The new group's first evaluation marks the renamed rule's old series stale.
        assert any(lbls.name == "up:sum" and is_stale_nan(v) for lbls, _, v in appender.samples)
        assert next(iter(rule.active.values())) is alert

        # Now "alerts" changes (interval): a new group takes over the firing alert.
        _write(path, RELOAD.format(interval="200ms", record="up:total"))
        mgr.update([rules])
        new_alerts = mgr.groups[f"{rules};alerts"]
        assert new_alerts is not alerts and alerts.stopped
        new_rule = new_alerts.rules[0]
        assert isinstance(new_rule, AlertingRule)
        assert new_rule.state() == AlertState.FIRING
        copied = next(iter(new_rule.active.values()))
        assert (copied.active_at_ms, copied.fired_at_ms) == (alert.active_at_ms, alert.fired_at_ms)
        old_count = alerts.metrics.iterations_total
        await until(lambda: new_alerts.metrics.iterations_total >= 2)
        assert alerts.metrics.iterations_total == old_count  # the replaced group never ran again
        assert new_rule.state() == AlertState.FIRING
        assert next(iter(new_rule.active.values())).active_at_ms == alert.active_at_ms
    finally:
        await mgr.stop()


async def test_stop_waits_for_an_evaluation_in_progress(tmp_path: Path) -> None:
    storage = MemoryStorage()
    entered = asyncio.Event()
    loop = asyncio.get_running_loop()

    def slow_querier() -> Querier:
        loop.call_soon_threadsafe(entered.set)
        time.sleep(0.3)
        return storage

    rules = _write(
        tmp_path / "r.yml",
        "groups:\n" + _group("g", "one", "vector(1)"),
    )
    mgr, appender, _ = _manager(storage, slow_querier)
    mgr.update([rules])
    await mgr.start()
    await asyncio.wait_for(entered.wait(), 10)
    await mgr.stop()
    group = next(iter(mgr.groups.values()))
    # stop() returned only after the evaluation that had started wrote its result.
    assert group.metrics.iterations_total == 1 and len(appender.times_of("one")) == 1


def test_eval_group_skips_a_group_retired_by_reload() -> None:
    storage = MemoryStorage()
    mgr, appender, _ = _manager(storage)
    group = Group("g", "f.yml", 1000, [])
    group.stopped = True
    assert mgr.eval_group(group, 0) is False
    assert group.metrics.iterations_total == 0 and not appender.samples
