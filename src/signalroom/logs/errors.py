"""Error groups: log records that carry an exception or a stack trace, grouped by fingerprint.

What Sentry gives front ends, from the logs: Python tracebacks, Java and JavaScript stack
traces and Go panics are recognised in the line itself, in a JSON line, or in structured
metadata (OpenTelemetry ``exception.*``, ECS ``error.*``, ``stack_trace``/``exc_info``...).
The fingerprint is the exception type, the message with its variable parts (numbers, ids, hex,
quoted strings) replaced, and the top three frames without line numbers, so the same fault
groups together across deploys and requests.

Groups keep first seen, last seen, count, services and one example, persist in the state
store's key/value namespace ``log_error_groups`` and can be resolved; a resolved group that
occurs again is reopened as a regression. Each new (or regressed) group bumps
``signalroom_log_error_groups_new_total`` and writes one sample of
``log_error_group_new{fingerprint, service, type}`` into the metric store, so a rule such as
``count by (service, type) (log_error_group_new) > 0`` alerts on new error groups.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from signalroom.model.labels import Labels

__all__ = [
    "ERROR_GROUP_METRIC",
    "KV_NAMESPACE",
    "ErrorEvent",
    "ErrorGroup",
    "ErrorGroups",
    "extract_error",
    "fingerprint",
    "normalise_message",
    "parse_stack_text",
]

log = logging.getLogger(__name__)

KV_NAMESPACE = "log_error_groups"
ERROR_GROUP_METRIC = "log_error_group_new"
TOP_FRAMES = 3
MAX_EXAMPLE_CHARS = 8192
MAX_SERVICES = 50

NEW_GROUPS = Counter(
    "signalroom_log_error_groups_new",
    "Error groups seen for the first time (or again after being resolved).",
    ["tenant"],
)


class KeyValue(Protocol):
    """The part of :class:`signalroom.storage.state.KeyValueStore` error groups use."""

    def put(self, key: str, value: Any, *, tenant: str = "default") -> Any: ...

    def list(self, *, tenant: str = "default", prefix: str = "") -> list[Any]: ...


class SampleAppender(Protocol):
    def append_samples(self, samples: Sequence[tuple[Labels, int, float]]) -> None: ...


# --- recognising errors ----------------------------------------------------------------------

# Cheap, vectorised pre-filter: only rows matching this are parsed in Python.
_CANDIDATE = (
    r"Traceback \(most recent call last\)|\n\s+at |\n\tat |^\s*at \S|panic: |goroutine \d+ \["
    # A key, not a value: ``"level":"error"`` is on every error-level line and carries none.
    r'|"(?:exception|exc_info|stack_?trace|stack|error)[._a-z]*"\s*:'
)
_META_KEYS = re.compile(r'"(?:exception|exc_info|stack_?trace|stack|error)[._a-z]*"', re.I)

_PY_FRAME = re.compile(r'^\s*File "(?P<file>[^"]+)", line \d+(?:, in (?P<func>.+))?$')
_PY_EXC = re.compile(r"^(?P<type>[A-Za-z_][\w.]*)(?::\s?(?P<msg>.*))?$")
_JAVA_HEAD = re.compile(
    r'^(?:Exception in thread "[^"]*" )?(?P<type>[A-Za-z_$][\w$]*(?:\.[A-Za-z_$][\w$]*)+)'
    r"(?::\s?(?P<msg>.*))?$"
)
_JAVA_FRAME = re.compile(r"^\s*at (?P<func>[\w$.<>/]+)\((?P<loc>[^)]*)\)")
_JS_HEAD = re.compile(
    r"^(?:Uncaught )?(?P<type>[A-Z][\w.]*(?:Error|Exception)|Error)(?::\s?(?P<msg>.*))?$"
)
_JS_FRAME = re.compile(r"^\s*at (?:(?P<func>.+?) \((?P<loc>.+)\)|(?P<bare>\S+))\s*$")
_GO_PANIC = re.compile(r"^panic: (?P<msg>.*)$")
_GO_FUNC = re.compile(r"^(?P<func>[\w./*()\-\[\]]+?)\(.*\)$")
_LINE_COL = re.compile(r":\d+(?::\d+)?$")

_NORMALISERS = [
    (re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\''), "<str>"),
    (
        re.compile(
            r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"
        ),
        "<uuid>",
    ),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<hex>"),
    (re.compile(r"\b(?=[0-9a-fA-F]*\d)(?=[0-9a-fA-F]*[a-fA-F])[0-9a-fA-F]{8,}\b"), "<hex>"),
    (re.compile(r"\b[A-Za-z]*\d[A-Za-z0-9_-]*\b"), "<id>"),
    (re.compile(r"<id>(?:\.<id>)+"), "<id>"),
]


@dataclass(frozen=True)
class ErrorEvent:
    """An exception found in one record."""

    type: str
    message: str
    frames: tuple[str, ...] = ()
    """Innermost first, without line numbers."""


def normalise_message(message: str) -> str:
    """The message with quoted strings, UUIDs, hex, numbers and ids replaced by placeholders."""
    text = message.strip()[:2000]
    for pattern, placeholder in _NORMALISERS:
        text = pattern.sub(placeholder, text)
    return " ".join(text.split())


def fingerprint(event: ErrorEvent) -> str:
    """16 hex digits from type, normalised message and the top three frames."""
    key = "\n".join([event.type, normalise_message(event.message), *event.frames[:TOP_FRAMES]])
    return hashlib.blake2b(key.encode(), digest_size=8).hexdigest()


def _frame_location(loc: str) -> str:
    """A frame's file without line and column (``/app/x.js:10:5`` -> ``/app/x.js``)."""
    return _LINE_COL.sub("", loc.strip())


