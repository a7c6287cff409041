"""FinOps: cost sources (tokens, events, CUR CSV, fixed monthly, sales time CSV/JSON),
allocation, cost per lead/order, the service over the real store and PromQL engine, and the
team-budget rule in signalroom and promtool."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.packs import available_packs, load_pack
from signalroom.packs.finops import FinopsConfig, FinopsService, compute_costs, window_bounds
from signalroom.packs.finops import costs as c
from signalroom.promql.storage import Matcher, MatchType
from signalroom.rules.unittest import run_rule_tests
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions

pytestmark = pytest.mark.unit

W0 = datetime(2026, 2, 10, 10, tzinfo=UTC)
W1 = W0 + timedelta(hours=1)
PACK = load_pack("finops")

CUR_HEADER = ",".join(
    [
        "identity/LineItemId",
        "lineItem/UsageStartDate",
        "lineItem/UsageEndDate",
        "lineItem/UnblendedCost",
        "resourceTags/user:team",
        "resourceTags/user:module",
    ]
)
CUR = (
    CUR_HEADER
    + """
a,2026-02-10T00:00:00Z,2026-02-11T00:00:00Z,48,north,crm
b,2026-02-10T10:00:00Z,2026-02-10T11:00:00Z,8,,crm
c,2026-02-10T10:00:00Z,2026-02-10T11:00:00Z,1000,,other
d,2026-02-11T10:00:00Z,2026-02-11T11:00:00Z,500,,crm
"""
)
SALES_CSV = """user_id,start,end,hours
7,2026-02-10T09:30:00Z,2026-02-10T10:30:00Z,
9,2026-02-10T10:00:00Z,,2
"""
SALES_JSON = {
    "entries": [{"user_id": "8", "start": "2026-02-10T10:15:00Z", "end": "2026-02-10T10:45:00Z"}]
}


def scenario(tmp_path: Path, **extra: object) -> FinopsConfig:
    (tmp_path / "cur.csv").write_text(CUR)
    (tmp_path / "time.csv").write_text(SALES_CSV)
    (tmp_path / "time.json").write_text(json.dumps(SALES_JSON))
    return FinopsConfig.model_validate(
        {
            "ai": [{"price_per_1k_tokens": 0.5, "tokens_query": "sum by (user_id) (x)"}],
            "infrastructure_csv": [
                {"path": str(tmp_path / "cur.csv"), "filters": {"resourceTags/user:module": "crm"}}
            ],
            "fixed_monthly": [
                {"name": "crm-saas", "amount": 672},  # Feb 2026 has 672 h: 1 EUR/h
                {"name": "south-phones", "amount": 1344, "team": "south"},
            ],
            "sales_time": [
                {"path": str(tmp_path / "time.csv")},
                {"path": str(tmp_path / "time.json")},
            ],
            "teams": {"north": ["7", "8"], "south": ["9"]},
            "budgets": {"north": 30},
            **extra,
        }
    )


def items(config: FinopsConfig) -> list[c.CostItem]:
    out = c.ai_items_from_tokens(config.ai[0], {"7": 20_000, "9": 4_000})
    out += c.cur_items(config.infrastructure_csv[0], W0, W1)
    out += c.fixed_monthly_items(config.fixed_monthly, W0, W1)
    for source in config.sales_time:
        out += c.sales_time_items(source, W0, W1)
    return out


LEADS = {"7": 3.0, "8": 1.0, "9": 0.0}
ORDERS = {"7": 1.0}


def by_labels(series: list[tuple[Labels, float]]) -> dict[str, float]:
    return {str(labels): value for labels, value in series}


def test_sources_prorate_to_the_window(tmp_path: Path) -> None:
    config = scenario(tmp_path)
    cur = {i.team: i.amount for i in c.cur_items(config.infrastructure_csv[0], W0, W1)}
    assert cur == {"north": pytest.approx(2.0), None: pytest.approx(8.0)}  # c, d left out
    fixed = c.fixed_monthly_items(config.fixed_monthly, W0, W1)
    assert [(i.team, round(i.amount, 9)) for i in fixed] == [(None, 1.0), ("south", 2.0)]
    sales = {i.user_id: i.amount for s in config.sales_time for i in c.sales_time_items(s, W0, W1)}
    assert sales == {"7": 22.5, "9": 45.0, "8": 22.5}
    # A window across a month end takes each month's share by its own length.
    jan_feb = c.fixed_monthly_items(
        [c.FixedMonthlyCost(name="x", amount=744.0)],
        datetime(2026, 1, 31, 23, 30, tzinfo=UTC),
        datetime(2026, 2, 1, 0, 30, tzinfo=UTC),
    )
    assert [round(i.amount, 9) for i in jan_feb] == [0.5, round(0.5 * 744 / 672, 9)]


def test_allocation_and_cost_per_lead(tmp_path: Path) -> None:
    config = scenario(tmp_path)
    report = compute_costs(config, W1, items(config), LEADS, ORDERS)
    # 7: AI 10 + infra (north 2 x 3/4 + shared 8 x 3/4 + fixed 1 x 3/4) + sales 22.5
    assert report.user_cost("7") == pytest.approx(10 + 1.5 + 6 + 0.75 + 22.5)
    assert report.user_cost("8") == pytest.approx(0.5 + 2 + 0.25 + 22.5)
    # 9 has no leads: no share of shared costs, but all of south's (evenly: alone in it).
    assert report.user_cost("9") == pytest.approx(2 + 2 + 45)
    s = by_labels(report.series())
    key = 'finops_cost_per_lead{team="%s", time_window="1h", user_id="%s"}'
    order = 'finops_cost_per_order{team="%s", time_window="1h", user_id="%s"}'
    assert s[key % ("north", "7")] == pytest.approx(40.75 / 3)
    assert s[key % ("north", "8")] == pytest.approx(25.25)
    assert s[key % ("south", "9")] == pytest.approx(49.0)  # cost / max(0, 1)
    assert s[key % ("north", "all")] == pytest.approx(66.0 / 4)
    assert s[key % ("all", "all")] == pytest.approx(115.0 / 4)
    assert s[order % ("north", "7")] == pytest.approx(40.75)
    assert s[order % ("all", "all")] == pytest.approx(115.0)
    assert s['finops_budget_per_lead{team="north"}'] == 30
    assert s['finops_budget_per_lead{team="south"}'] == 25
    cost = 'finops_cost{cost_type="%s", team="north", time_window="1h", user_id="7"}'
    assert s[cost % "ai"] == pytest.approx(10.0)
    assert s[cost % "sales_time"] == pytest.approx(22.5)
    total = sum(v for k, v in s.items() if k.startswith("finops_cost{"))
    assert total == pytest.approx(115.0)  # allocation neither loses nor invents money


def test_events_as_ai_source(tmp_path: Path) -> None:
    source = c.AiCostSource.model_validate({"price_per_1k_tokens": 2.0, "events": {}})
    events = [
        {
            "event": "ai_completion",
            "distinct_id": "7",
            "timestamp": "2026-02-10T10:10:00Z",
            "properties": {"tokens": 1500},
        },
        {
            "event": "ai_completion",
            "distinct_id": "x",
            "timestamp": "2026-02-10T10:20:00Z",
            "properties": {"tokens": 500, "user_id": "8"},
        },
        {
            "event": "ai_completion",
            "distinct_id": "7",
            "timestamp": "2026-02-10T11:00:00Z",
            "properties": {"tokens": 99999},
        },  # next window
        {
            "event": "pageview",
            "distinct_id": "7",
            "timestamp": "2026-02-10T10:10:00Z",
            "properties": {"tokens": 99999},
        },
    ]
    got = {i.user_id: i.amount for i in c.ai_items_from_events(source, events, W0, W1)}
    assert got == {"7": 3.0, "8": 1.0}


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="exactly one of tokens_query or events"):
        c.AiCostSource.model_validate({"price_per_1k_tokens": 1.0})
    assert window_bounds(FinopsConfig(), W1 + timedelta(minutes=5)) == (W0, W1)


def _counter(name: str, user: str, per_hour: float) -> tuple[Labels, list[int], list[float]]:
    """A counter rising linearly from W0 to W1, one sample a minute."""
    ts = [int((W0 + timedelta(minutes=k)).timestamp() * 1000) for k in range(61)]
    return Labels({METRIC_NAME: name, "user_id": user}), ts, [per_hour * k / 60 for k in range(61)]


def test_service_over_store_and_promql(tmp_path: Path) -> None:
    config = scenario(
        tmp_path,
        ai=[
            {
                "price_per_1k_tokens": 0.5,
                "tokens_query": "sum by (user_id) (increase(ai_tokens_total[1h]))",
            }
        ],
    )
    store = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        store.append(
            "default",
            SampleBatch.from_series(
                [
                    _counter("ai_tokens_total", "7", 20_000),
                    _counter("ai_tokens_total", "9", 4_000),
                    _counter("lead_created_total", "7", 3),
                    _counter("lead_created_total", "8", 1),
                    _counter("order_created_total", "7", 1),
                ]
            ),
        )
        service = FinopsService(config, store)
        at = W1 + timedelta(minutes=1)

        async def run() -> None:
            for minute in range(3):  # published every minute, computed once
                result = await service.publish(at + timedelta(minutes=minute))
                assert result.ok, result.summary()

        asyncio.run(run())
        assert service.report is not None and service.report.window_end == W1
        end = int((at + timedelta(minutes=2)).timestamp() * 1000)
        matcher = Matcher(MatchType.EQUAL, METRIC_NAME, "finops_cost_per_lead")
        got = {
            (s.labels.get("user_id"), s.labels.get("team")): (len(s.values), float(s.values[-1]))
            for s in store.querier("default", 0, end).select([matcher], 0, end)
        }
        assert got[("all", "all")][0] == 3
        assert got[("all", "all")][1] == pytest.approx(115.0 / 4, rel=1e-9)
        assert got[("7", "north")][1] == pytest.approx(40.75 / 3, rel=1e-9)
    finally:
        store.close()


def test_pack_content() -> None:
    assert "finops" in available_packs()
    assert [p.name for p in PACK.rule_files()] == ["finops.yml"]
    runbooks = PACK.runbooks_dir()
    assert runbooks is not None and (runbooks / "finops-team-budget.md").is_file()
    assert "max(count, 1)" in PACK.readme()


@pytest.mark.parametrize("test_file", PACK.rule_test_files(), ids=lambda p: p.name)
def test_rule_tests_pass_in_signalroom_and_promtool(test_file: Path) -> None:
    text, code = run_rule_tests([str(test_file)])
    assert code == 0, text
    promtool = shutil.which("promtool") or "/usr/bin/promtool"
    result = subprocess.run(
        [promtool, "test", "rules", str(test_file)], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_rule_tests_can_fail(tmp_path: Path) -> None:
    rules = PACK.directory / "rules"
    shutil.copy(rules / "finops.yml", tmp_path / "finops.yml")
    text = (rules / "finops.test.yml").read_text().replace("€35", "€36")
    (tmp_path / "finops.test.yml").write_text(text)
    out, code = run_rule_tests([str(tmp_path / "finops.test.yml")])
    assert code == 1 and "FAILED" in out
