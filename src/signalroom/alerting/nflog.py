"""The notification log (Alertmanager's ``nflog``): what was last sent per group and receiver.

One entry per (aggregation group key, receiver integration) holds the sets of firing and
resolved alerts (by fingerprint) of the last successful notification and when it was sent.
The dedup stage compares the current group against it, so the log is written through to the
state store: after a restart the same notification is not sent twice, and a changed group is
still sent. ``record`` (the pipeline's path) returns once the entry is committed; with a
``StateWriter`` the entries of concurrent flushes share one commit.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from signalroom.alerting.persist import Op, StateWriter, executemany, upsert

__all__ = ["DEFAULT_RETENTION", "NotificationLog", "NotifyEntry", "ReceiverKey"]

DEFAULT_RETENTION = timedelta(hours=120)


@dataclass(frozen=True, slots=True)
class ReceiverKey:
    """One integration of a receiver: ``team-x/webhook/0`` (``nflogpb.Receiver``)."""

    group_name: str
    integration: str
    idx: int

    def __str__(self) -> str:
        return f"{self.group_name}/{self.integration}/{self.idx}"


@dataclass(frozen=True, slots=True)
class NotifyEntry:
    """The last notification of one group to one integration."""

    group_key: str
    receiver: str
    firing: frozenset[int]
    resolved: frozenset[int]
    timestamp: datetime
    expires_at: datetime

    def is_firing_subset(self, subset: Iterable[int]) -> bool:
        return all(fp in self.firing for fp in subset)

    def is_resolved_subset(self, subset: Iterable[int]) -> bool:
        return all(fp in self.resolved for fp in subset)


class NotificationLog:
    """Entries of one tenant, in memory and written through to the state store."""

    def __init__(
        self,
        tenant: str = "default",
        engine: sa.Engine | None = None,
        *,
        retention: timedelta = DEFAULT_RETENTION,
        writer: StateWriter | None = None,
    ) -> None:
        self.tenant = tenant
        self.retention = retention
        self._engine = engine
        self._writer = writer
        self._entries: dict[tuple[str, str], NotifyEntry] = {}
        self._unsaved: dict[tuple[str, str], NotifyEntry] = {}

    def query(self, group_key: str, receiver: ReceiverKey | str) -> NotifyEntry | None:
        return self._entries.get((group_key, str(receiver)))

    def entries(self) -> list[NotifyEntry]:
        return list(self._entries.values())

    def _entry(
        self,
        receiver: ReceiverKey | str,
        group_key: str,
        firing: Iterable[int],
        resolved: Iterable[int],
        now: datetime,
    ) -> NotifyEntry:
        return NotifyEntry(
            group_key=group_key,
            receiver=str(receiver),
            firing=frozenset(firing),
            resolved=frozenset(resolved),
            timestamp=now,
            expires_at=now + self.retention,
        )

    def log(
        self,
        receiver: ReceiverKey | str,
        group_key: str,
        firing: Iterable[int],
        resolved: Iterable[int],
        now: datetime,
    ) -> NotifyEntry:
        """Record a notification, committing it in its own transaction (blocking)."""
        entry = self._entry(receiver, group_key, firing, resolved, now)
        if self._engine is not None:
            with self._engine.begin() as conn:
                self._write(conn, entry)
        self._entries[(group_key, entry.receiver)] = entry
        return entry

    async def record(
        self,
        receiver: ReceiverKey | str,
        group_key: str,
        firing: Iterable[int],
        resolved: Iterable[int],
        now: datetime,
    ) -> NotifyEntry:
        """``log`` for the event loop: returns once the entry is durable, then the dedup
        stage sees it. The entries of concurrent flushes are written as one upsert."""
        if self._writer is None:
            return await asyncio.to_thread(self.log, receiver, group_key, firing, resolved, now)
        entry = self._entry(receiver, group_key, firing, resolved, now)
        self._unsaved[(group_key, entry.receiver)] = entry
        await self._writer.write_coalesced(("nflog", self.tenant), self._take_unsaved)
        self._entries[(group_key, entry.receiver)] = entry
        return entry

    def _take_unsaved(self) -> Op | None:
        entries, self._unsaved = list(self._unsaved.values()), {}
        if not entries or self._engine is None:
            return None
        from signalroom.storage.schema import alerting_nflog as t

        rows = [self._row(e) for e in entries]
        return executemany(self._engine, "nflog-upsert", upsert(self._engine, t), rows)

    def _row(self, entry: NotifyEntry) -> dict[str, object]:
        return {
            "tenant": self.tenant,
            "group_key": entry.group_key,
            "receiver": entry.receiver,
            "firing": sorted(f"{fp:016x}" for fp in entry.firing),
            "resolved": sorted(f"{fp:016x}" for fp in entry.resolved),
            "timestamp": entry.timestamp,
            "expires_at": entry.expires_at,
        }

    def _write(self, conn: sa.Connection, entry: NotifyEntry) -> None:
        from signalroom.storage.schema import alerting_nflog as t

        assert self._engine is not None
        conn.execute(upsert(self._engine, t), [self._row(entry)])

    def gc(self, now: datetime) -> int:
        gone = [k for k, e in list(self._entries.items()) if e.expires_at <= now]
        for k in gone:
            del self._entries[k]
        if gone and self._engine is not None:
            from signalroom.storage.schema import alerting_nflog as t

            with self._engine.begin() as conn:
                conn.execute(sa.delete(t).where(t.c.tenant == self.tenant, t.c.expires_at <= now))
        return len(gone)

    def load(self) -> int:
        if self._engine is None:
            return 0
        from signalroom.storage.schema import alerting_nflog as t

        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(t).where(t.c.tenant == self.tenant)).all()
        for row in rows:
            self._entries[(row.group_key, row.receiver)] = NotifyEntry(
                group_key=row.group_key,
                receiver=row.receiver,
                firing=frozenset(int(x, 16) for x in row.firing),
                resolved=frozenset(int(x, 16) for x in row.resolved),
                timestamp=_aware(row.timestamp),
                expires_at=_aware(row.expires_at),
            )
        return len(rows)


def _aware(value: datetime) -> datetime:
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)