def _python(lines: list[str]) -> ErrorEvent | None:
    # Chained exceptions print several tracebacks; the last one is what propagated.
    start = max(i for i, line in enumerate(lines) if "Traceback (most recent call last)" in line)
    frames: list[str] = []
    for line in lines[start + 1 :]:
        frame = _PY_FRAME.match(line)
        if frame:
            frames.append(f"{frame['file']}:{(frame['func'] or '?').strip()}")
            continue
        if line[:1].isspace() or not line.strip():
            continue  # source lines under a frame, carets
        head = _PY_EXC.match(line.strip())
        if head:
            frames.reverse()  # Python prints the innermost frame last
            return ErrorEvent(head["type"], head["msg"] or "", tuple(frames))
        break
    return None


def _java(lines: list[str]) -> ErrorEvent | None:
    for i, line in enumerate(lines):
        head = _JAVA_HEAD.match(line.strip())
        if head is None or i + 1 >= len(lines) or not _JAVA_FRAME.match(lines[i + 1]):
            continue
        frames = []
        for frame_line in lines[i + 1 :]:
            frame = _JAVA_FRAME.match(frame_line)
            if frame is None:
                break
            frames.append(frame["func"])
        return ErrorEvent(head["type"], head["msg"] or "", tuple(frames))
    return None


def _javascript(lines: list[str]) -> ErrorEvent | None:
    for i, line in enumerate(lines):
        head = _JS_HEAD.match(line.strip())
        if head is None or i + 1 >= len(lines) or not _JS_FRAME.match(lines[i + 1]):
            continue
        frames = []
        for frame_line in lines[i + 1 :]:
            frame = _JS_FRAME.match(frame_line)
            if frame is None:
                break
            if frame["bare"]:
                frames.append(_frame_location(frame["bare"]))
            else:
                frames.append(f"{frame['func']} ({_frame_location(frame['loc'])})")
        return ErrorEvent(head["type"], head["msg"] or "", tuple(frames))
    return None


