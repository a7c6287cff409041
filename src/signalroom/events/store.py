"""Where accepted events live: a :class:`~signalroom.storage.table.DurableTable` of one row per
event, read by DuckDB; and the dead-letter queue (SQLite) of events that could not be stored.

Rows: ``timestamp`` (when it happened, ns), ``event``, ``event_id``, ``user_id`` (PostHog's
distinct id), ``session_id``, ``properties`` (JSON text, PII already hashed or dropped),
``schema_version`` and ``received_at``. Files are partitioned by day and sorted by event name
then time, so a query on a few event names reads few row groups.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from signalroom.storage.table import DurableTable
from signalroom.storage.wal import FsyncPolicy

__all__ = ["EVENT_SCHEMA", "DeadLetter", "DeadLetterQueue", "EventStore"]

EVENT_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns"), nullable=False),
        pa.field("event", pa.string(), nullable=False),
        pa.field("event_id", pa.string(), nullable=False),
        pa.field("user_id", pa.string(), nullable=False),
        pa.field("session_id", pa.string()),
        pa.field("properties", pa.string(), nullable=False),
        pa.field("schema_version", pa.int32()),
        pa.field("received_at", pa.timestamp("ns"), nullable=False),
    ]
)


class EventStore:
    """Durable, queryable events of every tenant under ``directory``."""

    def __init__(
        self,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        flush_rows: int = 500_000,
        flush_interval_s: float = 60.0,
    ) -> None:
        self.table = DurableTable(
            Path(directory),
            EVENT_SCHEMA,
            wal_fsync=wal_fsync,
            flush_rows=flush_rows,
            flush_interval_s=flush_interval_s,
            time_column="timestamp",
            sort_by=("event",),
            partition="day",
            dictionary_columns=["event", "user_id", "session_id", "schema_version"],
            name="events",
        )
        # Compaction and retention change files: one at a time.
        self.files_lock = threading.Lock()

    def open(self) -> None:
        self.table.open()

    def close(self) -> None:
        self.table.close()

    def append(self, tenant: str, rows: pa.Table) -> None:
        if rows.num_rows:
            self.table.append(tenant, rows)

    # ------------------------------------------------------------------ reads

    def register(
        self,
        con: duckdb.DuckDBPyConnection,
        tenant: str,
        start_ns: int | None = None,
        end_ns: int | None = None,
        *,
        name: str = "events",
    ) -> None:
        """Make ``name`` a view of the tenant's events in ``[start_ns, end_ns)`` on ``con``."""
        snapshot = self.table.snapshot(tenant, start_ns, end_ns)
        buffered = snapshot.buffered
        if buffered.num_rows == 0 or buffered.schema != EVENT_SCHEMA:
            buffered = (
                buffered.cast(EVENT_SCHEMA) if buffered.num_rows else EVENT_SCHEMA.empty_table()
            )
        con.register(f"__{name}_buffer", buffered)
        columns = ", ".join(f'"{c}"' for c in EVENT_SCHEMA.names)
        parts = [f"SELECT {columns} FROM __{name}_buffer"]
        if snapshot.files:
            files = ", ".join("'" + str(p).replace("'", "''") + "'" for p in snapshot.files)
            parts.insert(
                0, f"SELECT {columns} FROM read_parquet([{files}], hive_partitioning = false)"
            )
        where = []
        if start_ns is not None:
            where.append(f"timestamp >= make_timestamp_ns({int(start_ns)})")
        if end_ns is not None:
            where.append(f"timestamp < make_timestamp_ns({int(end_ns)})")
        body = " UNION ALL ".join(parts)
        clause = f" WHERE {' AND '.join(where)}" if where else ""
        con.execute(f'CREATE OR REPLACE TEMP VIEW "{name}" AS SELECT * FROM ({body}){clause}')

    def existing_ids(self, tenant: str, ids: Sequence[str], start_ns: int, end_ns: int) -> set[str]:
        """Which of ``ids`` are stored already with a timestamp in ``[start_ns, end_ns]``."""
        if not ids:
            return set()
        con = duckdb.connect()
        try:
            self.register(con, tenant, start_ns, end_ns + 1)
            con.register("__ids", pa.table({"id": pa.array(list(ids), pa.string())}))
            rows = con.execute(
                "SELECT DISTINCT event_id FROM events WHERE event_id IN (SELECT id FROM __ids)"
            ).fetchall()
            return {r[0] for r in rows}
        finally:
            con.close()

    # ------------------------------------------------------------------ GDPR

    def delete_user(self, tenant: str, user_id: str) -> int:
        """Remove every stored event of ``user_id``; returns rows removed. Buffered rows are
        flushed first; the files holding the user's rows are rewritten without them in one
        segment-store transaction (crash-safe; running it again finishes the job)."""
        return self.table.delete_rows(tenant, "user_id", [user_id])

    def stats(self) -> dict[str, Any]:
        stats = self.table.stats()
        return {
            "files": stats.files,
            "bytes": stats.bytes,
            "rows": stats.rows,
            "rows_buffered": stats.rows_buffered,
        }


# ---------------------------------------------------------------------- dead letters


