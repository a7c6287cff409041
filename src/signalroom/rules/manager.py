"""The rule manager: loads rule files into groups, evaluates them on their intervals, writes
recording results and ALERTS series, sends alerts, reloads keeping state, and answers the
/api/v1/rules and /api/v1/alerts shapes. Metrics carry Prometheus's own names."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from signalroom.model.labels import Labels
from signalroom.promql import ast
from signalroom.promql.engine import Engine
from signalroom.promql.storage import STALE_NAN, Matcher, MatchType, MemoryStorage, Querier
from signalroom.promql.value import PromQLError, Scalar, Vector
from signalroom.rules.group import EvalContext, Group, Rule
from signalroom.rules.metrics import (
    GROUP_DURATION_QUANTILES,
    RULE_EVAL_QUANTILES,
    WindowedSummary,
)
from signalroom.rules.readcache import GroupQuerier, ReadPlan
from signalroom.rules.rule import (
    ALERT_FOR_STATE_METRIC,
    Alert,
    AlertingRule,
    AlertState,
    RecordingRule,
    RuleError,
    RuleQueryFunc,
)
from signalroom.rules.rulefmt import ExprCheck, RuleFileError, check_promql_expr, parse_file
from signalroom.templating.builtins import query_escape
from signalroom.templating.gofmt import format_float

log = logging.getLogger(__name__)


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


class EngineQuery:
    """Rules' QueryFunc over the PromQL engine (EngineQueryFunc): vectors and scalars only.

    Parse trees are kept per expression; `bound` answers one group evaluation from a
    `GroupQuerier`, which reads each selector family from the store once."""

    def __init__(self, engine: Engine, querier_factory: Callable[[], Querier]) -> None:
        self.engine = engine
        self.querier_factory = querier_factory
        self._parsed: dict[str, ast.Expr] = {}

    def parse(self, expr: str) -> ast.Expr:
        node = self._parsed.get(expr)
        if node is None:
            node = ast.parse(expr)
            if len(self._parsed) < 10_000:
                self._parsed[expr] = node
        return node

    def __call__(self, expr: str, ts_ms: int) -> list[tuple[Labels, float]]:
        return self.query(self.querier_factory(), expr, ts_ms)

    def query(self, querier: Querier, expr: str, ts_ms: int) -> list[tuple[Labels, float]]:
        try:
            result = self.engine.instant_query(querier, self.parse(expr), ts_ms)
        except PromQLError as exc:
            raise RuleError(str(exc)) from None
        value = result.value
        if isinstance(value, Vector):
            return [(s.labels, s.value) for s in value.samples]
        if isinstance(value, Scalar):
            return [(Labels(), value.value)]
        raise RuleError("rule result is not a vector or scalar")

    def plan(self, group: Group) -> ReadPlan:
        """The group's read plan, built once per rule set (a reload makes new groups)."""
        if group.read_plan is None:
            exprs: list[ast.Expr | None] = []
            for rule in group.rules:
                try:
                    exprs.append(self.parse(rule.expr))
                except PromQLError:
                    exprs.append(None)
            group.read_plan = ReadPlan.build(
                exprs, group.written_names(), self.engine.lookback_delta_ms
            )
        assert isinstance(group.read_plan, ReadPlan)
        return group.read_plan

    def bound(self, group: Group, ts_ms: int) -> RuleQueryFunc:
        """A QueryFunc for evaluating `group` at slot `ts_ms`."""
        querier = GroupQuerier(
            self.querier_factory(), self.plan(group), ts_ms - group.query_offset_ms
        )
        return lambda expr, t: self.query(querier, expr, t)


def make_query_func(
    engine: Engine, querier_factory: Callable[[], Querier]
) -> Callable[[str, int], list[tuple[Labels, float]]]:
    """Rules' QueryFunc over the PromQL engine (EngineQueryFunc): vectors and scalars only."""
    return EngineQuery(engine, querier_factory)


