"""Run a SQL source's queries once and turn the rows into samples.

Each query runs in its own transaction, so a failing query (syntax error, missing table,
timeout) costs only its own series: the others still run. The outcome is reported as series
too: ``sql_source_up{source}`` (1 when every query and the connection worked),
``sql_source_query_up{source,query}``, ``sql_source_errors_total{source,query}`` and
``sql_source_duration_seconds{source}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.sqlsource import postgres
from signalroom.sqlsource.config import SqlQueryConfig, SqlSourceConfig
from signalroom.tsdb import TSDB, AppendResult, MetricMetadata, SampleBatch

__all__ = ["RunResult", "SqlSourceRunner", "rows_to_series", "to_float"]

log = logging.getLogger("signalroom.sqlsource")

Series = tuple[Labels, float]

SELF_METADATA = (
    MetricMetadata("sql_source_up", "gauge", "1 when every query of the SQL source worked"),
    MetricMetadata("sql_source_query_up", "gauge", "1 when the query worked on its last run"),
    MetricMetadata("sql_source_errors_total", "counter", "Failed runs of a SQL source query"),
    MetricMetadata("sql_source_duration_seconds", "gauge", "Duration of the last run"),
)


def to_float(value: Any) -> float | None:
    """A cell as a sample value: numbers, booleans (1/0), timestamps (Unix seconds) and
    intervals (seconds); None and anything else gives None (the row is skipped)."""
    if value is None:
        return None
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float | Decimal):
        return float(value)
    if isinstance(value, datetime):
        if value.tzinfo is None:  # a naive timestamp is read as UTC
            value = value.replace(tzinfo=UTC)
        return float(value.timestamp())
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC).timestamp()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _label_value(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def rows_to_series(
    query: SqlQueryConfig, source: str, rows: Sequence[Mapping[Any, Any]]
) -> list[Series]:
    """Series of one query's rows: labels from the label columns, one series per value
    column. Missing columns raise KeyError (a configuration error reported as a failure)."""
    out: list[Series] = []
    for row in rows:
        base = {
            **query.static_labels,
            **{name: _label_value(row[name]) for name in query.labels},
            "source": source,
        }
        for column in query.values:
            value = to_float(row[column])
            if value is None:
                continue
            labels = {METRIC_NAME: query.metric, **base}
            if query.value_label is not None:
                labels[query.value_label] = column
            out.append((Labels(labels), value))
    return out


@dataclass
class RunResult:
    """One run of a source: the series it produced and the queries that failed."""

    series: list[Series] = field(default_factory=list)
    errors: dict[str, str] = field(default_factory=dict)
    connected: bool = True
    duration: float = 0.0

    @property
    def up(self) -> bool:
        return self.connected and not self.errors


class SqlSourceRunner:
    """Runs one configured source against its database (blocking; call it in a thread)."""

    def __init__(self, config: SqlSourceConfig) -> None:
        self.config = config
        self.errors_total: dict[str, int] = {q.metric: 0 for q in config.queries}
        if config.postgres_builtin:
            self.errors_total.setdefault(postgres.BUILTIN, 0)
        self._engine: sa.Engine | None = None

    def engine(self) -> sa.Engine:
        if self._engine is None:
            url = sa.make_url(self.config.resolved_url())
            timeout_s = max(1, int(self.config.timeout.total_seconds()))
            connect_args: dict[str, Any] = {}
            if url.get_backend_name() == "postgresql":
                connect_args = {
                    "connect_timeout": timeout_s,
                    "options": f"-c statement_timeout={timeout_s * 1000}",
                    "application_name": f"signalroom-sql-source-{self.config.name}",
                }
            # One connection per source is enough; SQLite's pools take no size arguments.
            pool: dict[str, Any] = (
                {} if url.get_backend_name() == "sqlite" else {"pool_size": 1, "max_overflow": 1}
            )
            self._engine = sa.create_engine(
                url, pool_pre_ping=True, connect_args=connect_args, **pool
            )
        return self._engine

    def dispose(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def run(self) -> RunResult:
        """Run every query (and the PostgreSQL built-ins) once; never raises."""
        started = time.monotonic()
        result = RunResult()
        try:
            with self.engine().connect() as conn:
                for query in self.config.queries:
                    try:
                        with conn.begin():
                            rows = conn.execute(sa.text(query.sql)).mappings().all()
                        result.series.extend(rows_to_series(query, self.config.name, rows))
                    except Exception as exc:  # any failure of one query: report, go on
                        self._failed(result, query.metric, exc)
                if self.config.postgres_builtin:
                    try:
                        result.series.extend(
                            postgres.builtin_series(
                                conn,
                                self.config.name,
                                self.config.slow_statement_threshold,
                                self.config.slow_statement_limit,
                            )
                        )
                    except Exception as exc:
                        self._failed(result, postgres.BUILTIN, exc)
        except Exception as exc:  # connection refused, bad URL, missing secret file, ...
            result.connected = False
            result.errors["connection"] = _short(exc)
            for name in self.errors_total:
                self.errors_total[name] += 1
            log.warning("SQL source %s: cannot connect: %s", self.config.name, _short(exc))
        if self.config.postgres_builtin:
            result.series.append(
                (
                    Labels({METRIC_NAME: "pg_up", "source": self.config.name}),
                    1.0 if result.connected else 0.0,
                )
            )
        result.duration = time.monotonic() - started
        result.series.extend(self._self_series(result))
        return result

    def _failed(self, result: RunResult, name: str, exc: BaseException) -> None:
        result.errors[name] = _short(exc)
        self.errors_total[name] = self.errors_total.get(name, 0) + 1
        log.warning("SQL source %s: query %s failed: %s", self.config.name, name, _short(exc))

    def _self_series(self, result: RunResult) -> list[Series]:
        source = self.config.name
        out: list[Series] = [
            (Labels({METRIC_NAME: "sql_source_up", "source": source}), float(result.up)),
            (
                Labels({METRIC_NAME: "sql_source_duration_seconds", "source": source}),
                result.duration,
            ),
        ]
        for name, count in self.errors_total.items():
            failed = not result.connected or name in result.errors
            out.append(
                (
                    Labels({METRIC_NAME: "sql_source_query_up", "source": source, "query": name}),
                    0.0 if failed else 1.0,
                )
            )
            out.append(
                (
                    Labels(
                        {METRIC_NAME: "sql_source_errors_total", "source": source, "query": name}
                    ),
                    float(count),
                )
            )
        return out

    def metadata(self) -> list[MetricMetadata]:
        own = [MetricMetadata(q.metric, q.type, q.help) for q in self.config.queries]
        builtin = list(postgres.METADATA) if self.config.postgres_builtin else []
        return [*SELF_METADATA, *own, *builtin]


async def write_run(tsdb: TSDB, tenant: str, result: RunResult, at_ms: int) -> AppendResult:
    """Append one sample per series of ``result`` at ``at_ms``."""
    batch = SampleBatch.from_series(
        (labels, [at_ms], [value]) for labels, value in result.series if not math.isnan(value)
    )
    return await tsdb.append_async(tenant, batch)


def _short(exc: BaseException) -> str:
    text = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"[:500]
