"""/api/v1/rules and /api/v1/alerts shapes (Prometheus web/api/v1/api.go) and the rule
metrics of Prometheus's rules/group.go, as RuleManager exposes them."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.metrics import WindowedSummary

pytestmark = pytest.mark.unit

M = 60_000

RULES = """
groups:
- name: g
  interval: 1m
  rules:
  - record: job:up:sum
    expr: sum by (job) (up)
  - alert: Down
    expr: up == 0
    for: 2m
    keep_firing_for: 3m
    labels: {severity: page}
    annotations: {summary: "{{ $labels.instance }} down"}
  - alert: Never
    expr: up > 100
  - record: broken
    expr: up + on(job) group_left up
"""

ALERTING_KEYS = [
    "state",
    "name",
    "query",
    "duration",
    "keepFiringFor",
    "labels",
    "annotations",
    "alerts",
    "health",
    "evaluationTime",
    "lastEvaluation",
    "type",
]


class FakeClock:
    """Wall clock for lastEvaluation fields."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


def _setup(tmp_path: Path) -> tuple[RuleManager, MemoryStorage, FakeClock, str]:
    path = tmp_path / "r.yml"
    path.write_text(RULES)
    storage = MemoryStorage()
    clock = FakeClock()
    mgr = RuleManager(
        Engine(),
        lambda: storage,
        MemoryStorageAppender(storage),
        ListNotifier(),
        clock=clock,
    )
    mgr.update([str(path)])
    return mgr, storage, clock, str(path)


def _up(storage: MemoryStorage, minute: int, value: float, instance: str = "a") -> None:
    storage.add(Labels({"__name__": "up", "job": "j", "instance": instance}), minute * M, value)


def _rules(mgr: RuleManager) -> dict[str, dict[str, Any]]:
    return {r["name"]: r for g in mgr.rules_api()["groups"] for r in g["rules"]}


def test_alerting_rule_states_inactive_pending_firing_and_keep_firing(tmp_path: Path) -> None:
    mgr, storage, clock, path = _setup(tmp_path)
    group = mgr.groups[f"{path};g"]

    _up(storage, 0, 1)
    mgr.eval_group(group, 0)
    rules = _rules(mgr)
    assert list(rules["Down"]) == ALERTING_KEYS  # no lastError while healthy (omitempty)
    assert rules["Down"]["state"] == "inactive" and rules["Down"]["alerts"] == []
    assert rules["Never"]["state"] == "inactive"
    assert rules["Down"]["duration"] == 120.0 and rules["Down"]["keepFiringFor"] == 180.0
    assert rules["Down"]["health"] == "ok"
    assert rules["Down"]["lastEvaluation"] == "2023-11-14T22:13:20Z"  # wall clock

    _up(storage, 1, 0)
    clock.now += 60
    mgr.eval_group(group, M)
    down = _rules(mgr)["Down"]
    assert down["state"] == "pending"
    assert down["alerts"] == [
        {
            "labels": {"alertname": "Down", "instance": "a", "job": "j", "severity": "page"},
            "annotations": {"summary": "a down"},
            "state": "pending",
            "activeAt": "1970-01-01T00:01:00Z",
            "value": "0e+00",
        }
    ]

    for minute in (2, 3):
        _up(storage, minute, 0)
        mgr.eval_group(group, minute * M)
    down = _rules(mgr)["Down"]
    assert down["state"] == "firing"
    (firing,) = down["alerts"]
    assert firing["state"] == "firing" and "keepFiringSince" not in firing

    # The condition clears: keep_firing_for keeps it firing, and the API says since when.
    _up(storage, 4, 1)
    mgr.eval_group(group, 4 * M)
    (alert,) = _rules(mgr)["Down"]["alerts"]
    assert alert["state"] == "firing" and alert["keepFiringSince"] == "1970-01-01T00:04:00Z"
    assert mgr.alerts_api() == {"alerts": [alert]}

    # After keep_firing_for it resolves: the rule is inactive and shows no alerts.
    for minute in (5, 6, 7):
        _up(storage, minute, 1)
        mgr.eval_group(group, minute * M)
    down = _rules(mgr)["Down"]
    assert down["state"] == "inactive" and down["alerts"] == []
    assert mgr.alerts_api() == {"alerts": []}


