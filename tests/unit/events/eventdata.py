"""Hand-made event rows for the analytics tests, written straight into an event store."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from signalroom.events.store import EVENT_SCHEMA

# A fixed day the analytics tests count from (a Monday, so week buckets start on it).
DAY0 = datetime(2024, 3, 4, tzinfo=UTC)


def ns(moment: datetime) -> int:
    return int(moment.timestamp()) * 10**9 + moment.microsecond * 1000


def rows(events: list[tuple[datetime, str, str, dict[str, Any]]]) -> pa.Table:
    """An event-store table of ``(when, event name, user id, properties)`` tuples."""
    stamps = [ns(when) for when, *_ in events]
    return pa.Table.from_arrays(
        [
            pa.array(stamps, pa.timestamp("ns")),
            pa.array([name for _, name, _, _ in events], pa.string()),
            pa.array([f"e{i}" for i in range(len(events))], pa.string()),
            pa.array([user for _, _, user, _ in events], pa.string()),
            pa.nulls(len(events), pa.string()),
            pa.array([json.dumps(props) for *_, props in events], pa.string()),
            pa.nulls(len(events), pa.int32()),
            pa.array(stamps, pa.timestamp("ns")),
        ],
        schema=EVENT_SCHEMA,
    )
