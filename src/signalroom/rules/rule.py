"""Recording and alerting rules with Prometheus's evaluation semantics (rules/recording.go,
rules/alerting.go): alert identity, the pending/firing/inactive state machine, keep_firing_for,
resolved-alert retention, resend decisions, and the ALERTS / ALERTS_FOR_STATE series."""

from __future__ import annotations

import enum
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from signalroom.model.labels import Labels
from signalroom.templating.prometheus import QueryFunc, expand_alert_template

#: Evaluates PromQL at a time: returns (labels, value) samples, raises on error.
RuleQueryFunc = Callable[[str, int], list[tuple[Labels, float]]]

RESOLVED_RETENTION_MS = 15 * 60_000
ALERT_METRIC = "ALERTS"
ALERT_FOR_STATE_METRIC = "ALERTS_FOR_STATE"


class RuleError(Exception):
    """A rule evaluation error, worded as Prometheus words it."""


class AlertState(enum.IntEnum):
    INACTIVE = 0
    PENDING = 1
    FIRING = 2

    def __str__(self) -> str:
        return self.name.lower()


class Health(enum.StrEnum):
    UNKNOWN = "unknown"
    OK = "ok"
    ERR = "err"


@dataclass
class Alert:
    """One alert instance of an alerting rule. Times are Unix milliseconds, 0 = unset."""

    state: AlertState
    labels: Labels
    annotations: Labels
    value: float
    active_at_ms: int
    fired_at_ms: int = 0
    resolved_at_ms: int = 0
    last_sent_at_ms: int = -(2**62)  # never sent (Go's zero time)
    valid_until_ms: int = 0
    keep_firing_since_ms: int = 0

    def needs_sending(self, ts_ms: int, resend_delay_ms: int) -> bool:
        if self.state == AlertState.PENDING:
            return False
        if self.resolved_at_ms > self.last_sent_at_ms:
            return True
        return self.last_sent_at_ms + resend_delay_ms < ts_ms


@dataclass
class RuleBase:
    name: str
    expr: str
    labels: Labels = field(default_factory=Labels)
    health: Health = Health.UNKNOWN
    last_error: str | None = None
    last_evaluation_ms: int = 0
    evaluation_seconds: float = 0.0

    def identity(self) -> str:
        """Name plus labels: how reloads match old rules to new ones."""
        return self.name + str(self.labels)


@dataclass
class RecordingRule(RuleBase):
    """`record:` rule: writes its result under a new metric name."""

    kind = "recording"

    def eval(self, ts_ms: int, query: RuleQueryFunc, limit: int = 0) -> list[tuple[Labels, float]]:
        samples = query(self.expr, ts_ms)
        out: list[tuple[Labels, float]] = []
        seen: set[Labels] = set()
        extra = dict(self.labels.items())
        for lbls, value in samples:
            pairs = lbls.to_dict()
            pairs["__name__"] = self.name
            pairs.update(extra)
            new = Labels({k: v for k, v in pairs.items() if v != ""})
            if new in seen:
                raise RuleError(
                    "vector contains metrics with the same labelset after applying rule labels"
                )
            seen.add(new)
            out.append((new, value))
        if limit > 0 and len(out) > limit:
            raise RuleError(f"exceeded limit of {limit} with {len(out)} series")
        return out