def test_recording_rule_and_group_shapes_and_last_error(tmp_path: Path) -> None:
    mgr, storage, _clock, path = _setup(tmp_path)
    _up(storage, 0, 1, "a")
    _up(storage, 0, 1, "b")
    mgr.eval_group(mgr.groups[f"{path};g"], 0)
    (group,) = mgr.rules_api()["groups"]
    assert list(group) == [
        "name",
        "file",
        "rules",
        "interval",
        "limit",
        "evaluationTime",
        "lastEvaluation",
    ]
    assert (group["name"], group["file"], group["interval"], group["limit"]) == ("g", path, 60.0, 0)
    rec = group["rules"][0]
    assert list(rec) == [
        "name",
        "query",
        "labels",
        "health",
        "evaluationTime",
        "lastEvaluation",
        "type",
    ]
    assert (rec["name"], rec["health"], rec["type"]) == ("job:up:sum", "ok", "recording")
    broken = group["rules"][3]
    assert broken["health"] == "err"
    assert "many-to-many matching not allowed" in broken["lastError"]
    # Filters: type and rule names.
    only_alerts = mgr.rules_api(type_="alert", exclude_alerts=True)["groups"][0]["rules"]
    assert [r["name"] for r in only_alerts] == ["Down", "Never"]
    assert mgr.rules_api(rule_names=["nope"]) == {"groups": []}
    with pytest.raises(ValueError, match="must be one of 'alert' or 'record'"):
        mgr.rules_api(type_="bogus")


def test_collector_exposes_prometheus_rule_metrics(tmp_path: Path) -> None:
    mgr, storage, clock, path = _setup(tmp_path)
    _up(storage, 0, 1)
    group = mgr.groups[f"{path};g"]
    mgr.eval_group(group, 0)
    mgr.eval_group(group, M)
    registry = CollectorRegistry()
    registry.register(mgr.collector())
    text = generate_latest(registry).decode()
    families = {
        line.split()[2]: line.split()[3] for line in text.splitlines() if line.startswith("# TYPE")
    }
    assert families == {
        "prometheus_rule_evaluation_duration_seconds": "summary",
        "prometheus_rule_group_duration_seconds": "summary",
        "prometheus_rule_group_iterations_total": "counter",
        "prometheus_rule_group_iterations_missed_total": "counter",
        "prometheus_rule_evaluations_total": "counter",
        "prometheus_rule_evaluation_failures_total": "counter",
        "prometheus_rule_group_interval_seconds": "gauge",
        "prometheus_rule_group_last_evaluation_timestamp_seconds": "gauge",
        "prometheus_rule_group_last_duration_seconds": "gauge",
        "prometheus_rule_group_last_restore_duration_seconds": "gauge",
        "prometheus_rule_group_rules": "gauge",
        "prometheus_rule_group_last_evaluation_samples": "gauge",
    }
    key = f'rule_group="{path};g"'
    values = {
        line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert values[f"prometheus_rule_group_iterations_total{{{key}}}"] == 2
    assert values[f"prometheus_rule_group_iterations_missed_total{{{key}}}"] == 0
    assert values[f"prometheus_rule_evaluations_total{{{key}}}"] == 8
    assert values[f"prometheus_rule_evaluation_failures_total{{{key}}}"] == 0
    assert values[f"prometheus_rule_group_interval_seconds{{{key}}}"] == 60
    assert values[f"prometheus_rule_group_rules{{{key}}}"] == 4
    assert values[f"prometheus_rule_group_last_evaluation_timestamp_seconds{{{key}}}"] == (
        clock.now
    )
    assert values["prometheus_rule_evaluation_duration_seconds_count"] == 8
    assert values["prometheus_rule_group_duration_seconds_count"] == 2
    for q in ("0.5", "0.9", "0.99"):
        assert values[f'prometheus_rule_evaluation_duration_seconds{{quantile="{q}"}}'] >= 0
    for q in ("0.01", "0.05", "0.5", "0.9", "0.99"):
        assert values[f'prometheus_rule_group_duration_seconds{{quantile="{q}"}}'] >= 0


def test_windowed_summary_quantiles_forget_old_observations() -> None:
    now = [0.0]
    summary = WindowedSummary((0.5, 0.9, 0.99), max_age_s=600, clock=lambda: now[0])
    quantiles, total, count = summary.snapshot()
    assert all(math.isnan(v) for _, v in quantiles) and (total, count) == (0.0, 0)
    for v in range(1, 101):
        summary.observe(float(v))
    assert summary.snapshot()[0] == [(0.5, 50.0), (0.9, 90.0), (0.99, 99.0)]
    now[0] = 601.0
    summary.observe(1000.0)
    quantiles, total, count = summary.snapshot()
    assert quantiles == [(0.5, 1000.0), (0.9, 1000.0), (0.99, 1000.0)]
    assert (total, count) == (5050.0 + 1000.0, 101)  # _sum and _count are for all time
