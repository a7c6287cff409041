"""The span store: a :class:`DurableTable` of spans, a catalog of services and operations, and
DuckDB over consistent snapshots (Parquet files plus buffered rows)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa

from signalroom.storage.table import DurableTable
from signalroom.storage.wal import FsyncPolicy
from signalroom.traces.model import SPAN_SCHEMA

__all__ = ["TraceStore"]

_SCAN_ATTEMPTS = 4
_COLUMNS = ", ".join(SPAN_SCHEMA.names)


def _sql_string(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class TraceStore:
    """Durable, queryable storage of spans for every tenant."""

    def __init__(
        self,
        directory: Path,
        *,
        wal_fsync: FsyncPolicy = "batch",
        flush_rows: int = 500_000,
        flush_interval_s: float = 60.0,
        row_group_rows: int = 64_000,
    ) -> None:
        self.table = DurableTable(
            Path(directory),
            SPAN_SCHEMA,
            wal_fsync=wal_fsync,
            flush_rows=flush_rows,
            flush_interval_s=flush_interval_s,
            time_column="start_time",
            sort_by=("service", "trace_id"),
            partition="hour",
            row_group_rows=row_group_rows,
            dictionary_columns=["service", "name", "scope", "resource", "status_message"],
            name="spans",
        )
        # tenant -> service -> operation -> span kinds seen
        self._catalog: dict[str, dict[str, dict[str, set[int]]]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ lifecycle

    def open(self) -> TraceStore:
        self.table.open()
        self.rebuild_catalog()
        return self

    def close(self) -> None:
        self.table.close()

    def rebuild_catalog(self) -> None:
        catalog: dict[str, dict[str, dict[str, set[int]]]] = {}
        for tenant in self.table.tenants():
            rows = self.query(
                tenant, None, None, "SELECT DISTINCT service, name, kind FROM {source}"
            ).to_pylist()
            services: dict[str, dict[str, set[int]]] = {}
            for row in rows:
                services.setdefault(row["service"], {}).setdefault(row["name"], set()).add(
                    row["kind"]
                )
            catalog[tenant] = services
        with self._lock:
            self._catalog = catalog

    # ------------------------------------------------------------------ writes

    async def append_async(self, tenant: str, table: pa.Table) -> int:
        """Write spans durably (WAL), then make them visible; returns the WAL LSN."""
        if table.num_rows == 0:
            return 0
        lsn = await self.table.append_async(tenant, table)
        self._note(tenant, table)
        return lsn

    def append(self, tenant: str, table: pa.Table) -> int:
        if table.num_rows == 0:
            return 0
        lsn = self.table.append(tenant, table)
        self._note(tenant, table)
        return lsn

    def _note(self, tenant: str, table: pa.Table) -> None:
        grouped = table.select(["service", "name", "kind"]).group_by(["service", "name", "kind"])
        keys = grouped.aggregate([]).to_pydict()
        with self._lock:
            services = self._catalog.setdefault(tenant, {})
            for service, name, kind in zip(
                keys["service"], keys["name"], keys["kind"], strict=True
            ):
                services.setdefault(service, {}).setdefault(name, set()).add(kind)

    # ------------------------------------------------------------------ reads

    def services(self, tenant: str) -> list[str]:
        with self._lock:
            return sorted(self._catalog.get(tenant, {}))

    def operations(self, tenant: str, service: str) -> list[tuple[str, int]]:
        """(operation, span kind) pairs of ``service``."""
        with self._lock:
            ops = self._catalog.get(tenant, {}).get(service, {})
            return sorted((name, kind) for name, kinds in ops.items() for kind in kinds)

    def query(
        self,
        tenant: str,
        start_ns: int | None,
        end_ns: int | None,
        sql: str,
        params: list[Any] | None = None,
    ) -> pa.Table:
        """Run ``sql`` (``{source}`` stands for the tenant's spans that may overlap
        ``[start_ns, end_ns]``) over one snapshot; retry when a compaction removed a file."""
        for attempt in range(_SCAN_ATTEMPTS):
            snapshot = self.table.snapshot(tenant, start_ns, end_ns)
            connection = duckdb.connect()
            try:
                parts = []
                if snapshot.files:
                    files = ", ".join(_sql_string(str(p)) for p in snapshot.files)
                    parts.append(f"SELECT {_COLUMNS} FROM read_parquet([{files}])")
                buffered = snapshot.buffered if snapshot.buffered.num_rows else None
                if buffered is not None or not parts:
                    connection.register(
                        "buffered_spans",
                        buffered if buffered is not None else SPAN_SCHEMA.empty_table(),
                    )
                    parts.append(f"SELECT {_COLUMNS} FROM buffered_spans")
                source = "(" + " UNION ALL ".join(parts) + ")"
                result: pa.Table = connection.sql(
                    sql.replace("{source}", source), params=params or None
                ).to_arrow_table()
                return result
            except duckdb.IOException:
                if attempt == _SCAN_ATTEMPTS - 1:
                    raise
            finally:
                connection.close()
        raise AssertionError("unreachable")
