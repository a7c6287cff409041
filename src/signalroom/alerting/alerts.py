"""Alerts as Alertmanager holds them: the model, fingerprints, merging, and the alert store.

An alert is identified by its label set's *fingerprint*, computed exactly as Prometheus'
``model.LabelSet.Fingerprint()`` (64-bit FNV-1a over sorted ``name 0xff value 0xff``), so the
``fingerprint`` field in webhooks and the API equals what Alertmanager prints.

``ends_at`` is ``None`` for Go's zero time. An alert received without ``endsAt`` gets
``now + resolve_timeout`` and ``timeout=True``; such a timeout end never overrides an explicit
one when two overlapping versions are merged (``types.Alert.Merge``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import numpy as np
import sqlalchemy as sa

from signalroom.alerting.matchers import is_valid_label_name
from signalroom.alerting.persist import Op, StateWriter, executemany, upsert

__all__ = [
    "ZERO_TIME_TEXT",
    "Alert",
    "AlertStore",
    "AlertValidationError",
    "Clock",
    "SystemClock",
    "fingerprint",
    "fingerprints",
    "format_time",
    "parse_time",
    "sort_alerts",
]

_FNV_OFFSET = 14695981039346656037
_FNV_PRIME = 1099511628211
_MASK = (1 << 64) - 1
_SEP = 0xFF

ZERO_TIME_TEXT = "0001-01-01T00:00:00Z"
"""Go's zero ``time.Time`` in RFC 3339, which Alertmanager prints for "no end time"."""


def _fingerprint_input(labels: Mapping[str, str]) -> bytes:
    # One encode of the whole text: U+DCFF is the byte 0xFF under surrogateescape.
    text = "".join([f"{name}\udcff{labels[name]}\udcff" for name in sorted(labels)])
    data = text.encode("utf-8", "surrogateescape")
    if data.count(0xFF) != 2 * len(labels) or not data.replace(b"\xff", b"").isascii():
        # Not plain ASCII: a lone surrogate may have slipped through as a raw byte; strict
        # encoding refuses it, as a per-label encode does.
        for name, value in labels.items():
            name.encode("utf-8")
            value.encode("utf-8")
    return data


def fingerprint(labels: Mapping[str, str]) -> int:
    """Prometheus' ``LabelSet.Fingerprint()``: FNV-1a 64 over sorted names and values."""
    h = _FNV_OFFSET
    for byte in _fingerprint_input(labels):
        h = ((h ^ byte) * _FNV_PRIME) & _MASK
    return h


# Below this many label sets the per-byte Python loop beats setting up the arrays.
_VECTOR_MIN = 16


def fingerprints(label_sets: Sequence[Mapping[str, str]]) -> list[int]:
    """``fingerprint`` of many label sets at once: FNV-1a runs column by column over the
    padded byte matrix of all sets (NumPy's uint64 arithmetic wraps like Go's)."""
    if len(label_sets) < _VECTOR_MIN:
        return [fingerprint(labels) for labels in label_sets]
    data = [_fingerprint_input(labels) for labels in label_sets]
    lengths = np.fromiter((len(d) for d in data), dtype=np.int64, count=len(data))
    width = int(lengths.max()) if len(data) else 0
    matrix = np.zeros((width, len(data)), dtype=np.uint64)  # one row per byte position
    flat = np.frombuffer(b"".join(data), dtype=np.uint8)
    rows = np.repeat(np.arange(len(data)), lengths)
    starts = np.cumsum(lengths) - lengths
    cols = np.arange(len(flat)) - np.repeat(starts, lengths)
    matrix[cols, rows] = flat
    h = np.full(len(data), _FNV_OFFSET, dtype=np.uint64)
    prime = np.uint64(_FNV_PRIME)
    shortest = int(lengths.min())
    for j in range(shortest):  # every set still has bytes here
        h ^= matrix[j]
        h *= prime
    for j in range(shortest, width):
        h = np.where(lengths > j, (h ^ matrix[j]) * prime, h)
    return h.tolist()


