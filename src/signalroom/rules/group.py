"""Rule groups: ordered rules evaluated at one timestamp, staleness for vanished series,
Prometheus's slotted evaluation times, `for`-state restore and state copy on reload."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from signalroom.model.labels import Labels
from signalroom.promql.storage import STALE_NAN
from signalroom.rules.rule import (
    ALERT_FOR_STATE_METRIC,
    ALERT_METRIC,
    Alert,
    AlertingRule,
    Health,
    RecordingRule,
    RuleBase,
    RuleError,
    RuleQueryFunc,
    restore_active_at,
)
from signalroom.templating.prometheus import QueryFunc

Rule = RecordingRule | AlertingRule


#: Writes rule output: (labels, timestamp ms, value) samples.
AppendFunc = Callable[[list[tuple[Labels, int, float]]], None]
#: Sends alerts due for (re)sending, with the rule's expression for the generator URL.
SendFunc = Callable[[str, list[Alert]], None]
#: Restore look-up: (alertname, min ms, max ms) -> (labels, last ts ms, last value).
ForStateSelect = Callable[[str, int, int], list[tuple[Labels, int, float]]]


def _ignore(_seconds: float) -> None:
    return None


@dataclass
class EvalContext:
    """What a group needs from its manager to evaluate."""

    query: RuleQueryFunc
    append: AppendFunc
    send: SendFunc
    resend_delay_ms: int = 60_000
    template_query: QueryFunc | None = None
    #: Wall clock (Unix seconds) for lastEvaluation times, as Prometheus reports them.
    clock: Callable[[], float] = time.time
    #: Observes each rule's evaluation duration (prometheus_rule_evaluation_duration_seconds).
    observe_rule: Callable[[float], None] = _ignore
    #: Indexes of rules that may read what earlier rules of the group wrote. Output is held and
    #: written in one append per group, except that it is written before such a rule runs, so
    #: every rule sees the rules before it, as in Prometheus. None: every rule may (an append
    #: per rule).
    reads_group_output: frozenset[int] | None = None


@dataclass
class GroupMetrics:
    """Per-group counters and gauges (labelled rule_group="<file>;<name>")."""

    iterations_total: int = 0  # evaluations run; scheduled = this + missed
    iterations_missed_total: int = 0
    evaluations_total: int = 0
    evaluation_failures_total: int = 0
    last_duration_seconds: float = 0.0
    duration_seconds_sum: float = 0.0
    duration_seconds_count: int = 0
    rule_eval_seconds_sum: float = 0.0
    rule_eval_seconds_count: int = 0
    last_evaluation_samples: int = 0
    last_evaluation_ms: int = 0  # wall clock at the start of the last evaluation
    last_restore_duration_seconds: float = 0.0


@dataclass
class Group:
    """A named, ordered list of rules from one file."""

    name: str
    file: str
    interval_ms: int
    rules: list[Rule]
    limit: int = 0
    query_offset_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    should_restore: bool = False
    series_in_previous_eval: list[dict[Labels, None]] = field(default_factory=list)
    stale_series: list[Labels] = field(default_factory=list)
    metrics: GroupMetrics = field(default_factory=GroupMetrics)
    #: Wall clock (ms) at the start of the last evaluation (lastEvaluation in the API).
    last_evaluation_ms: int = 0
    #: The slot timestamp (ms) the last evaluation ran at; stale markers are written there.
    last_eval_timestamp_ms: int = 0
    evaluation_seconds: float = 0.0
    #: Held while evaluating, so a reload copies state between evaluations, never during one.
    lock: threading.Lock = field(default_factory=threading.Lock, compare=False, repr=False)
    #: Set (under `lock`) once a reload replaced or removed this group: it must not run again.
    stopped: bool = False
    #: How the manager reads for this group's rules (a `readcache.ReadPlan`), built on first use.
    read_plan: object = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not self.series_in_previous_eval:
            self.series_in_previous_eval = [{} for _ in self.rules]

    @property
    def key(self) -> str:
        return f"{self.file};{self.name}"

    def written_names(self) -> set[str]:
        """Metric names this group's rules write."""
        names: set[str] = set()
        for rule in self.rules:
            if isinstance(rule, AlertingRule):
                names.update((ALERT_METRIC, ALERT_FOR_STATE_METRIC))
            else:
                names.add(rule.name)
        return names

    def hash64(self) -> int:
        return Labels({"name": self.name, "file": self.file}).hash64()

    def eval_timestamp_ms(self, now_ns: int) -> int:
        """Start of the current slot: Prometheus offsets each group by a hash of its identity."""
        interval_ns = self.interval_ms * 1_000_000
        offset = self.hash64() % interval_ns
        adj = now_ns - offset
        base = adj - (adj % interval_ns)
        return (base + offset) // 1_000_000

    def equals(self, other: Group) -> bool:
        """Same definition (Prometheus keeps unchanged groups as they are on reload)."""
        if (self.name, self.file, self.interval_ms, self.limit, self.query_offset_ms) != (
            other.name,
            other.file,
            other.interval_ms,
            other.limit,
            other.query_offset_ms,
        ) or len(self.rules) != len(other.rules):
            return False
        return all(
            _rule_def(a) == _rule_def(b) for a, b in zip(self.rules, other.rules, strict=True)
        )

    def copy_state(self, old: Group) -> None:
        """Carry alert state and series of matching rules over from the group being replaced."""
        self.last_evaluation_ms = old.last_evaluation_ms
        self.last_eval_timestamp_ms = old.last_eval_timestamp_ms
        self.evaluation_seconds = old.evaluation_seconds
        by_identity: dict[str, list[int]] = {}
        for i, rule in enumerate(old.rules):
            by_identity.setdefault(rule.identity(), []).append(i)
        for i, rule in enumerate(self.rules):
            indexes = by_identity.get(rule.identity())
            if not indexes:
                continue
            j = indexes.pop(0)
            self.series_in_previous_eval[i] = old.series_in_previous_eval[j]
            old_rule = old.rules[j]
            if isinstance(rule, AlertingRule) and isinstance(old_rule, AlertingRule):
                rule.active.update(old_rule.active)
                rule.restored = old_rule.restored or rule.restored
        self.stale_series = list(old.stale_series)
        for identity, leftover in by_identity.items():
            del identity
            for j in leftover:
                self.stale_series.extend(old.series_in_previous_eval[j])

    def eval(self, ts_ms: int, ctx: EvalContext) -> None:
        """Evaluate every rule in order at `ts_ms`, write results and send alerts."""
        start = time.perf_counter()
        start_wall_ms = int(ctx.clock() * 1000)
        send = ctx.send
        samples_total = 0
        pending: list[tuple[Labels, int, float]] = []
        for i, rule in enumerate(self.rules):
            if pending and (ctx.reads_group_output is None or i in ctx.reads_group_output):
                ctx.append(pending)
                pending = []
            rule_start = time.perf_counter()
            rule_wall_ms = int(ctx.clock() * 1000)
            self.metrics.evaluations_total += 1
            try:
                if isinstance(rule, AlertingRule):
                    vector = rule.eval(
                        ts_ms, ctx.query, self.limit, self.query_offset_ms, ctx.template_query
                    )
                else:
                    offset_query = _offset(ctx.query, self.query_offset_ms)
                    vector = rule.eval(ts_ms, offset_query, self.limit)
            except RuleError as exc:
                _finish(rule, Health.ERR, str(exc), rule_wall_ms, rule_start)
                self.metrics.evaluation_failures_total += 1
                self._observe_rule(rule, ctx)
                continue
            _finish(rule, Health.OK, None, rule_wall_ms, rule_start)
            samples_total += len(vector)
            if isinstance(rule, AlertingRule):
                due = rule.alerts_to_send(ts_ms, ctx.resend_delay_ms, self.interval_ms)
                if due:
                    send(rule.expr, due)
            sample_ts = ts_ms - self.query_offset_ms
            returned: dict[Labels, None] = {}
            for lbls, value in vector:
                pending.append((lbls, sample_ts, value))
                returned[lbls] = None
            for lbls in self.series_in_previous_eval[i]:
                if lbls not in returned:
                    pending.append((lbls, sample_ts, STALE_NAN))
            self.series_in_previous_eval[i] = returned
            self._observe_rule(rule, ctx)
        if self.stale_series:
            sample_ts = ts_ms - self.query_offset_ms
            pending.extend((lbls, sample_ts, STALE_NAN) for lbls in self.stale_series)
            self.stale_series = []
        if pending:
            ctx.append(pending)
        elapsed = time.perf_counter() - start
        self.evaluation_seconds = elapsed
        self.last_evaluation_ms = start_wall_ms
        self.last_eval_timestamp_ms = ts_ms
        self.metrics.last_duration_seconds = elapsed
        self.metrics.duration_seconds_sum += elapsed
        self.metrics.duration_seconds_count += 1
        self.metrics.iterations_total += 1
        self.metrics.last_evaluation_samples = samples_total
        self.metrics.last_evaluation_ms = start_wall_ms

    def _observe_rule(self, rule: RuleBase, ctx: EvalContext) -> None:
        self.metrics.rule_eval_seconds_sum += rule.evaluation_seconds
        self.metrics.rule_eval_seconds_count += 1
        ctx.observe_rule(rule.evaluation_seconds)

    def restore_for_state(
        self,
        now_ms: int,
        select_for_state: ForStateSelect,
        outage_tolerance_ms: int,
        grace_ms: int,
    ) -> None:
        """Restore ActiveAt of active alerts from ALERTS_FOR_STATE (Group.RestoreForState).

        `select_for_state(alertname, min_ms, max_ms)` returns (labels without __name__,
        last timestamp ms, last value) per ALERTS_FOR_STATE series.
        """
        mint = now_ms - outage_tolerance_ms
        for rule in self.rules:
            if not isinstance(rule, AlertingRule):
                continue
            if rule.hold_ms < grace_ms:
                rule.restored = True
                continue
            found = select_for_state(rule.name, mint, now_ms)
            by_labels = {lbls: (t, v) for lbls, t, v in found}
            for alert in rule.active.values():
                hit = by_labels.get(alert.labels)
                if hit is None:
                    continue
                t, v = hit
                if math.isnan(v):
                    continue
                alert.active_at_ms = restore_active_at(
                    int(v) * 1000, t, now_ms, rule.hold_ms, grace_ms
                )
            rule.restored = True


def _finish(
    rule: RuleBase, health: Health, error: str | None, wall_ms: int, started: float
) -> None:
    rule.health = health
    rule.last_error = error
    rule.last_evaluation_ms = wall_ms
    rule.evaluation_seconds = time.perf_counter() - started


def _offset(query: RuleQueryFunc, offset_ms: int) -> RuleQueryFunc:
    if not offset_ms:
        return query
    return lambda expr, ts: query(expr, ts - offset_ms)


def _rule_def(rule: Rule) -> tuple[object, ...]:
    if isinstance(rule, AlertingRule):
        return (
            "alert",
            rule.name,
            rule.expr,
            rule.hold_ms,
            rule.keep_firing_for_ms,
            rule.labels,
            rule.annotations,
        )
    return ("record", rule.name, rule.expr, rule.labels)


__all__ = [
    "ALERT_FOR_STATE_METRIC",
    "Alert",
    "AppendFunc",
    "EvalContext",
    "ForStateSelect",
    "Group",
    "Rule",
    "SendFunc",
]
