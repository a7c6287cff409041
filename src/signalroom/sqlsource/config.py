"""Configuration of SQL sources: ``sql_sources:`` is a list of :class:`SqlSourceConfig`.

Example::

    sql_sources:
      - name: crm
        url_file: /run/secrets/crm-db-url        # or url: postgresql+psycopg://...
        interval: 1m
        postgres_builtin: true                  # pg_up, connections by state, slow statements
        queries:
          - metric: crm_leads_open
            help: Open leads per salesperson
            sql: SELECT user_id, team, count(*) AS n FROM leads GROUP BY 1, 2
            values: [n]
            labels: [user_id, team]
          - metric: backup_last_success_timestamp_seconds
            sql: SELECT data_class, max(finished_at) AS t FROM backups WHERE ok GROUP BY 1
            values: [t]                          # timestamps become Unix seconds
            labels: [data_class]
"""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from signalroom.alerting.config import Duration

__all__ = ["SqlQueryConfig", "SqlSourceConfig"]

_METRIC = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_SOURCE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SqlQueryConfig(_Model):
    """One query: every row becomes one series per value column.

    With several ``values`` columns, ``value_label`` names the label that tells them apart
    (its value is the column name), as sql_exporter does.
    """

    metric: str
    help: str = ""
    type: Literal["gauge", "counter"] = "gauge"
    sql: str
    values: list[str] = Field(min_length=1)
    labels: list[str] = Field(default_factory=list)
    value_label: str | None = None
    static_labels: dict[str, str] = Field(default_factory=dict)

    @field_validator("metric")
    @classmethod
    def _metric_name(cls, value: str) -> str:
        if not _METRIC.match(value):
            raise ValueError(f"invalid metric name {value!r}")
        return value

    @model_validator(mode="after")
    def _label_names(self) -> SqlQueryConfig:
        names = [
            *self.labels,
            *self.static_labels,
            *([self.value_label] if self.value_label else []),
        ]
        for name in names:
            if not _LABEL.match(name) or name.startswith("__"):
                raise ValueError(f"invalid label name {name!r}")
        if len(self.values) > 1 and self.value_label is None:
            raise ValueError("several value columns need value_label")
        if "source" in names:
            raise ValueError("'source' is set by signalroom (the source name)")
        return self


class SqlSourceConfig(_Model):
    """A database queried every ``interval``; ``url`` is a SQLAlchemy URL, or ``url_file``
    names a file holding it (a secret). Series carry ``source=<name>``."""

    name: str
    url: str | None = None
    url_file: str | None = None
    interval: Duration = timedelta(minutes=1)
    timeout: Duration = timedelta(seconds=30)
    tenant: str = "default"
    queries: list[SqlQueryConfig] = Field(default_factory=list)
    postgres_builtin: bool = False
    # pg_stat_statements entries with a mean execution time at least this long are "slow".
    slow_statement_threshold: Duration = timedelta(milliseconds=500)
    slow_statement_limit: int = Field(default=20, ge=1, le=1000)

    @field_validator("name")
    @classmethod
    def _source_name(cls, value: str) -> str:
        if not _SOURCE.match(value):
            raise ValueError(f"invalid source name {value!r}")
        return value

    @model_validator(mode="after")
    def _one_url(self) -> SqlSourceConfig:
        if (self.url is None) == (self.url_file is None):
            raise ValueError("give exactly one of url or url_file")
        if self.interval <= timedelta(0) or self.timeout <= timedelta(0):
            raise ValueError("interval and timeout must be positive")
        if not self.queries and not self.postgres_builtin:
            raise ValueError("a SQL source needs queries or postgres_builtin: true")
        return self

    def resolved_url(self) -> str:
        """The URL, read from ``url_file`` when that is given."""
        if self.url is not None:
            return self.url
        assert self.url_file is not None
        return Path(self.url_file).read_text("utf-8").strip()
