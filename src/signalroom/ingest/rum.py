"""Real-user monitoring: what the ``web-vitals`` JS library reports, as Prometheus histograms.

A browser posts one report or a list of them (``fetch`` with JSON, or ``navigator.sendBeacon``
with a ``text/plain`` body)::

    {"name": "LCP", "value": 1834.2, "rating": "good", "id": "v4-1700000000000-123",
     "navigationType": "navigate", "page": "/product/42?ref=x", "route": "/product/:id",
     "device": "mobile"}

``name`` is LCP, INP, CLS, FCP, TTFB or FID; ``value`` is milliseconds (CLS: unitless). Each
report becomes one observation of ``web_vitals_<name>_seconds`` (``web_vitals_cls`` for CLS)
labelled ``page`` (the ``route`` when given, else the page's path without query or fragment),
``rating`` (the library's, else computed from Google's thresholds) and ``device`` when given.
Bucket bounds contain Google's good / poor thresholds, so "share of good page loads" is an exact
bucket ratio. A report repeated with the same ``id`` (the library re-reports a page's value when
it changes) counts once: the first value wins, so report final values (the default).

Histograms are cumulative counters kept in memory: after a restart they start again at 0, which
``rate()`` and ``increase()`` treat as a counter reset.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

import numpy as np

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.tsdb import MetricMetadata, SampleBatch

__all__ = [
    "MAX_BODY_BYTES",
    "VITALS",
    "RumError",
    "RumHistograms",
    "Vital",
    "VitalReport",
    "parse_reports",
]

MAX_BODY_BYTES: Final = 64 * 1024  # sendBeacon's own limit for a page's queued beacons
MAX_REPORTS: Final = 100
MAX_PAGES_PER_TENANT: Final = 1000  # further pages are counted as page="other"
SEEN_IDS: Final = 100_000
RATINGS: Final = ("good", "needs-improvement", "poor")


@dataclass(frozen=True, slots=True)
class Vital:
    """One web vital: its series, unit scale, Google's thresholds and the bucket bounds."""

    metric: str
    help: str
    per_unit: float  # reported value / per_unit = the series' unit (ms -> s: 1000)
    good: float  # <= good: "good"; > poor: "poor" (in the series' unit)
    poor: float
    buckets: tuple[float, ...]
    max_value: float


VITALS: Final[dict[str, Vital]] = {
    "LCP": Vital("web_vitals_lcp_seconds", "Largest Contentful Paint (real users).", 1000,
                 2.5, 4.0, (0.5, 1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10, 15, 20), 600),
    "INP": Vital("web_vitals_inp_seconds", "Interaction to Next Paint (real users).", 1000,
                 0.2, 0.5, (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1, 2, 5), 600),
    "CLS": Vital("web_vitals_cls", "Cumulative Layout Shift (real users).", 1.0,
                 0.1, 0.25, (0.01, 0.025, 0.05, 0.075, 0.1, 0.15, 0.2, 0.25, 0.3, 0.5, 1), 100),
    "FCP": Vital("web_vitals_fcp_seconds", "First Contentful Paint (real users).", 1000,
                 1.8, 3.0, (0.5, 1, 1.5, 1.8, 2.5, 3, 4, 6, 10), 600),
    "TTFB": Vital("web_vitals_ttfb_seconds", "Time to First Byte (real users).", 1000,
                  0.8, 1.8, (0.1, 0.2, 0.4, 0.6, 0.8, 1, 1.2, 1.8, 2.5, 5), 600),
    "FID": Vital("web_vitals_fid_seconds", "First Input Delay (real users).", 1000,
                 0.1, 0.3, (0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 1), 600),
}  # fmt: skip

_LABEL_VALUE = re.compile(r"^[A-Za-z0-9_.:/\-\[\]{}()*@~+]{1,200}$")
_DEVICE = re.compile(r"^[a-z0-9_-]{1,32}$")


class RumError(ValueError):
    """The report cannot be accepted; ``status`` is the HTTP answer (400 or 413)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


@dataclass(frozen=True, slots=True)
class VitalReport:
    """One validated report: the vital, its value in the series' unit, and its labels."""

    vital: Vital
    value: float
    page: str
    rating: str
    device: str | None
    id: str | None


def _page(entry: dict[str, Any], where: str) -> str:
    raw = entry.get("route") or entry.get("page") or entry.get("pathname") or "unknown"
    if not isinstance(raw, str):
        raise RumError(f"{where}: route/page must be a string")
    if "://" in raw:  # a full URL: keep its path
        raw = raw.split("://", 1)[1].partition("/")[2]
        raw = "/" + raw
    path = raw.split("?", 1)[0].split("#", 1)[0] or "/"
    if not _LABEL_VALUE.match(path):
        raise RumError(f"{where}: route/page {path[:60]!r} is not a path (max 200 characters)")
    return path


