"""The seed companies. Each is a class with ``tick(ctx) -> Signals``: it advances its own state
by one tick and returns what it would have sent in that time; the runner ships the signals."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tick:
    """One step of the simulation as a company sees it."""

    now_ns: int
    """Real wall-clock time of the tick: every signal is stamped with it."""
    sim_time: datetime
    real_seconds: float
    """Real seconds since the previous tick: traffic volumes scale with it."""
    load: float
    """Traffic multiplier of the simulated hour (:func:`..clock.diurnal`)."""
    active: frozenset[str]
    """Names of the incident scenarios running now."""


@dataclass
class Span:
    """One span of a synthetic trace (ids are lowercase hex)."""

    trace_id: str
    span_id: str
    parent_id: str | None
    service: str
    name: str
    start_ns: int
    end_ns: int
    error: bool = False
    attributes: dict[str, str | int | float] = field(default_factory=dict)


@dataclass
class LogLine:
    """One log line with its Loki stream labels and, when it has one, its trace."""

    stream: dict[str, str]
    ts_ns: int
    line: str
    trace_id: str | None = None
    span_id: str | None = None


@dataclass
class OtlpPoint:
    """One OTLP metric data point: a cumulative monotonic sum or a gauge."""

    name: str
    value: float
    attributes: dict[str, str]
    monotonic_sum: bool = True
    service: str = "integration-layer"


@dataclass
class Signals:
    """What one company produced in one tick, by protocol."""

    remote_write: list[tuple[dict[str, str], float]] = field(default_factory=list)
    otlp_metrics: list[OtlpPoint] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    logs: list[LogLine] = field(default_factory=list)
    posthog_events: list[dict[str, Any]] = field(default_factory=list)
    sr_events: list[dict[str, Any]] = field(default_factory=list)
    rum: list[dict[str, Any]] = field(default_factory=list)
    """Web-vitals reports as the ``web-vitals`` library sends them to ``/api/rum``."""

    def extend(self, other: Signals) -> None:
        self.remote_write += other.remote_write
        self.otlp_metrics += other.otlp_metrics
        self.spans += other.spans
        self.logs += other.logs
        self.posthog_events += other.posthog_events
        self.sr_events += other.sr_events
        self.rum += other.rum


class Counters:
    """Cumulative counters a company keeps for protocols that send totals (remote write, OTLP
    cumulative sums): the totals are re-sent every tick, so a counter that stops growing stays a
    flat, live series and ``rate()`` over it is 0, not empty."""

    def __init__(self) -> None:
        self.values: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

    def add(self, name: str, amount: float, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.values[key] = self.values.get(key, 0.0) + float(amount)

    def samples(self) -> list[tuple[dict[str, str], float]]:
        return [({"__name__": n, **dict(ls)}, v) for (n, ls), v in self.values.items()]


def hex_id(rng: np.random.Generator, nbytes: int) -> str:
    """A random id from the seeded stream (trace ids 16 bytes, span ids 8)."""
    return rng.bytes(nbytes).hex()


def iso(ns: int) -> str:
    """RFC 3339 with milliseconds, as the capture API's clients send timestamps."""
    return datetime.fromtimestamp(ns / 1e9).astimezone().isoformat(timespec="milliseconds")


__all__ = [
    "Counters",
    "LogLine",
    "OtlpPoint",
    "Signals",
    "Span",
    "Tick",
    "hex_id",
    "iso",
]
