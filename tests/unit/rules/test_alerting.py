"""Alerting-rule state machine, group evaluation, manager and rule-file validation."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage
from signalroom.rules.check import check_rules
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.rule import (
    Alert,
    AlertingRule,
    AlertState,
    RuleQueryFunc,
    restore_active_at,
)
from signalroom.rules.rulefmt import RuleFileError, parse_rules

pytestmark = pytest.mark.unit

M = 60_000


def _state(alert: Alert) -> AlertState:
    """Read the state afresh (keeps mypy from narrowing it across evaluations)."""
    return alert.state


def _rule(
    results: dict[int, list[tuple[Labels, float]]], **kw: Any
) -> tuple[AlertingRule, RuleQueryFunc]:
    rule = AlertingRule(name="A", expr="x", restored=True, **kw)

    def query(_expr: str, ts: int) -> list[tuple[Labels, float]]:
        return results.get(ts, [])

    return rule, query


def test_pending_then_firing_then_resolved_and_kept_15m() -> None:
    s = Labels({"instance": "a"})
    rule, query = _rule({0: [(s, 1)], M: [(s, 1)], 2 * M: [(s, 1)]}, hold_ms=2 * M)
    rule.eval(0, query)
    assert [a.state for a in rule.active.values()] == [AlertState.PENDING]
    rule.eval(M, query)
    assert rule.state() == AlertState.PENDING
    out = rule.eval(2 * M, query)
    alert = next(iter(rule.active.values()))
    assert alert.state == AlertState.FIRING and alert.fired_at_ms == 2 * M
    assert (
        Labels({"__name__": "ALERTS", "alertname": "A", "alertstate": "firing", "instance": "a"}),
        1.0,
    ) in out
    assert (Labels({"__name__": "ALERTS_FOR_STATE", "alertname": "A", "instance": "a"}), 0.0) in out
    rule.eval(3 * M, query)
    assert _state(alert) == AlertState.INACTIVE and alert.resolved_at_ms == 3 * M
    rule.eval(18 * M, query)
    assert rule.active  # still kept at exactly 15m
    rule.eval(18 * M + 1, query)
    assert not rule.active


def test_pending_alert_that_disappears_is_deleted() -> None:
    s = Labels({"instance": "a"})
    rule, query = _rule({0: [(s, 1)]}, hold_ms=5 * M)
    rule.eval(0, query)
    rule.eval(M, query)
    assert rule.active == {}


def test_keep_firing_for() -> None:
    s = Labels({"instance": "a"})
    rule, query = _rule({0: [(s, 1)]}, keep_firing_for_ms=2 * M)
    rule.eval(0, query)
    alert = next(iter(rule.active.values()))
    assert alert.state == AlertState.FIRING
    rule.eval(M, query)
    assert alert.state == AlertState.FIRING and alert.keep_firing_since_ms == M
    rule.eval(2 * M, query)
    assert _state(alert) == AlertState.FIRING
    rule.eval(3 * M, query)
    assert _state(alert) == AlertState.INACTIVE and alert.resolved_at_ms == 3 * M


def test_resend_delay_and_resolved_resend() -> None:
    s = Labels({"instance": "a"})
    rule, query = _rule({t * M: [(s, 1)] for t in range(4)})
    sent = []
    for t in range(6):
        rule.eval(t * M, query)
        sent.append(len(rule.alerts_to_send(t * M, M, M)))
    # firing at 0 (sent), 1m not yet (lastSent+1m not before 1m), 2m resent, 3m no,
    # 4m resolved -> sent, 5m resolved already sent and last+1m not before -> no
    assert sent == [1, 0, 1, 0, 1, 0]


def test_duplicate_labelsets_after_alert_labels_is_an_error() -> None:
    from signalroom.rules.rule import RuleError

    rule, query = _rule(
        {0: [(Labels({"__name__": "a", "x": "1"}), 1), (Labels({"__name__": "b", "x": "1"}), 1)]}
    )
    with pytest.raises(RuleError, match="same labelset after applying alert labels"):
        rule.eval(0, query)


def test_templates_in_labels_and_annotations() -> None:
    s = Labels({"__name__": "up", "instance": "h:9"})
    rule, query = _rule(
        {0: [(s, 0.5)]},
        labels=Labels({"host": "{{ $labels.instance | stripPort }}"}),
        annotations=Labels(
            {"d": "{{ $value | humanizePercentage }} {{ .Labels.__name__ }}", "e": "{{ nosuch"}
        ),
    )
    rule.eval(0, query)
    alert = next(iter(rule.active.values()))
    assert alert.labels == Labels({"alertname": "A", "host": "h", "instance": "h:9"})
    assert alert.annotations["d"] == "50% up"
    assert alert.annotations["e"].startswith(
        "<error expanding template: error parsing template __alert_A:"
    )


def test_restore_active_at() -> None:
    # firing when it went down: unchanged
    assert restore_active_at(0, 20 * M, 30 * M, 10 * M, 10 * M) == 0
    # 2m left < 10m grace: fires grace period after restart
    assert restore_active_at(0, 8 * M, 30 * M, 10 * M, 10 * M) == 30 * M
    # 20m left: shifted by the downtime
    assert restore_active_at(0, 10 * M, 30 * M, 30 * M, 10 * M) == 20 * M


RULES = """
groups:
- name: g
  interval: 1m
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: Down
    expr: up == 0
    for: 1m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} down"}
