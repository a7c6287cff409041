"""Analytics on small hand-made data whose answers are worked out by hand in the comments:
funnels (ordered, strict, unordered; conversion window; breakdown), retention (recurring and
first-time cohorts), DAU/WAU/MAU, stickiness, trends, revenue and top products."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from signalroom.events import analytics as analytics_module
from signalroom.events.analytics import AnalyticsError, FunnelStep, TrendSeries
from signalroom.events.index import EventIndex
from signalroom.events.store import EventStore
from tests.unit.events.eventdata import DAY0, rows

pytestmark = pytest.mark.unit

H = timedelta(hours=1)
D = timedelta(days=1)
STEPS = [FunnelStep("view"), FunnelStep("cart"), FunnelStep("buy")]
RANGE = {"date_from": DAY0.isoformat(), "date_to": (DAY0 + 5 * D).isoformat()}


# Every test runs twice: on DuckDB alone, and with the NumPy index (funnels, active users).
ENGINE = ["duckdb"]


@pytest.fixture(autouse=True, params=["duckdb", "index"])
def engine(request: pytest.FixtureRequest) -> str:
    ENGINE[0] = str(request.param)
    return ENGINE[0]


def Analytics(store: EventStore) -> analytics_module.Analytics:
    index = EventIndex(store) if ENGINE[0] == "index" else None
    return analytics_module.Analytics(store, index=index)


def funnel_data(store: EventStore) -> Analytics:
    store.append(
        "t",
        rows(
            [
                # u1: view -> cart -> buy, 1 h apart: converts fully
                (DAY0 + 1 * H, "view", "u1", {"source": "ads"}),
                (DAY0 + 2 * H, "cart", "u1", {}),
                (DAY0 + 3 * H, "buy", "u1", {}),
                # u2: view, buy, cart: in order only view -> cart
                (DAY0 + 1 * H, "view", "u2", {"source": "ads"}),
                (DAY0 + 2 * H, "buy", "u2", {}),
                (DAY0 + 3 * H, "cart", "u2", {}),
                # u3: cart 29 h after the view: outside a 1-day window
                (DAY0 + 1 * H, "view", "u3", {"source": "seo"}),
                (DAY0 + 30 * H, "cart", "u3", {}),
                # u4: never views
                (DAY0 + 1 * H, "cart", "u4", {}),
                # u5: converts, but a search between view and cart breaks a strict funnel
                (DAY0 + 1 * H, "view", "u5", {"source": "seo"}),
                (DAY0 + 90 * timedelta(minutes=1), "search", "u5", {}),
                (DAY0 + 2 * H, "cart", "u5", {}),
                (DAY0 + 150 * timedelta(minutes=1), "buy", "u5", {}),
                # u6: viewed before the range: does not enter
                (DAY0 - 2 * H, "view", "u6", {"source": "ads"}),
                (DAY0 + 1 * H, "cart", "u6", {}),
                (DAY0 + 2 * H, "buy", "u6", {}),
            ]
        ),
    )
    return Analytics(store)


def counts(result: dict[str, Any]) -> list[int]:
    return [s["count"] for s in result["steps"]]


def test_ordered_funnel(store: EventStore) -> None:
    analytics = funnel_data(store)
    result = analytics.funnel("t", STEPS, window_s=86_400, **RANGE)
    assert counts(result) == [4, 3, 2]  # {u1,u2,u3,u5}, {u1,u2,u5}, {u1,u5}
    first, second, third = result["steps"]
    assert second["conversion_from_previous"] == pytest.approx(0.75)
    assert third["conversion_from_first"] == pytest.approx(0.5)
    assert second["dropped_off"] == 1 and third["dropped_off"] == 1
    # view -> cart took 1 h (u1), 2 h (u2), 1 h (u5); cart -> buy 1 h (u1), 30 min (u5)
    assert second["average_time_to_convert_s"] == pytest.approx(4800)
    assert second["median_time_to_convert_s"] == pytest.approx(3600)
    assert third["average_time_to_convert_s"] == pytest.approx(2700)
    assert first["average_time_to_convert_s"] is None
    assert result["conversion_rate"] == pytest.approx(0.5)


def test_conversion_window_limits_the_funnel(store: EventStore) -> None:
    analytics = funnel_data(store)
    # with 2 days u3's cart (29 h later) counts
    assert counts(analytics.funnel("t", STEPS, window_s=2 * 86_400, **RANGE)) == [4, 4, 2]
    # with 90 minutes u2's cart (2 h later) does not, u1's and u5's (1 h) do; u5's buy is
    # exactly 90 minutes after the view (the window's end is inclusive), u1's 2 h
    assert counts(analytics.funnel("t", STEPS, window_s=90 * 60, **RANGE)) == [4, 2, 1]


def test_strict_funnel_needs_consecutive_events(store: EventStore) -> None:
    analytics = funnel_data(store)
    result = analytics.funnel("t", STEPS, order="strict", window_s=86_400, **RANGE)
    assert counts(result) == [4, 1, 1]  # only u1: u2 buys first, u3 too late, u5 searches


def test_strict_funnel_tries_every_start_like_posthog(store: EventStore) -> None:
    M = timedelta(minutes=1)
    store.append(
        "t",
        rows(
            [
                # a: the first view is broken by a search, the second converts
                (DAY0 + 1 * H, "view", "a", {}),
                (DAY0 + 1 * H + M, "search", "a", {}),
                (DAY0 + 2 * H, "view", "a", {}),
                (DAY0 + 2 * H + M, "cart", "a", {}),
                (DAY0 + 2 * H + 2 * M, "buy", "a", {}),
                # b: view, view, cart, buy: the second view starts a consecutive run
                (DAY0 + 1 * H, "view", "b", {}),
                (DAY0 + 1 * H + M, "view", "b", {}),
                (DAY0 + 1 * H + 2 * M, "cart", "b", {}),
                (DAY0 + 1 * H + 3 * M, "buy", "b", {}),
                # c: a step event out of order breaks it too: view, buy, cart
                (DAY0 + 1 * H, "view", "c", {}),
                (DAY0 + 1 * H + M, "buy", "c", {}),
                (DAY0 + 1 * H + 2 * M, "cart", "c", {}),
                # d: view -> cart, then an event of another kind before the buy
                (DAY0 + 1 * H, "view", "d", {}),
                (DAY0 + 1 * H + M, "cart", "d", {}),
                (DAY0 + 1 * H + 2 * M, "$pageview", "d", {}),
                (DAY0 + 1 * H + 3 * M, "buy", "d", {}),
                # e: enters on the range's last day, converts after the range ends (in window)
                (DAY0 + 5 * D - M, "view", "e", {}),
                (DAY0 + 5 * D, "cart", "e", {}),
                (DAY0 + 5 * D + M, "buy", "e", {}),
                # f: consecutive, but the buy comes after the window closed
                (DAY0 + 1 * H, "view", "f", {}),
                (DAY0 + 1 * H + M, "cart", "f", {}),
                (DAY0 + 1 * H + 11 * M, "buy", "f", {}),
            ]
        ),
    )
    analytics = Analytics(store)
    result = analytics.funnel("t", STEPS, order="strict", window_s=600, **RANGE)
    # views: all six; cart next: a, b, d, e, f; buy next within 10 minutes: a, b, e
    assert counts(result) == [6, 5, 3]
    # a converts in 2 min from its best start (the second view), b in 2 min, e in 2 min
    assert result["steps"][2]["average_time_to_convert_s"] == pytest.approx(120)
    # ordered starts at the first view only and lets other events in between: a's cart is an
    # hour after it; cart: b, c, d, e, f; buy after the cart: b, d, e (c's came before)
    ordered = analytics.funnel("t", STEPS, window_s=600, **RANGE)
    assert counts(ordered) == [6, 5, 3]


def test_unordered_funnel_counts_steps_in_any_order(store: EventStore) -> None:
    analytics = funnel_data(store)
    result = analytics.funnel("t", STEPS, order="unordered", window_s=86_400, **RANGE)
    # entered by any step event in the range: u1..u6 (u6 by its cart: its view was before);
    # all three steps within a day: u1, u2, u5; two: u6 (cart, buy); one: u3, u4
    assert counts(result) == [6, 4, 3]


def test_funnel_breakdown_by_the_first_steps_property(store: EventStore) -> None:
    analytics = funnel_data(store)
    result = analytics.funnel("t", STEPS, window_s=86_400, breakdown="source", **RANGE)
    by_value = {b["value"]: counts(b) for b in result["breakdown"]}
    assert by_value == {"ads": [2, 2, 1], "seo": [2, 1, 1]}
    assert counts(result) == [4, 3, 2]


def test_funnel_step_filters(store: EventStore) -> None:
    analytics = funnel_data(store)
    steps = [FunnelStep("view", {"source": "seo"}), FunnelStep("cart"), FunnelStep("buy")]
    assert counts(analytics.funnel("t", steps, window_s=86_400, **RANGE)) == [2, 1, 1]
    # a repeated step needs another event, not the same one again
    twice = [FunnelStep("view"), FunnelStep("view")]
    assert counts(analytics.funnel("t", twice, window_s=86_400, **RANGE)) == [4, 0]


def test_funnel_parameters_are_checked(store: EventStore) -> None:
    analytics = Analytics(store)
    with pytest.raises(AnalyticsError, match="at least two steps"):
        analytics.funnel("t", STEPS[:1], **RANGE)
    with pytest.raises(AnalyticsError, match="order"):
        analytics.funnel("t", STEPS, order="sideways", **RANGE)
    with pytest.raises(AnalyticsError, match="breakdown"):
        analytics.funnel("t", STEPS, breakdown="bad'name", **RANGE)
    empty = analytics.funnel("t", STEPS, **RANGE)
    assert counts(empty) == [0, 0, 0] and empty["conversion_rate"] == 0.0


def retention_data(store: EventStore) -> Analytics:
    opens = [("a", 0), ("a", 1), ("a", 3), ("b", 0), ("b", 2), ("c", -2), ("c", 1), ("c", 2)]
    store.append("t", rows([(DAY0 + day * D + 5 * H, "open", u, {}) for u, day in opens]))
    return Analytics(store)


def cohorts(result: dict[str, Any]) -> dict[str, list[int]]:
    return {c["cohort"][:10]: c["values"] for c in result["result"]}


def test_recurring_retention(store: EventStore) -> None:
    analytics = retention_data(store)
    result = analytics.retention(
        "t", target_event="open", periods=4, retention_type="recurring", **RANGE
    )
    # day 0: {a, b}; a back on day 1 and 3, b on day 2. day 1: {a, c}; c back on day 2,
    # a on day 3. day 2: {b, c}, nobody later. day 3: {a}.
    assert cohorts(result) == {
        "2024-03-04": [2, 1, 1, 1],
        "2024-03-05": [2, 1, 1, 0],
        "2024-03-06": [2, 0, 0, 0],
        "2024-03-07": [1, 0, 0, 0],
    }
    assert result["result"][0]["rates"] == [1.0, 0.5, 0.5, 0.5]


def test_first_time_retention_uses_each_users_first_ever_event(store: EventStore) -> None:
    analytics = retention_data(store)
    result = analytics.retention(
        "t", target_event="open", periods=4, retention_type="first_time", **RANGE
    )
    # c first opened two days before the range: in no cohort; a and b first on day 0
    assert cohorts(result) == {"2024-03-04": [2, 1, 1, 1]}


def test_active_users(store: EventStore) -> None:
    store.append(
        "t",
        rows(
            [
                (DAY0 + 1 * H, "open", "x", {}),
                (DAY0 + D + 1 * H, "open", "x", {}),
                (DAY0 + 2 * H, "open", "y", {}),
                (DAY0 + 3 * H, "open", "y", {}),
                (DAY0 + 2 * D + 1 * H, "open", "z", {}),
                (DAY0 + 2 * D + 2 * H, "ping", "q", {}),
                (DAY0 - 3 * D, "open", "w", {}),  # in the week of days 0-2
                (DAY0 - 10 * D, "open", "v", {}),  # in the month, not the week
                (DAY0 - 40 * D, "open", "old", {}),  # in neither
            ]
        ),
    )
    analytics = Analytics(store)
    span = {"date_from": DAY0.isoformat(), "date_to": (DAY0 + 3 * D).isoformat()}
    result = analytics.active_users("t", event="open", **span)
    assert result["labels"] == [
        "2024-03-04T00:00:00Z",
        "2024-03-05T00:00:00Z",
        "2024-03-06T00:00:00Z",
    ]
    assert result["dau"] == [2, 1, 1]
    assert result["wau"] == [3, 3, 4]
    assert result["mau"] == [4, 4, 5]
    assert result["dau_mau_ratio"] == pytest.approx([0.5, 0.25, 0.2])
    # without an event filter every event counts
    assert analytics.active_users("t", windows=["dau"], **span)["dau"] == [2, 1, 2]
    with pytest.raises(AnalyticsError, match="window"):
        analytics.active_users("t", windows=["yau"], **span)


def test_stickiness_and_trends(store: EventStore) -> None:
    store.append(
        "t",
        rows(
            [
                (DAY0 + 1 * H, "open", "x", {"n": 1}),
                (DAY0 + 2 * H, "open", "x", {"n": 2}),
                (DAY0 + D + 1 * H, "open", "x", {"n": 3}),
                (DAY0 + 1 * H, "open", "y", {"n": 4}),
                (DAY0 + 2 * D + 1 * H, "open", "z", {"n": 5}),
            ]
        ),
    )
    analytics = Analytics(store)
    span = {"date_from": DAY0.isoformat(), "date_to": (DAY0 + 3 * D).isoformat()}
    sticky = analytics.stickiness("t", event="open", **span)
    assert sticky["data"] == [2, 1, 0] and sticky["users"] == 3  # x on 2 days; y, z on 1
    trends = analytics.trends(
        "t",
        [
            TrendSeries("open"),
            TrendSeries("open", math="dau"),
            TrendSeries("open", math="sum", property="n"),
        ],
        **span,
    )
    data = [s["data"] for s in trends["result"]]
    assert data == [[3, 1, 1], [2, 1, 1], [7, 3, 5]]
    with pytest.raises(AnalyticsError, match="needs a property"):
        analytics.trends("t", [TrendSeries("open", math="sum")], **span)


def test_revenue_and_top_products(store: EventStore) -> None:
    store.append(
        "t",
        rows(
            [
                (DAY0 + 1 * H, "product_viewed", "u1", {"product_id": "p1"}),
                (DAY0 + 2 * H, "product_viewed", "u2", {"product_id": "p1"}),
                (DAY0 + 3 * H, "product_viewed", "u2", {"product_id": "p1"}),
                (DAY0 + 4 * H, "product_viewed", "u3", {"product_id": "p2"}),
                (DAY0 + 5 * H, "product_viewed", "u4", {}),
                (
                    DAY0 + 6 * H,
                    "purchase_completed",
                    "u1",
                    {"total_value": 10, "payment_method": "card", "product_id": "p1"},
                ),
                (
                    DAY0 + D + 6 * H,
                    "purchase_completed",
                    "u2",
                    {"total_value": 30, "payment_method": "card", "product_ids": ["p1", "p2"]},
                ),
                (
                    DAY0 + D + 7 * H,
                    "purchase_completed",
                    "u3",
                    {"total_value": 20, "payment_method": "paypal"},
                ),
            ]
        ),
    )
    analytics = Analytics(store)
    span = {"date_from": DAY0.isoformat(), "date_to": (DAY0 + 2 * D).isoformat()}
    revenue = analytics.revenue("t", visit_event="product_viewed", **span)
    assert revenue["total_revenue"] == 60 and revenue["orders"] == 3
    assert revenue["average_order_value"] == 20
    assert (revenue["buyers"], revenue["visitors"]) == (3, 4)
    assert revenue["conversion_rate"] == 0.75
    assert [(g["value"], g["revenue"], g["orders"]) for g in revenue["groups"]] == [
        ("card", 40, 2),
        ("paypal", 20, 1),
    ]
    assert revenue["data"] == [10, 50]

    top = analytics.top_products("t", **span)
    assert top["by_views"] == [
        {"product": "p1", "views": 3, "viewers": 2},
        {"product": "p2", "views": 1, "viewers": 1},
    ]
    # the two-product order splits its 30 evenly; the order naming no product is left out
    assert top["by_revenue"] == [
        {"product": "p1", "revenue": 25.0, "purchases": 2},
        {"product": "p2", "revenue": 15.0, "purchases": 1},
    ]


def test_tenants_do_not_see_each_other(store: EventStore) -> None:
    store.append("a", rows([(DAY0 + H, "open", "x", {})]))
    analytics = Analytics(store)
    span = {"date_from": DAY0.isoformat(), "date_to": (DAY0 + D).isoformat()}
    assert analytics.active_users("a", windows=["dau"], **span)["dau"] == [1]
    assert analytics.active_users("b", windows=["dau"], **span)["dau"] == [0]
