"""The LogQL ruler: Loki's ruler format evaluated by the Prometheus rule machinery.

Loki rule files are Prometheus rule groups whose ``expr`` is a LogQL *metric* query. They run
in a second :class:`~signalroom.rules.manager.RuleManager` whose query function is the LogQL
engine, so alert state, ``for``/``keep_firing_for``, templates, the ``ALERTS`` series and the
notifier are the same ones the PromQL rules use; recording rules write into the metric store,
where PromQL reads them.
"""

from __future__ import annotations

import asyncio
import glob
import logging
import os
import threading
import urllib.parse
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from signalroom.logs.config import LogsConfig
from signalroom.logs.logql.ast import LogQLError, LogQuery, MetricExpr
from signalroom.logs.logql.engine import LogQLEngine
from signalroom.logs.logql.parser import parse
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import Querier
from signalroom.rules.manager import AlertNotifier, RuleManager, SampleAppender
from signalroom.rules.rule import AlertingRule, RecordingRule, RuleError
from signalroom.rules.rulefmt import RuleFileError, format_go_duration_ms, parse_file, parse_rules

if TYPE_CHECKING:
    from signalroom.logs.service import LogService

__all__ = [
    "LogRuler",
    "check_log_rule_files",
    "check_logql_expr",
    "loki_rule_groups",
    "make_logql_query_func",
]

log = logging.getLogger(__name__)

QueryFunc = Callable[[str, int], list[tuple[Labels, float]]]


def check_logql_expr(expr: str) -> str | None:
    """Why ``expr`` cannot be a rule expression (parse error, or a log query), else None."""
    try:
        node = parse(expr)
    except LogQLError as exc:
        return str(exc)
    if isinstance(node, LogQuery):
        return (
            "a log query cannot be a rule expression; use a metric query such as "
            'count_over_time({service="x"} |= "error" [5m])'
        )
    return None


def make_logql_query_func(engine: LogQLEngine, tenant: str) -> QueryFunc:
    """Rules' query function over the LogQL engine: instant metric queries on ``tenant``."""
    parsed: dict[str, MetricExpr] = {}

    def query(expr: str, ts_ms: int) -> list[tuple[Labels, float]]:
        try:
            node = parsed.get(expr)
            if node is None:
                tree = parse(expr)
                if isinstance(tree, LogQuery):
                    raise RuleError("a log query cannot be a rule expression")
                node = tree
                if len(parsed) < 10_000:
                    parsed[expr] = node
            result = engine.query_instant(tenant, node, ts_ms * 1_000_000)
        except LogQLError as exc:
            raise RuleError(str(exc)) from None
        if result.kind == "scalar":
            return [(Labels(), float(result.scalar if result.scalar is not None else "nan"))]
        return [(Labels(s.labels), float(s.values[0])) for s in result.series]

    return query


def check_log_rule_files(paths: list[str]) -> list[str]:
    """Problems of LogQL rule files, each naming its file (as ``promtool check rules``)."""
    problems: list[str] = []
    for path in paths:
        try:
            parse_file(path, check_logql_expr)
        except RuleFileError as exc:
            problems.extend(exc.errors)
    return problems


def loki_rule_groups(
    manager: RuleManager, namespace_of: Callable[[str], str] = str
) -> dict[str, list[dict[str, Any]]]:
    """Rule groups by namespace (``namespace_of`` the rule file), in the shape of Loki's
    ``GET /loki/api/v1/rules`` (YAML of ``namespace: [rulefmt groups]``)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for group in sorted(manager.groups.values(), key=lambda g: (namespace_of(g.file), g.name)):
        rules: list[dict[str, Any]] = []
        for rule in group.rules:
            item: dict[str, Any]
            if isinstance(rule, AlertingRule):
                item = {"alert": rule.name, "expr": rule.expr}
                if rule.hold_ms:
                    item["for"] = format_go_duration_ms(rule.hold_ms)
                if rule.keep_firing_for_ms:
                    item["keep_firing_for"] = format_go_duration_ms(rule.keep_firing_for_ms)
                if rule.annotations.to_dict():
                    item["annotations"] = rule.annotations.to_dict()
            else:
                assert isinstance(rule, RecordingRule)
                item = {"record": rule.name, "expr": rule.expr}
            # Group labels are merged into each rule's; list only the rule's own.
            own = {k: v for k, v in rule.labels.to_dict().items() if group.labels.get(k) != v}
            if own:
                item["labels"] = own
            rules.append(item)
        entry: dict[str, Any] = {
            "name": group.name,
            "interval": format_go_duration_ms(group.interval_ms),
        }
        if group.limit:
            entry["limit"] = group.limit
        entry["rules"] = rules
        out.setdefault(namespace_of(group.file), []).append(entry)
    return out


class RulerAPIError(ValueError):
    """A ruler API request that cannot be done; ``status`` is the HTTP status to answer."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


