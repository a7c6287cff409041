"""The rule manager: loads rule files into groups, evaluates them on their intervals, writes
recording results and ALERTS series, sends alerts, reloads keeping state, and answers the
/api/v1/rules and /api/v1/alerts shapes. Metrics carry Prometheus's own names."""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

from signalroom.model.labels import Labels
from signalroom.promql import ast
from signalroom.promql.engine import Engine
from signalroom.promql.storage import Matcher, MatchType, MemoryStorage, Querier
from signalroom.promql.value import PromQLError, Scalar, Vector
from signalroom.rules.group import EvalContext, Group, Rule
from signalroom.rules.rule import (
    ALERT_FOR_STATE_METRIC,
    Alert,
    AlertingRule,
    AlertState,
    RecordingRule,
    RuleError,
)
from signalroom.rules.rulefmt import RuleFileError, parse_file
from signalroom.templating.builtins import query_escape


class SampleAppender(Protocol):
    """Where rule results go: (labels, timestamp ms, value) samples, STALE_NAN for stale."""

    def append_samples(self, samples: Sequence[tuple[Labels, int, float]]) -> None: ...


class AlertNotifier(Protocol):
    """Where alerts go: Alertmanager API v2 `postableAlert` dicts (labels, annotations,
    startsAt, endsAt, generatorURL)."""

    def send(self, alerts: list[dict[str, Any]]) -> None: ...


class MemoryStorageAppender:
    """Appends rule output to a `MemoryStorage` (tests, promtool unit tests, benchmarks)."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage

    def append_samples(self, samples: Sequence[tuple[Labels, int, float]]) -> None:
        for lbls, ts, value in samples:
            self.storage.add(lbls, ts, value)


@dataclass
class ListNotifier:
    """Keeps sent alerts in memory."""

    sent: list[dict[str, Any]] = field(default_factory=list)

    def send(self, alerts: list[dict[str, Any]]) -> None:
        self.sent.extend(alerts)


def _rfc3339(ms: int) -> str:
    if ms <= 0:
        return "0001-01-01T00:00:00Z"
    when = dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC)
    text = when.strftime("%Y-%m-%dT%H:%M:%S")
    frac = ms % 1000
    return text + (f".{frac:03d}".rstrip("0") if frac else "") + "Z"


def make_query_func(
    engine: Engine, querier_factory: Callable[[], Querier]
) -> Callable[[str, int], list[tuple[Labels, float]]]:
    """Rules' QueryFunc over the PromQL engine (EngineQueryFunc): vectors and scalars only."""
    parsed: dict[str, ast.Expr] = {}

    def query(expr: str, ts_ms: int) -> list[tuple[Labels, float]]:
        try:
            node = parsed.get(expr)
            if node is None:
                node = ast.parse(expr)
                if len(parsed) < 10_000:
                    parsed[expr] = node
            result = engine.instant_query(querier_factory(), node, ts_ms)
        except PromQLError as exc:
            raise RuleError(str(exc)) from None
        value = result.value
        if isinstance(value, Vector):
            return [(s.labels, s.value) for s in value.samples]
        if isinstance(value, Scalar):
            return [(Labels(), value.value)]
        raise RuleError("rule result is not a vector or scalar")

    return query


