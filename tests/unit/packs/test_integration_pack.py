"""The integration-layer pack (seed 001): registry, verbatim rules and their unit tests in
signalroom and promtool, dashboards (valid PromQL over the catalogued metrics, evaluated over
the real store), runbooks, and the SettingsSyncJobFailure recovery wired to the alert manager."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from signalroom.alerting.alerts import Alert
from signalroom.alerting.escalation_config import parse_extensions
from signalroom.alerting.recovery import RecoveryRunner, promql_verifier
from signalroom.alerting.runbooks import RunbookLibrary
from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.packs import available_packs, load_pack
from signalroom.packs.integration import metric_names
from signalroom.promql import ast
from signalroom.promql.engine import Engine
from signalroom.rules.unittest import run_rule_tests
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions

pytestmark = pytest.mark.unit

PACK = load_pack("integration")
SEED_RULES = Path(__file__).resolve().parents[2] / "rules" / "seeds" / "001_integration.rules.yml"
ALERTS = {
    "SettingsSyncJobFailure",
    "GatewayLatencyHigh",
    "EventValidationFailureSpike",
    "CrossModuleEventFlowStopped",
}


def rules() -> list[dict[str, Any]]:
    groups = yaml.safe_load(PACK.rule_files()[0].read_text())["groups"]
    return [r for g in groups for r in g["rules"]]


def test_registry() -> None:
    assert "integration" in available_packs()
    assert [p.name for p in PACK.rule_files()] == ["integration.yml"]
    assert [p.name for p in PACK.rule_test_files()] == ["integration.test.yml"]
    assert "SettingsSyncJobFailure" in PACK.readme()


def test_rules_are_the_seed_verbatim() -> None:
    assert PACK.rule_files()[0].read_text() == SEED_RULES.read_text()
    assert {r["alert"] for r in rules()} == ALERTS


@pytest.mark.parametrize("test_file", PACK.rule_test_files(), ids=lambda p: p.name)
def test_rule_unit_tests_pass_in_signalroom(test_file: Path) -> None:
    text, code = run_rule_tests([str(test_file)])
    assert code == 0, text
    for alert in ALERTS:
        assert alert in test_file.read_text()


@pytest.mark.parametrize("test_file", PACK.rule_test_files(), ids=lambda p: p.name)
def test_rule_unit_tests_pass_in_promtool(test_file: Path) -> None:
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_can_fail(tmp_path: Path) -> None:
    for p in PACK.rule_files():
        shutil.copy(p, tmp_path / p.name)
    test = PACK.rule_test_files()[0]
    (tmp_path / test.name).write_text(
        test.read_text().replace("(0.2 errors/min)", "(0.3 errors/min)")
    )
    text, code = run_rule_tests([str(tmp_path / test.name)])
    assert code == 1 and "FAILED" in text


def test_every_alert_has_a_runbook_served_by_the_library() -> None:
    runbooks = PACK.runbooks_dir()
    assert runbooks is not None
    library = RunbookLibrary([runbooks], shipped=False)
    for rule in rules():
        name = rule["labels"]["runbook"].rsplit("/", 1)[-1]
        book = library.get(name)
        assert book is not None, name
        assert rule["alert"] in book.markdown


def _targets(dashboard: dict[str, Any]) -> list[str]:
    return [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]


def test_three_dashboards_with_valid_promql_over_known_metrics() -> None:
    dashboards = PACK.dashboards()
    assert {d["title"] for d in dashboards.values()} == {
        "FreshPlan Integration-Layer Operations",
        "FreshPlan Integration Business-KPIs",
        "FreshPlan Integration-Layer SRE",
    }
    known = metric_names() | {"up", "ALERTS"}
    used: set[str] = set()
    for name, dashboard in dashboards.items():
        ids = [p["id"] for p in dashboard["panels"]]
        assert len(ids) == len(set(ids)), name
        for expr in _targets(dashboard):
            for node in ast.walk(ast.parse(expr)):
                if isinstance(node, ast.VectorSelector) and node.name:
                    used.add(node.name)
                    assert node.name in known or node.name.startswith("process_"), (name, expr)
    # The dashboards show every golden signal the seed instruments.
    assert {"settings_sync_errors_total", "envoy_circuit_breaker_open", "kong_up"} <= used
    assert {"events_published_total", "event_validation_errors_total"} <= used


NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def _store_with_traffic(path: Path) -> TSDB:
    """15 minutes of counters: sync 9 successes and 1 error a minute, events, gateway."""
    store = TSDB(path, options=TSDBOptions()).open(background=False)
    start = NOW - timedelta(minutes=15)
    ts = [int((start + timedelta(minutes=k)).timestamp() * 1000) for k in range(16)]

    def counter(name: str, per_min: float, **labels: str) -> tuple[Labels, list[int], list[float]]:
        return Labels({METRIC_NAME: name, **labels}), ts, [per_min * k for k in range(16)]

    store.append(
        "default",
        SampleBatch.from_series(
            [
                counter("settings_sync_success_total", 9),
                counter("settings_sync_errors_total", 1, error_type="timeout"),
                counter("events_published_total", 60, event_type="sample.requested"),
                counter("events_published_total", 0, event_type="order.created"),
                counter("http_requests_total", 120, service="api-leads", status_code="200"),
                counter("http_requests_total", 12, service="api-leads", status_code="503"),
            ]
        ),
    )
    return store


def test_dashboard_queries_evaluate_over_the_store(tmp_path: Path) -> None:
    store = _store_with_traffic(tmp_path / "tsdb")
    try:
        ms = int(NOW.timestamp() * 1000)
        querier = store.querier("default", ms - 3_600_000, ms)
        engine = Engine()
        results: dict[str, Any] = {}
        for dashboard in PACK.dashboards().values():
            for panel in dashboard["panels"]:
                for target in panel["targets"]:
                    results[f"{panel['title']}/{target['refId']}"] = engine.instant_query(
                        querier, target["expr"], ms
                    ).value
        (success,) = results["Settings-Sync-Job Health/A"].samples
        assert success.value == pytest.approx(90.0)
        (errors,) = results["Gateway Error Rate (5xx)/A"].samples
        assert errors.labels.get("service") == "api-leads"
        assert errors.value == pytest.approx(12 / 132)
        b2b = {
            s.labels.get("event_type"): s.value for s in results["B2B-Food-Domain Events/A"].samples
        }
        assert b2b == {"sample.requested": pytest.approx(1.0)}
    finally:
        store.close()


def _recovery_config(script: Path, health: str, sync: str) -> dict[str, Any]:
    section = yaml.safe_load((PACK.directory / "recovery" / "recovery.yml").read_text())
    recovery = section["alerting"]["escalation"]["recovery"]
    recovery["command_allowlist"] = [str(script)]
    command = recovery["rules"][0]["command"]
    command["argv"][0] = str(script)
    command["env"] = {"SETTINGS_REGISTRY_HEALTH_URL": health, "SETTINGS_SYNC_COMMAND": sync}
    return dict(section["alerting"])


def test_recovery_snippet_is_valid_and_matches_the_alert() -> None:
    section = yaml.safe_load((PACK.directory / "recovery" / "recovery.yml").read_text())
    ext = parse_extensions(section["alerting"])
    rule = ext.escalation.recovery.rules[0]
    assert rule.command is not None and rule.verify is not None
    assert rule.command.argv[0] in ext.escalation.recovery.command_allowlist
    runner = RecoveryRunner(ext.escalation.recovery)
    seed_labels = {k: str(v) for k, v in rules()[0]["labels"].items()}
    firing = Alert(labels={"alertname": "SettingsSyncJobFailure", **seed_labels})
    assert runner.match([firing]) is rule
    assert runner.match([Alert(labels={"alertname": "GatewayLatencyHigh"})]) is None


def test_recovery_script_runs_and_verifies(tmp_path: Path) -> None:
    script = tmp_path / "settings-sync-recover"
    shutil.copy(PACK.directory / "recovery" / "settings-sync-recover", script)
    script.chmod(0o755)
    health = tmp_path / "health"
    health.write_text("ok")
    ext = parse_extensions(_recovery_config(script, health.as_uri(), "/bin/echo synced"))
    runner = RecoveryRunner(ext.escalation.recovery)
    rule = ext.escalation.recovery.rules[0]
    context = {"commonLabels": {"alertname": "SettingsSyncJobFailure"}, "alerts": []}
    result = asyncio.run(runner.run_action(rule, context))
    assert result.ok, result.output
    assert "synced --mode=recovery --max-retries=3" in result.output
    assert "completed successfully" in result.output

    health.unlink()  # the registry is down: the script refuses, people get paged
    result = asyncio.run(runner.run_action(rule, context))
    assert result.outcome == "failed" and result.exit_code == 1
    assert "Settings-Registry unhealthy" in result.output

    # The verify expression over the store: errors still rising, so not yet recovered.
    store = _store_with_traffic(tmp_path / "tsdb")
    try:

        class Clock:
            def now(self) -> datetime:
                return NOW

        verify = promql_verifier(
            Engine(),
            lambda t: store.querier("default", t - 3_600_000, t),
            Clock(),  # type: ignore[arg-type]
        )
        assert rule.verify is not None
        assert verify(rule.verify.expr) is False
        assert verify("rate(settings_sync_errors_total[5m]) > 0") is True
    finally:
        store.close()
