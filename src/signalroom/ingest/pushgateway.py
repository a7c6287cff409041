"""A Pushgateway-compatible push API: ``/metrics/job/<job>{/<label>/<value>}``.

Semantics follow prometheus/pushgateway: the URL path is the grouping key (``job`` required,
``<name>@base64/<value>`` for values base64url-encoded, padding optional); PUT replaces the
whole group, POST only the metric families it carries, DELETE removes the group; the grouping
labels override labels of the same name in the body; every group has ``push_time_seconds`` and
``push_failure_time_seconds``; a push with timestamps, duplicate series, or a family whose type
or help differs from the same family in another group is rejected (400) and only records the
failure time. Bodies are the text exposition format.

signalroom is the store itself, so groups are not scraped: a push appends the group's samples
at the push time, and :class:`PushgatewayService` re-appends the latest value of every group
every ``interval`` seconds (as if scraped) so they stay visible to PromQL's lookback; series of
a deleted group or replaced family get a staleness marker. Groups are kept in the state store
(kv namespace ``pushgateway``) and survive restarts.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import json
import logging
import math
import re
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.model.samples import STALE_NAN
from signalroom.scrape.parser import NO_TIMESTAMP, ParseError, parse
from signalroom.storage.state import StateStore
from signalroom.tsdb.batch import MetricMetadata, SampleBatch

__all__ = [
    "NAMESPACE",
    "PUSH_FAILURE_METRIC",
    "PUSH_METRIC",
    "MetricGroup",
    "PushError",
    "PushgatewayService",
    "parse_grouping_key",
]

logger = logging.getLogger("signalroom.ingest.pushgateway")

NAMESPACE = "pushgateway"
TENANTS_NAMESPACE = "pushgateway_tenants"  # which tenants have groups, for the refresh loop
PUSH_METRIC = "push_time_seconds"
PUSH_FAILURE_METRIC = "push_failure_time_seconds"
PUSH_HELP = "Last Unix time when changing this group in the Pushgateway succeeded."
PUSH_FAILURE_HELP = "Last Unix time when changing this group in the Pushgateway failed."
BASE64_SUFFIX = "@base64"
MAX_BODY_BYTES = 16 * 2**20
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_TEXT_TYPE = {"counter": "COUNTER", "gauge": "GAUGE", "summary": "SUMMARY",
              "histogram": "HISTOGRAM", "unknown": "UNTYPED"}  # fmt: skip
_STORE_TYPE = {"COUNTER": "counter", "GAUGE": "gauge", "SUMMARY": "summary",
               "HISTOGRAM": "histogram", "UNTYPED": "unknown"}  # fmt: skip


class PushError(ValueError):
    """A push or delete that is not taken; ``status`` is the HTTP status (400 by default)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- grouping key ---------------------------------------------------------------------------


def _decode_base64(text: str) -> str:
    """URL-safe base64, trailing ``=`` ignored, as Pushgateway decodes it."""
    raw = text.rstrip("=")
    if re.search(r"[^A-Za-z0-9_-]", raw) or len(raw) % 4 == 1:
        raise ValueError("illegal base64 data")
    try:
        return base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError) as exc:
        raise ValueError(f"illegal base64 data: {exc}") from None


def parse_grouping_key(
    job: str, labels_path: str = "", *, job_base64: bool = False
) -> dict[str, str]:
    """The grouping labels of ``/metrics/job[@base64]/<job><labels_path>``; PushError (400) with
    Pushgateway's messages when the path is not valid."""
    if job_base64:
        try:
            job = _decode_base64(job)
        except ValueError as exc:
            raise PushError(f"invalid base64 encoding in job name {job!r}: {exc}") from None
    labels: dict[str, str] = {}
    path = labels_path if labels_path.startswith("/") else "/" + labels_path
    if len(path) > 1:
        components = path[1:].split("/")
        if len(components) % 2:
            raise PushError(f"odd number of components in label string {path!r}")
        for name, value in zip(components[::2], components[1::2], strict=True):
            trimmed = name.removesuffix(BASE64_SUFFIX)
            if not _LABEL_NAME.match(trimmed) or trimmed.startswith("__"):
                raise PushError(f"improper label name {trimmed!r}")
            if name != trimmed:
                try:
                    value = _decode_base64(value)
                except ValueError as exc:
                    raise PushError(
                        f"invalid base64 encoding for label {trimmed}={value!r}: {exc}"
                    ) from None
            labels[trimmed] = value
    if not job:
        raise PushError("job name is required")
    labels["job"] = job
    return labels