def _report(entry: Any, where: str) -> VitalReport:
    if not isinstance(entry, dict):
        raise RumError(f'{where}: expected an object like {{"name": "LCP", "value": 1234}}')
    name = entry.get("name")
    vital = VITALS.get(name.upper()) if isinstance(name, str) else None
    if vital is None:
        raise RumError(f"{where}: name must be one of {', '.join(VITALS)}, got {name!r}")
    raw = entry.get("value")
    if isinstance(raw, bool) or not isinstance(raw, (int, float)) or not math.isfinite(raw):
        raise RumError(f"{where}: value must be a finite number, got {raw!r}")
    value = float(raw) / vital.per_unit
    if not 0 <= value <= vital.max_value:
        raise RumError(f"{where}: {name} value {raw!r} is out of range")
    rating = entry.get("rating")
    if rating is None:
        rating = "good" if value <= vital.good else "poor" if value > vital.poor else (
            "needs-improvement"
        )  # fmt: skip
    elif rating not in RATINGS:
        raise RumError(f"{where}: rating must be one of {', '.join(RATINGS)}, got {rating!r}")
    device = entry.get("device")
    if device is not None and (not isinstance(device, str) or not _DEVICE.match(device.lower())):
        raise RumError(f"{where}: device must be a short word like mobile or desktop")
    report_id = entry.get("id")
    if report_id is not None and (not isinstance(report_id, str) or len(report_id) > 128):
        raise RumError(f"{where}: id must be a string of at most 128 characters")
    return VitalReport(
        vital, value, _page(entry, where), rating, device.lower() if device else None, report_id
    )


def parse_reports(body: bytes) -> list[VitalReport]:
    """Validate a request body (JSON whatever the content type): one report or a list."""
    if len(body) > MAX_BODY_BYTES:
        raise RumError(f"body of {len(body)} bytes exceeds {MAX_BODY_BYTES} bytes", 413)
    try:
        payload = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise RumError(f"body is not JSON: {exc}") from None
    entries = payload if isinstance(payload, list) else [payload]
    if not entries:
        raise RumError("no reports in the body")
    if len(entries) > MAX_REPORTS:
        raise RumError(f"{len(entries)} reports in one request; send at most {MAX_REPORTS}")
    many = isinstance(payload, list)
    return [_report(e, f"report {i}" if many else "report") for i, e in enumerate(entries)]


class _Histogram:
    __slots__ = ("counts", "sum")

    def __init__(self, buckets: int) -> None:
        self.counts = np.zeros(buckets + 1, dtype=np.int64)  # per bucket, the last is +Inf
        self.sum = 0.0


class RumHistograms:
    """Cumulative histograms per tenant, vital and label set; :meth:`observe` returns the
    samples to append (the current state of every series a request touched)."""

    def __init__(self, max_pages: int = MAX_PAGES_PER_TENANT) -> None:
        self.max_pages = max_pages
        self._hists: dict[tuple[str, str, tuple[tuple[str, str], ...]], _Histogram] = {}
        self._pages: dict[str, set[str]] = {}
        self._seen: OrderedDict[tuple[str, str, str], None] = OrderedDict()

    @staticmethod
    def metadata() -> list[MetricMetadata]:
        return [MetricMetadata(v.metric, "histogram", v.help) for v in VITALS.values()]

    def _duplicate(self, tenant: str, report: VitalReport) -> bool:
        if report.id is None:
            return False
        key = (tenant, report.vital.metric, report.id)
        if key in self._seen:
            return True
        self._seen[key] = None
        if len(self._seen) > SEEN_IDS:
            self._seen.popitem(last=False)
        return False

    def _page(self, tenant: str, page: str) -> str:
        pages = self._pages.setdefault(tenant, set())
        if page in pages:
            return page
        if len(pages) >= self.max_pages:
            return "other"
        pages.add(page)
        return page

    def observe(
        self, tenant: str, reports: Sequence[VitalReport], now_ms: int
    ) -> tuple[SampleBatch | None, int]:
        """Count ``reports``; the batch to append (None if all were repeats) and how many
        were counted."""
        touched: dict[tuple[str, str, tuple[tuple[str, str], ...]], Vital] = {}
        counted = 0
        for r in reports:
            if self._duplicate(tenant, r):
                continue
            labels = [("page", self._page(tenant, r.page)), ("rating", r.rating)]
            if r.device:
                labels.append(("device", r.device))
            key = (tenant, r.vital.metric, tuple(sorted(labels)))
            hist = self._hists.get(key)
            if hist is None:
                hist = self._hists[key] = _Histogram(len(r.vital.buckets))
            hist.counts[int(np.searchsorted(r.vital.buckets, r.value, side="left"))] += 1
            hist.sum += r.value
            touched[key] = r.vital
            counted += 1
        if not touched:
            return None, 0
        series: list[tuple[Labels, list[int], list[float]]] = []
        for (_, metric, label_set), vital in touched.items():
            hist = self._hists[(tenant, metric, label_set)]
            cumulative = np.cumsum(hist.counts)
            base = dict(label_set)
            for bound, count in zip((*vital.buckets, math.inf), cumulative, strict=True):
                le = "+Inf" if bound == math.inf else f"{bound:g}"
                name = {METRIC_NAME: f"{metric}_bucket", **base, "le": le}
                series.append((Labels(name), [now_ms], [float(count)]))
            series.append((Labels({METRIC_NAME: f"{metric}_sum", **base}), [now_ms], [hist.sum]))
            series.append(
                (
                    Labels({METRIC_NAME: f"{metric}_count", **base}),
                    [now_ms],
                    [float(cumulative[-1])],
                )
            )
        return SampleBatch.from_series(series), counted
