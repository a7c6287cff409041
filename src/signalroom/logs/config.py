"""The ``logs:`` section of ``signalroom.yml``.

Kept free of imports from :mod:`signalroom.config` so that module can import this one.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, field_validator

from signalroom.units import parse_bytes, parse_duration_ms

__all__ = [
    "LogRulerConfig",
    "LogsConfig",
    "RedactionConfig",
    "RedactionPattern",
    "StreamRetention",
    "SyslogConfig",
    "ThrottleConfig",
]


def _duration(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a duration such as 30s or 7d")
    return value if isinstance(value, int) else parse_duration_ms(value)


def _size(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise ValueError("expected a size such as 256KB")
    return parse_bytes(value)


DurationMs = Annotated[int, BeforeValidator(_duration)]
ByteSize = Annotated[int, BeforeValidator(_size)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class RedactionPattern(_Model):
    """A site-specific secret: every match of ``regex`` (RE2 syntax) becomes the replacement."""

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")
    regex: str
    replacement: str | None = None
    """Default ``[REDACTED:<name>]``."""

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"invalid regular expression: {exc}") from None
        return value


BUILTIN_REDACTIONS = ("email", "card", "iban", "phone", "bearer", "jwt", "api_key")


class RedactionConfig(_Model):
    """PII removed from lines before anything is stored."""

    enabled: bool = True
    builtins: list[str] = Field(default_factory=lambda: list(BUILTIN_REDACTIONS))
    patterns: list[RedactionPattern] = Field(default_factory=list)
    fields: list[str] = Field(
        default_factory=lambda: [
            "password", "passwd", "pwd", "secret", "client_secret", "api_key", "apikey",
            "access_token", "refresh_token", "token", "authorization", "cookie", "set-cookie",
        ]
    )  # fmt: skip
    """JSON keys and logfmt keys whose values are replaced whatever they hold."""

    @field_validator("builtins")
    @classmethod
    def _known(cls, value: list[str]) -> list[str]:
        unknown = sorted(set(value) - set(BUILTIN_REDACTIONS))
        if unknown:
            raise ValueError(
                f"unknown redaction {', '.join(unknown)}; known: {', '.join(BUILTIN_REDACTIONS)}"
            )
        return value


class ThrottleConfig(_Model):
    """A token bucket per stream; lines over it are dropped and counted."""

    lines_per_second: float = Field(default=20_000, gt=0)
    burst_lines: int = Field(default=200_000, gt=0)


class StreamRetention(_Model):
    """Keep streams matching ``selector`` (a LogQL stream selector) for ``period``."""

    selector: str
    period: DurationMs


class SyslogConfig(_Model):
    """Syslog receivers (RFC 5424 and RFC 3164). ``host:port``; unset means off."""

    udp: str | None = None
    tcp: str | None = None
    max_message_bytes: ByteSize = 64 * 1024


class LogRulerConfig(_Model):
    """LogQL rule files in Loki's ruler format (Prometheus rule groups whose ``expr`` is a
    LogQL metric query); alerts go to the alert manager, recordings to the metric store."""

    rule_files: list[str] = Field(default_factory=list)
    """Globs, relative to the configuration file."""
    tenant: str = "default"
    """The log tenant whose lines the rules query."""
    evaluation_interval: DurationMs = 60_000
    """Interval of groups that set none (Loki's ``evaluation_interval``)."""


class LogsConfig(_Model):
    """Settings of the log pipeline, store and query engine."""

    enabled: bool = True
    retention: DurationMs = 30 * 24 * 3_600_000
    retention_streams: list[StreamRetention] = Field(default_factory=list)
    labels: list[str] = Field(default_factory=list)
    """Record fields promoted to stream labels besides service, level, env and host."""
    max_line_bytes: ByteSize = 256 * 1024
    """Longer lines are truncated (and counted)."""
    max_label_value_bytes: int = 1024
    redaction: RedactionConfig = Field(default_factory=RedactionConfig)
    throttle: ThrottleConfig = Field(default_factory=ThrottleConfig)
    syslog: SyslogConfig = Field(default_factory=SyslogConfig)
    ruler: LogRulerConfig = Field(default_factory=LogRulerConfig)
    max_entries_limit: int = Field(default=5000, gt=0)
    """Most log lines one query returns (Loki's ``max_entries_limit_per_query``)."""
    max_query_series: int = Field(default=500, gt=0)
    max_query_lookback: DurationMs = 0
    query_timeout: DurationMs = 60_000
    flush_rows: int = Field(default=500_000, gt=0)
    flush_interval: DurationMs = 60_000

    @field_validator("labels")
    @classmethod
    def _label_names(cls, value: list[str]) -> list[str]:
        for name in value:
            if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
                raise ValueError(f"invalid label name {name!r}")
        return value