def _group_key(grouping: dict[str, str]) -> str:
    return json.dumps(sorted(grouping.items()), ensure_ascii=False, separators=(",", ":"))


# -- groups ---------------------------------------------------------------------------------


def _value_text(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(float(value))
    return text[:-2] if text.endswith(".0") else text


@dataclass
class Family:
    """One pushed metric family: its type (Pushgateway's upper-case names), help, push time and
    samples (full label sets, grouping labels applied)."""

    type: str
    help: str
    time_ms: int
    samples: list[tuple[Labels, float]]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.type,
            "help": self.help,
            "time_ms": self.time_ms,
            "samples": [[dict(labels.items()), _value_text(v)] for labels, v in self.samples],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Family:
        return cls(
            str(data["type"]),
            str(data.get("help", "")),
            int(data["time_ms"]),
            [(Labels(labels), float(value)) for labels, value in data["samples"]],
        )


@dataclass
class MetricGroup:
    """A group: its grouping labels and families, ``push_time_seconds`` and
    ``push_failure_time_seconds`` included."""

    labels: dict[str, str]
    families: dict[str, Family] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": self.labels,
            "families": {name: f.to_json() for name, f in sorted(self.families.items())},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> MetricGroup:
        return cls(
            {str(k): str(v) for k, v in data["labels"].items()},
            {name: Family.from_json(f) for name, f in data["families"].items()},
        )

    def series(self) -> list[tuple[Labels, float]]:
        return [s for family in self.families.values() for s in family.samples]

    def last_push_successful(self) -> bool:
        push = self.families.get(PUSH_METRIC)
        failure = self.families.get(PUSH_FAILURE_METRIC)
        pushed = push.samples[0][1] if push and push.samples else 0.0
        failed = failure.samples[0][1] if failure and failure.samples else 0.0
        return pushed >= failed

    def to_api(self) -> dict[str, Any]:
        """The group as one entry of Pushgateway's ``GET /api/v1/metrics``."""
        entry: dict[str, Any] = {
            "labels": self.labels,
            "last_push_successful": self.last_push_successful(),
        }
        for name, family in sorted(self.families.items()):
            entry[name] = {
                "time_stamp": _rfc3339(family.time_ms),
                "type": family.type,
                **({"help": family.help} if family.help else {}),
                "metrics": _encodable_metrics(name, family),
            }
        return entry


def _rfc3339(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def _encodable_metrics(name: str, family: Family) -> list[dict[str, Any]]:
    """Pushgateway's JSON for the metrics of one family (histograms and summaries folded)."""
    out: dict[Labels, dict[str, Any]] = {}
    for labels, value in family.samples:
        metric, base = labels.name, labels.without(METRIC_NAME, "le", "quantile")
        shown = base if "instance" in base else base.with_({"instance": "\x00"})
        entry = out.setdefault(
            base, {"labels": {k: ("" if v == "\x00" else v) for k, v in shown.items()}}
        )
        text = _value_text(value)
        if family.type in ("HISTOGRAM", "GAUGE_HISTOGRAM") and metric == f"{name}_bucket":
            entry.setdefault("buckets", {})[labels.get("le")] = text
        elif family.type == "SUMMARY" and metric == name and "quantile" in labels:
            entry.setdefault("quantiles", {})[labels.get("quantile")] = text
        elif family.type in ("HISTOGRAM", "SUMMARY") and metric == f"{name}_count":
            entry["count"] = text
        elif family.type in ("HISTOGRAM", "SUMMARY") and metric == f"{name}_sum":
            entry["sum"] = text
        else:
            entry["value"] = text
    return list(out.values())


# -- parsing pushed bodies ------------------------------------------------------------------


def parse_push_body(body: bytes, grouping: dict[str, str], now_ms: int) -> dict[str, Family]:
    """The families of a text-format body, grouping labels applied; PushError when the body
    does not parse, carries timestamps or repeats a series."""
    try:
        parsed = parse(body, "text/plain")
    except ParseError as exc:
        raise PushError(f"text format parsing error in line {exc.line}: {exc.message}") from None
    except ValueError as exc:
        raise PushError(f"text format parsing error: {exc}") from None
    if len(parsed) and bool(np.any(parsed.timestamps_ms != NO_TIMESTAMP)):
        raise PushError(
            "pushed metrics are invalid or inconsistent with existing metrics: "
            "pushed metrics must not have timestamps"
        )
    types = {name: meta.type for name, meta in parsed.metadata.items()}
    families: dict[str, Family] = {}
    for name, meta in parsed.metadata.items():
        families[name] = Family(_TEXT_TYPE.get(meta.type, "UNTYPED"), meta.help, now_ms, [])
    seen: set[Labels] = set()
    override = {k: v for k, v in grouping.items()}
    for key, value in zip(parsed.series, parsed.values.tolist(), strict=True):
        labels = parsed.labels_of(key).with_(override)
        metric = labels.name
        family_name = _family_of(metric, types)
        family = families.get(family_name)
        if family is None:
            family = families[family_name] = Family("UNTYPED", "", now_ms, [])
        if labels in seen:
            raise PushError(
                "pushed metrics are invalid or inconsistent with existing metrics: collected "
                f"metric {metric} {labels} was collected before with the same name and label "
                "values"
            )
        seen.add(labels)
        family.samples.append((labels, float(value)))
    return {name: f for name, f in families.items() if f.samples}


def _family_of(metric: str, types: dict[str, str]) -> str:
    if metric in types:
        return metric
    for suffix, kinds in (("_bucket", ("histogram",)), ("_sum", ("histogram", "summary")),
                          ("_count", ("histogram", "summary"))):  # fmt: skip
        if metric.endswith(suffix) and types.get(metric[: -len(suffix)]) in kinds:
            return metric[: -len(suffix)]
    return metric


# -- the service ----------------------------------------------------------------------------


class PushgatewayService:
    """Pushed metric groups per tenant: push, delete, list, and the periodic re-append.

    ``start()`` loads the groups from the state store and starts the refresh loop;
    ``push``/``delete`` persist first, then write the samples (and staleness markers) to the
    store. Thread-safe: routes call it through ``asyncio.to_thread``.
    """

    def __init__(self, state: StateStore, tsdb: Any, *, interval: float = 15.0) -> None:
        self.state = state
        self.tsdb = tsdb
        self.interval = interval
        self._kv = state.kv(NAMESPACE)
        self._tenants_kv = state.kv(TENANTS_NAMESPACE)
        self._groups: dict[str, dict[str, MetricGroup]] = {}
        self._loaded: set[str] = set()
        self._lock = threading.RLock()
        self._last_ms = 0
        self._task: asyncio.Task[None] | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        """Load every tenant's groups, append them once, and re-append every ``interval``."""
        await asyncio.to_thread(self.load)
        await asyncio.to_thread(self.refresh)
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="pushgateway-refresh")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await asyncio.to_thread(self.refresh)
            except Exception:
                logger.exception("pushgateway: re-appending pushed groups failed")

    def load(self) -> None:
        """(Re)load all groups of all tenants from the state store."""
        with self._lock:
            for doc in self._tenants_kv.list():
                self._load_tenant(doc.key)

    def _load_tenant(self, tenant: str) -> dict[str, MetricGroup]:
        with self._lock:
            if tenant not in self._loaded:
                groups = {}
                for doc in self._kv.list(tenant=tenant):
                    try:
                        groups[doc.key] = MetricGroup.from_json(doc.value)
                    except (KeyError, TypeError, ValueError) as exc:
                        logger.error("pushgateway: skipping unreadable group %s: %s", doc.key, exc)
                self._groups[tenant] = groups
                self._loaded.add(tenant)
            return self._groups[tenant]

    def _now(self, now_ms: int | None) -> int:
        # strictly increasing, so a push and a refresh never write the same timestamp twice
        now = int(time.time() * 1000) if now_ms is None else now_ms
        self._last_ms = max(now, self._last_ms + 1)
        return self._last_ms

    # -- operations -----------------------------------------------------------------------

    def push(
        self,
        tenant: str,
        grouping: dict[str, str],
        body: bytes,
        *,
        replace: bool,
        now_ms: int | None = None,
    ) -> MetricGroup:
        """PUT (``replace``) or POST a text-format body to a group; PushError when rejected
        (a consistency failure also records ``push_failure_time_seconds``)."""
        if len(body) > MAX_BODY_BYTES:
            raise PushError(f"body is larger than the limit {MAX_BODY_BYTES} bytes", 413)
        with self._lock:
            now = self._now(now_ms)
            pushed = parse_push_body(body, grouping, now)
            groups = self._load_tenant(tenant)
            key = _group_key(grouping)
            old = groups.get(key)
            try:
                self._check_consistency(groups, key, pushed)
            except PushError:
                self._record_failure(tenant, key, grouping, old, now)
                raise
            group = MetricGroup(dict(grouping), dict(old.families) if old else {})
            if replace:
                group.families = {
                    n: f
                    for n, f in group.families.items()
                    if n in (PUSH_METRIC, PUSH_FAILURE_METRIC)
                }
            group.families.update(pushed)
            group.families[PUSH_METRIC] = _timestamp_family(PUSH_METRIC, PUSH_HELP, grouping, now)
            if PUSH_FAILURE_METRIC not in group.families:
                group.families[PUSH_FAILURE_METRIC] = _timestamp_family(
                    PUSH_FAILURE_METRIC, PUSH_FAILURE_HELP, grouping, 0, time_ms=now
                )
            self._save(tenant, key, group)
            groups[key] = group
            self._write(tenant, [group], now, gone=_gone(old, group))
            self._write_metadata(tenant, group)
            return group

    def delete(self, tenant: str, grouping: dict[str, str], *, now_ms: int | None = None) -> bool:
        """Remove a group (True if it existed); its series get staleness markers."""
        with self._lock:
            now = self._now(now_ms)
            groups = self._load_tenant(tenant)
            key = _group_key(grouping)
            old = groups.pop(key, None)
            self._kv.delete(key, tenant=tenant)
            if old is not None:
                self._write(tenant, [], now, gone=[labels for labels, _ in old.series()])
            return old is not None

    def groups(self, tenant: str) -> list[MetricGroup]:
        """The tenant's groups, ordered by grouping key."""
        with self._lock:
            return [g for _, g in sorted(self._load_tenant(tenant).items())]

    def listing(self, tenant: str) -> dict[str, Any]:
        """Pushgateway's ``GET /api/v1/metrics`` answer."""
        return {"status": "success", "data": [g.to_api() for g in self.groups(tenant)]}

    def refresh(self, *, now_ms: int | None = None) -> int:
        """Re-append the latest value of every series of every group; returns samples written."""
        written = 0
        with self._lock:
            now = self._now(now_ms)
            for tenant in sorted(self._groups):
                groups = list(self._groups[tenant].values())
                if groups:
                    written += self._write(tenant, groups, now)
        return written

    # -- internals ------------------------------------------------------------------------

    def _check_consistency(
        self, groups: dict[str, MetricGroup], key: str, pushed: dict[str, Family]
    ) -> None:
        """Pushgateway gathers all groups together: a family must have one type and help."""
        for name, family in pushed.items():
            if name in (PUSH_METRIC, PUSH_FAILURE_METRIC) and family.type != "GAUGE":
                raise PushError(
                    "pushed metrics are invalid or inconsistent with existing metrics: "
                    f"gathered metric family {name} has type {family.type} but should have GAUGE"
                )
            for other_key, other in groups.items():
                if other_key == key:
                    continue
                existing = other.families.get(name)
                if existing is None:
                    continue
                if existing.type != family.type:
                    raise PushError(
                        "pushed metrics are invalid or inconsistent with existing metrics: "
                        f"gathered metric family {name} has type {family.type} but should have "
                        f"{existing.type}"
                    )
                if existing.help != family.help:
                    raise PushError(
                        "pushed metrics are invalid or inconsistent with existing metrics: "
                        f"gathered metric family {name} has help {family.help!r} but should "
                        f"have {existing.help!r}"
                    )
                break

    def _record_failure(
        self,
        tenant: str,
        key: str,
        grouping: dict[str, str],
        old: MetricGroup | None,
        now: int,
    ) -> None:
        group = MetricGroup(dict(grouping), dict(old.families) if old else {})
        group.families[PUSH_FAILURE_METRIC] = _timestamp_family(
            PUSH_FAILURE_METRIC, PUSH_FAILURE_HELP, grouping, now
        )
        if PUSH_METRIC not in group.families:
            group.families[PUSH_METRIC] = _timestamp_family(
                PUSH_METRIC, PUSH_HELP, grouping, 0, time_ms=now
            )
        self._save(tenant, key, group)
        self._groups[tenant][key] = group
        self._write(tenant, [group], now)

    def _save(self, tenant: str, key: str, group: MetricGroup) -> None:
        self._kv.put(key, group.to_json(), tenant=tenant)
        if self._tenants_kv.get(tenant) is None:
            self._tenants_kv.put(tenant, {}, expected_version=None)

    def _write(
        self, tenant: str, groups: Iterable[MetricGroup], now: int, *, gone: Iterable[Labels] = ()
    ) -> int:
        series: list[Labels] = []
        values: list[float] = []
        for group in groups:
            for labels, value in group.series():
                series.append(labels)
                values.append(value)
        for labels in gone:
            series.append(labels)
            values.append(STALE_NAN)
        if not series:
            return 0
        batch = SampleBatch(
            np.arange(len(series), dtype=np.int32),
            np.full(len(series), now, dtype=np.int64),
            np.array(values, dtype=np.float64),
            series=series,
        )
        result = self.tsdb.append(tenant, batch)
        if not result.ok:
            logger.warning("pushgateway: %s", result.summary())
        return int(result.accepted)

    def _write_metadata(self, tenant: str, group: MetricGroup) -> None:
        entries = [
            MetricMetadata(name, _STORE_TYPE.get(f.type, "unknown"), f.help)
            for name, f in sorted(group.families.items())
        ]
        self.tsdb.add_metadata(tenant, entries)


def _timestamp_family(
    name: str, help_text: str, grouping: dict[str, str], at_ms: int, *, time_ms: int | None = None
) -> Family:
    labels = Labels({**grouping, METRIC_NAME: name})
    return Family(
        "GAUGE", help_text, at_ms if time_ms is None else time_ms, [(labels, at_ms / 1000)]
    )


def _gone(old: MetricGroup | None, new: MetricGroup) -> list[Labels]:
    """Series of ``old`` that ``new`` no longer has (they get staleness markers)."""
    if old is None:
        return []
    kept = {labels for labels, _ in new.series()}
    return [labels for labels, _ in old.series() if labels not in kept]
