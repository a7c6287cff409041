"""`signalroom rules test`: runs `promtool test rules` files with promtool's results and texts."""

from __future__ import annotations

import glob
import math
import os
from dataclasses import dataclass, field
from typing import Any

import yaml

from signalroom.model.labels import Labels, compare_labels
from signalroom.promql.engine import Engine
from signalroom.promql.promqltest import DSLError, parse_labels, parse_values
from signalroom.promql.storage import MemoryStorage
from signalroom.rules.group import Group
from signalroom.rules.manager import MemoryStorageAppender, RuleManager, make_query_func
from signalroom.rules.rule import AlertingRule, AlertState, RuleError
from signalroom.rules.rulefmt import RuleFileError, parse_go_duration_ms
from signalroom.templating.gofmt import format_float, go_quote

_TOP_FIELDS = {"rule_files", "evaluation_interval", "group_eval_order", "tests"}
_GROUP_FIELDS = {
    "interval",
    "input_series",
    "alert_rule_test",
    "promql_expr_test",
    "external_labels",
    "external_url",
    "name",
}


class _FileError(Exception):
    pass


def _duration(value: Any) -> int:
    if value is None:
        return 0
    try:
        return parse_go_duration_ms(str(value))
    except ValueError as exc:
        raise _FileError(str(exc)) from None


def _go_duration(ms: int) -> str:
    """time.Duration.String of a millisecond count."""
    from signalroom.templating.gotime import format_go_duration

    return format_go_duration(ms * 1_000_000)


def _model_duration(ms: int) -> str:
    from signalroom.rules.rulefmt import format_go_duration_ms

    return format_go_duration_ms(ms)


@dataclass
class _AlertCase:
    eval_ms: int
    alertname: str
    exp: list[tuple[Labels, Labels]]


@dataclass
class _ExprCase:
    expr: str
    eval_ms: int
    samples: list[tuple[str, float]]


@dataclass
class _TestGroup:
    interval_ms: int
    series: list[tuple[str, str]]
    alerts: list[_AlertCase] = field(default_factory=list)
    exprs: list[_ExprCase] = field(default_factory=list)
    external_labels: dict[str, str] = field(default_factory=dict)
    external_url: str = ""
    name: str = ""
    fuzzy_compare: bool = False


def _labels_str(lbls: Labels) -> str:
    return "{" + ", ".join(f"{k}={go_quote(v)}" for k, v in lbls.items()) + "}"


def _alerts_str(items: list[tuple[Labels, Labels]]) -> str:
    if not items:
        return "[]"

    def one(la: tuple[Labels, Labels]) -> str:
        return "Labels:" + _labels_str(la[0]) + "\nAnnotations:" + _labels_str(la[1])

    def indent(text: str, prefix: str) -> str:
        lines = text.split("\n")
        return lines[0] + "".join("\n" + prefix + line for line in lines[1:])

    s = "[\n0:" + indent("\n" + one(items[0]), "  ")
    for i, item in enumerate(items[1:]):
        s += ",\n" + str(i + 1) + ":" + indent("\n" + one(item), "  ")
    return s + "\n]"


def _indent_lines(text: str, prefix: str) -> str:
    lines = text.split("\n")
    return lines[0] + "".join("\n" + prefix + line for line in lines[1:])


def _samples_str(samples: list[tuple[Labels, float]]) -> str:
    if not samples:
        return "nil"
    return ", ".join(_labels_str(lbls) + " " + format_float(v, "E", -1) for lbls, v in samples)


def _sort_key_pairs(items: list[tuple[Labels, Any]]) -> list[tuple[Labels, Any]]:
    import functools

    def cmp(a: tuple[Labels, Any], b: tuple[Labels, Any]) -> int:
        c = compare_labels(a[0], b[0])
        if c:
            return c
        if isinstance(a[1], Labels) and isinstance(b[1], Labels):
            return compare_labels(a[1], b[1])
        return 0

    return sorted(items, key=functools.cmp_to_key(cmp))