def _go(lines: list[str]) -> ErrorEvent | None:
    for i, line in enumerate(lines):
        head = _GO_PANIC.match(line.strip())
        if head is None:
            continue
        message = head["msg"]
        kind = "panic"
        if message.startswith("runtime error: "):
            kind, message = "runtime error", message[len("runtime error: ") :]
        frames: list[str] = []
        in_goroutine = False
        for frame_line in lines[i + 1 :]:
            if frame_line.startswith("goroutine "):
                if in_goroutine:
                    break  # only the panicking goroutine
                in_goroutine = True
                continue
            if not in_goroutine or frame_line[:1].isspace() or not frame_line.strip():
                continue
            func = _GO_FUNC.match(frame_line.strip())
            if func is None:
                continue
            name = func["func"]
            if name == "panic" or name.startswith(("runtime.", "panic(")):
                continue  # the panic machinery, not the fault
            frames.append(name)
        return ErrorEvent(kind, message, tuple(frames))
    return None


def parse_stack_text(text: str) -> ErrorEvent | None:
    """An exception in free text: a Python traceback, a Java or JavaScript stack trace, or a
    Go panic. None if there is none."""
    lines = text.replace("\r\n", "\n").split("\n")
    if "Traceback (most recent call last)" in text:
        return _python(lines)
    if "panic: " in text:
        event = _go(lines)
        if event is not None:
            return event
    if "\tat " in text or "    at " in text or "\n  at " in text:
        return _java(lines) or _javascript(lines)
    return None


def _flatten(
    obj: Mapping[str, Any], prefix: str = "", out: dict[str, Any] | None = None
) -> dict[str, Any]:
    out = {} if out is None else out
    for key, value in obj.items():
        name = f"{prefix}{key}".lower()
        if isinstance(value, Mapping):
            _flatten(value, name + ".", out)
        else:
            out[name] = value
    return out


_STACK_FIELDS = (
    "exception.stacktrace", "exception.stack_trace", "error.stack_trace", "error.stack",
    "stack_trace", "stacktrace", "stack", "exc_info", "exception", "error",
)  # fmt: skip
_TYPE_FIELDS = ("exception.type", "error.type", "error.kind", "exc_type")
_MESSAGE_FIELDS = ("exception.message", "error.message", "exc_message")


def _from_fields(fields: Mapping[str, Any]) -> ErrorEvent | None:
    flat = _flatten(fields)
    for name in _STACK_FIELDS:
        value = flat.get(name)
        if isinstance(value, str) and "\n" in value:
            event = parse_stack_text(value)
            if event is not None:
                kind = next((str(flat[k]) for k in _TYPE_FIELDS if flat.get(k)), None)
                message = next((str(flat[k]) for k in _MESSAGE_FIELDS if flat.get(k)), None)
                if kind or message is not None:
                    event = ErrorEvent(kind or event.type, message or event.message, event.frames)
                return event
    kind = next((str(flat[k]) for k in _TYPE_FIELDS if flat.get(k)), None)
    if kind:
        message = next((str(flat[k]) for k in _MESSAGE_FIELDS if flat.get(k)), "")
        return ErrorEvent(kind, message)
    return None


def extract_error(line: str, metadata: str | Mapping[str, Any] | None = None) -> ErrorEvent | None:
    """The exception a record carries, from structured metadata, a JSON line, or the text."""
    if metadata:
        fields = json.loads(metadata) if isinstance(metadata, str) else metadata
        if isinstance(fields, Mapping):
            event = _from_fields(fields)
            if event is not None:
                return event
    stripped = line.lstrip()
    if stripped.startswith("{") and _META_KEYS.search(stripped):
        try:
            record = json.loads(stripped)
        except ValueError:
            record = None
        if isinstance(record, Mapping):
            event = _from_fields(record)
            if event is not None:
                return event
    return parse_stack_text(line)


# --- groups ----------------------------------------------------------------------------------


