"""Plan arithmetic, the arrival schedule, YAML plans and k6 threshold parsing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from signalroom.loadtest.plan import (
    LoadPlan,
    PlanError,
    Stage,
    load_plan_file,
    parse_seconds,
    parse_threshold,
    parse_threshold_option,
    parse_thresholds,
    ramp_plan,
)

pytestmark = pytest.mark.unit

URL = "http://127.0.0.1:9/"


def test_ramp_plan_stages_and_totals() -> None:
    plan = ramp_plan(URL, baseline_rps=10, multiplier=5, ramp=20, hold=30, ramp_down=10)
    assert plan.start_rate == 10
    assert plan.stages == (Stage(20, 50), Stage(30, 50), Stage(10, 10))
    assert plan.duration == 60
    assert plan.peak_rate == 50
    # Trapezoids: (10+50)/2*20 + 50*30 + (50+10)/2*10.
    assert plan.expected_requests == pytest.approx(600 + 1500 + 300)
    assert plan.rate_at(0) == 10
    assert plan.rate_at(10) == pytest.approx(30)
    assert plan.rate_at(35) == 50
    assert plan.rate_at(55) == pytest.approx(30)
    assert plan.rate_at(61) == 0


def test_ramp_down_defaults_to_ramp_and_warmup_comes_first() -> None:
    plan = ramp_plan(URL, baseline_rps=2, multiplier=3, ramp=4, hold=1, warmup=5)
    assert plan.stages == (Stage(5, 2), Stage(4, 6), Stage(1, 6), Stage(4, 2))
    assert ramp_plan(URL, baseline_rps=2, multiplier=3, ramp=4, hold=1, ramp_down=0).stages == (
        Stage(4, 6),
        Stage(1, 6),
    )


def test_constant_rate_arrivals_are_evenly_spaced() -> None:
    plan = LoadPlan(URL, stages=(Stage(2, 4),), start_rate=4)
    np.testing.assert_allclose(plan.arrival_offsets(), np.arange(8) / 4)


def test_ramp_arrivals_follow_the_integral() -> None:
    plan = ramp_plan(URL, baseline_rps=10, multiplier=4, ramp=10, hold=5, ramp_down=5)
    offsets = plan.arrival_offsets()
    assert len(offsets) == round(plan.expected_requests)
    assert np.all(np.diff(offsets) >= 0)
    assert offsets[0] == 0 and offsets[-1] <= plan.duration
    # Arrivals per whole second equal the planned requests in that second (±1 for rounding).
    per_second = np.bincount(offsets.astype(int), minlength=int(plan.duration))
    edges = np.arange(int(plan.duration) + 1, dtype=np.float64)
    planned = np.diff(plan.cumulative(edges))
    np.testing.assert_allclose(per_second[: len(planned)], planned, atol=1.0)
    # Request k starts when the cumulative count reaches k.
    np.testing.assert_allclose(plan.cumulative(offsets), np.arange(len(offsets)), atol=1e-6)


def test_ramp_from_zero_and_zero_rate_stages() -> None:
    plan = LoadPlan(URL, stages=(Stage(2, 0), Stage(4, 8)), start_rate=0)
    offsets = plan.arrival_offsets()
    assert len(offsets) == 16
    assert offsets.min() >= 2.0  # nothing during the idle stage
    np.testing.assert_allclose(plan.cumulative(offsets), np.arange(16), atol=1e-6)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stages": ()}, "at least one stage"),
        ({"stages": (Stage(0, 5),)}, "zero seconds"),
        ({"stages": (Stage(1, -1),)}, ">= 0"),
        ({"stages": (Stage(1, 1),), "max_in_flight": 0}, "max_in_flight"),
        ({"stages": (Stage(10_000, 1_000),)}, "more than the limit"),
    ],
)
def test_bad_plans_are_refused(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(PlanError, match=message):
        LoadPlan(URL, **kwargs)  # type: ignore[arg-type]


def test_parse_seconds() -> None:
    assert parse_seconds("1m30s") == 90
    assert parse_seconds("500ms") == 0.5
    assert parse_seconds("2.5") == 2.5
    assert parse_seconds(3) == 3
    with pytest.raises(PlanError):
        parse_seconds("soon")
    with pytest.raises(PlanError):
        parse_seconds(-1)


def test_threshold_parsing_and_evaluation() -> None:
    p95 = parse_threshold("http_req_duration", "p(95)<500")
    assert (p95.aggregate, p95.percentile, p95.op, p95.value) == ("p", 95.0, "<", 500.0)
    assert p95.passes(499.9) and not p95.passes(500) and not p95.passes(800)
    assert str(p95) == "http_req_duration: p(95)<500"
    failed = parse_threshold("http_req_failed", " rate < 0.01 ")
    assert failed.passes(0.005) and not failed.passes(0.05)
    p999 = parse_threshold_option("http_req_duration:p(99.9)<=1e3")
    assert p999.percentile == 99.9 and p999.passes(1000)
    assert parse_threshold("http_reqs", "count>=100").passes(100)


@pytest.mark.parametrize(
    ("metric", "expression"),
    [
        ("http_req_duration", "p95<500"),
        ("http_req_duration", "rate<0.1"),
        ("http_req_failed", "p(95)<1"),
        ("cpu", "avg<1"),
        ("http_req_duration", "p(101)<5"),
        ("http_req_duration", "avg<"),
    ],
)
def test_bad_thresholds_are_refused(metric: str, expression: str) -> None:
    with pytest.raises(PlanError):
        parse_threshold(metric, expression)


def test_k6_thresholds_mapping() -> None:
    parsed = parse_thresholds(
        {
            "http_req_duration": ["p(95)<500", "p(99)<1500"],
            "http_req_failed": {"threshold": "rate<0.01", "abortOnFail": True},
        }
    )
    assert [str(t) for t in parsed] == [
        "http_req_duration: p(95)<500",
        "http_req_duration: p(99)<1500",
        "http_req_failed: rate<0.01",
    ]


def test_plan_file_k6_like(tmp_path: Path) -> None:
    path = tmp_path / "peak.yml"
    path.write_text(
        """
url: http://localhost:8080/api/leads
startRate: 20
maxVUs: 50
timeout: 2s
stages:
  - {duration: 1m, target: 100}
  - {duration: 2m, target: 100}
  - {duration: 30s, target: 20}
thresholds:
  http_req_duration: ["p(95)<500"]
  http_req_failed: ["rate<0.01"]
""",
        encoding="utf-8",
    )
    plan = load_plan_file(path)
    assert plan.url == "http://localhost:8080/api/leads"
    assert plan.stages == (Stage(60, 100), Stage(120, 100), Stage(30, 20))
    assert (plan.start_rate, plan.max_in_flight, plan.timeout) == (20, 50, 2)
    assert [t.metric for t in plan.thresholds] == ["http_req_duration", "http_req_failed"]
    # The command line's URL and options win over the file's.
    other = load_plan_file(path, url="http://127.0.0.1:1/", max_in_flight=7)
    assert (other.url, other.max_in_flight) == ("http://127.0.0.1:1/", 7)


def test_plan_file_errors(tmp_path: Path) -> None:
    path = tmp_path / "bad.yml"
    path.write_text("stages: [{duration: 10s}]\nurl: http://localhost/\n", encoding="utf-8")
    with pytest.raises(PlanError, match="duration' and 'target"):
        load_plan_file(path)
    path.write_text("stages: [{duration: 10s, target: 5}]\n", encoding="utf-8")
    with pytest.raises(PlanError, match="no URL"):
        load_plan_file(path)
