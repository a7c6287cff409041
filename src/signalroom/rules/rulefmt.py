"""Prometheus rule files: parsing and validation with promtool's error texts.

Positions are yaml.v3's (1-based line and column of the offending value), so
`promtool check rules` and `signalroom rules check` print the same lines.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from signalroom.promql import ast
from signalroom.promql.value import PromQLError
from signalroom.rules.goerrors import go_promql_error, go_yaml_error
from signalroom.templating.gofmt import go_quote
from signalroom.templating.prometheus import check_alert_template

_DURATION = re.compile(
    r"^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$"
)
_METRIC_NAME = re.compile(r"^[a-zA-Z_:][a-zA-Z0-9_:]*$")
_LABEL_NAME = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")


class RuleFileError(Exception):
    """A rule file failed to load; `errors` are the lines promtool prints (without file name)."""

    def __init__(self, errors: list[str]) -> None:
        super().__init__("\n".join(errors))
        self.errors = errors


class _DurationError(Exception):
    pass


#: Checks a rule's expression: an error message, or None when it is valid. The default is
#: PromQL's parser; the LogQL ruler passes its own.
ExprCheck = Callable[[str], "str | None"]


def check_promql_expr(expr: str) -> str | None:
    try:
        ast.parse(expr)
    except PromQLError as exc:
        return go_promql_error(expr, str(exc))
    return None


def parse_go_duration_ms(text: str) -> int:
    """Prometheus model.ParseDuration: `1h30m`, `1d`, `0`; raises ValueError with its message."""
    if text == "0":
        return 0
    m = _DURATION.match(text)
    if not text or not m:
        raise ValueError(f"not a valid duration string: {go_quote(text)}")
    y, w, d, h, mi, s, ms = (int(g) if g else 0 for g in m.groups())
    return (((((y * 365 + w * 7 + d) * 24 + h) * 60 + mi) * 60 + s) * 1000) + ms


def format_go_duration_ms(ms: int) -> str:
    """Prometheus model.Duration.String: `1h30m`, `5m`, `0s`."""
    if ms == 0:
        return "0s"
    out = []
    units = [
        ("y", 365 * 86400_000),
        ("w", 7 * 86400_000),
        ("d", 86400_000),
        ("h", 3600_000),
        ("m", 60_000),
        ("s", 1000),
        ("ms", 1),
    ]
    rest = ms
    for name, size in units:
        if rest >= size:
            out.append(f"{rest // size}{name}")
            rest %= size
    return "".join(out)


@dataclass
class RuleNode:
    """One rule as written, with yaml positions for error messages."""

    record: str = ""
    alert: str = ""
    expr: str = ""
    for_ms: int = 0
    keep_firing_for_ms: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    record_pos: tuple[int, int] | None = None
    alert_pos: tuple[int, int] | None = None
    expr_pos: tuple[int, int] | None = None

    @property
    def name(self) -> str:
        return self.alert or self.record


@dataclass
class RuleGroupNode:
    name: str = ""
    interval_ms: int = 0
    query_offset_ms: int | None = None
    limit: int = 0
    labels: dict[str, str] = field(default_factory=dict)
    rules: list[RuleNode] = field(default_factory=list)
    pos: tuple[int, int] = (0, 0)


@dataclass
class RuleFile:
    path: str
    groups: list[RuleGroupNode]

    @property
    def rule_count(self) -> int:
        return sum(len(g.rules) for g in self.groups)


def _pos(node: Node) -> tuple[int, int]:
    return node.start_mark.line + 1, node.start_mark.column + 1


_TAG_NAMES = {
    "tag:yaml.org,2002:seq": "!!seq",
    "tag:yaml.org,2002:map": "!!map",
    "tag:yaml.org,2002:str": "!!str",
    "tag:yaml.org,2002:int": "!!int",
    "tag:yaml.org,2002:float": "!!float",
    "tag:yaml.org,2002:bool": "!!bool",
    "tag:yaml.org,2002:null": "!!null",
}


class _Decoder:
    """Strict decoding of the yaml node tree into rule structures (yaml.v3 KnownFields)."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    def type_error(self, node: Node, go_type: str) -> None:
        tag = _TAG_NAMES.get(node.tag, node.tag)
        value = ""
        if isinstance(node, ScalarNode):
            value = f" `{node.value}`"
        self.errors.append(f"line {_pos(node)[0]}: cannot unmarshal {tag}{value} into {go_type}")

    def is_null(self, node: Node) -> bool:
        return isinstance(node, ScalarNode) and node.tag == "tag:yaml.org,2002:null"

    def string(self, node: Node) -> str:
        if self.is_null(node):
            return ""
        if not isinstance(node, ScalarNode):
            self.type_error(node, "string")
            return ""
        return str(node.value)

    def duration(self, node: Node) -> int:
        text = self.string(node)
        if self.is_null(node):
            return 0
        try:
            return parse_go_duration_ms(text)
        except ValueError as exc:
            raise _DurationError(str(exc)) from None

    def integer(self, node: Node) -> int:
        if self.is_null(node):
            return 0
        if not isinstance(node, ScalarNode) or node.tag != "tag:yaml.org,2002:int":
            self.type_error(node, "int")
            return 0
        return int(node.value.replace("_", ""), 0)

    def string_map(self, node: Node) -> dict[str, str]:
        if self.is_null(node):
            return {}
        if not isinstance(node, MappingNode):
            self.type_error(node, "map[string]string")
            return {}
        out: dict[str, str] = {}
        for key, value in self.pairs(node):
            out[self.string(key)] = self.string(value)
        return out

    def pairs(self, node: MappingNode) -> list[tuple[Node, Node]]:
        seen: dict[str, int] = {}
        out = []
        for key, value in node.value:
            name = key.value if isinstance(key, ScalarNode) else str(key)
            if name in seen:
                self.errors.append(
                    f"line {_pos(key)[0]}: mapping key {go_quote(name)} "
                    f"already defined at line {seen[name]}"
                )
                continue
            seen[name] = _pos(key)[0]
            out.append((key, value))
        return out

    def fields(self, node: MappingNode, known: set[str], go_type: str) -> dict[str, Node]:
        out: dict[str, Node] = {}
        for key, value in self.pairs(node):
            name = key.value if isinstance(key, ScalarNode) else ""
            if name not in known:
                self.errors.append(f"line {_pos(key)[0]}: field {name} not found in type {go_type}")
                continue
            out[name] = value
        return out

    def rule(self, node: Node) -> RuleNode:
        rule = RuleNode()
        if not isinstance(node, MappingNode):
            if not self.is_null(node):
                self.type_error(node, "rulefmt.RuleNode")
            return rule
        f = self.fields(
            node,
            {"record", "alert", "expr", "for", "keep_firing_for", "labels", "annotations"},
            "rulefmt.RuleNode",
        )
        if "record" in f:
            rule.record = self.string(f["record"])
            rule.record_pos = _pos(f["record"])
        if "alert" in f:
            rule.alert = self.string(f["alert"])
            rule.alert_pos = _pos(f["alert"])
        if "expr" in f:
            rule.expr = self.string(f["expr"])
            rule.expr_pos = _pos(f["expr"])
        if "for" in f:
            rule.for_ms = self.duration(f["for"])
        if "keep_firing_for" in f:
            rule.keep_firing_for_ms = self.duration(f["keep_firing_for"])
        if "labels" in f:
            rule.labels = self.string_map(f["labels"])
        if "annotations" in f:
            rule.annotations = self.string_map(f["annotations"])
        return rule

    def group(self, node: Node) -> RuleGroupNode:
        group = RuleGroupNode(pos=_pos(node))
        if not isinstance(node, MappingNode):
            if not self.is_null(node):
                self.type_error(node, "rulefmt.RuleGroup")
            return group
        f = self.fields(
            node,
            {"name", "interval", "query_offset", "limit", "labels", "rules"},
            "rulefmt.RuleGroup",
        )
        if "name" in f:
            group.name = self.string(f["name"])
        if "interval" in f:
            group.interval_ms = self.duration(f["interval"])
        if "query_offset" in f:
            group.query_offset_ms = self.duration(f["query_offset"])
        if "limit" in f:
            group.limit = self.integer(f["limit"])
        if "labels" in f:
            group.labels = self.string_map(f["labels"])
        if "rules" in f:
            rules = f["rules"]
            if isinstance(rules, SequenceNode):
                group.rules = [self.rule(r) for r in rules.value]
            elif not self.is_null(rules):
                self.type_error(rules, "[]rulefmt.RuleNode")
        return group

    def file(self, node: Node | None) -> list[RuleGroupNode]:
        if node is None or self.is_null(node):
            return []
        if not isinstance(node, MappingNode):
            self.type_error(node, "rulefmt.RuleGroups")
            return []
        f = self.fields(node, {"groups"}, "rulefmt.RuleGroups")
        groups = f.get("groups")
        if groups is None or self.is_null(groups):
            return []
        if not isinstance(groups, SequenceNode):
            self.type_error(groups, "[]rulefmt.RuleGroup")
            return []
        return [self.group(g) for g in groups.value]