@dataclass
class ErrorGroup:
    """One fingerprint's history (timestamps in Unix nanoseconds)."""

    fingerprint: str
    type: str
    message: str
    """Normalised."""
    frames: list[str]
    first_seen: int
    last_seen: int
    count: int = 0
    services: list[str] = field(default_factory=list)
    example: str = ""
    status: str = "unresolved"
    """``unresolved`` or ``resolved``."""
    resolved_at: int | None = None
    regressions: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, value: Mapping[str, Any]) -> ErrorGroup:
        return cls(**{k: value[k] for k in cls.__dataclass_fields__ if k in value})


_SERVICE = re.compile(r'\bservice="((?:[^"\\]|\\.)*)"')


def _service_of(stream: str) -> str:
    found = _SERVICE.search(stream)
    return json.loads(f'"{found.group(1)}"') if found else ""


class ErrorGroups:
    """Groups of errors per tenant, fed with stored log rows by :meth:`observe`.

    In memory until :meth:`bind` gives it the state store's key/value namespace (where groups
    are loaded from and written to) and the metric store's appender (for the
    ``log_error_group_new`` series). Thread-safe: ingest runs in worker threads.
    """

    def __init__(
        self,
        kv: KeyValue | None = None,
        appender: SampleAppender | None = None,
        *,
        clock: Callable[[], float] = time.time,
        flush_interval_s: float = 5.0,
    ) -> None:
        self.kv = kv
        self.appender = appender
        self.clock = clock
        self.flush_interval_s = flush_interval_s
        self._groups: dict[str, dict[str, ErrorGroup]] = {}
        self._dirty: set[tuple[str, str]] = set()
        self._last_flush = clock()
        self._lock = threading.RLock()

    def bind(self, kv: KeyValue | None, appender: SampleAppender | None) -> None:
        """Persist groups in ``kv`` and write new-group samples through ``appender``."""
        with self._lock:
            self.kv = kv
            self.appender = appender
            self._groups.clear()  # reloaded from kv per tenant on next use

    def _tenant(self, tenant: str) -> dict[str, ErrorGroup]:
        groups = self._groups.get(tenant)
        if groups is None:
            groups = {}
            if self.kv is not None:
                for doc in self.kv.list(tenant=tenant):
                    try:
                        groups[doc.key] = ErrorGroup.from_json(doc.value)
                    except (TypeError, KeyError):
                        log.warning("unreadable error group %s", doc.key)
            self._groups[tenant] = groups
        return groups

    # -- ingest

    def observe(self, tenant: str, table: pa.Table) -> list[ErrorGroup]:
        """Group the errors in stored rows (LOG_SCHEMA); returns groups new or reopened."""
        events = list(_candidate_events(table))
        if not events:
            return []
        fresh: list[ErrorGroup] = []
        with self._lock:
            groups = self._tenant(tenant)
            for ts, service, line, event in events:
                fp = fingerprint(event)
                group = groups.get(fp)
                if group is None:
                    group = ErrorGroup(
                        fingerprint=fp,
                        type=event.type,
                        message=normalise_message(event.message),
                        frames=list(event.frames[:TOP_FRAMES]),
                        first_seen=ts,
                        last_seen=ts,
                        example=line[:MAX_EXAMPLE_CHARS],
                    )
                    groups[fp] = group
                    fresh.append(group)
                elif group.status == "resolved":
                    group.status = "unresolved"
                    group.resolved_at = None
                    group.regressions += 1
                    group.example = line[:MAX_EXAMPLE_CHARS]
                    fresh.append(group)
                group.count += 1
                group.first_seen = min(group.first_seen, ts)
                group.last_seen = max(group.last_seen, ts)
                if service and service not in group.services and len(group.services) < MAX_SERVICES:
                    group.services.append(service)
                    group.services.sort()
                self._dirty.add((tenant, fp))
            if fresh or self.clock() - self._last_flush >= self.flush_interval_s:
                self._flush_locked()
        if fresh:
            NEW_GROUPS.labels(tenant).inc(len(fresh))
            self._announce(tenant, fresh)
        return fresh

    def _announce(self, tenant: str, groups: Iterable[ErrorGroup]) -> None:
        if self.appender is None:
            return
        now_ms = int(self.clock() * 1000)
        samples = []
        for group in groups:
            labels = {
                "__name__": ERROR_GROUP_METRIC,
                "fingerprint": group.fingerprint,
                "service": group.services[0] if group.services else "",
                "type": group.type,
            }
            if tenant != "default":
                labels["tenant"] = tenant
            samples.append((Labels({k: v for k, v in labels.items() if v}), now_ms, 1.0))
        try:
            self.appender.append_samples(samples)
        except Exception:
            log.exception("could not write %s samples", ERROR_GROUP_METRIC)

    # -- persistence

    def flush(self) -> None:
        """Write changed groups to the key/value store."""
        with self._lock:
            self._flush_locked()

    def _flush_locked(self) -> None:
        self._last_flush = self.clock()
        if self.kv is None:
            self._dirty.clear()
            return
        for tenant, fp in sorted(self._dirty):
            group = self._groups.get(tenant, {}).get(fp)
            if group is not None:
                self.kv.put(fp, group.to_json(), tenant=tenant)
        self._dirty.clear()

    # -- API

    def list(
        self, tenant: str, *, status: str | None = "unresolved", service: str | None = None
    ) -> list[ErrorGroup]:
        """Groups, most recently seen first; ``status`` None lists resolved ones too."""
        with self._lock:
            groups = list(self._tenant(tenant).values())
        return sorted(
            (
                g
                for g in groups
                if (status is None or g.status == status)
                and (service is None or service in g.services)
            ),
            key=lambda g: (-g.last_seen, g.fingerprint),
        )

    def get(self, tenant: str, fp: str) -> ErrorGroup | None:
        with self._lock:
            return self._tenant(tenant).get(fp)

    def resolve(self, tenant: str, fp: str) -> ErrorGroup | None:
        """Mark a group resolved (None if unknown); it reopens if the error occurs again."""
        with self._lock:
            group = self._tenant(tenant).get(fp)
            if group is None:
                return None
            if group.status != "resolved":
                group.status = "resolved"
                group.resolved_at = int(self.clock() * 1e9)
                self._dirty.add((tenant, fp))
                self._flush_locked()
            return group


