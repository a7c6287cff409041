"""Web-vitals reports: validation with clear errors, Google's thresholds as bucket bounds,
repeated ids counted once, page cardinality capped; the histograms answer PromQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from signalroom.ingest.rum import VITALS, RumError, RumHistograms, parse_reports
from signalroom.promql.engine import Engine
from signalroom.tsdb import TSDB, TSDBOptions

pytestmark = pytest.mark.unit


def body(value: object) -> bytes:
    return json.dumps(value).encode()


def test_a_web_vitals_report_becomes_one_observation_in_seconds() -> None:
    (r,) = parse_reports(
        body({"name": "LCP", "value": 2500.0, "rating": "good", "id": "v4-1", "delta": 2500,
              "navigationType": "navigate", "page": "https://shop.example/product/42?x=1#top",
              "device": "Mobile"})
    )  # fmt: skip
    assert r.vital.metric == "web_vitals_lcp_seconds"
    assert (r.value, r.page, r.rating, r.device, r.id) == (
        2.5,
        "/product/42",
        "good",
        "mobile",
        "v4-1",
    )
    # route wins over page; CLS is unitless; a missing rating follows Google's thresholds
    reports = parse_reports(
        body([{"name": "cls", "value": 0.26, "route": "/product/:id", "page": "/product/1"},
              {"name": "INP", "value": 350}, {"name": "TTFB", "value": 100}])
    )  # fmt: skip
    assert [(r.vital.metric, r.value, r.page, r.rating) for r in reports] == [
        ("web_vitals_cls", 0.26, "/product/:id", "poor"),
        ("web_vitals_inp_seconds", 0.35, "unknown", "needs-improvement"),
        ("web_vitals_ttfb_seconds", 0.1, "unknown", "good"),
    ]


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"{not json", "not JSON"),
        (body([]), "no reports"),
        (body({"name": "XYZ", "value": 1}), "name must be one of LCP, INP, CLS"),
        (body({"name": "LCP", "value": "fast"}), "value must be a finite number"),
        (body({"name": "LCP", "value": -1}), "out of range"),
        (body({"name": "LCP", "value": 1, "rating": "great"}), "rating must be one of"),
        (body([{"name": "LCP", "value": 1}, 7]), "report 1: expected an object"),
        (body({"name": "LCP", "value": 1, "page": "/a b"}), "is not a path"),
        (body({"name": "LCP", "value": 1, "device": "a phone!"}), "device"),
        (body([{"name": "LCP", "value": 1}] * 101), "at most 100"),
    ],
)
def test_bad_reports_are_400_naming_the_problem(payload: bytes, message: str) -> None:
    with pytest.raises(RumError, match=message) as info:
        parse_reports(payload)
    assert info.value.status == 400


def test_bodies_above_64_kib_are_413() -> None:
    with pytest.raises(RumError) as info:
        parse_reports(b" " * (64 * 1024 + 1))
    assert info.value.status == 413


def test_bucket_bounds_hold_googles_thresholds() -> None:
    for vital in VITALS.values():
        assert vital.good in vital.buckets and vital.poor in vital.buckets
        assert list(vital.buckets) == sorted(set(vital.buckets))


def test_histograms_repeats_and_the_page_cap(tmp_path: Path) -> None:
    hists = RumHistograms(max_pages=2)
    reports = parse_reports(
        body([{"name": "LCP", "value": v, "page": "/", "id": f"i{i}", "rating": "good"}
              for i, v in enumerate((400, 2500, 2500.001, 30000))])
    )  # fmt: skip
    batch, counted = hists.observe("default", reports, 1_000)
    assert counted == 4 and batch is not None
    # the same ids again (web-vitals re-reporting a page) count nothing
    assert hists.observe("default", reports, 2_000) == (None, 0)
    more = parse_reports(
        body([{"name": "LCP", "value": 1000, "page": p} for p in ["/a", "/b", "/c"]])
    )
    hists.observe("default", more, 3_000)

    db = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        db.append("default", batch)
        _, _ = hists.observe("default", more, 4_000)  # state keeps growing per page
        query = db.querier("default", 0, 10_000)
        engine = Engine()

        def value(expr: str) -> dict[str, float]:
            result = engine.instant_query(query, expr, 1_000).value
            samples = getattr(result, "samples", [])
            return {s.labels.get("le", ""): float(s.value) for s in samples}

        # le is "value <= bound": 2.5 s is in the 2.5 bucket, 2.500001 s in the next
        buckets = value('web_vitals_lcp_seconds_bucket{page="/"}')
        assert (buckets["0.5"], buckets["2.5"], buckets["3"], buckets["20"], buckets["+Inf"]) == (
            1,
            2,
            3,
            3,
            4,
        )
        assert value("web_vitals_lcp_seconds_count") == {"": 4}
        assert value("web_vitals_lcp_seconds_sum")[""] == pytest.approx(0.4 + 2.5 + 2.500001 + 30)
    finally:
        db.close()
    pages = {k[2] for k in hists._hists}
    assert {dict(p)["page"] for p in pages} == {"/", "/a", "other"}