class RuleManager:
    """Evaluates Prometheus rule groups and feeds alerts to a notifier."""

    def __init__(
        self,
        engine: Engine,
        querier_factory: Callable[[], Querier],
        appender: SampleAppender,
        notifier: AlertNotifier | None = None,
        *,
        external_labels: Mapping[str, str] | None = None,
        external_url: str = "",
        default_interval_ms: int = 60_000,
        default_query_offset_ms: int = 0,
        resend_delay_ms: int = 60_000,
        outage_tolerance_ms: int = 3_600_000,
        for_grace_period_ms: int = 600_000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine = engine
        self.querier_factory = querier_factory
        self.appender = appender
        self.notifier = notifier
        self.external_labels = dict(external_labels or {})
        self.external_url = external_url
        self.default_interval_ms = default_interval_ms
        self.default_query_offset_ms = default_query_offset_ms
        self.resend_delay_ms = resend_delay_ms
        self.outage_tolerance_ms = outage_tolerance_ms
        self.for_grace_period_ms = for_grace_period_ms
        self.clock = clock
        self.groups: dict[str, Group] = {}
        self.restored = False
        self.query = make_query_func(engine, querier_factory)
        self._tasks: dict[str, asyncio.Task[None]] = {}

    # --- loading ----------------------------------------------------------------------------

    def load_groups(
        self,
        paths: Iterable[str],
        interval_ms: int | None = None,
        should_restore: bool = False,
    ) -> dict[str, Group]:
        """Build groups from rule files; raises RuleFileError with every file's errors."""
        groups: dict[str, Group] = {}
        errors: list[str] = []
        for path in paths:
            try:
                rule_file = parse_file(path)
            except RuleFileError as exc:
                errors.extend(exc.errors)
                continue
            for node in rule_file.groups:
                rules: list[Rule] = []
                for r in node.rules:
                    labels = Labels({**node.labels, **r.labels})
                    if r.alert:
                        rules.append(
                            AlertingRule(
                                name=r.alert,
                                expr=r.expr,
                                labels=labels,
                                hold_ms=r.for_ms,
                                keep_firing_for_ms=r.keep_firing_for_ms,
                                annotations=Labels(r.annotations),
                                external_labels=self.external_labels,
                                external_url=self.external_url,
                                restored=not should_restore,
                            )
                        )
                    else:
                        rules.append(RecordingRule(name=r.record, expr=r.expr, labels=labels))
                group = Group(
                    name=node.name,
                    file=path,
                    interval_ms=node.interval_ms or interval_ms or self.default_interval_ms,
                    rules=rules,
                    limit=node.limit,
                    query_offset_ms=(
                        node.query_offset_ms
                        if node.query_offset_ms is not None
                        else self.default_query_offset_ms
                    ),
                    labels=dict(node.labels),
                    should_restore=should_restore,
                )
                groups[group.key] = group
        if errors:
            raise RuleFileError(errors)
        return groups

    def update(self, paths: Iterable[str]) -> None:
        """(Re)load rule files: unchanged groups keep running as they are, changed ones take
        over the alert state of matching rules, removed ones write stale markers."""
        new = self.load_groups(paths, should_restore=not self.restored)
        for key, group in new.items():
            old = self.groups.get(key)
            if old is None:
                continue
            if old.equals(group):
                new[key] = old
            else:
                group.copy_state(old)
        for key, old in self.groups.items():
            if key not in new:
                stale = [lbls for series in old.series_in_previous_eval for lbls in series]
                if stale and old.last_evaluation_ms:
                    from signalroom.promql.storage import STALE_NAN

                    self.appender.append_samples(
                        [(lbls, old.last_evaluation_ms, STALE_NAN) for lbls in stale]
                    )
        self.groups = new
        self.restored = True
        if self._tasks:
            self._restart_tasks()

    # --- evaluation -------------------------------------------------------------------------

    def _context(self) -> EvalContext:
        return EvalContext(
            query=self.query,
            append=self.appender.append_samples,
            send=self._send,
            resend_delay_ms=self.resend_delay_ms,
            template_query=self.query,
        )

    def eval_group(self, group: Group, ts_ms: int) -> None:
        """Evaluate one group at `ts_ms` (the loop calls this; tests call it directly)."""
        group.eval(ts_ms, self._context())

    def _send(self, expr: str, alerts: list[Alert]) -> None:
        if self.notifier is None or not alerts:
            return
        self.notifier.send([self.postable_alert(expr, a) for a in alerts])

    def postable_alert(self, expr: str, alert: Alert) -> dict[str, Any]:
        """An alert as POST /api/v2/alerts takes it; external labels first, rule labels win."""
        labels = {**self.external_labels, **alert.labels.to_dict()}
        ends = alert.resolved_at_ms or alert.valid_until_ms
        return {
            "labels": labels,
            "annotations": alert.annotations.to_dict(),
            "startsAt": _rfc3339(alert.fired_at_ms),
            "endsAt": _rfc3339(ends),
            "generatorURL": self.external_url.rstrip("/") + _table_link(expr),
        }

    def restore_for_state(self, group: Group, now_ms: int) -> None:
        def select(alertname: str, mint: int, maxt: int) -> list[tuple[Labels, int, float]]:
            querier = self.querier_factory()
            matchers = [
                Matcher(MatchType.EQUAL, "__name__", ALERT_FOR_STATE_METRIC),
                Matcher(MatchType.EQUAL, "alertname", alertname),
            ]
            out: list[tuple[Labels, int, float]] = []
            for series in querier.select(matchers, mint, maxt):
                if len(series.timestamps) == 0:
                    continue
                out.append(
                    (
                        series.labels.without_name(),
                        int(series.timestamps[-1]),
                        float(series.values[-1]),
                    )
                )
            return out

        group.restore_for_state(now_ms, select, self.outage_tolerance_ms, self.for_grace_period_ms)
        group.should_restore = False

    # --- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one evaluation loop per group."""
        self._restart_tasks()

    def _restart_tasks(self) -> None:
        for key, task in list(self._tasks.items()):
            if key not in self.groups or task.get_name() != str(id(self.groups[key])):
                task.cancel()
                del self._tasks[key]
        for key, group in self.groups.items():
            if key not in self._tasks:
                self._tasks[key] = asyncio.get_event_loop().create_task(
                    self._run_group(group), name=str(id(group))
                )

    async def stop(self) -> None:
        tasks = list(self._tasks.values())
        self._tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass

    async def _run_group(self, group: Group) -> None:
        interval = group.interval_ms
        now_ns = int(self.clock() * 1e9)
        eval_ts = group.eval_timestamp_ms(now_ns) + interval
        first = True
        while True:
            delay = eval_ts / 1000 - self.clock()
            if delay > 0:
                await asyncio.sleep(delay)
            now_ms = int(self.clock() * 1000)
            missed = (now_ms - eval_ts) // interval - 1 if not first else 0
            if missed > 0:
                group.metrics.iterations_missed_total += missed
                eval_ts += missed * interval
            await asyncio.to_thread(self.eval_group, group, eval_ts)
            if group.should_restore and not first:
                await asyncio.to_thread(self.restore_for_state, group, int(self.clock() * 1000))
            first = False
            eval_ts += interval

    # --- API --------------------------------------------------------------------------------

    def rules_api(
        self,
        type_: str | None = None,
        rule_names: Sequence[str] = (),
        rule_groups: Sequence[str] = (),
        files: Sequence[str] = (),
        exclude_alerts: bool = False,
    ) -> dict[str, Any]:
        """The `data` of GET /api/v1/rules (filters: type=alert|record, rule_name[], ...)."""
        if type_ not in (None, "", "alert", "record"):
            raise ValueError(
                f"invalid query parameter type='{type_}', must be one of 'alert' or 'record'"
            )
        out_groups = []
        for group in self.groups.values():
            if rule_groups and group.name not in rule_groups:
                continue
            if files and group.file not in files:
                continue
            rules_json = []
            for rule in group.rules:
                if rule_names and rule.name not in rule_names:
                    continue
                if isinstance(rule, AlertingRule):
                    if type_ == "record":
                        continue
                    alerts = (
                        [] if exclude_alerts else [self.alert_json(a) for a in rule.active_alerts()]
                    )
                    rules_json.append(
                        {
                            "state": str(rule.state()),
                            "name": rule.name,
                            "query": rule.expr,
                            "duration": rule.hold_ms / 1000,
                            "keepFiringFor": rule.keep_firing_for_ms / 1000,
                            "labels": rule.labels.to_dict(),
                            "annotations": rule.annotations.to_dict(),
                            "alerts": alerts,
                            "health": rule.health.value,
                            "lastError": rule.last_error or "",
                            "evaluationTime": rule.evaluation_seconds,
                            "lastEvaluation": _rfc3339(rule.last_evaluation_ms),
                            "type": "alerting",
                        }
                    )
                else:
                    if type_ == "alert":
                        continue
                    rules_json.append(
                        {
                            "name": rule.name,
                            "query": rule.expr,
                            "labels": rule.labels.to_dict(),
                            "health": rule.health.value,
                            "lastError": rule.last_error or "",
                            "evaluationTime": rule.evaluation_seconds,
                            "lastEvaluation": _rfc3339(rule.last_evaluation_ms),
                            "type": "recording",
                        }
                    )
            if (rule_names or type_) and not rules_json:
                continue
            out_groups.append(
                {
                    "name": group.name,
                    "file": group.file,
                    "interval": group.interval_ms / 1000,
                    "limit": group.limit,
                    "rules": rules_json,
                    "evaluationTime": group.evaluation_seconds,
                    "lastEvaluation": _rfc3339(group.last_evaluation_ms),
                }
            )
        return {"groups": out_groups}

    def alert_json(self, alert: Alert) -> dict[str, Any]:
        out: dict[str, Any] = {
            "labels": alert.labels.to_dict(),
            "annotations": alert.annotations.to_dict(),
            "state": str(alert.state),
            "activeAt": _rfc3339(alert.active_at_ms),
            "value": _format_value(alert.value),
        }
        if alert.keep_firing_since_ms:
            out["keepFiringSince"] = _rfc3339(alert.keep_firing_since_ms)
        return out

    def alerts_api(self) -> dict[str, Any]:
        """The `data` of GET /api/v1/alerts: every pending and firing alert."""
        alerts = [
            self.alert_json(a)
            for group in self.groups.values()
            for rule in group.rules
            if isinstance(rule, AlertingRule)
            for a in rule.active_alerts()
        ]
        return {"alerts": alerts}

    # --- metrics ----------------------------------------------------------------------------

    def collector(self) -> Collector:
        """A prometheus_client collector with Prometheus's rule metric names."""
        return _RuleCollector(self)


def _format_value(value: float) -> str:
    from signalroom.templating.gofmt import format_float

    if math.isnan(value) or math.isinf(value):
        return format_float(value)
    return format_float(value, "e", -1).replace("e+0", "e+0")


def _table_link(expr: str) -> str:
    return f"/graph?g0.expr={query_escape(expr)}&g0.tab=1"


class _RuleCollector(Collector):
    def __init__(self, manager: RuleManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Any]:
        m = self.manager
        iterations = CounterMetricFamily(
            "prometheus_rule_group_iterations",
            "The number of scheduled evaluations of rule groups.",
            labels=["rule_group"],
        )
        missed = CounterMetricFamily(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            labels=["rule_group"],
        )
        evals = CounterMetricFamily(
            "prometheus_rule_evaluations",
            "The total number of rule evaluations.",
            labels=["rule_group"],
        )
        failures = CounterMetricFamily(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            labels=["rule_group"],
        )
        last_duration = GaugeMetricFamily(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            labels=["rule_group"],
        )
        interval = GaugeMetricFamily(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            labels=["rule_group"],
        )
        n_rules = GaugeMetricFamily(
            "prometheus_rule_group_rules", "The number of rules.", labels=["rule_group"]
        )
        last_eval = GaugeMetricFamily(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            labels=["rule_group"],
        )
        last_samples = GaugeMetricFamily(
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation.",
            labels=["rule_group"],
        )
        group_duration = SummaryMetricFamily(
            "prometheus_rule_group_duration_seconds", "The duration of rule group evaluations."
        )
        rule_duration = SummaryMetricFamily(
            "prometheus_rule_evaluation_duration_seconds", "The duration for a rule to execute."
        )
        g_sum = g_count = r_sum = 0.0
        r_count = 0
        for group in m.groups.values():
            key = [group.key]
            gm = group.metrics
            iterations.add_metric(key, gm.iterations_total + gm.iterations_missed_total)
            missed.add_metric(key, gm.iterations_missed_total)
            evals.add_metric(key, gm.evaluations_total)
            failures.add_metric(key, gm.evaluation_failures_total)
            last_duration.add_metric(key, gm.last_duration_seconds)
            interval.add_metric(key, group.interval_ms / 1000)
            n_rules.add_metric(key, len(group.rules))
            last_eval.add_metric(key, gm.last_evaluation_ms / 1000)
            last_samples.add_metric(key, gm.last_evaluation_samples)
            g_sum += gm.duration_seconds_sum
            g_count += gm.duration_seconds_count
            r_sum += gm.rule_eval_seconds_sum
            r_count += gm.rule_eval_seconds_count
        group_duration.add_metric([], int(g_count), g_sum)
        rule_duration.add_metric([], r_count, r_sum)
        yield from (
            iterations,
            missed,
            evals,
            failures,
            last_duration,
            interval,
            n_rules,
            last_eval,
            last_samples,
            group_duration,
            rule_duration,
        )


__all__ = [
    "AlertNotifier",
    "AlertState",
    "ListNotifier",
    "MemoryStorageAppender",
    "RuleManager",
    "SampleAppender",
    "make_query_func",
]