def _candidate_events(table: pa.Table) -> Iterable[tuple[int, str, str, ErrorEvent]]:
    """(timestamp, service, line, event) of rows carrying an exception; a regex over whole
    columns picks the few rows worth parsing."""
    if table.num_rows == 0:
        return
    lines = table.column("line")
    mask = pc.fill_null(pc.match_substring_regex(lines, _CANDIDATE), False)
    if "metadata" in table.column_names:
        meta = table.column("metadata")
        mask = pc.or_(
            mask,
            pc.fill_null(
                pc.match_substring_regex(meta, _META_KEYS.pattern, ignore_case=True), False
            ),
        )
    rows = np.flatnonzero(np.asarray(mask.to_numpy(zero_copy_only=False), dtype=bool))
    if len(rows) == 0:
        return
    picked = table.take(pa.array(rows))
    timestamps = picked.column("timestamp").to_pylist()
    streams = picked.column("stream").to_pylist()
    texts = picked.column("line").to_pylist()
    metas = (
        picked.column("metadata").to_pylist()
        if "metadata" in picked.column_names
        else [None] * len(texts)
    )
    services: dict[str, str] = {}
    for ts, stream, text, meta in zip(timestamps, streams, texts, metas, strict=True):
        try:
            event = extract_error(text, meta)
        except (ValueError, TypeError):
            continue
        if event is None:
            continue
        service = services.get(stream)
        if service is None:
            service = services[stream] = _service_of(stream)
        yield int(ts), service, text, event