def _pos_text(pos: tuple[int, int] | None) -> str:
    line, col = pos or (0, 0)
    return f"{line}:{col}"


def validate_rule(
    rule: RuleNode, check_expr: ExprCheck = check_promql_expr
) -> list[tuple[str, str]]:
    """(position prefix, message) pairs in rulefmt's order; prefix '' when it has no node."""
    errs: list[tuple[str, str]] = []
    if rule.record and rule.alert:
        errs.append(
            (
                f"{_pos_text(rule.record_pos)}: {_pos_text(rule.alert_pos)}",
                "only one of 'record' and 'alert' must be set",
            )
        )
    if not rule.record and not rule.alert:
        errs.append((_pos_text(rule.record_pos), "one of 'record' or 'alert' must be set"))
    if not rule.expr:
        errs.append((_pos_text(rule.expr_pos), "field 'expr' must be set in rule"))
    else:
        problem = check_expr(rule.expr)
        if problem is not None:
            errs.append((_pos_text(rule.expr_pos), f"could not parse expression: {problem}"))
    if rule.record:
        if rule.annotations:
            errs.append(
                (_pos_text(rule.record_pos), "invalid field 'annotations' in recording rule")
            )
        if rule.for_ms:
            errs.append((_pos_text(rule.record_pos), "invalid field 'for' in recording rule"))
        if rule.keep_firing_for_ms:
            errs.append(
                (_pos_text(rule.record_pos), "invalid field 'keep_firing_for' in recording rule")
            )
        if not _METRIC_NAME.match(rule.record):
            errs.append((_pos_text(rule.record_pos), f"invalid recording rule name: {rule.record}"))
    for name in sorted(rule.labels):
        value = rule.labels[name]
        if not _LABEL_NAME.match(name) or name == "__name__":
            errs.append(("", f"invalid label name: {name}"))
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            errs.append(("", f"invalid label value: {value}"))
    for name in sorted(rule.annotations):
        if not _LABEL_NAME.match(name):
            errs.append(("", f"invalid annotation name: {name}"))
    if rule.alert:
        for kind, mapping in (("label", rule.labels), ("annotation", rule.annotations)):
            for name in sorted(mapping):
                err = check_alert_template(mapping[name], rule.alert)
                if err is not None:
                    errs.append(("", f"{kind} {go_quote(name)}: {err}"))
    return errs


