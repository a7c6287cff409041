"""From received entries to stored rows: labels, limits, trace ids, redaction, throttling.

Receivers (Loki push, OTLP, Elasticsearch bulk, JSON, syslog) turn their payloads into an
:class:`EntryBatch`; :class:`Pipeline` turns that into a table in :data:`LOG_SCHEMA`. Every
step works on whole columns; Python runs once per distinct stream, not per line.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from signalroom.logs.config import LogsConfig
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_ids
from signalroom.logs.redact import Redactor

__all__ = [
    "EntryBatch",
    "IngestError",
    "Pipeline",
    "PipelineResult",
    "Throttle",
    "parse_timestamp",
    "records_to_batch",
]

log = logging.getLogger(__name__)

LINES_RECEIVED = Counter(
    "signalroom_logs_received_lines_total", "Log lines received.", ["tenant", "receiver"]
)
LINES_THROTTLED = Counter(
    "signalroom_logs_throttled_lines_total",
    "Log lines dropped because their stream exceeded its rate limit.",
    ["tenant"],
)
LINES_TRUNCATED = Counter(
    "signalroom_logs_truncated_lines_total", "Log lines cut to logs.max_line_bytes.", ["tenant"]
)

LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
STANDARD_LABELS = ("service", "level", "env", "host")
_TRACE_RE = r'(?i)(?:"trace_?id"\s*:\s*"|\btrace_?id=)(?P<id>[0-9a-f]{16,32})'
_SPAN_RE = r'(?i)(?:"span_?id"\s*:\s*"|\bspan_?id=)(?P<id>[0-9a-f]{16})'
_ID_KEYS = "(?i)(?:trace|span)_?id"  # what a line needs for either pattern to match

_LEVELS = {
    "emerg": "critical", "emergency": "critical", "alert": "critical", "crit": "critical",
    "critical": "critical", "fatal": "fatal", "panic": "critical", "err": "error",
    "error": "error", "eror": "error", "warn": "warn", "warning": "warn", "notice": "info",
    "info": "info", "information": "info", "informational": "info", "debug": "debug",
    "dbug": "debug", "trace": "trace",
}  # fmt: skip


class IngestError(ValueError):
    """Invalid input; the message names what is wrong (answered as 400)."""


def normalise_level(value: Any) -> str:
    text = str(value).strip().lower()
    return _LEVELS.get(text, text or "unknown")


@dataclass
class EntryBatch:
    """Received entries: row ``i`` belongs to ``streams[stream_index[i]]``."""

    streams: list[dict[str, str]]
    stream_index: np.ndarray[Any, np.dtype[np.int64]]
    timestamps: np.ndarray[Any, np.dtype[np.int64]]
    lines: list[str] | pa.Array
    trace_ids: list[str | None] | None = None
    span_ids: list[str | None] | None = None
    metadata: list[str | None] | None = None  # sorted JSON objects

    def __len__(self) -> int:
        return len(self.timestamps)

    @classmethod
    def concat(cls, batches: Sequence[EntryBatch]) -> EntryBatch:
        streams: list[dict[str, str]] = []
        indexes: list[Any] = []
        stamps: list[Any] = []
        lines: list[str] = []
        traces: list[str | None] = []
        spans: list[str | None] = []
        meta: list[str | None] = []
        for batch in batches:
            indexes.append(batch.stream_index + len(streams))
            streams.extend(batch.streams)
            stamps.append(batch.timestamps)
            lines.extend(
                batch.lines.to_pylist() if isinstance(batch.lines, pa.Array) else batch.lines
            )
            n = len(batch)
            traces.extend(batch.trace_ids or [None] * n)
            spans.extend(batch.span_ids or [None] * n)
            meta.extend(batch.metadata or [None] * n)
        if not stamps:
            return cls([], np.zeros(0, np.int64), np.zeros(0, np.int64), [])
        return cls(
            streams, np.concatenate(indexes), np.concatenate(stamps), lines, traces, spans, meta
        )


@dataclass
class PipelineResult:
    """What the pipeline made of one batch."""

    table: pa.Table
    received: int
    throttled: int = 0
    truncated: int = 0
    redactions: dict[str, int] = field(default_factory=dict)


class Throttle:
    """A token bucket per (tenant, stream); lines beyond it are dropped and counted."""

    def __init__(self, lines_per_second: float, burst: int) -> None:
        self.rate = lines_per_second
        self.burst = float(burst)
        self._buckets: dict[tuple[str, int], tuple[float, float]] = {}
        self._lock = threading.Lock()
        self._warned: dict[tuple[str, int], float] = {}

    def admit(
        self, tenant: str, ids: np.ndarray[Any, np.dtype[np.int64]], now: float | None = None
    ) -> np.ndarray[Any, np.dtype[np.bool_]]:
        """A mask of the rows to keep: each stream's first rows up to its tokens."""
        now = time.monotonic() if now is None else now
        unique, inverse, counts = np.unique(ids, return_inverse=True, return_counts=True)
        allowed = np.empty(len(unique), np.int64)
        with self._lock:
            for i, (sid, count) in enumerate(zip(unique.tolist(), counts.tolist(), strict=True)):
                key = (tenant, sid)
                tokens, last = self._buckets.get(key, (self.burst, now))
                tokens = min(self.burst, tokens + (now - last) * self.rate)
                take = min(count, int(tokens))
                allowed[i] = take
                self._buckets[key] = (tokens - take, now)
            if len(self._buckets) > 200_000:  # forget idle streams (their buckets are full)
                horizon = now - self.burst / self.rate
                self._buckets = {k: v for k, v in self._buckets.items() if v[1] >= horizon}
        if bool(np.all(allowed == counts)):
            return np.ones(len(ids), np.bool_)
        # rank of each row within its stream, in arrival order
        order = np.argsort(inverse, kind="stable")
        starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
        rank = np.empty(len(ids), np.int64)
        rank[order] = np.arange(len(ids)) - starts[inverse[order]]
        keep: np.ndarray[Any, np.dtype[np.bool_]] = rank < allowed[inverse]
        return keep

    def should_warn(self, tenant: str, sid: int, now: float) -> bool:
        key = (tenant, sid)
        if now - self._warned.get(key, -1e9) < 60:
            return False
        self._warned[key] = now
        return True


