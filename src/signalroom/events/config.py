"""The ``events:`` section of ``signalroom.yml``.

Kept free of imports from :mod:`signalroom.config` so that module can import this one.
"""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator, model_validator

from signalroom.units import parse_bytes, parse_duration_ms

__all__ = ["DEFAULT_EVENT_METRICS", "EventMetric", "EventsConfig", "QueueConfig"]


def _duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as 1s or 400d")
    return value if isinstance(value, int) else parse_duration_ms(value)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a size such as 20MB")
    return parse_bytes(value)


DurationMs = Annotated[int, BeforeValidator(_duration)]
ByteSize = Annotated[int, BeforeValidator(_size)]
_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class EventMetric(_Model):
    """Turns matching events into a Prometheus series.

    A ``counter`` adds 1 per event (or the numeric property ``value`` when set); a ``histogram``
    observes the numeric property ``value`` into ``buckets`` (``_bucket``/``_sum``/``_count``).
    ``labels`` maps label names to property names (missing properties give an empty label);
    ``where`` keeps only events whose properties equal the given values.
    """

    name: str
    type: Literal["counter", "histogram"] = "counter"
    help: str = ""
    events: list[str] = Field(min_length=1)
    where: dict[str, str | int | float | bool] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    value: str | None = None
    buckets: list[float] = Field(
        default_factory=lambda: [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    )

    @field_validator("name")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError(f"invalid metric name {value!r}")
        return value

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: dict[str, str]) -> dict[str, str]:
        for name in value:
            if not _LABEL.match(name) or name.startswith("__") or name == "tenant":
                raise ValueError(f"invalid label name {name!r}")
        return value

    @field_validator("buckets")
    @classmethod
    def _sorted(cls, value: list[float]) -> list[float]:
        if not value or any(b >= c for b, c in itertools.pairwise(value)):
            raise ValueError("buckets must be a non-empty, strictly increasing list")
        return value

    @model_validator(mode="after")
    def _histogram_value(self) -> EventMetric:
        if self.type == "histogram" and not self.value:
            raise ValueError(f"histogram {self.name!r} needs 'value' (a numeric property)")
        return self


# The FreshFoodz business KPIs of seed 000, fed by the events of schemas/ (see there).
DEFAULT_EVENT_METRICS: tuple[dict[str, Any], ...] = (
    {
        "name": "sample_request_total",
        "help": "Total sample requests",
        "events": ["sample_request"],
        "labels": {"product_type": "product_type", "urgency": "urgency"},
    },
    {
        "name": "sample_request_success_total",
        "help": "Successful sample requests",
        "events": ["sample_request"],
        "where": {"outcome": "success"},
        "labels": {"product_type": "product_type", "urgency": "urgency"},
    },
    {
        "name": "event_catering_sla_seconds",
        "type": "histogram",
        "help": "Event catering SLA response times",
        "events": ["event_catering_responded"],
        "value": "response_seconds",
        "buckets": [300, 600, 1200, 1800, 3600, 7200],
        "labels": {"event_type": "event_type", "capacity_tier": "capacity_tier"},
    },
    {
        "name": "lead_reminder_sent_events_total",
        "help": "lead_reminder_sent events (lead_reminder_sent_total is the pack's)",
        "events": ["lead_reminder_sent"],
        "labels": {"lead_status": "lead_status"},
    },
    {
        "name": "lead_reminder_due_events_total",
        "help": "lead_reminder_due events (lead_reminder_due_total is the pack's)",
        "events": ["lead_reminder_due"],
        "labels": {"lead_status": "lead_status"},
    },
)


class QueueConfig(_Model):
    """The embedded queue between capture and the consumer, and the consumer's batching."""

    backend: Literal["wal"] = "wal"
    batch_events: int = Field(default=100, gt=0)
    """The consumer writes as soon as this many events wait..."""
    batch_interval: DurationMs = 1000
    """...or the oldest waiting event has waited this long."""
    max_batch_events: int = Field(default=20_000, gt=0)
    """Most events one write takes when a backlog has built up."""
    max_depth_events: int = Field(default=5_000_000, gt=0)
    """Capture answers 429 while more events than this wait for the consumer."""
    segment_bytes: ByteSize = 64 * 2**20


class EventsConfig(_Model):
    """Settings of event capture, schemas, queue, storage and analytics."""

    enabled: bool = True
    retention: DurationMs = 400 * 24 * 3_600_000
    max_body_bytes: ByteSize = 20 * 2**20
    """Largest capture request, compressed or not (PostHog's limit)."""
    max_event_bytes: ByteSize = 1 * 2**20
    accept_unregistered: list[str] = Field(default_factory=lambda: ["$*"])
    """Glob patterns of event names stored without a registered schema (PostHog's ``$``
    system events by default); any other unknown event goes to the dead-letter queue."""
    api_keys: list[str] = Field(default_factory=list)
    """When auth is on, PostHog project API keys (``phc_...``) accepted on the capture routes
    besides the configured tokens; each maps to the tenant ``default``."""
    dedupe_ids: int = Field(default=1_000_000, ge=0)
    """Recent event ids remembered to drop client retries (idempotency)."""
    dlq_max_entries: int = Field(default=1_000_000, gt=0)
    metrics: list[EventMetric] = Field(
        default_factory=lambda: [EventMetric.model_validate(m) for m in DEFAULT_EVENT_METRICS]
    )
    metrics_interval: DurationMs = 15_000
    """How often event metrics are written to the metric store."""
    queue: QueueConfig = Field(default_factory=QueueConfig)
    flush_rows: int = Field(default=500_000, gt=0)
    flush_interval: DurationMs = 60_000
    index_max_rows: int = Field(default=30_000_000, ge=0)
    """Rows of the in-memory analytics index (12 bytes each) that funnels and active users
    run on; 0 turns it off (every query then scans the Parquet files with DuckDB)."""
    sql_max_rows: int = Field(default=10_000, gt=0)
    sql_timeout: DurationMs = 30_000
    query_timeout: DurationMs = 60_000

    @field_validator("metrics")
    @classmethod
    def _unique(cls, value: list[EventMetric]) -> list[EventMetric]:
        names = [m.name for m in value]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"event metric names must be unique: {', '.join(dupes)}")
        return value
