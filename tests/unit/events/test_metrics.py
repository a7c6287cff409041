"""Event metrics: counters whose labels come from event properties, ``where`` filters,
counter values, histogram buckets (cumulative, ``le`` inclusive) and config validation."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from signalroom.events.config import EventMetric, EventsConfig
from signalroom.events.metrics import EventMetrics

pytestmark = pytest.mark.unit


def as_dict(metrics: EventMetrics, tenant: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(lb.to_dict().items())): v for lb, v in metrics.series(tenant)}


def test_counter_labels_map_properties_and_where_filters() -> None:
    metrics = EventMetrics(
        [
            EventMetric(
                name="samples_total",
                events=["sample_request"],
                labels={"type": "product_type", "urgent": "urgent"},
            ),
            EventMetric(
                name="samples_ok_total",
                events=["sample_request"],
                where={"outcome": "success"},
                labels={"type": "product_type"},
            ),
        ]
    )
    metrics.observe(
        "acme",
        [
            ("sample_request", {"product_type": "fish", "urgent": True, "outcome": "success"}),
            ("sample_request", {"product_type": "fish", "urgent": True, "outcome": "failed"}),
            ("sample_request", {"product_type": "meat", "outcome": "success"}),
            ("other_event", {"product_type": "fish"}),
        ],
    )
    metrics.observe("beta", [("sample_request", {"product_type": 3.0})])
    assert as_dict(metrics, "acme") == {
        (("__name__", "samples_total"), ("type", "fish"), ("urgent", "true")): 2.0,
        # a missing property gives an empty label value, i.e. no label (as in Prometheus)
        (("__name__", "samples_total"), ("type", "meat")): 1.0,
        (("__name__", "samples_ok_total"), ("type", "fish")): 1.0,
        (("__name__", "samples_ok_total"), ("type", "meat")): 1.0,
    }
    # tenants are kept apart; a whole float is written as an integer label value
    assert as_dict(metrics, "beta") == {(("__name__", "samples_total"), ("type", "3")): 1.0}
    assert metrics.tenants() == ["acme", "beta"]


def test_counter_with_value_adds_the_property_and_skips_non_numbers() -> None:
    metrics = EventMetrics([EventMetric(name="revenue_total", events=["purchase"], value="amount")])
    metrics.observe(
        "t",
        [
            ("purchase", {"amount": 10}),
            ("purchase", {"amount": 2.5}),
            ("purchase", {"amount": "7"}),
            ("purchase", {"amount": True}),
            ("purchase", {}),
        ],
    )
    assert as_dict(metrics, "t") == {(("__name__", "revenue_total"),): 12.5}


def test_histogram_buckets_are_cumulative_with_inclusive_upper_bounds() -> None:
    metrics = EventMetrics(
        [
            EventMetric(
                name="sla_seconds",
                type="histogram",
                events=["responded"],
                value="seconds",
                buckets=[1, 5],
                labels={"tier": "tier"},
            )
        ]
    )
    values = [0.5, 1, 3, 10, 5]
    metrics.observe("t", [("responded", {"seconds": v, "tier": "a"}) for v in values])
    metrics.observe("t", [("responded", {"seconds": "slow", "tier": "a"})])
    series = as_dict(metrics, "t")

    def bucket(le: str) -> tuple[tuple[str, str], ...]:
        return (("__name__", "sla_seconds_bucket"), ("le", le), ("tier", "a"))

    assert series == {
        bucket("1"): 2.0,
        bucket("5"): 4.0,
        bucket("+Inf"): 5.0,
        (("__name__", "sla_seconds_count"), ("tier", "a")): 5.0,
        (("__name__", "sla_seconds_sum"), ("tier", "a")): 19.5,
    }


def test_replacing_rules_drops_series_of_removed_metrics() -> None:
    first = EventMetric(name="a_total", events=["x"])
    metrics = EventMetrics([first, EventMetric(name="b_total", events=["x"])])
    metrics.observe("t", [("x", {})])
    metrics.set_rules([first])
    assert as_dict(metrics, "t") == {(("__name__", "a_total"),): 1.0}
    assert not metrics.wants("y") and metrics.wants("x")


def test_metric_config_is_validated() -> None:
    with pytest.raises(ValidationError, match="invalid metric name"):
        EventMetric(name="bad-name", events=["x"])
    with pytest.raises(ValidationError, match="invalid label name"):
        EventMetric(name="a", events=["x"], labels={"tenant": "t"})
    with pytest.raises(ValidationError, match="strictly increasing"):
        EventMetric(name="a", type="histogram", events=["x"], value="v", buckets=[5, 1])
    with pytest.raises(ValidationError, match="needs 'value'"):
        EventMetric(name="a", type="histogram", events=["x"])
    with pytest.raises(ValidationError, match="unique"):
        EventsConfig(metrics=[EventMetric(name="a", events=["x"])] * 2)
    # the seed's KPI metrics are there by default
    assert "sample_request_total" in {m.name for m in EventsConfig().metrics}