@dataclass(frozen=True)
class DeadLetter:
    """An event that could not be stored, with the reason."""

    id: int
    tenant: str
    received_at: float
    event: str | None
    event_id: str | None
    user_id: str | None
    reason: str
    record: dict[str, Any]

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tenant": self.tenant,
            "received_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.received_at)),
            "event": self.event,
            "event_id": self.event_id,
            "user_id": self.user_id,
            "reason": self.reason,
            "record": self.record,
        }


# DeadLetterQueue.list shadows the builtin inside the class body.
_Letters = list[DeadLetter]


class DeadLetterQueue:
    """Dead letters in SQLite: listed, replayed (taken out to be captured again) and erased."""

    def __init__(self, path: Path, *, max_entries: int = 1_000_000) -> None:
        self.path = Path(path)
        self.max_entries = max_entries
        self.evicted = 0
        self._lock = threading.Lock()
        self._db: sqlite3.Connection | None = None
        self._size = 0

    def open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute(
            "CREATE TABLE IF NOT EXISTS dead_letters (id INTEGER PRIMARY KEY AUTOINCREMENT, "
            "tenant TEXT NOT NULL, received_at REAL NOT NULL, event TEXT, event_id TEXT, "
            "user_id TEXT, reason TEXT NOT NULL, record TEXT NOT NULL)"
        )
        db.execute("CREATE INDEX IF NOT EXISTS dl_tenant ON dead_letters (tenant, id)")
        db.execute("CREATE INDEX IF NOT EXISTS dl_user ON dead_letters (tenant, user_id)")
        self._db = db
        self._size = int(db.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        if self._db is None:
            raise RuntimeError("dead-letter queue is not open")
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield self._db
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")

    @property
    def size(self) -> int:
        return self._size

    def add(self, tenant: str, letters: Sequence[tuple[dict[str, Any], str]]) -> None:
        """Store (record, reason) pairs; past ``max_entries`` the oldest are evicted (counted)."""
        if not letters:
            return
        now = time.time()
        rows = [
            (
                tenant,
                now,
                _str(r.get("event")),
                _str(r.get("id")),
                _str(r.get("user")) or None,
                reason,
                json.dumps(r, default=str),
            )
            for r, reason in letters
        ]
        with self._tx() as db:
            db.executemany(
                "INSERT INTO dead_letters (tenant, received_at, event, event_id, user_id, reason,"
                " record) VALUES (?, ?, ?, ?, ?, ?, ?)",
                rows,
            )
            self._size += len(rows)
            over = self._size - self.max_entries
            if over > 0:
                db.execute(
                    "DELETE FROM dead_letters WHERE id IN "
                    "(SELECT id FROM dead_letters ORDER BY id LIMIT ?)",
                    (over,),
                )
                self._size -= over
                self.evicted += over

    def list(
        self,
        tenant: str,
        *,
        limit: int = 100,
        after_id: int = 0,
        event: str | None = None,
        reason: str | None = None,
    ) -> _Letters:
        sql = "SELECT * FROM dead_letters WHERE tenant = ? AND id > ?"
        args: list[Any] = [tenant, after_id]
        if event is not None:
            sql += " AND event = ?"
            args.append(event)
        if reason is not None:
            sql += " AND instr(reason, ?) > 0"
            args.append(reason)
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._tx() as db:
            rows = db.execute(sql, args).fetchall()
        return [
            DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows
        ]

    def count(self, tenant: str) -> int:
        with self._tx() as db:
            return int(
                db.execute(
                    "SELECT count(*) FROM dead_letters WHERE tenant = ?", (tenant,)
                ).fetchone()[0]
            )

    def take(self, tenant: str, ids: Sequence[int] | None, limit: int) -> _Letters:
        """Remove and return letters (``ids``, or the oldest ``limit``) for replaying."""
        if ids is not None:
            marks = ",".join("?" * len(ids))
            sql, args = f"WHERE tenant = ? AND id IN ({marks})", [tenant, *ids]
        else:
            sql, args = "WHERE tenant = ? ORDER BY id LIMIT ?", [tenant, limit]
        with self._tx() as db:
            rows = db.execute(f"SELECT * FROM dead_letters {sql}", args).fetchall()
            if rows:
                found = [r[0] for r in rows]
                db.execute(
                    f"DELETE FROM dead_letters WHERE id IN ({','.join('?' * len(found))})", found
                )
                self._size -= len(found)
        return [
            DeadLetter(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows
        ]

    def restore(self, letters: Sequence[DeadLetter]) -> None:
        """Put taken letters back (a replay failed to enqueue them)."""
        with self._tx() as db:
            db.executemany(
                "INSERT INTO dead_letters (id, tenant, received_at, event, event_id, user_id, "
                "reason, record) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (
                        d.id,
                        d.tenant,
                        d.received_at,
                        d.event,
                        d.event_id,
                        d.user_id,
                        d.reason,
                        json.dumps(d.record, default=str),
                    )
                    for d in letters
                ],
            )
            self._size += len(letters)

    def delete_user(self, tenant: str, user_id: str) -> int:
        with self._tx() as db:
            cursor = db.execute(
                "DELETE FROM dead_letters WHERE tenant = ? AND user_id = ?", (tenant, user_id)
            )
            self._size -= cursor.rowcount
            return int(cursor.rowcount)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None
