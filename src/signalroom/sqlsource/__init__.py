"""SQL sources: configured SQL queries run on a schedule against external databases, their rows
turned into series (like sql_exporter); PostgreSQL built-ins for pg_up, connections by state
and slow statements from pg_stat_statements."""

from signalroom.sqlsource.config import SqlQueryConfig, SqlSourceConfig
from signalroom.sqlsource.runner import RunResult, SqlSourceRunner, rows_to_series, to_float
from signalroom.sqlsource.service import SqlSourceService

__all__ = [
    "RunResult",
    "SqlQueryConfig",
    "SqlSourceConfig",
    "SqlSourceRunner",
    "SqlSourceService",
    "rows_to_series",
    "to_float",
]
