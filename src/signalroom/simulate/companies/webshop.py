"""SIMONE web shop (seed 003): HTTP golden signals behind a gateway, web vitals (real-user
reports to ``/api/rum``), logs and traces across frontend -> backend -> payment -> database,
and the eight business events with a plausible funnel (product_viewed -> add_to_cart ->
checkout_started -> purchase_completed)."""

from __future__ import annotations

from typing import Any

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from signalroom.simulate.companies import LogLine, Signals, Span, Tick, hex_id, iso

#: Probability of reaching each funnel step from the previous one in normal operation.
FUNNEL_STEPS: tuple[tuple[str, float], ...] = (
    ("product_viewed", 1.0),
    ("add_to_cart", 0.35),
    ("checkout_started", 0.6),
    ("purchase_completed", 0.8),
)
#: The end-to-end conversion the demo is configured for (product_viewed -> purchase_completed).
CONFIGURED_CONVERSION = float(np.prod([p for _, p in FUNNEL_STEPS]))

# (service, method, route, share of traffic, median latency s, baseline 5xx probability)
ROUTES: tuple[tuple[str, str, str, float, float, float], ...] = (
    ("frontend", "GET", "/", 0.22, 0.08, 0.002),
    ("frontend", "GET", "/product/:id", 0.25, 0.12, 0.002),
    ("frontend", "GET", "/cart", 0.06, 0.09, 0.002),
    ("frontend", "GET", "/checkout", 0.04, 0.15, 0.003),
    ("backend", "GET", "/api/products", 0.25, 0.05, 0.003),
    ("backend", "POST", "/api/cart", 0.06, 0.07, 0.003),
    ("backend", "POST", "/api/checkout", 0.06, 0.25, 0.005),
    ("payment", "POST", "/charge", 0.06, 0.35, 0.005),
)
_SHARES = np.array([r[3] for r in ROUTES]) / sum(r[3] for r in ROUTES)
_CHECKOUT = np.array([r[2] in ("/checkout", "/api/checkout", "/charge") for r in ROUTES])
_BACKEND = np.array([r[0] == "backend" for r in ROUTES])
_BUCKETS = (0.025, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Pages reporting web vitals, with their median LCP (ms) in normal operation.
_PAGES = (("/", 1200.0), ("/product/:id", 1500.0), ("/checkout", 1700.0))
_CATEGORIES = ("vegetables", "fruit", "dairy", "bakery", "drinks")


class WebShop:
    """The web shop; metrics for the scrape target live in ``registry``."""

    name = "webshop"

    def __init__(self, rng: np.random.Generator, registry: CollectorRegistry) -> None:
        self.rng = rng
        self.requests = Counter(
            "http_requests", "HTTP requests through the gateway.",
            ["service", "method", "route", "status"], registry=registry,
        )  # fmt: skip
        self.latency = Histogram(
            "http_request_duration_seconds", "HTTP request latency.",
            ["service", "route"], buckets=_BUCKETS, registry=registry,
        )  # fmt: skip
        self.pg_up = Gauge("pg_up", "PostgreSQL reachable.", registry=registry)
        self.memory = Gauge(
            "container_memory_usage_bytes", "Container memory.", ["container"], registry=registry
        )
        self.memory_limit = Gauge(
            "container_spec_memory_limit_bytes", "Container memory limit.", ["container"],
            registry=registry,
        )  # fmt: skip
        for container in ("frontend", "backend", "payment"):
            self.memory_limit.labels(container).set(512 * 2**20)
        self.pg_up.set(1)
        self.users = 0
        self.page_views = 0
        self.orders = 0
        self.funnel_counts = dict.fromkeys((s for s, _ in FUNNEL_STEPS), 0)

    # ------------------------------------------------------------------ golden signals

    def _web_vitals(self, tick: Tick, out: Signals) -> None:
        """What the shop's pages report through the web-vitals library: one report per vital
        and page view, slower pages while the backend is slow."""
        rng = self.rng
        slow = 2.5 if "latency_spike" in tick.active else 1.0
        for route, lcp_median in _PAGES:
            for _ in range(int(rng.poisson(2 * tick.real_seconds))):
                self.page_views += 1
                page = route.replace(":id", str(int(rng.integers(1, 400))))
                device = "mobile" if rng.random() < 0.6 else "desktop"
                ttfb = float(rng.lognormal(np.log(250 * slow), 0.4))
                values = {
                    "TTFB": ttfb,
                    "FCP": ttfb + float(rng.lognormal(np.log(700), 0.35)),
                    "LCP": float(rng.lognormal(np.log(lcp_median * slow), 0.35)),
                    "INP": float(rng.lognormal(np.log(120 * slow), 0.5)),
                    "CLS": round(float(rng.exponential(0.05)), 4),
                }
                for name, value in values.items():
                    out.rum.append(
                        {"name": name, "value": round(value, 2),
                         "id": f"v4-{self.page_views}-{name}", "navigationType": "navigate",
                         "route": route, "page": page, "device": device}
                    )  # fmt: skip

    def _http(self, tick: Tick) -> None:
        rng = self.rng
        payment_down = "payment_failures" in tick.active
        slow = "latency_spike" in tick.active
        n = int(rng.poisson(40 * tick.load * tick.real_seconds))
        per_route = rng.multinomial(n, _SHARES)
        error_p = np.array([r[5] for r in ROUTES])
        if payment_down:
            error_p = np.where(_CHECKOUT, 0.9, error_p)
        errors = rng.binomial(per_route, error_p)
        client_errors = rng.binomial(per_route - errors, 0.02)
        medians = np.array([r[4] for r in ROUTES]) * np.where(slow & _BACKEND, 8.0, 1.0)
        for i, (service, method, route, *_rest) in enumerate(ROUTES):
            ok = int(per_route[i] - errors[i] - client_errors[i])
            for status, count in (("200", ok), ("500", errors[i]), ("404", client_errors[i])):
                if count:
                    self.requests.labels(service, method, route, status).inc(int(count))
            if per_route[i]:
                observe = self.latency.labels(service, route).observe
                for seconds in rng.lognormal(np.log(medians[i]), 0.5, int(per_route[i])):
                    observe(float(seconds))
        for container, base in (("frontend", 180), ("backend", 260), ("payment", 120)):
            self.memory.labels(container).set(float(base * 2**20 * rng.uniform(0.95, 1.05)))

    # ------------------------------------------------------------------ traces and logs

    def _trace(self, tick: Tick, out: Signals, start_ns: int, order_id: str, failed: bool) -> str:
        rng = self.rng
        trace_id = hex_id(rng, 16)
        slow = 8.0 if "latency_spike" in tick.active else 1.0
        db_ns = int(rng.lognormal(np.log(8e6), 0.4))
        pay_ns = int(rng.lognormal(np.log(180e6), 0.3)) + db_ns
        back_ns = int(rng.lognormal(np.log(40e6 * slow), 0.3)) + pay_ns + db_ns
        front_ns = back_ns + int(rng.lognormal(np.log(20e6), 0.3))
        ids = [hex_id(rng, 8) for _ in range(5)]
        spans = [
            Span(trace_id, ids[0], None, "frontend", "GET /checkout", start_ns,
                 start_ns + front_ns, failed, {"http.status_code": 502 if failed else 200}),
            Span(trace_id, ids[1], ids[0], "backend", "POST /api/checkout", start_ns + 5_000_000,
                 start_ns + 5_000_000 + back_ns, failed, {"order.id": order_id}),
            Span(trace_id, ids[2], ids[1], "database", "SELECT cart_items",
                 start_ns + 6_000_000, start_ns + 6_000_000 + db_ns, False,
                 {"db.system": "postgresql"}),
            Span(trace_id, ids[3], ids[1], "payment", "POST /charge",
                 start_ns + 7_000_000 + db_ns, start_ns + 7_000_000 + db_ns + pay_ns, failed,
                 {"payment.method": "stripe_card"}),
            Span(trace_id, ids[4], ids[3], "database", "INSERT payments",
                 start_ns + 8_000_000 + db_ns, start_ns + 8_000_000 + 2 * db_ns, False,
                 {"db.system": "postgresql"}),
        ]  # fmt: skip
        out.spans += spans
        stream = {"app": "simone", "env": "demo"}
        out.logs.append(
            LogLine({**stream, "service": "backend", "level": "info"}, start_ns + 5_100_000,
                    f'{{"level":"info","msg":"checkout started","order_id":"{order_id}"}}',
                    trace_id, ids[1])
        )  # fmt: skip
        if failed:
            out.logs.append(
                LogLine({**stream, "service": "payment", "level": "error"}, spans[3].end_ns,
                        f'{{"level":"error","msg":"payment declined by provider",'
                        f'"order_id":"{order_id}","error_code":"provider_timeout"}}',
                        trace_id, ids[3])
            )  # fmt: skip
        else:
            out.logs.append(
                LogLine({**stream, "service": "payment", "level": "info"}, spans[3].end_ns,
                        f'{{"level":"info","msg":"payment captured","order_id":"{order_id}"}}',
                        trace_id, ids[3])
            )  # fmt: skip
        return trace_id

    # ------------------------------------------------------------------ business events

    def _visitors(self, tick: Tick, out: Signals) -> None:
        rng = self.rng
        visitors = int(rng.poisson(6 * tick.load * tick.real_seconds))
        purchase_p = 0.3 if "payment_failures" in tick.active else FUNNEL_STEPS[3][1]
        for _ in range(visitors):
            self.users += 1
            user = f"shop-user-{self.users}"
            # the visit happened over the last few seconds, so no event is in the future
            t = tick.now_ns - int(rng.uniform(8, 12) * 1e9)
            product = f"p-{int(rng.integers(1, 400))}"
            price = round(float(rng.lognormal(np.log(12), 0.6)), 2)
            events: list[tuple[str, dict[str, Any]]] = []
            if rng.random() < 0.2:
                events.append(("user_signup", {"source": str(rng.choice(["organic", "paid"]))}))
            category = str(rng.choice(_CATEGORIES))
            events.append(
                ("product_viewed", {"product_id": product, "category": category, "price": price})
            )
            if rng.random() < FUNNEL_STEPS[1][1]:
                quantity = int(rng.integers(1, 4))
                events.append(
                    ("add_to_cart", {"product_id": product, "quantity": quantity, "price": price})
                )
                if rng.random() < FUNNEL_STEPS[2][1]:
                    value = round(price * quantity, 2)
                    events.append(
                        ("checkout_started", {"cart_value": value, "item_count": quantity})
                    )
                    self.orders += 1
                    order = f"o-{self.orders}"
                    failed = bool(rng.random() >= purchase_p)
                    trace_id = self._trace(tick, out, t + 6_000_000_000, order, failed)
                    if failed:
                        events.append(
                            ("payment_failed", {"order_id": order, "error_code": "provider_timeout",
                                                "retry_count": 0, "trace_id": trace_id})
                        )  # fmt: skip
                    else:
                        events.append(
                            ("purchase_completed", {"order_id": order, "total_value": value,
                                                    "items": quantity,
                                                    "payment_method": "stripe_card",
                                                    "trace_id": trace_id})
                        )  # fmt: skip
                        if rng.random() < 0.03:
                            events.append(
                                ("refund_requested", {"order_id": order, "amount": value})
                            )
            if rng.random() < 0.01:
                events.append(
                    ("customer_support_ticket", {"ticket_id": f"t-{self.users}",
                                                 "category": "delivery", "priority": "normal"})
                )  # fmt: skip
            for k, (name, props) in enumerate(events):
                if name in self.funnel_counts:
                    self.funnel_counts[name] += 1
                out.posthog_events.append(
                    {"event": name, "distinct_id": user,
                     "properties": {**props, "$current_url": "https://shop.simone.example/"},
                     "timestamp": iso(t + k * 2_000_000_000)}
                )  # fmt: skip

    def tick(self, tick: Tick) -> Signals:
        out = Signals()
        self._http(tick)
        self._web_vitals(tick, out)
        self._visitors(tick, out)
        return out