@dataclass
class AlertingRule(RuleBase):
    """`alert:` rule: a set of alerts keyed by their label sets, following Prometheus's states."""

    hold_ms: int = 0
    keep_firing_for_ms: int = 0
    annotations: Labels = field(default_factory=Labels)
    external_labels: Mapping[str, str] = field(default_factory=dict)
    external_url: str = ""
    restored: bool = False
    active: dict[Labels, Alert] = field(default_factory=dict)

    kind = "alerting"

    def eval(
        self,
        ts_ms: int,
        query: RuleQueryFunc,
        limit: int = 0,
        query_offset_ms: int = 0,
        template_query: QueryFunc | None = None,
    ) -> list[tuple[Labels, float]]:
        """One evaluation at `ts_ms`; returns the ALERTS/ALERTS_FOR_STATE samples to write."""
        eval_ts = ts_ms - query_offset_ms
        result = query(self.expr, eval_ts)
        found: dict[Labels, Alert] = {}
        for sample_labels, value in result:
            label_map = sample_labels.to_dict()

            def expand(
                text: str, _labels: dict[str, str] = label_map, _value: float = value
            ) -> str:
                if "{{" not in text:
                    return text  # no actions: a Go template outputs the text as it is
                return expand_alert_template(
                    text,
                    self.name,
                    _labels,
                    _value,
                    ts_ms,
                    external_labels=self.external_labels,
                    external_url=self.external_url,
                    query=template_query,
                )

            pairs = {k: v for k, v in sample_labels.items() if k != "__name__"}
            for name, text in self.labels.items():
                pairs[name] = expand(text)
            pairs["alertname"] = self.name
            lbls = Labels({k: v for k, v in pairs.items() if v != ""})
            annotations = Labels({name: expand(text) for name, text in self.annotations.items()})
            if lbls in found:
                raise RuleError(
                    "vector contains metrics with the same labelset after applying alert labels"
                )
            found[lbls] = Alert(AlertState.PENDING, lbls, annotations, value, ts_ms)
        for key, alert in found.items():
            existing = self.active.get(key)
            if existing is not None and existing.state != AlertState.INACTIVE:
                existing.value = alert.value
                existing.annotations = alert.annotations
                continue
            self.active[key] = alert
        out: list[tuple[Labels, float]] = []
        active_pending = 0
        for key in list(self.active):
            alert = self.active[key]
            if key not in found:
                keep_firing = False
                if alert.state == AlertState.FIRING and self.keep_firing_for_ms > 0:
                    if alert.keep_firing_since_ms == 0:
                        alert.keep_firing_since_ms = ts_ms
                    if ts_ms - alert.keep_firing_since_ms < self.keep_firing_for_ms:
                        keep_firing = True
                if alert.state == AlertState.PENDING or (
                    alert.resolved_at_ms and ts_ms - alert.resolved_at_ms > RESOLVED_RETENTION_MS
                ):
                    del self.active[key]
                if alert.state != AlertState.INACTIVE and not keep_firing:
                    alert.state = AlertState.INACTIVE
                    alert.resolved_at_ms = ts_ms
                if not keep_firing:
                    continue
            else:
                alert.keep_firing_since_ms = 0
            active_pending += 1
            if alert.state == AlertState.PENDING and ts_ms - alert.active_at_ms >= self.hold_ms:
                alert.state = AlertState.FIRING
                alert.fired_at_ms = ts_ms
            if self.restored:
                out.append((self.alerts_series(alert), 1.0))
                out.append((self.for_state_series(alert), float(alert.active_at_ms // 1000)))
        if limit > 0 and active_pending > limit:
            self.active = {}
            raise RuleError(f"exceeded limit of {limit} with {active_pending} alerts")
        return out

    def alerts_series(self, alert: Alert) -> Labels:
        return alert.labels.with_({"__name__": ALERT_METRIC, "alertstate": str(alert.state)})

    def for_state_series(self, alert: Alert) -> Labels:
        return alert.labels.with_("__name__", ALERT_FOR_STATE_METRIC)

    def alerts_to_send(self, ts_ms: int, resend_delay_ms: int, interval_ms: int) -> list[Alert]:
        """Alerts due for (re)sending now, with valid_until set; copies, as Prometheus sends."""
        out: list[Alert] = []
        for alert in self.active.values():
            if alert.needs_sending(ts_ms, resend_delay_ms):
                alert.last_sent_at_ms = ts_ms
                delta = max(resend_delay_ms, interval_ms)
                alert.valid_until_ms = ts_ms + 4 * delta
                out.append(replace(alert))
        return out

    def active_alerts(self) -> list[Alert]:
        """Pending and firing alerts (resolved ones are kept only for re-sending)."""
        return [a for a in self.active.values() if a.state != AlertState.INACTIVE]

    def state(self) -> AlertState:
        states = [a.state for a in self.active.values()]
        return max(states, default=AlertState.INACTIVE)

    def identity(self) -> str:
        return self.name + str(self.labels)


def restore_active_at(
    active_at_ms: int,
    down_at_ms: int,
    now_ms: int,
    hold_ms: int,
    grace_ms: int,
) -> int:
    """New ActiveAt of an alert restored from ALERTS_FOR_STATE (Group.RestoreForState)."""
    down_at_s = down_at_ms // 1000 * 1000
    spent = down_at_s - active_at_ms
    remaining = hold_ms - spent
    if remaining <= 0:
        return active_at_ms
    if remaining < grace_ms:
        return now_ms + grace_ms - hold_ms
    return active_at_ms + (now_ms - down_at_s)


def is_finite(value: float) -> bool:
    return not (math.isnan(value) or math.isinf(value))