class LogRuler:
    """Runs the ``logs.ruler`` rule files: a :class:`RuleManager` over the LogQL engine."""

    def __init__(self, service: LogService, manager: RuleManager, base_dir: Path) -> None:
        self.service = service
        self.manager = manager
        self.base_dir = Path(base_dir)
        self.tenant = service.config.ruler.tenant
        self._api_lock = threading.Lock()

    # ------------------------------------------------------------------ API-managed groups
    # Groups set through Loki's ruler API are kept as Loki's local ruler storage keeps them:
    # one rule file per namespace under <logs dir>/rules/<tenant>/, loaded with the
    # configured rule files (and surviving restarts with the data directory).

    @property
    def api_dir(self) -> Path:
        return self.service.directory / "rules" / self.tenant

    def _namespace_file(self, namespace: str) -> Path:
        if not namespace or len(namespace) > 200:
            raise RulerAPIError("invalid namespace: must be 1-200 characters")
        return self.api_dir / (urllib.parse.quote(namespace, safe="") + ".yaml")

    def namespace_of(self, file: str) -> str:
        """The namespace a rule file stands for: its name for API-managed files, else its
        path (the namespace of a configured rule file)."""
        path = Path(file)
        if path.parent == self.api_dir and path.suffix == ".yaml":
            return urllib.parse.unquote(path.stem)
        return file

    def _api_files(self) -> list[str]:
        return sorted(str(p) for p in self.api_dir.glob("*.yaml")) if self.api_dir.is_dir() else []

    def _read_namespace(self, namespace: str) -> list[dict[str, Any]]:
        path = self._namespace_file(namespace)
        if not path.exists():
            return []
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        groups: list[dict[str, Any]] = data.get("groups") or []
        return groups

    def _write_namespace(self, namespace: str, groups: list[dict[str, Any]]) -> None:
        """Validate and store ``groups`` as the namespace's file (or remove it when empty),
        then reload the rules."""
        path = self._namespace_file(namespace)
        if groups:
            text = yaml.safe_dump({"groups": groups}, sort_keys=False, allow_unicode=True)
            try:
                parse_rules(text, check_logql_expr)
            except RuleFileError as exc:
                raise RulerAPIError("invalid rules config: " + "; ".join(exc.errors)) from None
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            with open(tmp, "w", encoding="utf-8") as handle:
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, path)
        else:
            path.unlink(missing_ok=True)
        self.manager.update(self.paths(self.service.config))

    def _check_tenant(self, tenant: str) -> None:
        if tenant != self.tenant:
            raise RulerAPIError(
                f"the LogQL ruler evaluates tenant {self.tenant!r} only "
                f"(logs.ruler.tenant); got {tenant!r}"
            )

    def namespace_groups(self, tenant: str, namespace: str | None = None) -> dict[str, Any]:
        """``{namespace: [groups]}`` of every loaded group, or of one namespace."""
        self._check_tenant(tenant)
        listing = loki_rule_groups(self.manager, self.namespace_of)
        if namespace is None:
            return listing
        if namespace not in listing:
            raise RulerAPIError("no rule groups found", 404)
        return {namespace: listing[namespace]}

    def get_group(self, tenant: str, namespace: str, name: str) -> dict[str, Any]:
        for group in self.namespace_groups(tenant, namespace)[namespace]:
            if group["name"] == name:
                return dict(group)
        raise RulerAPIError("group does not exist", 404)

    def set_group(self, tenant: str, namespace: str, text: str) -> None:
        """``POST /loki/api/v1/rules/{namespace}``: add or replace one group (YAML)."""
        self._check_tenant(tenant)
        try:
            group = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise RulerAPIError(f"invalid YAML: {exc}") from None
        if not isinstance(group, dict):
            raise RulerAPIError("expected one rule group: a YAML mapping with name and rules")
        name = group.get("name")
        if not isinstance(name, str) or not name:
            raise RulerAPIError("invalid rules config: rule group name must not be empty")
        with self._api_lock:
            groups = [g for g in self._read_namespace(namespace) if g.get("name") != name]
            self._write_namespace(namespace, [*groups, group])

    def delete_group(self, tenant: str, namespace: str, name: str) -> None:
        self._check_tenant(tenant)
        with self._api_lock:
            groups = self._read_namespace(namespace)
            kept = [g for g in groups if g.get("name") != name]
            if len(kept) == len(groups):
                raise RulerAPIError("group does not exist", 404)
            self._write_namespace(namespace, kept)

    def delete_namespace(self, tenant: str, namespace: str) -> None:
        self._check_tenant(tenant)
        with self._api_lock:
            if not self._read_namespace(namespace):
                raise RulerAPIError("group namespace does not exist", 404)
            self._write_namespace(namespace, [])

    @classmethod
    def create(
        cls,
        service: LogService,
        *,
        engine: Engine,
        querier_factory: Callable[[], Querier],
        appender: SampleAppender,
        notifier: AlertNotifier | None,
        base_dir: Path,
        external_labels: Mapping[str, str] | None = None,
        external_url: str = "",
    ) -> LogRuler:
        """A ruler for ``service``; ``engine``/``querier_factory`` read the metric store (to
        restore alert state), ``appender`` writes into it, ``notifier`` takes the alerts."""
        config = service.config.ruler
        manager = RuleManager(
            engine,
            querier_factory,
            appender,
            notifier,
            external_labels=external_labels,
            external_url=external_url,
            default_interval_ms=config.evaluation_interval,
            query_func=make_logql_query_func(service.engine, config.tenant),
            check_expr=check_logql_expr,
        )
        return cls(service, manager, base_dir)

    def paths(self, config: LogsConfig) -> list[str]:
        """The rule files ``config`` names, globs relative to ``base_dir``, sorted per glob."""
        paths: list[str] = []
        for pattern in config.ruler.rule_files:
            full = pattern if Path(pattern).is_absolute() else str(self.base_dir / pattern)
            paths.extend(sorted(glob.glob(full)))
        return paths + [p for p in self._api_files() if p not in paths]

    def check(self, config: LogsConfig) -> None:
        """Raise ValueError naming every problem of the rule files ``config`` names."""
        problems = check_log_rule_files(self.paths(config))
        if problems:
            raise ValueError("logs.ruler.rule_files: " + "; ".join(problems))

    def apply(self, config: LogsConfig) -> None:
        """Take new rule files and defaults, keeping the alert state of unchanged rules."""
        self.manager.default_interval_ms = config.ruler.evaluation_interval
        if config.ruler.tenant != self.tenant:
            self.tenant = config.ruler.tenant
            self.manager.query = make_logql_query_func(self.service.engine, self.tenant)
        self.manager.update(self.paths(config))

    async def start(self) -> None:
        """Load the configured rule files (RuleFileError if one is bad) and start evaluating."""
        await asyncio.to_thread(self.manager.update, self.paths(self.service.config))
        await self.manager.start()

    async def stop(self) -> None:
        await self.manager.stop()

    def rules_yaml(self) -> str:
        """``GET /loki/api/v1/rules``: YAML of rule groups by namespace."""
        return yaml.safe_dump(
            loki_rule_groups(self.manager, self.namespace_of), sort_keys=False, allow_unicode=True
        )