class Pipeline:
    """Turns :class:`EntryBatch` into stored rows; one per service, reconfigurable."""

    def __init__(self, config: LogsConfig) -> None:
        self.apply_config(config)

    def apply_config(self, config: LogsConfig) -> None:
        self.config = config
        self.redactor = Redactor(config.redaction)
        # label set -> canonical (validated, redacted) stream text; depends on the config
        self._stream_texts: dict[tuple[tuple[str, str], ...], str] = {}
        throttle = config.throttle
        old = getattr(self, "throttle", None)
        if old is None or (old.rate, old.burst) != (
            throttle.lines_per_second,
            float(throttle.burst_lines),
        ):
            self.throttle = Throttle(throttle.lines_per_second, throttle.burst_lines)

    def process(self, tenant: str, batch: EntryBatch, receiver: str = "") -> PipelineResult:
        n = len(batch)
        LINES_RECEIVED.labels(tenant=tenant, receiver=receiver or "api").inc(n)
        if n == 0:
            return PipelineResult(LOG_SCHEMA.empty_table(), 0)
        config = self.config
        stream_texts = [self._stream_text(labels) for labels in batch.streams]
        index = pa.array(batch.stream_index, pa.int64())
        dictionary = pa.array(stream_texts, pa.string())
        stream_col = dictionary.take(index)
        ids = stream_ids(dictionary).take(index)

        lines = batch.lines if isinstance(batch.lines, pa.Array) else pa.array(batch.lines)
        if not pa.types.is_string(lines.type):
            lines = lines.cast(pa.string())
        lines = lines.fill_null("")
        too_long = pc.greater(pc.binary_length(lines), config.max_line_bytes)
        truncated = pc.sum(too_long).as_py() or 0
        if truncated:
            cut = pc.utf8_slice_codeunits(pc.filter(lines, too_long), 0, config.max_line_bytes // 4)
            lines = pc.replace_with_mask(lines, too_long, _cut_bytes(cut, config.max_line_bytes))
            LINES_TRUNCATED.labels(tenant=tenant).inc(truncated)

        trace, span = _extract_ids(lines, batch.trace_ids, batch.span_ids)
        lines, redactions = self.redactor.redact(lines)
        metadata = pa.array(batch.metadata or [None] * n, pa.string())
        if metadata.null_count < n:
            metadata, more = self.redactor.redact(metadata)
            for key, value in more.items():
                redactions[key] = redactions.get(key, 0) + value

        table = pa.Table.from_arrays(
            [
                pa.array(batch.timestamps, pa.int64()),
                ids,
                stream_col,
                lines,
                trace,
                span,
                metadata,
            ],
            schema=LOG_SCHEMA,
        )
        keep = self.throttle.admit(tenant, ids.to_numpy())
        throttled = int(n - keep.sum())
        if throttled:
            LINES_THROTTLED.labels(tenant=tenant).inc(throttled)
            dropped_ids = np.unique(ids.to_numpy()[~keep])
            now = time.monotonic()
            for sid in dropped_ids.tolist():
                if self.throttle.should_warn(tenant, sid, now):
                    where = np.flatnonzero(ids.to_numpy() == sid)[0]
                    log.warning(
                        "log stream over its rate limit: dropping lines",
                        extra={
                            "tenant": tenant,
                            "stream": stream_col[int(where)].as_py(),
                            "lines_per_second": config.throttle.lines_per_second,
                        },
                    )
            table = table.filter(pa.array(keep))
        return PipelineResult(table, n, throttled, int(truncated), redactions)

    def _stream_text(self, labels: Mapping[str, str]) -> str:
        key = tuple(labels.items())
        text = self._stream_texts.get(key)
        if text is None:
            text = self._checked_stream_text(labels)
            if len(self._stream_texts) >= 100_000:
                self._stream_texts.clear()
            self._stream_texts[key] = text
        return text

    def _checked_stream_text(self, labels: Mapping[str, str]) -> str:
        limit = self.config.max_label_value_bytes
        clean: dict[str, str] = {}
        for name, value in labels.items():
            if not LABEL_NAME.match(name):
                raise IngestError(f"invalid label name {name!r}: use [a-zA-Z_][a-zA-Z0-9_]*")
            if name.startswith("__"):
                raise IngestError(f"label name {name!r} is reserved (starts with __)")
            text = str(value)
            if len(text.encode()) > limit:
                raise IngestError(
                    f"label {name!r} value is longer than logs.max_label_value_bytes ({limit})"
                )
            if text:
                clean[name] = text
        if not clean:
            clean["service"] = "unknown_service"
        return (
            self.redactor.redact_text(format_labels(clean))
            if self.redactor.enabled
            else (format_labels(clean))
        )


def _cut_bytes(cut: pa.Array, max_bytes: int) -> pa.Array:
    out = []
    for text in cut.to_pylist():
        data = text.encode()[:max_bytes]
        out.append(data.decode("utf-8", "ignore"))
    return pa.array(out, pa.string())


def _extract_ids(
    lines: pa.Array, given_traces: list[str | None] | None, given_spans: list[str | None] | None
) -> tuple[pa.Array, pa.Array]:
    """Trace and span ids of the lines (lower-case), the given ones first. One cheap pass finds
    the lines naming either key; the id patterns run on those alone (regex passes over every
    line are what this step costs)."""
    traces: pa.Array = pa.nulls(len(lines), pa.string())
    spans: pa.Array = traces
    keyed = pc.match_substring_regex(lines, _ID_KEYS)
    if pc.any(keyed).as_py():
        candidates = pc.filter(lines, keyed)
        found = []
        for pattern in (_TRACE_RE, _SPAN_RE):
            ids = pc.ascii_lower(pc.struct_field(pc.extract_regex(candidates, pattern), [0]))
            found.append(pc.replace_with_mask(traces, keyed, ids))  # null where no match
        traces, spans = found
    return _given_first(given_traces, traces), _given_first(given_spans, spans)


def _given_first(given: list[str | None] | None, extracted: pa.Array) -> pa.Array:
    if given is None:
        return extracted
    return pc.coalesce(pc.utf8_lower(pa.array(given, pa.string())), extracted)


# --- structured records (JSON API, Elasticsearch documents) --------------------------------

_TIME_KEYS = ("timestamp", "@timestamp", "ts", "time", "datetime", "date")
_MESSAGE_KEYS = ("message", "msg", "line", "log", "text")
_LEVEL_KEYS = ("level", "severity", "log.level", "lvl", "loglevel", "severity_text")
_SERVICE_KEYS = ("service", "service.name", "service_name", "app", "application", "logger_name")
_ENV_KEYS = ("env", "environment", "deployment.environment", "deployment_environment")
_HOST_KEYS = ("host", "hostname", "host.name", "host_name")
_TRACE_KEYS = ("trace_id", "traceId", "traceID", "trace.id")
_SPAN_KEYS = ("span_id", "spanId", "spanID", "span.id")


def parse_timestamp(value: Any, field_name: str = "timestamp") -> int:
    """Nanoseconds from RFC 3339 text or a number in s, ms, us or ns (by magnitude)."""
    if isinstance(value, bool):
        raise IngestError(f"{field_name}: expected a time, got a boolean")
    if isinstance(value, int | float):
        number = float(value)
        if number < 0:
            raise IngestError(f"{field_name}: negative time {value}")
        if number < 1e11:
            return round(number * 1e9)
        if number < 1e14:
            return round(number * 1e6)
        if number < 1e17:
            return round(number * 1e3)
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.isdigit() or _is_number(text):
            return parse_timestamp(float(text) if "." in text else int(text), field_name)
        return _parse_rfc3339(text, field_name)
    raise IngestError(f"{field_name}: expected a time, got {type(value).__name__}")


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


_RFC3339 = re.compile(
    r"^(\d{4}-\d{2}-\d{2})[Tt ](\d{2}:\d{2}:\d{2})(?:[.,](\d{1,9}))?(Z|z|[+-]\d{2}:?\d{2})?$"
)


def _parse_rfc3339(text: str, field_name: str) -> int:
    match = _RFC3339.match(text)
    if not match:
        raise IngestError(f"{field_name}: cannot parse {text!r} as an RFC 3339 time")
    date, clock, fraction, zone = match.groups()
    zone = "+00:00" if zone in (None, "Z", "z") else zone
    if len(zone) == 5:
        zone = zone[:3] + ":" + zone[3:]
    try:
        base = datetime.fromisoformat(f"{date}T{clock}{zone}")
    except ValueError as exc:
        raise IngestError(f"{field_name}: {exc}") from None
    nanos = int((fraction or "0").ljust(9, "0"))
    return int(base.timestamp()) * 10**9 + nanos


def _flatten(record: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(_flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _pick(flat: Mapping[str, Any], keys: Iterable[str]) -> tuple[str | None, Any]:
    for key in keys:
        value = flat.get(key)
        if value is not None and value != "":
            return key, value
    return None, None


def records_to_batch(
    records: Sequence[Mapping[str, Any]],
    *,
    extra_label_fields: Sequence[str] = (),
    fixed_labels: Mapping[str, str] | None = None,
    now_ns: int | None = None,
    where: str = "record",
) -> EntryBatch:
    """Structured records (JSON objects) to entries.

    Stream labels: ``labels`` (an object) if given, then service, level, env and host found
    under their usual names (``service.name``, ``log.level``, ``host.name``...), then the
    configured fields. The line is the message when the record holds nothing else, otherwise
    the record as compact JSON (without the time and ``labels``), for ``| json`` to read.
    """
    now = time.time_ns() if now_ns is None else now_ns
    stream_of: dict[tuple[tuple[str, str], ...], int] = {}
    streams: list[dict[str, str]] = []
    index = np.empty(len(records), np.int64)
    stamps = np.empty(len(records), np.int64)
    lines: list[str] = []
    traces: list[str | None] = []
    spans: list[str | None] = []
    for i, record in enumerate(records):
        if not isinstance(record, Mapping):
            raise IngestError(f"{where} {i}: expected a JSON object, got {type(record).__name__}")
        flat = _flatten(record)
        time_key, time_value = _pick(flat, _TIME_KEYS)
        stamps[i] = (
            now if time_key is None else parse_timestamp(time_value, f"{where} {i}: {time_key}")
        )
        labels: dict[str, str] = dict(fixed_labels or {})
        given = record.get("labels")
        if given is not None:
            if not isinstance(given, Mapping):
                raise IngestError(f"{where} {i}: labels: expected an object")
            labels.update({str(k): str(v) for k, v in given.items()})
        for name, keys in (
            ("service", _SERVICE_KEYS), ("level", _LEVEL_KEYS),
            ("env", _ENV_KEYS), ("host", _HOST_KEYS),
        ):  # fmt: skip
            if name not in labels:
                _, value = _pick(flat, keys)
                if value is not None and not isinstance(value, list):
                    labels[name] = normalise_level(value) if name == "level" else str(value)
        for name in extra_label_fields:
            value = flat.get(name)
            if value is not None and name not in labels:
                labels[name.replace(".", "_")] = str(value)
        key = tuple(sorted(labels.items()))
        position = stream_of.get(key)
        if position is None:
            position = stream_of[key] = len(streams)
            streams.append(labels)
        index[i] = position
        _, trace = _pick(flat, _TRACE_KEYS)
        _, span = _pick(flat, _SPAN_KEYS)
        traces.append(str(trace).lower() if trace is not None else None)
        spans.append(str(span).lower() if span is not None else None)
        rest = {k: v for k, v in record.items() if k != "labels" and k != time_key}
        message_key, message = _pick(rest, _MESSAGE_KEYS)
        if message_key is not None and len(rest) == 1 and isinstance(message, str):
            lines.append(message)
        else:
            lines.append(json.dumps(rest, ensure_ascii=False, separators=(",", ":"), default=str))
    return EntryBatch(streams, index, stamps, lines, traces, spans)
