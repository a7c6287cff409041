"""Season calendar, season_load_multiplier series and the capacity plan (hand-computed)."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from signalroom.model.labels import METRIC_NAME
from signalroom.packs.freshfoodz import metrics
from signalroom.packs.freshfoodz.capacity import Baseline, capacity_app, plan
from signalroom.packs.freshfoodz.seasons import (
    DEFAULT_CALENDAR,
    SeasonCalendar,
    season_load_multiplier,
)
from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb import TSDB, TSDBOptions

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("day", "expected"),
    [
        (date(2026, 3, 31), 1.0),
        (date(2026, 4, 1), 3.0),
        (date(2026, 6, 30), 3.0),
        (date(2026, 7, 1), 1.0),
        (date(2026, 9, 15), 4.0),
        (date(2026, 10, 1), 1.0),
        (date(2026, 11, 1), 5.0),
        (date(2026, 12, 31), 5.0),
        (date(2027, 1, 1), 1.0),
    ],
)
def test_default_multipliers(day: date, expected: float) -> None:
    assert season_load_multiplier(day) == expected


def test_instants_are_read_on_the_berlin_calendar() -> None:
    # 31 Mar 22:30 UTC is already 1 April 00:30 in Berlin (CEST): asparagus season
    assert season_load_multiplier(datetime(2026, 3, 31, 22, 30, tzinfo=UTC)) == 3.0
    assert season_load_multiplier(datetime(2026, 3, 31, 21, 30, tzinfo=UTC)) == 1.0
    with pytest.raises(ValueError, match="aware"):
        season_load_multiplier(datetime(2026, 4, 2))


def test_configurable_calendar_overlap_takes_the_highest() -> None:
    cal = SeasonCalendar.from_mapping(
        {
            "seasons": [
                {"name": "summer", "start": "06-01", "end": "08-31", "multiplier": 2},
                {
                    "name": "festival",
                    "start": "07-10",
                    "end": "07-12",
                    "multiplier": 6,
                    "milestones": {"prep": 10},
                },
            ]
        }
    )
    assert cal.multiplier(date(2026, 7, 11)) == 6
    assert cal.active(date(2026, 7, 20)).name == "summer"  # type: ignore[union-attr]
    assert cal.upcoming_milestones(date(2026, 6, 25), 10) == [
        ("festival", cal.season("festival").milestones[0], date(2026, 6, 30))
    ]
    with pytest.raises(KeyError, match="unknown season"):
        cal.season("easter")
    with pytest.raises(ValueError, match="end"):
        SeasonCalendar.from_mapping(
            [{"name": "x", "start": "05-01", "end": "04-01", "multiplier": 2}]
        )


def test_default_milestones_of_christmas() -> None:
    dates = dict((m.name, d) for m, d in DEFAULT_CALENDAR.season("christmas").milestone_dates(2026))
    assert dates["provisioning-start"] == date(2026, 10, 4)
    assert dates["war-room"] == date(2026, 10, 31)


async def test_season_multiplier_series(tmp_path: Path) -> None:
    store = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        at = datetime(2026, 9, 20, 12, tzinfo=UTC)
        assert (await metrics.write_season_multiplier(store, "default", at)).ok
        ts = int(at.timestamp() * 1000)
        got = store.querier("default", ts, ts).select(
            [Matcher(MatchType.EQUAL, METRIC_NAME, "season_load_multiplier")], ts, ts
        )
        assert [(s.labels.get("season"), float(s.values[0])) for s in got] == [("oktoberfest", 4.0)]
    finally:
        store.close()


BASELINE = [
    # hand-computed for Christmas (5x) with 20 % headroom, as of 1 Sep 2026:
    # api: 120/s * 5 * 1.2 = 720/s; 720 / 100 per instance = 7.2 -> 8 instances; 8 * 20 = 160
    #      connections; queue 720 * 30 s = 21600; provision by 1 Nov - 21 d = 11 Oct
    Baseline(
        "api", 120, 100, connections_per_instance=20, queue_buffer_seconds=30, lead_time_days=21
    ),
    # db: 40/s * 6 = 240/s; 240 / 80 = 3 exactly (no rounding up to 4); 3 * 50 = 150; queue 0;
    #     min_instances 4 wins; by 1 Nov - 28 d = 4 Oct
    Baseline("db", 40, 80, connections_per_instance=50, min_instances=4, lead_time_days=28),
    # worker: 10/s * 6 = 60/s; 60 / 6 = 10 instances (decimal, not 10.000000000000002 -> 11)
    Baseline("worker", 10, 6, connections_per_instance=2, queue_buffer_seconds=0.5),
]


def test_capacity_plan_hand_computed() -> None:
    p = plan(BASELINE, DEFAULT_CALENDAR.season("christmas"), 0.2, today=date(2026, 9, 1))
    assert p.season_start == date(2026, 11, 1)
    got = {c.component: c for c in p.components}
    assert (got["api"].target_load_per_second, got["api"].instances) == (720.0, 8)
    assert (got["api"].connections, got["api"].queue_capacity) == (160, 21600)
    assert got["api"].provision_by == date(2026, 10, 11)
    assert (got["db"].instances, got["db"].connections, got["db"].queue_capacity) == (4, 200, 0)
    assert (got["worker"].instances, got["worker"].connections, got["worker"].queue_capacity) == (
        10,
        20,
        30,
    )
    assert p.provisioning_starts == date(2026, 10, 4)


def test_capacity_plan_rolls_to_next_year_after_the_start() -> None:
    p = plan(BASELINE, DEFAULT_CALENDAR.season("asparagus"), 0, today=date(2026, 4, 2))
    assert p.season_start == date(2027, 4, 1)
    with pytest.raises(ValueError, match="headroom"):
        plan(BASELINE, DEFAULT_CALENDAR.season("asparagus"), -0.1)


def test_capacity_plan_cli(tmp_path: Path) -> None:
    baseline = tmp_path / "baseline.yml"
    baseline.write_text(
        "components:\n"
        "  - {component: api, load_per_second: 120, capacity_per_instance: 100,"
        " connections_per_instance: 20, queue_buffer_seconds: 30, lead_time_days: 21}\n"
    )
    app = typer.Typer()
    app.add_typer(capacity_app, name="capacity")
    runner = CliRunner()
    args = ["capacity", "plan", "-b", str(baseline), "-s", "christmas", "--headroom", "0.2"]
    result = runner.invoke(app, [*args, "--today", "2026-09-01", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["provisioning_starts"] == "2026-10-11"
    assert data["components"][0]["instances"] == 8
    text = runner.invoke(app, [*args, "--today", "2026-09-01"])
    assert "provisioning must start by 2026-10-11" in text.output
    bad = runner.invoke(app, ["capacity", "plan", "-b", str(baseline), "-s", "easter"])
    assert bad.exit_code == 2
    assert "unknown season" in bad.output


def write_traffic(data_dir: Path, now: datetime) -> None:
    """Two days of http_requests_total every 15 s: instance a at 10/s with one hour at 40/s
    (30 h ago), instance b at 5/s throughout."""
    from signalroom.model.labels import Labels
    from signalroom.tsdb import SampleBatch

    end = int(now.timestamp()) // 15 * 15
    start = end - 2 * 86_400
    peak = (end - 30 * 3600, end - 29 * 3600)
    stamps = list(range(start, end + 1, 15))
    a, total = [], 0.0
    for i, t in enumerate(stamps):
        if i:
            total += 15 * (40 if peak[0] < t <= peak[1] else 10)
        a.append(total)
    b = [5.0 * (t - start) for t in stamps]
    db = TSDB(data_dir / "metrics", options=TSDBOptions()).open(background=False)
    try:
        ms = [t * 1000 for t in stamps]
        base = {METRIC_NAME: "http_requests_total", "service": "api-leads"}
        db.append(
            "default",
            SampleBatch.from_series(
                [
                    (Labels({**base, "instance": "a"}), ms, a),
                    (Labels({**base, "instance": "b"}), ms, b),
                ]
            ),
        )
    finally:
        db.close()


def test_capacity_plan_measures_the_baseline_in_the_store(tmp_path: Path) -> None:
    # hand-computed: the peak of sum(rate(...[5m])) is 40 + 5 = 45/s (the busy hour);
    # Christmas 5x with 20 % headroom: 45 * 5 * 1.2 = 270/s; 270 / 25 per instance = 10.8 ->
    # 11 instances; 11 * 20 = 220 connections; queue 270 * 30 s = 8100; by 1 Nov - 21 d
    write_traffic(tmp_path / "data", datetime.now(UTC))
    baseline = tmp_path / "baseline.yml"
    baseline.write_text(
        "components:\n"
        "  - {component: api-leads, capacity_per_instance: 25, connections_per_instance: 20,\n"
        "     queue_buffer_seconds: 30, lead_time_days: 21,\n"
        "     load_query: 'sum(rate(http_requests_total{service=\"api-leads\"}[5m]))'}\n"
        "  - {component: worker, load_per_second: 10, capacity_per_instance: 6}\n"
    )
    app = typer.Typer()
    app.add_typer(capacity_app, name="capacity")
    runner = CliRunner()
    args = ["capacity", "plan", "-b", str(baseline), "-s", "christmas", "--headroom", "0.2",
            "--today", "2026-09-01", "--json"]  # fmt: skip
    result = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "data"), "--days", "7"])
    assert result.exit_code == 0, result.output
    got = {c["component"]: c for c in json.loads(result.output)["components"]}
    assert got["api-leads"]["target_load_per_second"] == 270.0
    assert (got["api-leads"]["instances"], got["api-leads"]["connections"]) == (11, 220)
    assert got["api-leads"]["queue_capacity"] == 8100
    assert got["api-leads"]["provision_by"] == "2026-10-11"
    assert got["worker"]["instances"] == 10  # from the file, as before
    # the busy hour is outside the last day: the peak is the plain 15/s
    short = runner.invoke(app, [*args, "--data-dir", str(tmp_path / "data"), "--days", "1"])
    assert json.loads(short.output)["components"][0]["target_load_per_second"] == 90.0
    missing = runner.invoke(app, args)
    assert missing.exit_code == 2 and "needs --url or --data-dir" in missing.output
