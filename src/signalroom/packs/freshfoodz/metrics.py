"""Lead-protection series for the metric store, computed from lead, hold and reminder rows.

The source is pluggable: anything that yields rows (mappings with the columns of the
``leads``/``lead_holds`` tables of ``lead_protection.sql``, or :class:`Lead`/:class:`Hold`
objects) works: a SQL query, a CSV, an event replay. Series written:

* ``lead_protection_state{state}`` gauge: leads per state (every state, 0 included);
* ``lead_reminder_due_total{reminder}``: reminders whose instant has passed, summed over leads;
* ``lead_reminder_sent_total{reminder}``: reminder-sent rows up to ``now``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.packs.freshfoodz.lead_protection import (
    REMINDERS,
    Hold,
    Lead,
    LeadState,
    evaluate,
    state_counts,
)
from signalroom.packs.freshfoodz.seasons import DEFAULT_CALENDAR, SeasonCalendar
from signalroom.tsdb import TSDB, AppendResult, MetricMetadata, SampleBatch

__all__ = [
    "METADATA",
    "holds_from_rows",
    "lead_protection_series",
    "leads_from_rows",
    "publish_season_multiplier",
    "reminders_due_by_kind",
    "season_series",
    "series_from_states",
    "write_lead_protection_metrics",
    "write_season_multiplier",
]

Row = Mapping[str, Any]

log = logging.getLogger("signalroom.packs.freshfoodz")

METADATA = (
    MetricMetadata("lead_protection_state", "gauge", "Current lead protection state counts"),
    MetricMetadata("lead_reminder_due_total", "counter", "Total lead protection reminders due"),
    MetricMetadata("lead_reminder_sent_total", "counter", "Total lead protection reminders sent"),
)


def leads_from_rows(rows: Iterable[Row | Lead]) -> list[Lead]:
    """Leads from rows with ``id`` (or ``lead_id``), ``user_id``, ``created_at``,
    ``released_at``."""
    out: list[Lead] = []
    for row in rows:
        if isinstance(row, Lead):
            out.append(row)
            continue
        out.append(
            Lead(
                str(row["id"] if "id" in row else row["lead_id"]),
                str(row["user_id"]),
                row["created_at"],
                row.get("released_at"),
            )
        )
    return out


def holds_from_rows(rows: Iterable[Row | Hold]) -> list[Hold]:
    """Holds from rows with ``lead_id``, ``start_at`` and ``end_at`` (None = open)."""
    return [
        row
        if isinstance(row, Hold)
        else Hold(str(row["lead_id"]), row["start_at"], row.get("end_at"))
        for row in rows
    ]


def reminders_due_by_kind(states: Iterable[LeadState]) -> dict[str, int]:
    """Reminders due per kind: the first ``reminders_due`` kinds of each lead, in order."""
    counts = dict.fromkeys(REMINDERS, 0)
    for s in states:
        for kind in REMINDERS[: s.reminders_due]:
            counts[kind] += 1
    return counts


def lead_protection_series(
    leads: Iterable[Row | Lead],
    holds: Iterable[Row | Hold],
    now: datetime,
    sent: Iterable[Row] = (),
) -> list[tuple[Labels, float]]:
    """The series values at ``now``. ``sent`` rows carry ``sent_at`` and ``reminder`` (kind)."""
    return series_from_states(
        evaluate(leads_from_rows(leads), holds_from_rows(holds), now), now, sent
    )


def series_from_states(
    states: Sequence[LeadState], now: datetime, sent: Iterable[Row] = ()
) -> list[tuple[Labels, float]]:
    """The series values of already evaluated lead states."""
    out: list[tuple[Labels, float]] = [
        (Labels({METRIC_NAME: "lead_protection_state", "state": state}), float(count))
        for state, count in state_counts(states).items()
    ]
    out.extend(
        (Labels({METRIC_NAME: "lead_reminder_due_total", "reminder": kind}), float(count))
        for kind, count in reminders_due_by_kind(states).items()
    )
    sent_counts = dict.fromkeys(REMINDERS, 0)
    for row in sent:
        if row["sent_at"] <= now:
            kind = str(row.get("reminder") or "first")
            sent_counts[kind] = sent_counts.get(kind, 0) + 1
    out.extend(
        (Labels({METRIC_NAME: "lead_reminder_sent_total", "reminder": kind}), float(count))
        for kind, count in sent_counts.items()
    )
    return out


async def write_lead_protection_metrics(
    tsdb: TSDB,
    tenant: str,
    leads: Iterable[Row | Lead],
    holds: Iterable[Row | Hold],
    now: datetime,
    sent: Iterable[Row] = (),
) -> AppendResult:
    """Compute the series at ``now`` and append one sample each (timestamp = ``now``)."""
    ts = int(now.timestamp() * 1000)
    series = lead_protection_series(leads, holds, now, sent)
    batch = SampleBatch.from_series((labels, [ts], [value]) for labels, value in series)
    tsdb.add_metadata(tenant, METADATA)
    return await tsdb.append_async(tenant, batch)


def season_series(
    at: datetime, calendar: SeasonCalendar = DEFAULT_CALENDAR
) -> tuple[Labels, float]:
    """``season_load_multiplier{season}`` at ``at`` (season "none" outside every season)."""
    season = calendar.active(at)
    labels = Labels(
        {METRIC_NAME: "season_load_multiplier", "season": season.name if season else "none"}
    )
    return labels, calendar.multiplier(at)


async def write_season_multiplier(
    tsdb: TSDB, tenant: str, at: datetime, calendar: SeasonCalendar = DEFAULT_CALENDAR
) -> AppendResult:
    """Append ``season_load_multiplier`` at ``at`` so rules can scale thresholds by season."""
    labels, value = season_series(at, calendar)
    batch = SampleBatch.from_series([(labels, [int(at.timestamp() * 1000)], [value])])
    tsdb.add_metadata(
        tenant,
        [MetricMetadata("season_load_multiplier", "gauge", "Seasonal load multiplier (1 = base)")],
    )
    return await tsdb.append_async(tenant, batch)


async def publish_season_multiplier(
    tsdb: TSDB,
    tenant: str = "default",
    calendar: SeasonCalendar = DEFAULT_CALENDAR,
    interval: timedelta = timedelta(minutes=1),
) -> None:
    """Write ``season_load_multiplier`` every ``interval`` until cancelled (run it as a task),
    so rules and the war-room dashboard always see the current season."""
    while True:
        try:
            await write_season_multiplier(tsdb, tenant, datetime.now(UTC), calendar)
        except Exception:  # a full disk must not end the loop
            log.exception("season_load_multiplier")
        await asyncio.sleep(interval.total_seconds())