def fingerprint_hex(fp: int) -> str:
    return f"{fp:016x}"


class Clock:
    """The time source; tests pass one they can move."""

    def now(self) -> datetime:
        raise NotImplementedError


class SystemClock(Clock):
    def now(self) -> datetime:
        return datetime.now(UTC)


# --- time text ---------------------------------------------------------------------------

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def parse_time(text: str | None) -> datetime | None:
    """RFC 3339 (any fraction length, ``Z`` or offset) to aware UTC; Go's zero time -> None."""
    if text is None or text == "":
        return None
    cleaned = _FRACTION.sub(lambda m: m.group(1), text.strip(), count=1)
    if cleaned.endswith(("Z", "z")):
        cleaned = cleaned[:-1] + "+00:00"
    try:
        value = datetime.fromisoformat(cleaned)
    except ValueError:
        raise ValueError(f"invalid time {text!r}: want RFC 3339") from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value.year <= 1:
        return None
    return value.astimezone(UTC)


def format_time(value: datetime | None) -> str:
    """Go's RFC3339Nano for UTC times: fraction without trailing zeros, ``Z`` suffix."""
    if value is None:
        return ZERO_TIME_TEXT
    if value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    # The alerts of a flush share a few instants (received together): each formatted once.
    text = _TIME_TEXT.get(value)
    if text is None:
        # isoformat of the naive value: C speed, a 4-digit year, ".ffffff" only when non-zero.
        text = value.replace(tzinfo=None).isoformat()
        text = (text.rstrip("0") if value.microsecond else text) + "Z"
        if len(_TIME_TEXT) >= 4096:
            _TIME_TEXT.clear()
        _TIME_TEXT[value] = text
    return text


_TIME_TEXT: dict[datetime, str] = {}  # UTC instants only: equal instants, equal text


def format_api_time(value: datetime | None) -> str:
    """go-swagger's ``strfmt.DateTime``: always milliseconds, ``Z``."""
    if value is None:
        return "0001-01-01T00:00:00.000Z"
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --- the alert ---------------------------------------------------------------------------

# Label names repeat in every alert (alertname, job, instance, ...): remember the valid ones.
_VALID_NAMES: set[str] = set()


def _valid_name(name: str) -> bool:
    if name in _VALID_NAMES:
        return True
    if not is_valid_label_name(name):
        return False
    if len(_VALID_NAMES) < 10_000:
        _VALID_NAMES.add(name)
    return True


class AlertValidationError(ValueError):
    """A received alert is not valid; the message is Alertmanager's."""