def _load_file(path: str) -> tuple[list[str], int, list[str], list[_TestGroup]]:
    with open(path, encoding="utf-8") as fh:
        doc = yaml.safe_load(fh)
    if doc is None:
        doc = {}
    if not isinstance(doc, dict):
        raise _FileError(
            "yaml: unmarshal errors:\n  line 1: cannot unmarshal into main.unitTestFile"
        )
    unknown = [k for k in doc if k not in _TOP_FIELDS]
    if unknown:
        raise _FileError(
            f"yaml: unmarshal errors:\n  field {unknown[0]} not found in type main.unitTestFile"
        )
    base = os.path.dirname(path)
    rule_files: list[str] = []
    for rf in doc.get("rule_files") or []:
        full = rf if os.path.isabs(rf) else os.path.join(base, rf)
        matches = sorted(glob.glob(full))
        rule_files.extend(matches)
    interval = _duration(doc.get("evaluation_interval")) or 60_000
    order = list(doc.get("group_eval_order") or [])
    groups: list[_TestGroup] = []
    for tg in doc.get("tests") or []:
        unknown = [k for k in tg if k not in _GROUP_FIELDS | {"fuzzy_compare"}]
        if unknown:
            raise _FileError(
                f"yaml: unmarshal errors:\n  field {unknown[0]} not found in type main.testGroup"
            )
        group = _TestGroup(
            interval_ms=_duration(tg.get("interval")),
            series=[
                (str(s.get("series", "")), str(s.get("values", "")))
                for s in tg.get("input_series") or []
            ],
            external_labels={str(k): str(v) for k, v in (tg.get("external_labels") or {}).items()},
            external_url=str(tg.get("external_url") or ""),
            name=str(tg.get("name") or ""),
            fuzzy_compare=bool(tg.get("fuzzy_compare", False)),
        )
        for at in tg.get("alert_rule_test") or []:
            exp = []
            for a in at.get("exp_alerts") or []:
                lbls = {str(k): str(v) for k, v in (a.get("exp_labels") or {}).items()}
                lbls["alertname"] = str(at.get("alertname") or "")
                ann = {str(k): str(v) for k, v in (a.get("exp_annotations") or {}).items()}
                exp.append((Labels(lbls), Labels(ann)))
            group.alerts.append(
                _AlertCase(_duration(at.get("eval_time")), str(at.get("alertname") or ""), exp)
            )
        for pt in tg.get("promql_expr_test") or []:
            samples = [
                (str(s.get("labels", "")), float(s.get("value", 0)))
                for s in pt.get("exp_samples") or []
            ]
            group.exprs.append(
                _ExprCase(str(pt.get("expr", "")), _duration(pt.get("eval_time")), samples)
            )
        groups.append(group)
    return rule_files, interval, order, groups


def _almost_equal(a: float, b: float) -> bool:
    if math.isnan(a) and math.isnan(b):
        return True
    if a == b:
        return True
    diff = abs(a - b)
    return diff <= 1e-6 * max(abs(a), abs(b)) if a and b else diff < 1e-300


