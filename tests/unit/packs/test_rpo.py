"""RTO/RPO per data class: the Python classification, the objective series, and the rules
(recording expressions evaluated by signalroom's PromQL over the real store agree with
``classify``); rule unit tests pass in signalroom and promtool."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.packs import load_pack
from signalroom.packs.freshfoodz import rpo
from signalroom.promql.engine import Engine
from signalroom.rules.unittest import run_rule_tests
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions

pytestmark = pytest.mark.unit

PACK = load_pack("freshfoodz")
RULES = PACK.directory / "rules" / "rpo.yml"
TESTS = PACK.directory / "rules" / "rpo.test.yml"
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def test_classify_thresholds() -> None:
    last = {
        "lead_protection": NOW - timedelta(minutes=50),  # 83 % of 1 h
        "archive": NOW - timedelta(hours=10),
    }
    got = rpo.classify(last, NOW)
    assert got["lead_protection"].state == "at_risk"
    assert got["lead_protection"].ratio == pytest.approx(50 / 60)
    assert got["archive"].state == "ok"
    assert (
        rpo.classify({"lead_protection": NOW - timedelta(minutes=48)}, NOW)["lead_protection"].state
        == "ok"
    )  # exactly 80 % is not yet at risk (the rule uses > 0.8)
    assert (
        rpo.classify({"lead_protection": NOW - timedelta(minutes=61)}, NOW)["lead_protection"].state
        == "breached"
    )
    assert rpo.classify({}, NOW)["archive"].state == "missing"


def test_objectives_from_config() -> None:
    obj = rpo.DataClassObjective.model_validate({"data_class": "audit", "rpo": "4h", "rto": "2h"})
    series = dict((str(labels), v) for labels, v in rpo.objective_series([obj]))
    assert series == {
        'backup_rpo_objective_seconds{data_class="audit"}': 14400.0,
        'backup_rto_objective_seconds{data_class="audit"}': 7200.0,
    }


def _recording_exprs() -> dict[str, str]:
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["record"]: r["expr"] for g in groups for r in g["rules"] if "record" in r}


@pytest.mark.parametrize("age_minutes", [10, 50, 70])
def test_rules_agree_with_classify(tmp_path: Path, age_minutes: int) -> None:
    """Objectives written by rpo.write_objectives plus a pushed backup timestamp: the rules'
    ratio, evaluated over the store, matches the Python classification."""
    store = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        asyncio.run(rpo.write_objectives(store, "default", NOW))
        last = NOW - timedelta(minutes=age_minutes)
        ts = int(NOW.timestamp() * 1000)
        pushed = Labels(
            {METRIC_NAME: "backup_last_success_timestamp_seconds", "data_class": "lead_protection"}
        )
        store.append("default", SampleBatch.from_series([(pushed, [ts], [last.timestamp()])]))
        exprs = _recording_exprs()
        age_expr = exprs["data_class:recovery_point_age_seconds:min"]
        ratio_expr = exprs["data_class:rpo_budget_used:ratio"].replace(
            "data_class:recovery_point_age_seconds:min", f"({age_expr})"
        )
        querier = store.querier("default", ts - 600_000, ts)
        result = Engine().instant_query(querier, ratio_expr, ts).value
        samples = {s.labels.get("data_class"): s.value for s in result.samples}  # type: ignore[union-attr]
        expected = rpo.classify({"lead_protection": last}, NOW)
        assert set(samples) == {"lead_protection"}  # archive has no recovery point
        assert samples["lead_protection"] == pytest.approx(expected["lead_protection"].ratio)
        state = expected["lead_protection"].state
        assert state == {10: "ok", 50: "at_risk", 70: "breached"}[age_minutes]
    finally:
        store.close()


def test_every_rpo_alert_is_tested_and_has_a_runbook() -> None:
    text = TESTS.read_text()
    runbooks = PACK.runbooks_dir()
    assert runbooks is not None
    for group in yaml.safe_load(RULES.read_text())["groups"]:
        for rule in group["rules"]:
            assert (rule.get("alert") or rule["record"]) in text
            if "alert" in rule:
                assert (runbooks / f"{rule['annotations']['runbook']}.md").is_file()


def test_rule_tests_pass_in_signalroom() -> None:
    text, code = run_rule_tests([str(TESTS)])
    assert code == 0, text


def test_rule_tests_pass_in_promtool() -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "test", "rules", str(TESTS)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_can_fail(tmp_path: Path) -> None:
    shutil.copy(RULES, tmp_path / RULES.name)
    (tmp_path / TESTS.name).write_text(TESTS.read_text().replace("value: 0.9", "value: 0.91"))
    text, code = run_rule_tests([str(tmp_path / TESTS.name)])
    assert code == 1 and "FAILED" in text
