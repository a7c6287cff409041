"""The LogQL ruler: Loki rule files evaluated by the rule manager over the LogQL engine."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from signalroom.logs.config import LogsConfig
from signalroom.logs.pipeline import EntryBatch
from signalroom.logs.ruler import (
    LogRuler,
    check_log_rule_files,
    check_logql_expr,
    loki_rule_groups,
)
from signalroom.logs.service import LogService
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import Matcher, MatchType, MemoryStorage
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender
from signalroom.rules.rulefmt import RuleFileError

pytestmark = pytest.mark.unit

RULES = """
groups:
  - name: shop-logs
    interval: 30s
    rules:
      - alert: ShopErrors
        expr: sum by (service) (count_over_time({service="shop"} |= "error" [1m])) > 5
        labels:
          severity: page
        annotations:
          summary: "{{ $labels.service }} logged {{ $value }} errors"
      - record: service:log_lines:count1m
        expr: sum by (service) (count_over_time({service=~".+"}[1m]))
"""


def test_check_logql_expr() -> None:
    assert check_logql_expr('count_over_time({a="b"}[5m]) > 1') is None
    assert "log query" in (check_logql_expr('{a="b"} |= "x"') or "")
    assert check_logql_expr("sum(") is not None
    # PromQL that is not LogQL is refused.
    assert check_logql_expr("rate(http_requests_total[5m])") is not None


def test_check_files_report_logql_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.yml"
    good.write_text(RULES)
    bad = tmp_path / "bad.yml"
    bad.write_text(
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: '{service=\"x\"}'\n"
        "  - record: b\n    expr: sum(rate(x[5m]))\n"
    )
    assert check_log_rule_files([str(good)]) == []
    problems = check_log_rule_files([str(bad)])
    assert len(problems) == 2
    assert all(p.startswith(str(bad)) for p in problems)
    assert "log query cannot be a rule expression" in problems[0]


async def test_rules_evaluate_over_logs(tmp_path: Path) -> None:
    rules = tmp_path / "rules" / "shop.yml"
    rules.parent.mkdir()
    rules.write_text(RULES)
    config = LogsConfig.model_validate({"ruler": {"rule_files": ["rules/*.yml"]}})
    service = LogService(config, tmp_path / "logs", wal_fsync="never")
    await service.start()
    storage = MemoryStorage()
    notifier = ListNotifier()
    ruler = LogRuler.create(
        service,
        engine=Engine(),
        querier_factory=lambda: storage,
        appender=MemoryStorageAppender(storage),
        notifier=notifier,
        base_dir=tmp_path,
        external_url="http://sr.example",
    )
    service.ruler = ruler
    try:
        now_ns = time.time_ns()
        lines = [f"error: payment {i} failed" for i in range(7)] + ["ok"] * 3
        batch = EntryBatch(
            streams=[{"service": "shop"}, {"service": "cart"}],
            stream_index=np.array([0] * 10 + [1] * 2, np.int64),
            timestamps=np.array(
                [now_ns - 10_000_000_000 + i * 1_000_000 for i in range(12)], np.int64
            ),
            lines=[*lines, "error", "fine"],
        )
        await service.ingest("default", batch, "test")
        await ruler.start()
        group = next(iter(ruler.manager.groups.values()))
        assert group.interval_ms == 30_000
        ts_ms = now_ns // 1_000_000
        assert ruler.manager.eval_group(group, ts_ms)

        alert = notifier.sent[0]
        assert alert["labels"] == {"alertname": "ShopErrors", "service": "shop", "severity": "page"}
        assert alert["annotations"] == {"summary": "shop logged 7 errors"}
        assert alert["generatorURL"].startswith("http://sr.example/graph?g0.expr=")

        recorded = {
            s.labels["service"]: float(s.values[-1])
            for s in storage.select(
                [Matcher(MatchType.EQUAL, "__name__", "service:log_lines:count1m")],
                0,
                ts_ms + 1,
            )
        }
        assert recorded == {"shop": 10.0, "cart": 2.0}
        # As in Prometheus, ALERTS series start once alert state has been restored.
        ruler.manager.restore_for_state(group, ts_ms)
        assert ruler.manager.eval_group(group, ts_ms + 30_000)
        alerts_series = list(
            storage.select([Matcher(MatchType.EQUAL, "__name__", "ALERTS")], 0, ts_ms + 30_001)
        )
        assert [s.labels["alertstate"] for s in alerts_series] == ["firing"]

        shape = loki_rule_groups(ruler.manager)
        assert list(shape) == [str(rules)]
        assert yaml.safe_load(ruler.rules_yaml()) == shape
        (group_json,) = shape[str(rules)]
        assert group_json["name"] == "shop-logs" and group_json["interval"] == "30s"
        assert group_json["rules"][0]["alert"] == "ShopErrors"
        assert group_json["rules"][0]["labels"] == {"severity": "page"}
        assert group_json["rules"][1] == {
            "record": "service:log_lines:count1m",
            "expr": 'sum by (service) (count_over_time({service=~".+"}[1m]))',
        }
        api = ruler.manager.rules_api()
        assert api["groups"][0]["rules"][0]["state"] == "firing"

        # Reload through the service: a bad file is refused before anything changes ...
        rules.write_text("groups:\n- name: g\n  rules:\n  - record: x\n    expr: '{a=\"b\"}'\n")
        with pytest.raises(ValueError, match="log query"):
            service.apply_config(config)
        assert ruler.manager.groups == {group.key: group}
        # ... and a good one replaces the groups.
        rules.write_text(
            'groups:\n- name: g\n  rules:\n  - record: x\n    expr: count_over_time({a="b"}[1m])\n'
        )
        service.apply_config(config)
        assert [g.name for g in ruler.manager.groups.values()] == ["g"]
    finally:
        await service.stop()
    assert not ruler.manager._runs  # stopping the service stopped the ruler


async def test_bad_rule_file_at_start(tmp_path: Path) -> None:
    (tmp_path / "r.yml").write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up\n")
    config = LogsConfig.model_validate({"ruler": {"rule_files": ["r.yml"]}})
    service = LogService(config, tmp_path / "logs", wal_fsync="never")
    storage = MemoryStorage()
    ruler = LogRuler.create(
        service,
        engine=Engine(),
        querier_factory=lambda: storage,
        appender=MemoryStorageAppender(storage),
        notifier=None,
        base_dir=tmp_path,
    )
    with pytest.raises(RuleFileError):
        await ruler.start()
    assert Labels({"a": "b"})["a"] == "b"
