"""RED metrics from spans (rate, errors, duration), named as Tempo's metrics generator and the
OpenTelemetry spanmetrics connector name them, so their dashboards work unchanged:

* ``traces_spanmetrics_calls_total{service, span_name, span_kind, status_code}``
* ``traces_spanmetrics_latency_bucket{..., le}``, ``_sum`` and ``_count`` (seconds)

Cumulative values are kept in memory per tenant and series and written to the metric store
every ``interval``; batches are aggregated with NumPy (``group_rows``, ``bincount``), never
span by span.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from signalroom.model.labels import Labels
from signalroom.traces.model import STATUS_NAMES, group_rows

__all__ = ["SpanMetrics"]

_KIND_LABELS = ("SPAN_KIND_UNSPECIFIED", "SPAN_KIND_INTERNAL", "SPAN_KIND_SERVER",
                "SPAN_KIND_CLIENT", "SPAN_KIND_PRODUCER", "SPAN_KIND_CONSUMER")  # fmt: skip
_KEYS = ["service", "name", "kind", "status_code"]


@dataclass
class _Series:
    calls: int = 0
    seconds: float = 0.0
    buckets: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )


class SpanMetrics:
    """Cumulative span counters and latency histograms per (tenant, service, operation, kind,
    status)."""

    def __init__(self, buckets: Sequence[float]) -> None:
        self._bounds = np.asarray(sorted(buckets), np.float64)
        self._series: dict[tuple[str, str, str, int, int], _Series] = {}
        self._lock = threading.Lock()

    @property
    def buckets(self) -> list[float]:
        return [float(b) for b in self._bounds]

    def set_buckets(self, buckets: Sequence[float]) -> None:
        """New bucket bounds restart the histograms (a bound change is a new series anyway)."""
        bounds = np.asarray(sorted(buckets), np.float64)
        if not np.array_equal(bounds, self._bounds):
            with self._lock:
                self._bounds = bounds
                for series in self._series.values():
                    series.buckets = np.zeros(len(bounds) + 1, np.int64)

    def observe(self, tenant: str, spans: pa.Table) -> None:
        """Count a batch of spans."""
        if spans.num_rows == 0:
            return
        seconds = spans.column("duration").to_numpy() / 1e9
        # bucket index: the first bound >= value (Prometheus' ``le``), len(bounds) for +Inf
        bucket = np.searchsorted(self._bounds, seconds, side="left")
        keys, group = group_rows(spans, _KEYS)
        width = len(self._bounds) + 1
        calls = np.bincount(group, minlength=len(keys))
        sums = np.bincount(group, weights=seconds, minlength=len(keys))
        per_bucket = np.bincount(group * width + bucket, minlength=len(keys) * width)
        per_bucket = per_bucket.reshape(len(keys), width)
        with self._lock:
            if per_bucket.shape[1] != len(self._bounds) + 1:
                return  # the buckets changed meanwhile: this batch belongs to the old ones
            for i, (service, name, kind, code) in enumerate(keys):
                key = (tenant, service, name, kind, code)
                series = self._series.get(key)
                if series is None:
                    series = self._series[key] = _Series(buckets=np.zeros(width, np.int64))
                series.calls += int(calls[i])
                series.seconds += float(sums[i])
                series.buckets += per_bucket[i]

    def tenants(self) -> list[str]:
        with self._lock:
            return sorted({key[0] for key in self._series})

    def series(self, tenant: str) -> list[tuple[Labels, float]]:
        """Every cumulative series of ``tenant`` as (labels, value)."""
        out: list[tuple[Labels, float]] = []
        bounds = self._bounds
        with self._lock:
            items = [(k, s.calls, s.seconds, s.buckets.copy()) for k, s in self._series.items()
                     if k[0] == tenant]  # fmt: skip
        for (_, service, name, kind, code), calls, total, buckets in items:
            base = {
                "service": service,
                "span_name": name,
                "span_kind": _KIND_LABELS[kind] if 0 <= kind < len(_KIND_LABELS) else str(kind),
                "status_code": STATUS_NAMES[code] if 0 <= code < 3 else str(code),
            }
            out.append((Labels({"__name__": "traces_spanmetrics_calls_total", **base}), calls))
            out.append((Labels({"__name__": "traces_spanmetrics_latency_count", **base}), calls))
            out.append((Labels({"__name__": "traces_spanmetrics_latency_sum", **base}), total))
            cumulative = np.cumsum(buckets)
            for i, bound in enumerate(bounds):
                labels = {"__name__": "traces_spanmetrics_latency_bucket", **base,
                          "le": _format_bound(float(bound))}  # fmt: skip
                out.append((Labels(labels), float(cumulative[i])))
            labels = {"__name__": "traces_spanmetrics_latency_bucket", **base, "le": "+Inf"}
            out.append((Labels(labels), float(cumulative[-1])))
        return out


def _format_bound(value: float) -> str:
    text = repr(value)
    return text[:-2] if text.endswith(".0") else text