@dataclass(slots=True)
class Alert:
    """One alert: labels identify it; ``ends_at=None`` means no end time (Go's zero time)."""

    labels: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    starts_at: datetime | None = None
    ends_at: datetime | None = None
    generator_url: str = ""
    updated_at: datetime | None = None
    timeout: bool = False
    _fp: int | None = field(default=None, repr=False, compare=False)

    @property
    def fingerprint(self) -> int:
        if self._fp is None:
            self._fp = fingerprint(self.labels)
        return self._fp

    @property
    def fingerprint_hex(self) -> str:
        return fingerprint_hex(self.fingerprint)

    def resolved_at(self, now: datetime) -> bool:
        """``types.Alert.ResolvedAt``: an end time exists and is not after ``now``."""
        return self.ends_at is not None and not self.ends_at > now

    def status(self, now: datetime) -> str:
        return "resolved" if self.resolved_at(now) else "firing"

    def copy(self) -> Alert:
        # Spelled out rather than dataclasses.replace: every flush copies every alert.
        return Alert(
            dict(self.labels),
            dict(self.annotations),
            self.starts_at,
            self.ends_at,
            self.generator_url,
            self.updated_at,
            self.timeout,
            self._fp,
        )

    def validate(self) -> None:
        """``types.Alert.Validate`` (model.Alert.Validate): times, labels, annotations."""
        if self.starts_at is None:
            raise AlertValidationError("start time missing")
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise AlertValidationError("start time must be before end time")
        if not self.labels:
            raise AlertValidationError("at least one label pair required")
        for name in self.labels:
            if not _valid_name(name):
                raise AlertValidationError(f'invalid label set: invalid name "{name}"')
        for name in self.annotations:
            if not _valid_name(name):
                raise AlertValidationError(f'invalid annotations: invalid name "{name}"')

    def merge(self, newer: Alert, now: datetime) -> Alert:
        """``types.Alert.Merge``: the younger alert wins, earliest start, explicit ends rule."""
        older = self
        a_upd = older.updated_at or datetime.min.replace(tzinfo=UTC)
        o_upd = newer.updated_at or datetime.min.replace(tzinfo=UTC)
        if o_upd < a_upd:
            return newer.merge(older, now)
        res = newer.copy()
        if older.starts_at is not None and (
            res.starts_at is None or older.starts_at < res.starts_at
        ):
            res.starts_at = older.starts_at
        if newer.resolved_at(now):
            if (
                older.resolved_at(now)
                and older.ends_at is not None
                and newer.ends_at is not None
                and older.ends_at > newer.ends_at
            ):
                res.ends_at = older.ends_at
        elif (
            older.ends_at is not None
            and (newer.ends_at is None or older.ends_at > newer.ends_at)
            and not older.timeout
        ):
            res.ends_at = older.ends_at
        res._fp = self._fp
        return res

    def to_json(self) -> dict[str, Any]:
        """The template/webhook view of an alert (statuses are computed by the caller)."""
        return {
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": format_time(self.starts_at),
            "endsAt": format_time(self.ends_at),
            "generatorURL": self.generator_url,
            "fingerprint": self.fingerprint_hex,
        }


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Alerts in the order Alertmanager puts them in a notification (``types.AlertSlice``):
    by ``job``, then ``instance`` (alerts without one after those with it), then Prometheus'
    ``LabelSet.Before``: fewer labels first; else, walking both sets' sorted names together,
    the set that lacks a name the other has comes first, and at a shared name the smaller
    value. That is the sorted (name, value) pairs with names compared in reverse, which a
    descending rank of each name (among all names here) gives."""
    alerts = list(alerts)
    names = sorted({name for a in alerts for name in a.labels})
    rank = {name: -i for i, name in enumerate(names)}

    def key(alert: Alert) -> tuple[Any, ...]:
        labels = alert.labels
        job, instance = labels.get("job"), labels.get("instance")
        return (
            (0, job) if job is not None else (1, ""),
            (0, instance) if instance is not None else (1, ""),
            len(labels),
            [(rank[name], labels[name]) for name in sorted(labels)],
        )

    return sorted(alerts, key=key)


# --- the store ---------------------------------------------------------------------------

Listener = Callable[[Alert], None]


class AlertStore:
    """The alerts of one tenant, by fingerprint, optionally persisted in the state store.

    ``put`` merges a new version with an overlapping old one (``provider/mem``), persists the
    batch in one transaction when a database is attached, and then tells the listeners
    (dispatcher, inhibitor). ``gc`` drops resolved alerts, as Alertmanager's store does.

    The alert manager instead applies at once and persists behind (``persist_later``): with a
    ``StateWriter`` the versions received meanwhile are upserted in the writer's next batch.
    Alertmanager keeps alerts in memory only and relies on Prometheus re-sending them; this
    store loses at most the last commit's worth in a crash and nothing on an orderly stop.
    """

    def __init__(
        self,
        tenant: str = "default",
        engine: sa.Engine | None = None,
        writer: StateWriter | None = None,
    ) -> None:
        self.tenant = tenant
        self._engine = engine
        self._writer = writer
        self._alerts: dict[int, Alert] = {}
        self._listeners: list[Listener] = []
        self._unsaved: dict[int, Alert] = {}

    def subscribe(self, listener: Listener) -> None:
        self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        if listener in self._listeners:
            self._listeners.remove(listener)

    def get(self, fp: int) -> Alert | None:
        return self._alerts.get(fp)

    def all(self) -> list[Alert]:
        return list(self._alerts.values())

    def __len__(self) -> int:
        return len(self._alerts)

    def merge_batch(self, alerts: Iterable[Alert], now: datetime) -> list[Alert]:
        """The versions ``put`` would store, without storing them (for persist-then-apply)."""
        out: list[Alert] = []
        pending: dict[int, Alert] = {}
        alerts = list(alerts)
        missing = [a for a in alerts if a._fp is None]
        for a, fp in zip(missing, fingerprints([a.labels for a in missing]), strict=True):
            a._fp = fp
        for alert in alerts:
            fp = alert.fingerprint
            old = pending.get(fp) or self._alerts.get(fp)
            if old is not None and _overlaps(old, alert):
                alert = old.merge(alert, now)
            pending[fp] = alert
            out.append(alert)
        return out

    def put(self, alerts: Iterable[Alert], now: datetime, *, persist: bool = True) -> list[Alert]:
        merged = self.merge_batch(alerts, now)
        if persist:
            self.persist(merged)
        self.apply(merged)
        return merged

    def apply(self, merged: Iterable[Alert]) -> None:
        """Install already merged (and persisted) versions and notify listeners."""
        for alert in merged:
            self._alerts[alert.fingerprint] = alert
            for listener in self._listeners:
                listener(alert)

    def persist(self, merged: list[Alert]) -> None:
        """Upsert these versions now, in one transaction (blocking)."""
        if self._engine is None or not merged:
            return
        with self._engine.begin() as conn:
            self._write(conn, list({a.fingerprint: a for a in merged}.values()))

    def persist_later(self, merged: Iterable[Alert]) -> None:
        """Queue these versions for the writer's next batch (the latest per fingerprint)."""
        if self._writer is None or self._engine is None:
            return
        for a in merged:
            self._unsaved[a.fingerprint] = a
        self._writer.submit_coalesced(("alerts", self.tenant), self._take_unsaved)

    def _take_unsaved(self) -> Op:
        # Runs on the event loop when the batch starts: rows are made here, the writer
        # thread only stores them.
        alerts, self._unsaved = list(self._unsaved.values()), {}
        return self._rows_write(alerts)

    def _write(self, conn: sa.Connection, alerts: list[Alert]) -> None:
        if alerts:
            self._rows_write(alerts)(conn)

    def _rows_write(self, alerts: list[Alert]) -> Op:
        from signalroom.storage.schema import alerting_alerts as table

        assert self._engine is not None
        rows = [_alert_row(self.tenant, a) for a in alerts]
        return executemany(self._engine, "alerts-upsert", upsert(self._engine, table), rows)

    def load(self) -> int:
        """Read persisted alerts back (at start); listeners are not told."""
        if self._engine is None:
            return 0
        from signalroom.storage.schema import alerting_alerts as table

        with self._engine.connect() as conn:
            rows = conn.execute(sa.select(table).where(table.c.tenant == self.tenant)).all()
        for row in rows:
            alert = Alert(
                labels=dict(row.labels),
                annotations=dict(row.annotations),
                starts_at=_aware(row.starts_at),
                ends_at=_aware(row.ends_at),
                generator_url=row.generator_url,
                updated_at=_aware(row.updated_at),
                timeout=bool(row.timeout),
            )
            self._alerts[alert.fingerprint] = alert
        return len(rows)

    def gc(self, now: datetime) -> list[Alert]:
        """Drop resolved alerts; returns them. Their rows go at once (blocking)."""
        gone = self.collect(now)
        if gone and self._engine is not None:
            with self._engine.begin() as conn:
                self._delete(conn, gone)
        return gone

    def gc_later(self, now: datetime) -> list[Alert]:
        """``gc`` with the rows deleted by the writer, after its earlier writes."""
        gone = self.collect(now)
        if gone and self._engine is not None and self._writer is not None:
            self._writer.submit(lambda conn: self._delete(conn, gone, resolved_by=now))
        return gone

    def collect(self, now: datetime) -> list[Alert]:
        """Forget resolved alerts (in memory, including unsaved versions); returns them."""
        gone = [a for a in list(self._alerts.values()) if a.resolved_at(now)]
        for a in gone:
            del self._alerts[a.fingerprint]
            self._unsaved.pop(a.fingerprint, None)
        return gone

    def _delete(
        self, conn: sa.Connection, gone: list[Alert], resolved_by: datetime | None = None
    ) -> None:
        """Delete the rows of ``gone``; with ``resolved_by`` only rows still resolved then (an
        alert received again may be upserted in an earlier batch than this delete)."""
        from signalroom.storage.schema import alerting_alerts as table

        for chunk in _chunks([a.fingerprint_hex for a in gone], 500):
            where = [table.c.tenant == self.tenant, table.c.fingerprint.in_(chunk)]
            if resolved_by is not None:
                where.append(table.c.ends_at <= resolved_by)
            conn.execute(sa.delete(table).where(*where))


