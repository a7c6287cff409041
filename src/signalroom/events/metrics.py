"""Event metrics: configured rules that turn stored events into Prometheus series, so the
seeds' business-KPI rules (``sample_request_total``, ``event_catering_sla_seconds``, ...)
run on event data; plus the pipeline's own metrics (queue depth, consumer lag, DLQ size).

Counters and histograms are cumulative from process start, like a client library's: after a
restart they begin again at 0, which ``rate()``/``increase()`` read as a counter reset.
"""

from __future__ import annotations

import bisect
import threading
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from prometheus_client import Counter, Gauge

from signalroom.events.config import EventMetric
from signalroom.model.labels import Labels

__all__ = [
    "CONSUMER_LAG",
    "DLQ_SIZE",
    "EVENTS_DEAD_LETTERED",
    "EVENTS_DUPLICATE",
    "EVENTS_RECEIVED",
    "EVENTS_STORED",
    "QUEUE_DEPTH",
    "EventMetrics",
]

EVENTS_RECEIVED = Counter(
    "signalroom_events_received_total", "Events accepted by a capture endpoint.", ["endpoint"]
)
EVENTS_STORED = Counter("signalroom_events_stored_total", "Events written to the event store.")
EVENTS_DUPLICATE = Counter(
    "signalroom_events_duplicates_total", "Events dropped because their event id was seen."
)
EVENTS_DEAD_LETTERED = Counter(
    "signalroom_events_dead_lettered_total", "Events sent to the dead-letter queue.", ["reason"]
)
QUEUE_DEPTH = Gauge("signalroom_events_queue_depth", "Events captured and not yet stored.")
CONSUMER_LAG = Gauge(
    "signalroom_events_consumer_lag_seconds", "Age of the oldest event waiting for the consumer."
)
DLQ_SIZE = Gauge("signalroom_events_dlq_size", "Events in the dead-letter queue.")
METRIC_SERIES_DROPPED = Counter(
    "signalroom_events_metric_series_dropped_total",
    "Event-metric observations dropped because the metric hit its series limit.",
    ["metric"],
)

_MAX_SERIES_PER_METRIC = 10_000


def _label_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)[:256]


class _Rule:
    __slots__ = ("buckets", "config", "label_names", "label_props", "where")

    def __init__(self, config: EventMetric) -> None:
        self.config = config
        self.label_names = tuple(config.labels)
        self.label_props = tuple(config.labels.values())
        self.where = tuple(config.where.items())
        self.buckets = list(config.buckets)


class EventMetrics:
    """Cumulative series derived from events, per tenant."""

    def __init__(self, rules: Sequence[EventMetric]) -> None:
        self._lock = threading.Lock()
        self._by_event: dict[str, list[_Rule]] = {}
        self._counters: dict[tuple[str, str, tuple[str, ...]], float] = {}
        self._histograms: dict[tuple[str, str, tuple[str, ...]], list[float]] = {}
        self._series_per_metric: dict[str, int] = {}
        self.set_rules(rules)

    def set_rules(self, rules: Sequence[EventMetric]) -> None:
        by_event: dict[str, list[_Rule]] = {}
        for config in rules:
            rule = _Rule(config)
            for event in config.events:
                by_event.setdefault(event, []).append(rule)
        with self._lock:
            self._by_event = by_event
            names = {r.name for r in rules}
            self._counters = {k: v for k, v in self._counters.items() if k[1] in names}
            self._histograms = {k: v for k, v in self._histograms.items() if k[1] in names}

    def wants(self, event: str) -> bool:
        return event in self._by_event

    def observe(self, tenant: str, events: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Count ``(event name, properties)`` pairs (properties before PII hashing)."""
        by_event = self._by_event
        with self._lock:
            for name, props in events:
                rules = by_event.get(name)
                if rules is None:
                    continue
                for rule in rules:
                    if any(_label_value(props.get(k)) != _label_value(v) for k, v in rule.where):
                        continue
                    values = tuple(_label_value(props.get(p)) for p in rule.label_props)
                    key = (tenant, rule.config.name, values)
                    if rule.config.type == "counter":
                        amount = 1.0
                        if rule.config.value is not None:
                            raw = props.get(rule.config.value)
                            if isinstance(raw, bool) or not isinstance(raw, int | float):
                                continue
                            amount = float(raw)
                        if key not in self._counters and not self._room(rule):
                            continue
                        self._counters[key] = self._counters.get(key, 0.0) + amount
                    else:
                        raw = props.get(rule.config.value or "")
                        if isinstance(raw, bool) or not isinstance(raw, int | float):
                            continue
                        state = self._histograms.get(key)
                        if state is None:
                            if not self._room(rule):
                                continue
                            state = self._histograms[key] = [0.0] * (len(rule.buckets) + 2)
                        # state: per-bucket counts (non-cumulative), +Inf count, sum
                        state[bisect.bisect_left(rule.buckets, float(raw))] += 1
                        state[-1] += float(raw)

    def _room(self, rule: _Rule) -> bool:
        name = rule.config.name
        count = self._series_per_metric.get(name, 0)
        if count >= _MAX_SERIES_PER_METRIC:
            METRIC_SERIES_DROPPED.labels(name).inc()
            return False
        self._series_per_metric[name] = count + 1
        return True

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted({k[0] for k in self._counters} | {k[0] for k in self._histograms})

    def series(self, tenant: str) -> list[tuple[Labels, float]]:
        """The current value of every series of ``tenant``."""
        rules = {r.config.name: r for rs in self._by_event.values() for r in rs}
        out: list[tuple[Labels, float]] = []
        with self._lock:
            for (t, name, values), value in self._counters.items():
                if t == tenant and name in rules:
                    pairs = dict(zip(rules[name].label_names, values, strict=True))
                    out.append((Labels({"__name__": name, **pairs}), value))
            for (t, name, values), state in self._histograms.items():
                if t != tenant or name not in rules:
                    continue
                rule = rules[name]
                pairs = dict(zip(rule.label_names, values, strict=True))
                running = 0.0
                for bound, count in zip(rule.buckets, state, strict=False):
                    running += count
                    le = _label_value(bound)
                    out.append((Labels({"__name__": f"{name}_bucket", **pairs, "le": le}), running))
                total = running + state[len(rule.buckets)]
                out.append((Labels({"__name__": f"{name}_bucket", **pairs, "le": "+Inf"}), total))
                out.append((Labels({"__name__": f"{name}_count", **pairs}), total))
                out.append((Labels({"__name__": f"{name}_sum", **pairs}), state[-1]))
        return out