"""


def test_manager_writes_series_sends_alerts_and_reload_keeps_state(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text(RULES)
    storage = MemoryStorage()
    for t in range(0, 10):
        storage.add(Labels({"__name__": "up", "job": "j", "instance": "i"}), t * M, 0.0)
    notifier = ListNotifier()
    mgr = RuleManager(
        Engine(),
        lambda: storage,
        MemoryStorageAppender(storage),
        notifier,
        external_labels={"cluster": "c1"},
        external_url="http://sr:8290",
    )
    mgr.update([str(path)])
    group = next(iter(mgr.groups.values()))
    for t in range(3):
        mgr.eval_group(group, t * M)
    assert [a["labels"]["cluster"] for a in notifier.sent] == ["c1"]
    assert notifier.sent[0]["startsAt"] == "1970-01-01T00:01:00Z"
    assert notifier.sent[0]["generatorURL"].startswith("http://sr:8290/graph?g0.expr=up+%3D%3D+0")
    res = Engine().instant_query(storage, "job:up:sum", 2 * M).value
    assert [s.value for s in res.samples] == [0.0]  # type: ignore[union-attr]
    # Reload with a changed group: the firing alert survives.
    path.write_text(RULES.replace("interval: 1m", "interval: 2m"))
    mgr.update([str(path)])
    group2 = next(iter(mgr.groups.values()))
    assert group2 is not group
    rule = group2.rules[1]
    assert isinstance(rule, AlertingRule) and rule.state() == AlertState.FIRING
    api = mgr.rules_api(type_="alert")
    assert [r["name"] for g in api["groups"] for r in g["rules"]] == ["Down"]
    assert mgr.alerts_api()["alerts"][0]["state"] == "firing"
    names = {m.name for m in mgr.collector().collect()}
    assert "prometheus_rule_group_rules" in names
    assert "prometheus_rule_evaluation_failures" in names


def test_group_limit_drops_output_and_records_error(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text("groups:\n- name: g\n  limit: 1\n  rules:\n  - record: r\n    expr: up\n")
    storage = MemoryStorage()
    storage.add(Labels({"__name__": "up", "i": "1"}), 0, 1)
    storage.add(Labels({"__name__": "up", "i": "2"}), 0, 1)
    mgr = RuleManager(Engine(), lambda: storage, MemoryStorageAppender(storage))
    mgr.update([str(path)])
    group = next(iter(mgr.groups.values()))
    mgr.eval_group(group, 0)
    assert group.rules[0].last_error == "exceeded limit of 1 with 2 series"
    assert "r" not in storage.metric_names()


def test_rulefmt_errors_are_promtools() -> None:
    with pytest.raises(RuleFileError) as info:
        parse_rules("groups:\n- name: g\n  rules:\n  - record: a b\n    expr: up\n    for: 1m\n")
    assert info.value.errors == [
        '4:13: group "g", rule 1, "a b": invalid field \'for\' in recording rule',
        '4:13: group "g", rule 1, "a b": invalid recording rule name: a b',
    ]


def test_check_rules_success_text(tmp_path: Path) -> None:
    path = tmp_path / "r.yml"
    path.write_text(RULES)
    out, code = check_rules([str(path)])
    assert (out, code) == (f"Checking {path}\n  SUCCESS: 2 rules found\n\n", 0)
