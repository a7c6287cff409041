"""Reading captured business events for the packs' jobs (lead protection, AI cost), straight
from the events store's table with DuckDB."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import duckdb

__all__ = ["EventRow", "read_events"]

EventRow = tuple[str, str, datetime, dict[str, Any]]
"""``(event, user_id, timestamp (aware, UTC), properties)``."""


def _ns(at: datetime) -> int:
    return int(at.timestamp() * 1_000_000) * 1000


def read_events(
    service: Any,
    tenant: str,
    names: Sequence[str],
    start: datetime | None = None,
    end: datetime | None = None,
) -> list[EventRow]:
    """Events called one of ``names`` in ``[start, end)``, oldest first. ``service`` is the
    running ``EventService`` (None: no events, e.g. while it starts)."""
    if service is None or not names:
        return []
    con = duckdb.connect(config={"threads": 1})
    try:
        con.execute("SET TimeZone='UTC'")
        service.store.register(
            con, tenant, _ns(start) if start else None, _ns(end) if end else None
        )
        rows = con.execute(
            "SELECT event, user_id, timestamp, properties FROM events "
            "WHERE event IN (SELECT unnest(?)) ORDER BY timestamp",
            [list(names)],
        ).fetchall()
    finally:
        con.close()
    return [
        (e, u, t if t.tzinfo else t.replace(tzinfo=UTC), json.loads(p or "{}"))
        for e, u, t, p in rows
    ]