def validate_groups(
    groups: list[RuleGroupNode], check_expr: ExprCheck = check_promql_expr
) -> list[str]:
    errors: list[str] = []
    seen: set[str] = set()
    for group in groups:
        if not group.name:
            errors.append(f"{group.pos[0]}:{group.pos[1]}: Groupname must not be empty")
        if group.name in seen:
            errors.append(
                f"{group.pos[0]}:{group.pos[1]}: groupname: {go_quote(group.name)} "
                "is repeated in the same file"
            )
        seen.add(group.name)
        for i, rule in enumerate(group.rules):
            for prefix, msg in validate_rule(rule, check_expr):
                head = f"group {go_quote(group.name)}, rule {i + 1}, {go_quote(rule.name)}"
                errors.append(f"{prefix}: {head}: {msg}" if prefix else f"{head}: {msg}")
    return errors


def parse_rules(content: str, check_expr: ExprCheck = check_promql_expr) -> list[RuleGroupNode]:
    """Parse and validate rule file text; raises RuleFileError with promtool's lines."""
    try:
        root = yaml.compose(content, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        # promtool decodes the file twice (strictly into the groups, then into yaml nodes for
        # positions) and reports a syntax error from each pass.
        message = go_yaml_error(exc)
        raise RuleFileError([message, message]) from None
    except yaml.YAMLError as exc:
        raise RuleFileError([f"yaml: {exc}"]) from None
    decoder = _Decoder()
    try:
        groups = decoder.file(root)
    except _DurationError as exc:
        raise RuleFileError([str(exc)]) from None
    if decoder.errors:
        raise RuleFileError(["yaml: unmarshal errors:\n  " + "\n  ".join(decoder.errors)])
    errors = validate_groups(groups, check_expr)
    if errors:
        raise RuleFileError(errors)
    return groups


def parse_file(path: str | Path, check_expr: ExprCheck = check_promql_expr) -> RuleFile:
    """Load one rule file; errors come back prefixed with the file name as promtool prints them."""
    p = str(path)
    try:
        content = Path(p).read_text(encoding="utf-8")
    except OSError as exc:
        raise RuleFileError(
            [f"{p}: open {p}: {exc.strerror.lower() if exc.strerror else exc}"]
        ) from None
    try:
        groups = parse_rules(content, check_expr)
    except RuleFileError as exc:
        raise RuleFileError([f"{p}: {e}" for e in exc.errors]) from None
    return RuleFile(p, groups)


def _unused(value: Any) -> Any:
    return value
