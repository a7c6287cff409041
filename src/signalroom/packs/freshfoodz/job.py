"""The scheduled lead-protection job: read leads and holds, send the due reminders exactly once,
and write ``lead_protection_state{state}``, ``lead_reminder_due_total{reminder}`` and
``lead_reminder_sent_total{reminder}`` to the metric store.

Leads and holds come from the CRM's PostgreSQL (the ``leads`` / ``lead_holds`` tables of
``lead_protection.sql``, through a configured SQL source) or, without one, from the
``lead_created`` / ``lead_released`` / ``lead_hold_started`` / ``lead_hold_ended`` events in the
events store.

Reminder pipeline (idempotent across restarts): every reminder has a key
``<lead_id>/<kind>``. A run first *claims* each due reminder that has no document yet in the
state store (create-if-absent, so two runs or two servers never both claim it), then sends it,
then marks it sent. A claim left unsent by a crash is taken over (compare-and-set on its version)
by a later run once its lease has passed, so no reminder is missed. A crash between sending and
marking makes that one reminder go out again: the webhook carries the key as
``Idempotency-Key`` so the receiver can drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx
import sqlalchemy as sa

from signalroom.packs.events import EventRow, read_events
from signalroom.packs.freshfoodz.config import FreshfoodzConfig
from signalroom.packs.freshfoodz.lead_protection import (
    FINAL_REMINDER_BEFORE,
    REMINDERS,
    Hold,
    Lead,
    LeadState,
    evaluate,
)
from signalroom.packs.freshfoodz.metrics import METADATA as SERIES_METADATA
from signalroom.packs.freshfoodz.metrics import series_from_states
from signalroom.sqlsource.config import SqlSourceConfig
from signalroom.storage.state import ConflictError, KeyValueStore, StateStore
from signalroom.tsdb import TSDB, SampleBatch

__all__ = [
    "CrmSource",
    "EventsSource",
    "LeadProtectionJob",
    "LeadSource",
    "Reminder",
    "ReminderLedger",
    "RunReport",
    "WebhookSender",
    "due_reminders",
    "lead_protection_job",
    "log_sender",
]

log = logging.getLogger("signalroom.packs.freshfoodz")

KV_NAMESPACE = "freshfoodz_reminders"


@dataclass(frozen=True, slots=True)
class Reminder:
    """One reminder of one lead: ``kind`` is first, second or final."""

    lead_id: str
    user_id: str
    kind: str
    due_at: datetime

    @property
    def key(self) -> str:
        return f"{self.lead_id}/{self.kind}"

    def to_json(self) -> dict[str, str]:
        return {
            "lead_id": self.lead_id,
            "user_id": self.user_id,
            "reminder": self.kind,
            "due_at": self.due_at.isoformat(),
        }


def due_reminders(states: Iterable[LeadState]) -> list[Reminder]:
    """Every reminder whose instant has passed (the first ``reminders_due`` kinds of a lead)."""
    out: list[Reminder] = []
    for s in states:
        instants = (s.reminder_at, s.grace_at, s.expires_at - FINAL_REMINDER_BEFORE)
        out.extend(
            Reminder(s.lead_id, s.user_id, kind, at)
            for kind, at in zip(REMINDERS[: s.reminders_due], instants, strict=False)
        )
    return out


# --- where leads and holds come from ----------------------------------------------------------


class LeadSource(Protocol):
    def load(self) -> tuple[list[Lead], list[Hold]]:
        """Every lead and hold (blocking; the job calls it in a worker thread)."""
        ...

    def close(self) -> None: ...


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


class CrmSource:
    """The CRM's PostgreSQL (any SQLAlchemy URL with the pack's ``leads``/``lead_holds``)."""

    def __init__(self, url: str) -> None:
        self.engine = sa.create_engine(url, pool_pre_ping=True)

    def load(self) -> tuple[list[Lead], list[Hold]]:
        with self.engine.connect() as conn:
            leads = [
                Lead(str(r.id), str(r.user_id), _aware(r.created_at),
                     _aware(r.released_at) if r.released_at else None)
                for r in conn.execute(
                    sa.text("SELECT id, user_id, created_at, released_at FROM leads")
                )
            ]  # fmt: skip
            holds = [
                Hold(str(r.lead_id), _aware(r.start_at), _aware(r.end_at) if r.end_at else None)
                for r in conn.execute(sa.text("SELECT lead_id, start_at, end_at FROM lead_holds"))
            ]
        return leads, holds

    def close(self) -> None:
        self.engine.dispose()


LEAD_EVENTS = ("lead_created", "lead_released", "lead_hold_started", "lead_hold_ended")


class EventsSource:
    """Leads and holds replayed from captured events.

    ``lead_created`` (``lead_id``; the salesperson is the event's ``user_id``, or the
    ``user_id`` property; created at the ``created_at`` property or the event time),
    ``lead_released`` (``lead_id``), ``lead_hold_started`` / ``lead_hold_ended`` (``lead_id``,
    ``hold_id``; at the ``start_at`` / ``end_at`` property or the event time). ``events`` returns
    the running events service (None while it is not started or disabled)."""

    def __init__(self, events: Callable[[], Any], tenant: str = "default") -> None:
        self.events = events
        self.tenant = tenant

    def rows(self) -> list[EventRow]:
        return read_events(self.events(), self.tenant, LEAD_EVENTS)

    def load(self) -> tuple[list[Lead], list[Hold]]:
        return leads_from_events(self.rows())

    def close(self) -> None:
        pass


def _instant(props: dict[str, Any], key: str, default: datetime) -> datetime:
    value = props.get(key)
    if not value:
        return default
    return _aware(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def leads_from_events(
    rows: Iterable[EventRow],
) -> tuple[list[Lead], list[Hold]]:
    """Leads and holds from ``(event, user_id, timestamp, properties)`` rows in time order; a
    repeated ``lead_created`` keeps the first, an unmatched ``lead_hold_ended`` is ignored."""
    leads: dict[str, Lead] = {}
    released: dict[str, datetime] = {}
    holds: dict[tuple[str, str], Hold] = {}
    for event, user_id, at, props in rows:
        lead_id = str(props.get("lead_id") or "")
        if not lead_id:
            continue
        if event == "lead_created" and lead_id not in leads:
            owner = str(props.get("user_id") or user_id)
            leads[lead_id] = Lead(lead_id, owner, _instant(props, "created_at", at))
        elif event == "lead_released":
            released.setdefault(lead_id, _instant(props, "released_at", at))
        elif event == "lead_hold_started":
            key = (lead_id, str(props.get("hold_id") or ""))
            holds.setdefault(key, Hold(lead_id, _instant(props, "start_at", at)))
        elif event == "lead_hold_ended":
            key = (lead_id, str(props.get("hold_id") or ""))
            if key in holds and holds[key].end_at is None:
                end = max(_instant(props, "end_at", at), holds[key].start_at)
                holds[key] = Hold(lead_id, holds[key].start_at, end)
    out = [
        Lead(lead.lead_id, lead.user_id, lead.created_at, released.get(lead.lead_id))
        for lead in leads.values()
    ]
    return out, [h for h in holds.values() if h.lead_id in leads]


# --- the reminder pipeline -------------------------------------------------------------------


class ReminderLedger:
    """Claimed and sent reminders, one state-store document per reminder key."""

    def __init__(self, kv: KeyValueStore, tenant: str = "default") -> None:
        self.kv = kv
        self.tenant = tenant

    def entries(self) -> dict[str, tuple[dict[str, Any], int]]:
        """``key -> (document, version)`` of every claimed reminder."""
        return {d.key: (dict(d.value), d.version) for d in self.kv.list(tenant=self.tenant)}

    def claim(self, reminder: Reminder, now: datetime, expected_version: int = 0) -> int | None:
        """Take ``reminder`` for sending; the new version, or None when another run has it."""
        doc = {**reminder.to_json(), "claimed_at": now.isoformat(), "sent_at": None}
        try:
            return self.kv.put(
                reminder.key, doc, tenant=self.tenant, expected_version=expected_version
            ).version
        except ConflictError:
            return None

    def mark_sent(self, reminder: Reminder, version: int, now: datetime) -> None:
        doc = {**reminder.to_json(), "claimed_at": now.isoformat(), "sent_at": now.isoformat()}
        self.kv.put(reminder.key, doc, tenant=self.tenant, expected_version=version)

    def sent_rows(self) -> list[dict[str, Any]]:
        """``{reminder, sent_at}`` of every sent reminder, for ``lead_reminder_sent_total``."""
        return [
            {"reminder": doc["reminder"], "sent_at": datetime.fromisoformat(doc["sent_at"])}
            for doc, _ in self.entries().values()
            if doc.get("sent_at")
        ]


ReminderSender = Callable[[Reminder], Awaitable[None]]


async def log_sender(reminder: Reminder) -> None:
    """The default delivery without a webhook: a log line per reminder."""
    log.info(
        "lead protection reminder %s for lead %s (salesperson %s), due %s",
        reminder.kind, reminder.lead_id, reminder.user_id, reminder.due_at.isoformat(),
    )  # fmt: skip


class WebhookSender:
    """POSTs each reminder as JSON with ``Idempotency-Key: <lead_id>/<kind>``."""

    def __init__(self, url: str, timeout_s: float = 10.0) -> None:
        self.url = url
        self.client = httpx.AsyncClient(timeout=timeout_s)

    async def __call__(self, reminder: Reminder) -> None:
        response = await self.client.post(
            self.url, json=reminder.to_json(), headers={"Idempotency-Key": reminder.key}
        )
        response.raise_for_status()

    async def aclose(self) -> None:
        await self.client.aclose()


# --- the job ---------------------------------------------------------------------------------


@dataclass
class RunReport:
    """What one run did."""

    at: datetime
    leads: int = 0
    due: int = 0
    sent_now: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)


class LeadProtectionJob:
    """Runs every ``interval_s``: load, send due reminders, write the series."""

    def __init__(
        self,
        source: LeadSource,
        ledger: ReminderLedger,
        tsdb: TSDB,
        *,
        interval_s: float,
        tenant: str = "default",
        send: ReminderSender = log_sender,
        lease: timedelta = timedelta(minutes=1),
    ) -> None:
        self.source = source
        self.ledger = ledger
        self.tsdb = tsdb
        self.interval_s = interval_s
        self.tenant = tenant
        self.send = send
        self.lease = lease
        self.last: RunReport | None = None

    async def _deliver(self, reminders: Sequence[Reminder], now: datetime) -> RunReport:
        report = RunReport(now)
        entries = await asyncio.to_thread(self.ledger.entries)
        for reminder in reminders:
            doc, version = entries.get(reminder.key, (None, 0))
            if doc is not None:
                if doc.get("sent_at"):
                    continue
                claimed = datetime.fromisoformat(doc["claimed_at"])
                if now - claimed < self.lease:  # another run is sending it right now
                    continue
            new_version = await asyncio.to_thread(self.ledger.claim, reminder, now, version)
            if new_version is None:
                continue
            try:
                await self.send(reminder)
            except Exception as exc:  # the claim stays; a later run retries after the lease
                log.warning("lead protection reminder %s not sent: %s", reminder.key, exc)
                report.failed.append(reminder.key)
                continue
            await asyncio.to_thread(self.ledger.mark_sent, reminder, new_version, now)
            report.sent_now.append(reminder.key)
        return report

    async def run_once(self, now: datetime | None = None) -> RunReport:
        now = now or datetime.now(UTC)
        leads, holds = await asyncio.to_thread(self.source.load)
        states = await asyncio.to_thread(evaluate, leads, holds, now)
        due = due_reminders(states)
        report = await self._deliver(due, now)
        report.leads, report.due = len(leads), len(due)
        sent = await asyncio.to_thread(self.ledger.sent_rows)
        series = series_from_states(states, now, sent)
        ts = int(now.timestamp() * 1000)
        self.tsdb.add_metadata(self.tenant, SERIES_METADATA)
        result = await self.tsdb.append_async(
            self.tenant, SampleBatch.from_series((lb, [ts], [v]) for lb, v in series)
        )
        if not result.ok:
            log.warning("lead protection series: %s", result.summary())
        self.last = report
        return report

    async def run_forever(self) -> None:
        try:
            while True:
                began = time.monotonic()
                try:
                    await self.run_once()
                except asyncio.CancelledError:
                    raise
                except Exception:  # the CRM is down, ...: keep the schedule
                    log.exception("lead protection run failed")
                await asyncio.sleep(max(0.0, self.interval_s - (time.monotonic() - began)))
        finally:
            await asyncio.to_thread(self.source.close)
            closer = getattr(self.send, "aclose", None)
            if closer is not None:
                with contextlib.suppress(Exception):
                    await closer()


def lead_protection_job(
    section: Any,
    *,
    sql_sources: Sequence[SqlSourceConfig],
    tsdb: TSDB,
    state: StateStore,
    events: Callable[[], Any],
    evaluation_interval_s: float,
) -> LeadProtectionJob:
    """The job as the configuration asks: ``section`` is the raw ``freshfoodz:`` section (or
    None). The CRM is the SQL source named ``lead_protection.sql_source`` when one is
    configured (its interval by default), else the events store (``evaluation_interval``)."""
    config = FreshfoodzConfig.model_validate(section or {}).lead_protection
    crm = next((s for s in sql_sources if s.name == config.sql_source), None)
    source: LeadSource
    if crm is not None:
        source, interval = CrmSource(crm.resolved_url()), crm.interval.total_seconds()
    else:
        source, interval = EventsSource(events, config.tenant), evaluation_interval_s
    if config.interval is not None:
        interval = config.interval.total_seconds()
    timeout = config.reminder_timeout.total_seconds()
    send: ReminderSender = (
        WebhookSender(config.reminder_webhook, timeout) if config.reminder_webhook else log_sender
    )
    return LeadProtectionJob(
        source,
        ReminderLedger(state.kv(KV_NAMESPACE), config.tenant),
        tsdb,
        interval_s=interval,
        tenant=config.tenant,
        send=send,
        lease=timedelta(seconds=max(3 * timeout, interval)),
    )
