"""The notification log (Alertmanager's ``nflog``): what was last sent per group and receiver.

One entry per (aggregation group key, receiver integration) holds the sets of firing and
resolved alerts (by fingerprint) of the last successful notification and when it was sent.
The dedup stage compares the current group against it, so the log is written through to the
state store: after a restart the same notification is not sent twice, and a changed group is
still sent.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

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
    ) -> None:
        self.tenant = tenant
        self.retention = retention
        self._engine = engine
        self._entries: dict[tuple[str, str], NotifyEntry] = {}

    def query(self, group_key: str, receiver: ReceiverKey | str) -> NotifyEntry | None:
        return self._entries.get((group_key, str(receiver)))

    def entries(self) -> list[NotifyEntry]:
        return list(self._entries.values())

    def log(
        self,
        receiver: ReceiverKey | str,
        group_key: str,
        firing: Iterable[int],
        resolved: Iterable[int],
        now: datetime,
    ) -> NotifyEntry:
        entry = NotifyEntry(
            group_key=group_key,
            receiver=str(receiver),
            firing=frozenset(firing),
            resolved=frozenset(resolved),
            timestamp=now,
            expires_at=now + self.retention,
        )
        if self._engine is not None:
            from signalroom.storage.schema import alerting_nflog as t

            with self._engine.begin() as conn:
                conn.execute(
                    sa.delete(t).where(
                        t.c.tenant == self.tenant,
                        t.c.group_key == group_key,
                        t.c.receiver == entry.receiver,
                    )
                )
                conn.execute(
                    sa.insert(t),
                    {
                        "tenant": self.tenant,
                        "group_key": group_key,
                        "receiver": entry.receiver,
                        "firing": sorted(f"{fp:016x}" for fp in entry.firing),
                        "resolved": sorted(f"{fp:016x}" for fp in entry.resolved),
                        "timestamp": now,
                        "expires_at": entry.expires_at,
                    },
                )
        self._entries[(group_key, entry.receiver)] = entry
        return entry

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
