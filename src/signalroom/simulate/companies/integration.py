"""FreshPlan integration layer (seed 001): settings-sync job runs, Kong/Envoy-style gateway
metrics (scrape target) and cross-module event publishing (OTLP metrics)."""

from __future__ import annotations

import numpy as np
from prometheus_client import Counter, Histogram

from signalroom.simulate.companies import Counters, OtlpPoint, Signals, Tick

_UPSTREAMS = ("api-leads", "api-settings", "api-orders")
_MODULES = ("crm", "orders", "catalog")


class IntegrationLayer:
    """The gateway and the event bus between the FreshPlan modules."""

    name = "integration"

    def __init__(
        self, rng: np.random.Generator, http_requests: Counter, http_latency: Histogram
    ) -> None:
        # the gateway reports into the same HTTP families as the web shop, as service="api-*"
        self.rng = rng
        self.counters = Counters()
        self.requests = http_requests
        self.latency = http_latency

    def tick(self, tick: Tick) -> Signals:
        rng, c, out = self.rng, self.counters, Signals()
        slow = 10.0 if "latency_spike" in tick.active else 1.0
        for service in _UPSTREAMS:
            n = int(rng.poisson(5 * tick.load * tick.real_seconds))
            errors = int(rng.binomial(n, 0.002))
            self.requests.labels(service, "GET", "/", "200").inc(n - errors)
            if errors:
                self.requests.labels(service, "GET", "/", "502").inc(errors)
            observe = self.latency.labels(service, "/").observe
            for seconds in rng.lognormal(np.log(0.04 * slow), 0.4, n):
                observe(float(seconds))
        # settings sync runs every simulated 5 minutes
        runs = int(rng.poisson(tick.real_seconds * 0.5))
        c.add("settings_sync_runs_total", runs, job="settings-sync-job")
        c.add("settings_sync_errors_total", 0, job="settings-sync-job")
        stopped = "event_flow_stopped" in tick.active
        for module in _MODULES:
            n = 0 if stopped else int(rng.poisson(5 * tick.load * tick.real_seconds) + 1)
            c.add("events_published_total", n, module=module)
            c.add("event_validation_errors_total", 0 if stopped else int(rng.binomial(n, 0.001)),
                  module=module)  # fmt: skip
        for (name, labels), value in c.values.items():
            out.otlp_metrics.append(OtlpPoint(name, value, dict(labels)))
        return out
