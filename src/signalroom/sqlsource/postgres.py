"""Built-in PostgreSQL series (``postgres_builtin: true``).

* ``pg_up{source}``: 1 when the connection and ``SELECT 1`` worked (set by the runner);
* ``pg_stat_activity_count{source,datname,state}``: client connections by database and state
  (active, idle, idle in transaction, ...; every usual state is reported, 0 included);
* ``pg_stat_statements_available{source}``: 1 when the pg_stat_statements view exists;
* ``pg_slow_statement_mean_seconds{source,queryid,query}`` and
  ``pg_slow_statement_calls_total{...}``: the slowest statements by mean execution time at
  or above the threshold (query text shortened to 120 characters).
"""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.tsdb import MetricMetadata

__all__ = ["BUILTIN", "METADATA", "STATES", "builtin_series"]

BUILTIN = "postgres_builtin"
STATES = (
    "active",
    "idle",
    "idle in transaction",
    "idle in transaction (aborted)",
    "fastpath function call",
    "disabled",
)

METADATA = (
    MetricMetadata("pg_up", "gauge", "1 when the PostgreSQL server answered"),
    MetricMetadata("pg_stat_activity_count", "gauge", "Client connections by database and state"),
    MetricMetadata(
        "pg_stat_statements_available", "gauge", "1 when pg_stat_statements can be read"
    ),
    MetricMetadata(
        "pg_slow_statement_mean_seconds", "gauge", "Mean execution time of a slow statement"
    ),
    MetricMetadata("pg_slow_statement_calls_total", "counter", "Calls of a slow statement"),
)

_ACTIVITY = sa.text(
    "SELECT coalesce(datname, '') AS datname, coalesce(state, 'unknown') AS state, "
    "count(*) AS n FROM pg_stat_activity WHERE backend_type = 'client backend' "
    "GROUP BY 1, 2"
)
# PostgreSQL 13 renamed mean_time to mean_exec_time.
_STATEMENTS = (
    "SELECT queryid::text AS queryid, left(regexp_replace(query, '\\s+', ' ', 'g'), 120) AS q, "
    "calls, {mean} / 1000.0 AS mean_s FROM pg_stat_statements "
    "WHERE {mean} >= :threshold_ms ORDER BY {mean} DESC LIMIT :limit"
)


def builtin_series(
    conn: sa.Connection, source: str, threshold: timedelta, limit: int
) -> list[tuple[Labels, float]]:
    out: list[tuple[Labels, float]] = []
    with conn.begin():
        conn.execute(sa.text("SELECT 1")).scalar_one()
        counts: dict[tuple[str, str], float] = {}
        for row in conn.execute(_ACTIVITY).mappings():
            counts[(row["datname"], row["state"])] = float(row["n"])
        databases = {d for d, _ in counts} or {""}
        for datname in sorted(databases):
            for state in STATES:
                counts.setdefault((datname, state), 0.0)
        for (datname, state), n in sorted(counts.items()):
            labels = {METRIC_NAME: "pg_stat_activity_count", "source": source}
            out.append((Labels({**labels, "datname": datname, "state": state}), n))
        available = conn.execute(
            sa.text("SELECT to_regclass('pg_stat_statements') IS NOT NULL")
        ).scalar_one()
    out.append(
        (
            Labels({METRIC_NAME: "pg_stat_statements_available", "source": source}),
            1.0 if available else 0.0,
        )
    )
    if not available:
        return out
    version = conn.execute(sa.text("SHOW server_version_num")).scalar_one()
    mean = "mean_exec_time" if int(version) >= 130000 else "mean_time"
    params = {"threshold_ms": threshold.total_seconds() * 1000.0, "limit": limit}
    try:
        with conn.begin():
            rows = conn.execute(sa.text(_STATEMENTS.format(mean=mean)), params).mappings().all()
    except sa.exc.DBAPIError:
        # The view exists but the library is not in shared_preload_libraries: not an error
        # of the source, just nothing to report.
        out[-1] = (out[-1][0], 0.0)
        return out
    for row in rows:
        labels = {"source": source, "queryid": str(row["queryid"]), "query": str(row["q"])}
        out.append(
            (
                Labels({METRIC_NAME: "pg_slow_statement_mean_seconds", **labels}),
                float(row["mean_s"]),
            )
        )
        out.append(
            (Labels({METRIC_NAME: "pg_slow_statement_calls_total", **labels}), float(row["calls"]))
        )
    return out
