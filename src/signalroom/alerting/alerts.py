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
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from functools import cmp_to_key
from typing import Any

import numpy as np
import sqlalchemy as sa

from signalroom.alerting.matchers import is_valid_label_name

__all__ = [
    "ZERO_TIME_TEXT",
    "Alert",
    "AlertStore",
    "AlertValidationError",
    "Clock",
    "SystemClock",
    "alert_sort_key",
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
    return b"".join(
        name.encode("utf-8") + b"\xff" + labels[name].encode("utf-8") + b"\xff"
        for name in sorted(labels)
    )


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
    value = value.astimezone(UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += ("." + f"{value.microsecond:06d}").rstrip("0")
    return text + "Z"


def format_api_time(value: datetime | None) -> str:
    """go-swagger's ``strfmt.DateTime``: always milliseconds, ``Z``."""
    if value is None:
        return "0001-01-01T00:00:00.000Z"
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


# --- the alert ---------------------------------------------------------------------------


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
        return replace(self, labels=dict(self.labels), annotations=dict(self.annotations))

    def validate(self) -> None:
        """``types.Alert.Validate`` (model.Alert.Validate): times, labels, annotations."""
        if self.starts_at is None:
            raise AlertValidationError("start time missing")
        if self.ends_at is not None and self.ends_at < self.starts_at:
            raise AlertValidationError("start time must be before end time")
        if not self.labels:
            raise AlertValidationError("at least one label pair required")
        for name in self.labels:
            if not is_valid_label_name(name):
                raise AlertValidationError(f'invalid label set: invalid name "{name}"')
        for name in self.annotations:
            if not is_valid_label_name(name):
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


def _label_set_before(a: Mapping[str, str], b: Mapping[str, str]) -> bool:
    """Prometheus' ``LabelSet.Before``: shorter first, then by sorted names and values."""
    if len(a) != len(b):
        return len(a) < len(b)
    for name in sorted([*a, *b]):
        av = a.get(name)
        if av is None:
            return True
        bv = b.get(name)
        if bv is None:
            return False
        if av != bv:
            return av < bv
    return False


def _compare(x: Alert, y: Alert) -> int:
    # types.AlertSlice.Less: job, then instance, then the whole label set.
    for key in ("job", "instance"):
        xv, yv = x.labels.get(key), y.labels.get(key)
        if xv is None and yv is None:
            continue
        if xv is None:
            return 1
        if yv is None:
            return -1
        if xv != yv:
            return -1 if xv < yv else 1
    if _label_set_before(x.labels, y.labels):
        return -1
    if _label_set_before(y.labels, x.labels):
        return 1
    return 0


alert_sort_key = cmp_to_key(_compare)


def sort_alerts(alerts: Iterable[Alert]) -> list[Alert]:
    """Alerts in the order Alertmanager puts them in a notification."""
    return sorted(alerts, key=alert_sort_key)


# --- the store ---------------------------------------------------------------------------

Listener = Callable[[Alert], None]


class AlertStore:
    """The alerts of one tenant, by fingerprint, optionally persisted in the state store.

    ``put`` merges a new version with an overlapping old one (``provider/mem``), persists the
    batch in one transaction when a database is attached, and then tells the listeners
    (dispatcher, inhibitor). ``gc`` drops resolved alerts, as Alertmanager's store does.
    """

    def __init__(self, tenant: str = "default", engine: sa.Engine | None = None) -> None:
        self.tenant = tenant
        self._engine = engine
        self._alerts: dict[int, Alert] = {}
        self._listeners: list[Listener] = []

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
        if self._engine is None or not merged:
            return
        from signalroom.storage.schema import alerting_alerts as table

        latest = {a.fingerprint: a for a in merged}
        rows = [_alert_row(self.tenant, a) for a in latest.values()]
        # One upsert statement run as executemany in one transaction: the POST is answered
        # only after this commit, so an acknowledged alert survives a crash of the process.
        with self._engine.begin() as conn:
            conn.execute(_upsert(self._engine, table), rows)

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
        """Drop resolved alerts; returns them."""
        gone = [a for a in list(self._alerts.values()) if a.resolved_at(now)]
        for a in gone:
            del self._alerts[a.fingerprint]
        if gone and self._engine is not None:
            from signalroom.storage.schema import alerting_alerts as table

            with self._engine.begin() as conn:
                for chunk in _chunks([a.fingerprint_hex for a in gone], 500):
                    conn.execute(
                        sa.delete(table).where(
                            table.c.tenant == self.tenant, table.c.fingerprint.in_(chunk)
                        )
                    )
        return gone


def _upsert(engine: sa.Engine, table: sa.Table) -> Any:
    """``INSERT ... ON CONFLICT (tenant, fingerprint) DO UPDATE`` for SQLite and PostgreSQL."""
    insert: Any
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif engine.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - the state store runs on SQLite or PostgreSQL only
        raise RuntimeError(f"no upsert for {engine.dialect.name}")
    stmt = insert(table)
    keys = {"tenant", "fingerprint"}
    return stmt.on_conflict_do_update(
        index_elements=[table.c.tenant, table.c.fingerprint],
        set_={c.name: stmt.excluded[c.name] for c in table.columns if c.name not in keys},
    )


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
    alert.labels = {k: v for k, v in alert.labels.items() if v != ""}
    alert._fp = None
    return alert


def _str_map(raw: Any, what: str) -> dict[str, str]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise ValueError(f"{what} must be an object")
    out: dict[str, str] = {}
    for k, v in raw.items():
        if not isinstance(v, str):
            raise ValueError(f"{what}.{k} must be a string")
        out[str(k)] = v
    return out


def postable_alert(raw: Any) -> Alert:
    """An alert from an Alertmanager API v2 ``postableAlert`` object (as Prometheus sends)."""
    if not isinstance(raw, Mapping):
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