def _overlaps(old: Alert, new: Alert) -> bool:
    # provider/mem: merge only when the activity ranges overlap.
    if old.starts_at is None:
        return False
    old_end = old.ends_at
    ends_inside = (
        new.ends_at is not None
        and new.ends_at > old.starts_at
        and (old_end is None or new.ends_at < old_end)
    )
    starts_inside = (
        new.starts_at is not None
        and new.starts_at > old.starts_at
        and (old_end is None or new.starts_at < old_end)
    )
    return ends_inside or starts_inside


def _alert_row(tenant: str, a: Alert) -> dict[str, Any]:
    return {
        "tenant": tenant,
        "fingerprint": a.fingerprint_hex,
        "labels": a.labels,
        "annotations": a.annotations,
        "starts_at": a.starts_at,
        "ends_at": a.ends_at,
        "updated_at": a.updated_at,
        "generator_url": a.generator_url,
        "timeout": a.timeout,
    }


def _aware(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def _chunks(items: list[str], size: int) -> Iterable[list[str]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]


def receive_defaults(alert: Alert, now: datetime, resolve_timeout: timedelta) -> Alert:
    """What ``POST /api/v2/alerts`` does before validation: stamp, default start and end."""
    alert.updated_at = now
    if alert.starts_at is None:
        alert.starts_at = alert.ends_at if alert.ends_at is not None else now
    if alert.ends_at is None:
        alert.timeout = True
        alert.ends_at = now + resolve_timeout
    # Empty label values mean "no such label" (removeEmptyLabels).
    labels = alert.labels  # copied either way: the store must not share the caller's dict
    alert.labels = (
        {k: v for k, v in labels.items() if v != ""} if "" in labels.values() else dict(labels)
    )
    alert._fp = None
    return alert


def _str_map(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if type(raw) is dict:
        for v in raw.values():
            if type(v) is not str:
                break
        else:  # the common case: a copy in C (JSON keys are strings)
            return dict(raw)
    elif not isinstance(raw, Mapping):  # JSON gives dicts: no ABC check for them
        raise ValueError(f"{what} must be an object")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ValueError(f"{what}.{k} must be a string")
        out[str(k)] = v
    return out


def postable_alert(raw: Any) -> Alert:
    """An alert from an Alertmanager API v2 ``postableAlert`` object (as Prometheus sends)."""
    if type(raw) is not dict and not isinstance(raw, Mapping):
        raise ValueError("an alert must be an object")
    if "labels" not in raw:
        raise ValueError("labels in body is required")
    return Alert(
        labels=_str_map(raw.get("labels"), "labels"),
        annotations=_str_map(raw.get("annotations"), "annotations"),
        starts_at=parse_time(raw.get("startsAt")),
        ends_at=parse_time(raw.get("endsAt")),
        generator_url=str(raw.get("generatorURL") or ""),
    )
