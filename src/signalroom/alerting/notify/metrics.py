"""Alertmanager's own metric names, so existing dashboards work unchanged."""

from __future__ import annotations

import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from prometheus_client import REGISTRY, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["METRICS", "register_state_source"]

INTEGRATIONS = ("email", "msteams", "pagerduty", "slack", "webhook")


@dataclass(frozen=True)
class _Metrics:
    notifications: Counter
    failed: Counter
    latency: Histogram
    received: Counter
    invalid: Counter


def _build() -> _Metrics:
    m = _Metrics(
        notifications=Counter(
            "alertmanager_notifications",
            "The total number of attempted notifications.",
            ["integration"],
        ),
        failed=Counter(
            "alertmanager_notifications_failed",
            "The total number of failed notifications.",
            ["integration", "reason"],
        ),
        latency=Histogram(
            "alertmanager_notification_latency_seconds",
            "The latency of notifications in seconds.",
            ["integration"],
            buckets=(1, 5, 10, 15, 20),
        ),
        received=Counter(
            "alertmanager_alerts_received",
            "The total number of received alerts.",
            ["status"],
        ),
        invalid=Counter(
            "alertmanager_alerts_invalid", "The total number of received alerts that were invalid."
        ),
    )
    for name in INTEGRATIONS:  # present from the start, as in Alertmanager
        m.notifications.labels(name)
        m.latency.labels(name)
    return m


METRICS = _build()

# Gauges computed at scrape time from every running AlertManager.
StateSource = Callable[[], tuple[dict[str, int], dict[str, int]]]
_SOURCES: weakref.WeakSet[object] = weakref.WeakSet()


def register_state_source(owner: object) -> None:
    """``owner.metric_states()`` returns (alerts by state, silences by state)."""
    _SOURCES.add(owner)


class _StateCollector(Collector):
    def collect(self) -> Iterator[GaugeMetricFamily]:
        alerts = {"active": 0, "suppressed": 0, "unprocessed": 0}
        silences = {"active": 0, "pending": 0, "expired": 0}
        for owner in list(_SOURCES):
            a, s = owner.metric_states()  # type: ignore[attr-defined]
            for k, v in a.items():
                alerts[k] = alerts.get(k, 0) + v
            for k, v in s.items():
                silences[k] = silences.get(k, 0) + v
        ga = GaugeMetricFamily("alertmanager_alerts", "How many alerts by state.", labels=["state"])
        for k, v in alerts.items():
            ga.add_metric([k], v)
        yield ga
        gs = GaugeMetricFamily(
            "alertmanager_silences", "How many silences by state.", labels=["state"]
        )
        for k, v in silences.items():
            gs.add_metric([k], v)
        yield gs

    def describe(self) -> Iterator[GaugeMetricFamily]:
        return iter(())


REGISTRY.register(_StateCollector())