@dataclass
class _GroupRun:
    group: Group
    task: asyncio.Task[None]
    done: asyncio.Event


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
        query_func: Callable[[str, int], list[tuple[Labels, float]]] | None = None,
        check_expr: ExprCheck = check_promql_expr,
    ) -> None:
        # `query_func` and `check_expr` swap the rule language (the LogQL ruler); `engine` and
        # `querier_factory` still serve restoring alert state from ALERTS_FOR_STATE.
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
        self.engine_query = EngineQuery(engine, querier_factory) if query_func is None else None
        self.query = query_func or self.engine_query or make_query_func(engine, querier_factory)
        self.check_expr = check_expr
        self.rule_duration = WindowedSummary(RULE_EVAL_QUANTILES)
        self.group_duration = WindowedSummary(GROUP_DURATION_QUANTILES)
        self._runs: dict[str, _GroupRun] = {}
        self._running = False
        self._retired: set[asyncio.Task[None]] = set()

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
                rule_file = parse_file(path, self.check_expr)
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
        """(Re)load rule files (Manager.Update): unchanged groups keep running as they are,
        changed ones take over the alert state of matching rules from the group they
        replace, removed ones write stale markers for their series. Safe while running."""
        new = self.load_groups(paths, should_restore=not self.restored)
        for key, group in new.items():
            old = self.groups.get(key)
            if old is None:
                continue
            if old.equals(group):
                new[key] = old
                continue
            # Wait for an evaluation in flight, then retire the old group for good.
            with old.lock:
                old.stopped = True
                group.copy_state(old)
        for key, old in self.groups.items():
            if key in new:
                continue
            with old.lock:
                old.stopped = True
                stale = [lbls for series in old.series_in_previous_eval for lbls in series]
                stale.extend(old.stale_series)
                if stale and old.last_eval_timestamp_ms:
                    ts = old.last_eval_timestamp_ms - old.query_offset_ms
                    self.appender.append_samples([(lbls, ts, STALE_NAN) for lbls in stale])
        self.groups = new
        self.restored = True
        if self._running:
            self._sync_tasks()

    # --- evaluation -------------------------------------------------------------------------

    def _context(self, group: Group, ts_ms: int) -> EvalContext:
        query = self.query
        reads_group_output = None
        if self.engine_query is not None:
            query = self.engine_query.bound(group, ts_ms)
            plan = self.engine_query.plan(group)
            reads_group_output = frozenset(i for i, r in enumerate(plan.reads_written) if r)
        return EvalContext(
            query=query,
            reads_group_output=reads_group_output,
            append=self.appender.append_samples,
            send=self._send,
            resend_delay_ms=self.resend_delay_ms,
            template_query=self.query,
            clock=self.clock,
            observe_rule=self.rule_duration.observe,
        )

    def eval_group(self, group: Group, ts_ms: int) -> bool:
        """Evaluate one group at slot `ts_ms` (DefaultEvalIterationFunc); the loop calls this,
        tests call it directly. False if a reload retired the group in the meantime."""
        with group.lock:
            if group.stopped:
                return False
            group.eval(ts_ms, self._context(group, ts_ms))
        self.group_duration.observe(group.evaluation_seconds)
        return True

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

        started = time.perf_counter()
        with group.lock:
            group.restore_for_state(
                now_ms, select, self.outage_tolerance_ms, self.for_grace_period_ms
            )
            group.should_restore = False
        group.metrics.last_restore_duration_seconds = time.perf_counter() - started

    # --- running ----------------------------------------------------------------------------

    async def start(self) -> None:
        """Start one evaluation loop per group on the running event loop."""
        self._running = True
        self._sync_tasks()

    async def stop(self) -> None:
        """Stop every loop; an evaluation in progress finishes first (as Group.stop waits)."""
        self._running = False
        runs = list(self._runs.values())
        self._runs.clear()
        for run in runs:
            run.done.set()
        tasks = [run.task for run in runs] + list(self._retired)
        await asyncio.gather(*tasks, return_exceptions=True)

    def _sync_tasks(self) -> None:
        for key, run in list(self._runs.items()):
            if self.groups.get(key) is not run.group:
                run.done.set()
                del self._runs[key]
                self._retired.add(run.task)
                run.task.add_done_callback(self._retired.discard)
        for key, group in self.groups.items():
            if key not in self._runs:
                done = asyncio.Event()
                task = asyncio.get_running_loop().create_task(
                    self._run_group(group, done), name=f"rules:{key}"
                )
                self._runs[key] = _GroupRun(group, task, done)

    async def _wait(self, done: asyncio.Event, until_ms: float) -> bool:
        """Sleep until wall time `until_ms`; True if stopped meanwhile."""
        delay = until_ms / 1000 - self.clock()
        if delay > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), delay)
        return done.is_set()

    async def _next_tick(self, group: Group, done: asyncio.Event, eval_ts: int) -> int | None:
        """Wait for the next tick after slot `eval_ts` and return the slot to evaluate.

        Like Go's ticker, a tick that passed while evaluating fires at once and the ones
        before it are dropped; they count as missed iterations.
        """
        interval = group.interval_ms
        if await self._wait(done, eval_ts + interval):
            return None
        missed = max(0, int(self.clock() * 1000 - eval_ts) // interval - 1)
        if missed:
            group.metrics.iterations_missed_total += missed
        return eval_ts + (missed + 1) * interval

    async def _run_group(self, group: Group, done: asyncio.Event) -> None:
        """Group.run: consistently slotted evaluations, restore after the second one."""
        try:
            eval_ts = group.eval_timestamp_ms(int(self.clock() * 1e9)) + group.interval_ms
            if await self._wait(done, eval_ts):
                return
            await asyncio.to_thread(self.eval_group, group, eval_ts)
            if group.should_restore:
                # Wait one more evaluation: recording rules that alerts depend on need to
                # have run before restoring.
                next_ts = await self._next_tick(group, done, eval_ts)
                if next_ts is None:
                    return
                eval_ts = next_ts
                await asyncio.to_thread(self.eval_group, group, eval_ts)
                await asyncio.to_thread(self.restore_for_state, group, int(self.clock() * 1000))
            while True:
                next_ts = await self._next_tick(group, done, eval_ts)
                if next_ts is None or group.stopped:
                    return
                eval_ts = next_ts
                await asyncio.to_thread(self.eval_group, group, eval_ts)
        except Exception:
            log.exception("rule group %s stopped on an unexpected error", group.key)
            raise

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
        # Manager.RuleGroups order: by file, then name.
        for group in sorted(self.groups.values(), key=lambda g: (g.file, g.name)):
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
                    rules_json.append(self.alerting_rule_json(rule, exclude_alerts))
                else:
                    if type_ == "alert":
                        continue
                    rules_json.append(self.recording_rule_json(rule))
            if (rule_names or type_) and not rules_json:
                continue
            out_groups.append(
                {
                    "name": group.name,
                    "file": group.file,
                    "rules": rules_json,
                    "interval": group.interval_ms / 1000,
                    "limit": group.limit,
                    "evaluationTime": group.evaluation_seconds,
                    "lastEvaluation": _rfc3339(group.last_evaluation_ms),
                }
            )
        return {"groups": out_groups}

    def alerting_rule_json(
        self, rule: AlertingRule, exclude_alerts: bool = False
    ) -> dict[str, Any]:
        """apiv1.AlertingRule: state is inactive, pending or firing (the rule's highest)."""
        out: dict[str, Any] = {
            "state": str(rule.state()),
            "name": rule.name,
            "query": rule.expr,
            "duration": rule.hold_ms / 1000,
            "keepFiringFor": rule.keep_firing_for_ms / 1000,
            "labels": rule.labels.to_dict(),
            "annotations": rule.annotations.to_dict(),
            "alerts": [] if exclude_alerts else [self.alert_json(a) for a in rule.active_alerts()],
            "health": rule.health.value,
        }
        if rule.last_error:
            out["lastError"] = rule.last_error  # omitempty
        out["evaluationTime"] = rule.evaluation_seconds
        out["lastEvaluation"] = _rfc3339(rule.last_evaluation_ms)
        out["type"] = "alerting"
        return out

    def recording_rule_json(self, rule: RecordingRule) -> dict[str, Any]:
        """apiv1.RecordingRule."""
        out: dict[str, Any] = {
            "name": rule.name,
            "query": rule.expr,
            "labels": rule.labels.to_dict(),
            "health": rule.health.value,
        }
        if rule.last_error:
            out["lastError"] = rule.last_error  # omitempty
        out["evaluationTime"] = rule.evaluation_seconds
        out["lastEvaluation"] = _rfc3339(rule.last_evaluation_ms)
        out["type"] = "recording"
        return out

    def alert_json(self, alert: Alert) -> dict[str, Any]:
        """apiv1.Alert: value as strconv.FormatFloat(v, 'e', -1, 64); keepFiringSince only
        while an alert is kept firing after its condition went away."""
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
    if math.isnan(value) or math.isinf(value):
        return format_float(value)
    return format_float(value, "e", -1)


def _table_link(expr: str) -> str:
    return f"/graph?g0.expr={query_escape(expr)}&g0.tab=1"


def _summary(name: str, doc: str, summary: WindowedSummary) -> Metric:
    metric = Metric(name, doc, "summary")
    quantiles, total, count = summary.snapshot()
    for q, value in quantiles:
        metric.add_sample(name, {"quantile": format_float(q)}, value)
    metric.add_sample(name + "_sum", {}, total)
    metric.add_sample(name + "_count", {}, float(count))
    return metric


class _RuleCollector(Collector):
    """The rule metrics of Prometheus's rules.NewGroupMetrics, rule_group="<file>;<name>"."""

    def __init__(self, manager: RuleManager) -> None:
        self.manager = manager

    def collect(self) -> Iterator[Metric]:
        m = self.manager
        by_group = ["rule_group"]
        iterations = CounterMetricFamily(
            "prometheus_rule_group_iterations",
            "The total number of scheduled rule group evaluations, whether executed or missed.",
            labels=by_group,
        )
        missed = CounterMetricFamily(
            "prometheus_rule_group_iterations_missed",
            "The total number of rule group evaluations missed due to slow rule group evaluation.",
            labels=by_group,
        )
        evals = CounterMetricFamily(
            "prometheus_rule_evaluations", "The total number of rule evaluations.", labels=by_group
        )
        failures = CounterMetricFamily(
            "prometheus_rule_evaluation_failures",
            "The total number of rule evaluation failures.",
            labels=by_group,
        )
        interval = GaugeMetricFamily(
            "prometheus_rule_group_interval_seconds",
            "The interval of a rule group.",
            labels=by_group,
        )
        last_eval = GaugeMetricFamily(
            "prometheus_rule_group_last_evaluation_timestamp_seconds",
            "The timestamp of the last rule group evaluation in seconds.",
            labels=by_group,
        )
        last_duration = GaugeMetricFamily(
            "prometheus_rule_group_last_duration_seconds",
            "The duration of the last rule group evaluation.",
            labels=by_group,
        )
        last_restore = GaugeMetricFamily(
            "prometheus_rule_group_last_restore_duration_seconds",
            "The duration of the last alert rules alerts restoration using the "
            "`ALERTS_FOR_STATE` series.",
            labels=by_group,
        )
        n_rules = GaugeMetricFamily(
            "prometheus_rule_group_rules", "The number of rules.", labels=by_group
        )
        last_samples = GaugeMetricFamily(
            "prometheus_rule_group_last_evaluation_samples",
            "The number of samples returned during the last rule group evaluation.",
            labels=by_group,
        )
        for group in sorted(m.groups.values(), key=lambda g: g.key):
            key = [group.key]
            gm = group.metrics
            iterations.add_metric(key, gm.iterations_total + gm.iterations_missed_total)
            missed.add_metric(key, gm.iterations_missed_total)
            evals.add_metric(key, gm.evaluations_total)
            failures.add_metric(key, gm.evaluation_failures_total)
            interval.add_metric(key, group.interval_ms / 1000)
            last_eval.add_metric(key, gm.last_evaluation_ms / 1000)
            last_duration.add_metric(key, gm.last_duration_seconds)
            last_restore.add_metric(key, gm.last_restore_duration_seconds)
            n_rules.add_metric(key, len(group.rules))
            last_samples.add_metric(key, gm.last_evaluation_samples)
        yield _summary(
            "prometheus_rule_evaluation_duration_seconds",
            "The duration for a rule to execute.",
            m.rule_duration,
        )
        yield _summary(
            "prometheus_rule_group_duration_seconds",
            "The duration of rule group evaluations.",
            m.group_duration,
        )
        yield from (
            iterations,
            missed,
            evals,
            failures,
            interval,
            last_eval,
            last_duration,
            last_restore,
            n_rules,
            last_samples,
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
