"""The ``traces:`` section of ``signalroom.yml``.

Kept free of imports from :mod:`signalroom.config` so that module can import this one.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from signalroom.listen import parse_listen
from signalroom.units import parse_bytes, parse_duration_ms

__all__ = [
    "LatencyRule",
    "OtlpGrpcConfig",
    "RateLimitRule",
    "RedMetricsConfig",
    "SamplingConfig",
    "TracesConfig",
]


def _duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as 500ms or 72h")
    return value if isinstance(value, int) else parse_duration_ms(value)


DurationMs = Annotated[int, BeforeValidator(_duration)]


def _bytes(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a size such as 16MiB")
    return parse_bytes(value)


ByteCount = Annotated[int, BeforeValidator(_bytes)]

# Tempo's and the OpenTelemetry spanmetrics connector's default latency buckets (seconds).
DEFAULT_BUCKETS = (0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.024,
                   2.048, 4.096, 8.192, 16.384)  # fmt: skip


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class LatencyRule(_Model):
    """Keep traces with a span of ``service`` (and ``operation``) lasting ``threshold`` or more.
    An omitted service or operation matches every one."""

    service: str | None = None
    operation: str | None = None
    threshold: DurationMs


class RateLimitRule(_Model):
    """At most ``traces_per_second`` kept traces whose root span is in ``service`` (``*``: any
    service without a rule of its own), burst one second's worth."""

    service: str = "*"
    traces_per_second: float = Field(gt=0)


class SamplingConfig(_Model):
    """Tail-based sampling: spans wait ``decision_wait`` after a trace's first span, then the
    whole trace is kept or dropped. Off by default (every span is kept)."""

    enabled: bool = False
    decision_wait: DurationMs = 10_000
    max_pending_traces: int = Field(default=200_000, gt=0)
    """More traces waiting than this decides the oldest early."""
    keep_errors: bool = True
    latency: list[LatencyRule] = Field(default_factory=list)
    probability: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of the remaining traces kept (by trace id, so every instance agrees)."""
    rate_limits: list[RateLimitRule] = Field(default_factory=list)
    respect_head_sampling: bool = True
    """Spans whose trace flags say "not sampled" are dropped; a trace the client sampled
    with a probability (tracestate ``ot=th:``) or forced (``sampling.priority`` > 0, Zipkin
    ``debug``) skips the probabilistic share."""


class RedMetricsConfig(_Model):
    """Span metrics (RED) written to the metric store as Tempo's metrics generator names them."""

    enabled: bool = True
    interval: DurationMs = 15_000
    buckets: list[float] = Field(default_factory=lambda: list(DEFAULT_BUCKETS))


class OtlpGrpcConfig(_Model):
    """The OTLP/gRPC receiver (``TraceService/Export``). Like the HTTP server it listens on
    loopback unless told otherwise; a non-loopback address needs API tokens."""

    enabled: bool = True
    listen: str = "127.0.0.1:4317"
    max_message_size: ByteCount = Field(default=16 * 1024**2, gt=0)
    """Largest request accepted (uncompressed); bigger ones get RESOURCE_EXHAUSTED."""

    @field_validator("listen")
    @classmethod
    def _valid_listen(cls, value: str) -> str:
        parse_listen(value)
        return value


class TracesConfig(_Model):
    """Settings of the span receivers, sampler, store and query API."""

    enabled: bool = True
    retention: DurationMs = 72 * 3_600_000
    sampling: SamplingConfig = Field(default_factory=SamplingConfig)
    red_metrics: RedMetricsConfig = Field(default_factory=RedMetricsConfig)
    otlp_grpc: OtlpGrpcConfig = Field(default_factory=OtlpGrpcConfig)
    max_search_traces: int = Field(default=1500, gt=0)
    """Most traces one search returns (Jaeger's ``limit`` is capped at this)."""
    query_timeout: DurationMs = 30_000
    flush_rows: int = Field(default=500_000, gt=0)
    flush_interval: DurationMs = 60_000