def _run_group(
    tg: _TestGroup, eval_interval_ms: int, order: list[str], rule_files: list[str]
) -> list[str]:
    storage = MemoryStorage()
    step = tg.interval_ms or 60_000
    if tg.interval_ms == 0:
        step = 60_000
    for series_text, values_text in tg.series:
        try:
            lbls, rest = parse_labels(series_text)
            if rest.strip():
                raise DSLError(f"bad series {series_text!r}")
            values = parse_values(values_text)
        except DSLError as exc:
            return [str(exc)]
        for i, sv in enumerate(values):
            if sv.omitted or sv.native:
                continue
            storage.add(lbls, i * step, sv.value)
    engine = Engine()
    manager = RuleManager(
        engine,
        lambda: storage,
        MemoryStorageAppender(storage),
        external_labels=tg.external_labels,
        external_url=tg.external_url,
    )
    try:
        groups_map = manager.load_groups(rule_files, interval_ms=tg.interval_ms or None)
    except RuleFileError as exc:
        return exc.errors
    order_index = {name: i for i, name in enumerate(order)}
    groups: list[Group] = sorted(groups_map.values(), key=lambda g: order_index.get(g.name, 0))
    for group in groups:
        for rule in group.rules:
            if isinstance(rule, AlertingRule):
                rule.restored = True
    max_eval = max([a.eval_ms for a in tg.alerts] + [e.eval_ms for e in tg.exprs] + [0])
    for a in tg.alerts:
        if not a.alertname:
            suffix = f" (in TestGroup {tg.name})" if tg.name else ""
            return [
                "an item under alert_rule_test misses required attribute alertname at eval_time "
                f"{_model_duration(a.eval_ms)}{suffix}"
            ]
    alert_times = sorted({a.eval_ms for a in tg.alerts})
    errors: list[str] = []
    curr = 0
    ts = 0
    while ts <= max_eval:
        eval_errs: list[str] = []
        for group in groups:
            manager.eval_group(group, ts)
            for rule in group.rules:
                if rule.last_error is not None:
                    eval_errs.append(
                        f"    rule: {rule.name}, time: {_go_duration(ts)}, err: {rule.last_error}"
                    )
        errors.extend(eval_errs)
        if eval_errs:
            return errors
        while curr < len(alert_times) and ts <= alert_times[curr] < ts + eval_interval_ms:
            t = alert_times[curr]
            wanted = {a.alertname for a in tg.alerts if a.eval_ms == t}
            got: dict[str, list[tuple[Labels, Labels]]] = {}
            for group in groups:
                for rule in group.rules:
                    if isinstance(rule, AlertingRule) and rule.name in wanted:
                        got.setdefault(rule.name, []).extend(
                            (a.labels, a.annotations)
                            for a in rule.active.values()
                            if a.state == AlertState.FIRING
                        )
            for case in [a for a in tg.alerts if a.eval_ms == t]:
                got_alerts = _sort_key_pairs(got.get(case.alertname, []))
                exp_alerts = _sort_key_pairs(case.exp)
                if got_alerts != exp_alerts:
                    name = f"    name: {tg.name},\n" if tg.name else ""
                    exp_s = _indent_lines(_alerts_str(exp_alerts), "            ")
                    got_s = _indent_lines(_alerts_str(got_alerts), "            ")
                    errors.append(
                        f"{name}    alertname: {case.alertname}, time: {_model_duration(t)}, \n"
                        f"        exp:{exp_s}, \n        got:{got_s}"
                    )
            curr += 1
        ts += eval_interval_ms
    query = make_query_func(engine, lambda: storage)
    for ecase in tg.exprs:
        time_s = _model_duration(ecase.eval_ms)
        try:
            got_samples = query(ecase.expr, ecase.eval_ms)
        except RuleError as exc:
            errors.append(f"    expr: {go_quote(ecase.expr)}, time: {time_s}, err: {exc}")
            continue
        exp_samples: list[tuple[Labels, float]] = []
        bad = False
        for text, value in ecase.samples:
            try:
                lbls, rest = parse_labels(text) if text.strip() else (Labels(), "")
                if rest.strip():
                    raise DSLError("bad")
            except DSLError:
                errors.append(
                    f"    expr: {go_quote(ecase.expr)}, time: {time_s}, "
                    f"err: labels {go_quote(text)}: parse error"
                )
                bad = True
                break
            exp_samples.append((lbls, value))
        if bad:
            continue
        exp_sorted = _sort_key_pairs(exp_samples)
        got_sorted = _sort_key_pairs(list(got_samples))
        same = len(exp_sorted) == len(got_sorted) and all(
            e[0] == g[0]
            and (
                _almost_equal(e[1], g[1])
                if tg.fuzzy_compare
                else (e[1] == g[1] or (math.isnan(e[1]) and math.isnan(g[1])))
            )
            for e, g in zip(exp_sorted, got_sorted, strict=False)
        )
        if not same:
            errors.append(
                f"    expr: {go_quote(ecase.expr)}, time: {time_s},\n"
                f"        exp: {_samples_str(exp_sorted)}\n"
                f"        got: {_samples_str(got_sorted)}"
            )
    return errors


def run_rule_test_file(path: str) -> list[str]:
    """The errors of one unit-test file ([] = passed)."""
    try:
        rule_files, interval, order, groups = _load_file(path)
    except OSError as exc:
        return [f"open {path}: {(exc.strerror or str(exc)).lower()}"]
    except (_FileError, yaml.YAMLError) as exc:
        return [str(exc)]
    if len(set(order)) != len(order):
        dup = next(n for i, n in enumerate(order) if n in order[:i])
        return [f"group name repeated in evaluation order: {dup}"]
    errors: list[str] = []
    for tg in groups:
        errors.extend(_run_group(tg, interval, order, rule_files))
    return errors


def run_rule_tests(paths: list[str]) -> tuple[str, int]:
    """Run `promtool test rules` files; returns (output, exit code) as promtool prints them."""
    out: list[str] = []
    failed = False
    for path in paths:
        out.append(f"Unit Testing:  {path}\n")
        errors = run_rule_test_file(path)
        if errors:
            out.append("  FAILED:\n")
            for err in errors:
                out.append(err + "\n\n")
            failed = True
        else:
            out.append("  SUCCESS\n")
        out.append("\n")
    return "".join(out), 1 if failed else 0
