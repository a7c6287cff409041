"""Where scraped samples go: a small columnar ``Appender`` protocol, and a memory one for tests.

One ``append`` call carries one scrape of one target (or the staleness markers written when a
target goes away), columnar: ``series[i]``, ``timestamps_ms[i]`` and ``values[i]`` are one
sample; a scrape never holds two samples of one series. The storage side adapts this to its
own batches.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from signalroom.model.labels import Labels
from signalroom.model.samples import NORMAL_NAN as NORMAL_NAN  # re-exported
from signalroom.model.samples import NORMAL_NAN_BITS as NORMAL_NAN_BITS
from signalroom.model.samples import STALE_NAN as STALE_NAN
from signalroom.model.samples import STALE_NAN_BITS as STALE_NAN_BITS
from signalroom.model.samples import is_stale_nan as is_stale_nan
from signalroom.model.samples import stale_mask as stale_mask


@dataclass(frozen=True)
class MetricMetadata:
    """TYPE, HELP and UNIT of one metric family as the target exposed them."""

    metric_family: str
    type: str = "unknown"
    help: str = ""
    unit: str = ""


class Appender(Protocol):
    """Receives the samples of one scrape, columnar.

    ``series[i]``, ``timestamps_ms[i]`` (int64) and ``values[i]`` (float64) are sample ``i``.
    Values may be the staleness marker ``STALE_NAN``.
    """

    async def append(
        self,
        tenant: str,
        series: list[Labels],
        timestamps_ms: np.ndarray,
        values: np.ndarray,
        metadata: list[MetricMetadata],
    ) -> None: ...


@dataclass
class AppendedBatch:
    tenant: str
    series: list[Labels]
    timestamps_ms: np.ndarray
    values: np.ndarray
    metadata: list[MetricMetadata]


@dataclass
class MemoryAppender:
    """Keeps every appended batch in memory; for tests and benchmarks."""

    batches: list[AppendedBatch] = field(default_factory=list)
    metadata: dict[str, MetricMetadata] = field(default_factory=dict)
    _changed: asyncio.Event | None = None

    async def append(
        self,
        tenant: str,
        series: list[Labels],
        timestamps_ms: np.ndarray,
        values: np.ndarray,
        metadata: list[MetricMetadata],
    ) -> None:
        self.batches.append(AppendedBatch(tenant, series, timestamps_ms, values, metadata))
        for meta in metadata:
            self.metadata[meta.metric_family] = meta
        if self._changed is not None:
            self._changed.set()

    def samples(self, tenant: str | None = None) -> list[tuple[Labels, int, float]]:
        """Every sample so far as ``(labels, timestamp_ms, value)``, in append order."""
        out: list[tuple[Labels, int, float]] = []
        for batch in self.batches:
            if tenant is not None and batch.tenant != tenant:
                continue
            for lbls, ts, value in zip(
                batch.series, batch.timestamps_ms.tolist(), batch.values.tolist(), strict=True
            ):
                out.append((lbls, ts, value))
        return out

    def series_samples(self, labels: Labels) -> list[tuple[int, float]]:
        """The ``(timestamp_ms, value)`` samples of one series, in append order."""
        return [(ts, v) for lbls, ts, v in self.samples() if lbls == labels]

    def latest(self, name: str, **match: str) -> dict[Labels, float]:
        """The last value of every series named ``name`` whose labels include ``match``."""
        out: dict[Labels, float] = {}
        for lbls, _, value in self.samples():
            if lbls.name == name and all(lbls.get(k) == v for k, v in match.items()):
                out[lbls] = value
        return out

    async def wait_for(self, predicate: object, timeout: float = 10.0) -> None:
        """Wait until ``predicate()`` is true, re-checking after each append."""
        assert callable(predicate)
        if self._changed is None:
            self._changed = asyncio.Event()
        async with asyncio.timeout(timeout):
            while not predicate():
                self._changed.clear()
                await self._changed.wait()
