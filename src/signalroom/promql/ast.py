"""PromQL syntax tree used by the engine, built from `promql_parser`'s tree.

Own dataclasses keep the engine independent of the parser binding and let the promqltest
runner rewrite trees (it adds `@` modifiers) without printing and re-parsing them.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

import promql_parser

from signalroom.model.labels import METRIC_NAME
from signalroom.promql.storage import Matcher, MatchType
from signalroom.promql.value import BadDataError

# `@` kinds
AT_START = "start"
AT_END = "end"
AT_TIME = "at"


@dataclass(frozen=True)
class At:
    """An `@` modifier: `@ start()`, `@ end()` or `@ <unix seconds>` (kept in ms)."""

    kind: str
    time_ms: int = 0


class Expr:
    """Base of all expression nodes."""


@dataclass
class NumberLiteral(Expr):
    value: float


@dataclass
class StringLiteral(Expr):
    value: str
    # Set when the literal's escapes spell bytes that are not UTF-8 (e.g. "\\xff"): the
    # Go-quoted text for error messages.
    invalid_utf8: str | None = None


@dataclass
class VectorSelector(Expr):
    name: str | None
    matchers: list[Matcher]
    offset_ms: int = 0
    at: At | None = None
    text: str = ""


@dataclass
class MatrixSelector(Expr):
    selector: VectorSelector
    range_ms: int


@dataclass
class Subquery(Expr):
    expr: Expr
    range_ms: int
    step_ms: int  # 0: the engine's default subquery step
    offset_ms: int = 0
    at: At | None = None


@dataclass
class Call(Expr):
    name: str
    args: list[Expr]
    # the function's signature, as the parser knows it (Prometheus' parser.Function)
    arg_types: tuple[str, ...] = ()
    variadic: int = 0
    return_type: str = "vector"


@dataclass
class Aggregate(Expr):
    op: str
    expr: Expr
    param: Expr | None
    grouping: list[str] = field(default_factory=list)
    without: bool = False


@dataclass
class VectorMatching:
    card: str  # "one-to-one", "many-to-one", "one-to-many", "many-to-many"
    on: bool
    labels: list[str]
    include: list[str]


@dataclass
class Binary(Expr):
    op: str
    lhs: Expr
    rhs: Expr
    matching: VectorMatching
    return_bool: bool = False


@dataclass
class Unary(Expr):
    op: str
    expr: Expr


@dataclass
class Paren(Expr):
    expr: Expr


SET_OPS = {"and", "or", "unless"}
COMPARISON_OPS = {"==", "!=", ">", "<", ">=", "<="}

_CARD = {
    "OneToOne": "one-to-one",
    "ManyToOne": "many-to-one",
    "OneToMany": "one-to-many",
    "ManyToMany": "many-to-many",
}

_MATCH_OPS = {
    "Equal": MatchType.EQUAL,
    "NotEqual": MatchType.NOT_EQUAL,
    "Re": MatchType.REGEX,
    "NotRe": MatchType.NOT_REGEX,
}

_AT_NUMBER = re.compile(
    r"@\s*([+-]?(?:(?:\d+(?:ms|[smhdwy]))+(?![\w.])|0[xX][0-9a-fA-F]+|(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[iI][nN][fF]|[nN][aA][nN]))"
)


_SIMPLE_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v"}


def _invalid_utf8_literals(text: str) -> dict[str, str]:
    """String literals whose `\\x`/octal escapes do not form UTF-8.

    promql_parser turns each escaped byte into a code point, losing the difference, so the
    source is scanned: returns {parser's value: Go %q form}.
    """
    found: dict[str, str] = {}
    for m in re.finditer(r'"((?:[^"\\]|\\.)*)"|\'((?:[^\'\\]|\\.)*)\'', text):
        body = m.group(1) if m.group(1) is not None else m.group(2)
        if "\\" not in body:
            continue
        raw = bytearray()
        as_parsed: list[str] = []
        i = 0
        while i < len(body):
            ch = body[i]
            if ch == "\\" and i + 1 < len(body):
                nxt = body[i + 1]
                if nxt == "x" and i + 3 < len(body) + 1:
                    byte = int(body[i + 2 : i + 4], 16)
                    raw.append(byte)
                    as_parsed.append(chr(byte))
                    i += 4
                    continue
                if nxt in "01234567":
                    byte = int(body[i + 1 : i + 4], 8)
                    raw.append(byte)
                    as_parsed.append(chr(byte))
                    i += 4
                    continue
                char = _SIMPLE_ESCAPES.get(nxt, nxt)
                raw += char.encode()
                as_parsed.append(char)
                i += 2
                continue
            raw += ch.encode()
            as_parsed.append(ch)
            i += 1
        try:
            bytes(raw).decode("utf-8")
        except UnicodeDecodeError:
            quoted = bytes(raw).decode("utf-8", errors="backslashreplace")
            found["".join(as_parsed)] = f'"{quoted}"'
    return found


def _ms(delta: timedelta | None) -> int:
    if delta is None:
        return 0
    return delta // timedelta(milliseconds=1)


class _Converter:
    def __init__(self, text: str) -> None:
        # promql_parser cannot hand out negative `@` times, so they are read from the text.
        self._at_numbers = [m.group(1) for m in _AT_NUMBER.finditer(text)]
        self._at_index = 0
        self._invalid_strings = _invalid_utf8_literals(text)

    def at(self, node: Any) -> At | None:
        at = node.at
        if at is None:
            return None
        kind = str(at.type).rsplit(".", 1)[-1]
        if kind == "Start":
            return At(AT_START)
        if kind == "End":
            return At(AT_END)
        idx = self._at_index
        self._at_index += 1
        if idx < len(self._at_numbers):
            raw = self._at_numbers[idx]
            body = raw.lstrip("+-")
            if _DUR_PART.match(body) and not body.lower().startswith("0x"):
                value = float(sum(int(n) * _DURATION_UNITS[u] for n, u in _DUR_PART.findall(body)))
                value = -value if raw.startswith("-") else value
            elif body.lower().startswith("0x"):
                value = float(int(body, 16)) * (-1 if raw.startswith("-") else 1)
            else:
                value = float(raw)
            if value != value or value in (float("inf"), float("-inf")):
                raise BadDataError(f"timestamp out of bounds for @ modifier: {value}")
            return At(AT_TIME, round(value * 1000))
        try:
            return At(AT_TIME, round(at.at.timestamp() * 1000))
        except BaseException as exc:  # pyo3 panics on negative times
            raise BadDataError("unsupported @ modifier") from exc

    def convert(self, node: Any) -> Expr:
        cls = type(node).__name__
        if cls == "NumberLiteral":
            return NumberLiteral(float(node.val))
        if cls == "StringLiteral":
            value = str(node.val)
            return StringLiteral(value, self._invalid_strings.get(value))
        if cls == "ParenExpr":
            return Paren(self.convert(node.expr))
        if cls == "UnaryExpr":
            return Unary("-", self.convert(node.expr))
        if cls == "VectorSelector":
            return self.selector(node)
        if cls == "MatrixSelector":
            vs = self.selector(node.vector_selector)
            return MatrixSelector(vs, _ms(node.range))
        if cls == "SubqueryExpr":
            inner = self.convert(node.expr)
            at = self.at(node)
            return Subquery(inner, _ms(node.range), _ms(node.step), _ms(node.offset), at)
        if cls == "Call":
            func = node.func
            return Call(
                func.name,
                [self.convert(a) for a in node.args],
                tuple(_value_type(t) for t in func.arg_types),
                int(func.variadic),
                _value_type(func.return_type),
            )
        if cls == "AggregateExpr":
            op = str(node.op).lower()
            param = self.convert(node.param) if node.param is not None else None
            inner = self.convert(node.expr)
            grouping: list[str] = []
            without = False
            if node.modifier is not None:
                without = str(node.modifier.type).endswith("Without")
                grouping = list(node.modifier.labels)
            return Aggregate(op, inner, param, grouping, without)
        if cls == "BinaryExpr":
            op = str(node.op).lower()
            lhs = self.convert(node.lhs)
            rhs = self.convert(node.rhs)
            mod = node.modifier
            if op in SET_OPS:
                matching = VectorMatching("many-to-many", False, [], [])
            else:
                matching = VectorMatching("one-to-one", False, [], [])
            return_bool = False
            if mod is not None:
                card = _CARD[str(mod.card).rsplit(".", 1)[-1]]
                if op in SET_OPS:
                    card = "many-to-many"
                on = False
                labels: list[str] = []
                if mod.matching is not None:
                    on = str(mod.matching.type).endswith("Include")
                    labels = list(mod.matching.labels)
                include = list(mod.group_labels or [])
                matching = VectorMatching(card, on, labels, include)
                return_bool = bool(mod.return_bool)
            return Binary(op, lhs, rhs, matching, return_bool)
        raise BadDataError(f"unsupported expression node {cls}")

    def selector(self, node: Any) -> VectorSelector:
        matchers: list[Matcher] = []
        if node.name:
            matchers.append(Matcher(MatchType.EQUAL, METRIC_NAME, node.name))
        for m in node.matchers.matchers:
            kind = _MATCH_OPS[str(m.op).rsplit(".", 1)[-1].split("(")[0]]
            try:
                matchers.append(Matcher(kind, m.name, m.value))
            except Exception as exc:
                raise BadDataError(f"invalid regular expression {m.value!r}: {exc}") from exc
        if node.matchers.or_matchers:
            raise BadDataError('parse error: unexpected "or" in label matching')
        return VectorSelector(
            node.name or None, matchers, _ms(node.offset), self.at(node), str(node)
        )


def _value_type(kind: Any) -> str:
    """`ValueType.Matrix` -> "matrix", as Prometheus spells value types."""
    return str(kind).rsplit(".", 1)[-1].lower()


_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_DUR_TOKEN = re.compile(
    r"\s*(?:(?P<dur>(?:\d+(?:ms|[smhdwy]))+)(?![\w.])|(?P<num>(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)"
    r"|(?P<op>[-+*/%^()]))"
)
_DUR_PART = re.compile(r"(\d+)(ms|[smhdwy])")


class _DurationExpr:
    """Evaluates PromQL duration arithmetic (`[26m+4m]`, `offset (2 * 2)`) to seconds."""

    def __init__(self, text: str) -> None:
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        text = text.strip()
        while pos < len(text):
            m = _DUR_TOKEN.match(text, pos)
            if not m or m.end() == pos:
                raise ValueError(f"bad duration expression {text!r}")
            pos = m.end()
            for kind in ("dur", "num", "op"):
                if m.group(kind) is not None:
                    self.tokens.append((kind, m.group(kind)))
        self.i = 0

    def value(self) -> float:
        result = self._sum()
        if self.i != len(self.tokens):
            raise ValueError("trailing tokens in duration expression")
        return result

    def _peek(self) -> str | None:
        return self.tokens[self.i][1] if self.i < len(self.tokens) else None

    def _sum(self) -> float:
        left = self._product()
        while self._peek() in ("+", "-"):
            op = self.tokens[self.i][1]
            self.i += 1
            right = self._product()
            left = left + right if op == "+" else left - right
        return left

    def _product(self) -> float:
        left = self._unary()
        while self._peek() in ("*", "/", "%"):
            op = self.tokens[self.i][1]
            self.i += 1
            right = self._unary()
            if op == "*":
                left *= right
            elif op == "/":
                left /= right
            else:
                left = math.fmod(left, right)
        return left

    def _unary(self) -> float:
        if self._peek() in ("-", "+"):
            op = self.tokens[self.i][1]
            self.i += 1
            value = self._unary()
            return -value if op == "-" else value
        return self._power()

    def _power(self) -> float:
        base = self._atom()
        if self._peek() == "^":
            self.i += 1
            exponent = self._unary()
            return float(base**exponent)
        return base

    def _atom(self) -> float:
        if self.i >= len(self.tokens):
            raise ValueError("unexpected end of duration expression")
        kind, tok = self.tokens[self.i]
        self.i += 1
        if kind == "num":
            return float(tok)
        if kind == "dur":
            return sum(int(n) * _DURATION_UNITS[u] for n, u in _DUR_PART.findall(tok))
        if tok == "(":
            value = self._sum()
            if self._peek() != ")":
                raise ValueError("missing ) in duration expression")
            self.i += 1
            return value
        raise ValueError(f"unexpected {tok!r} in duration expression")


_PLAIN_DURATION = re.compile(r"^\s*(?:(?:\d+(?:ms|[smhdwy]))+|\d+)?\s*$")


def _duration_literal(expr_text: str) -> str:
    if _PLAIN_DURATION.match(expr_text):
        return expr_text
    seconds = _DurationExpr(expr_text).value()
    ms = round(seconds * 1000)
    return f"{ms}ms" if ms >= 0 else f"-{-ms}ms"


def rewrite_duration_expressions(text: str) -> str:
    """Replace duration arithmetic in ranges and offsets with literals the parser accepts."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in "\"'`":
            j = i + 1
            while j < n and text[j] != ch:
                j += 2 if text[j] == "\\" and ch != "`" else 1
            out.append(text[i : j + 1])
            i = j + 1
            continue
        if ch == "[":
            j = text.find("]", i)
            if j == -1:
                out.append(text[i:])
                break
            inner = text[i + 1 : j]
            try:
                parts = inner.split(":")
                if len(parts) > 2:
                    raise ValueError
                fixed = ":".join(_duration_literal(p) if p.strip() else p for p in parts)
            except (ValueError, ZeroDivisionError, OverflowError):
                fixed = inner
            out.append("[" + fixed + "]")
            i = j + 1
            continue
        m = re.compile(r"offset\s*(-?)\s*\(").match(text, i)
        if m and (i == 0 or not (text[i - 1].isalnum() or text[i - 1] == "_")):
            depth, j = 1, m.end()
            while j < n and depth:
                depth += {"(": 1, ")": -1}.get(text[j], 0)
                j += 1
            try:
                seconds = _DurationExpr(text[m.end() - 1 : j]).value()
                if m.group(1):
                    seconds = -seconds
                ms = round(seconds * 1000)
                out.append(f"offset {ms}ms" if ms >= 0 else f"offset -{-ms}ms")
                i = j
                continue
            except (ValueError, ZeroDivisionError, OverflowError):
                pass
        out.append(ch)
        i += 1
    return "".join(out)


def parse(text: str) -> Expr:
    """Parse PromQL text into the engine's tree; raises BadDataError with the parse error."""
    try:
        tree = _parse_tree(text)
    except ValueError as first:
        # promql_parser lacks duration arithmetic; retry with it folded into literals.
        rewritten = rewrite_duration_expressions(text)
        if rewritten == text:
            raise BadDataError(f"parse error: {first}") from first
        try:
            tree = _parse_tree(rewritten)
        except ValueError:
            raise BadDataError(f"parse error: {first}") from first
        text = rewritten
    return _Converter(text).convert(tree)


def _parse_tree(text: str) -> Any:
    try:
        return promql_parser.parse(text)
    except ValueError:
        raise
    except BaseException as exc:  # pyo3 panics surface as BaseException
        if isinstance(exc, KeyboardInterrupt | SystemExit):
            raise
        raise ValueError(str(exc)) from exc


def unwrap_parens(expr: Expr) -> Expr:
    while isinstance(expr, Paren):
        expr = expr.expr
    return expr


def children(expr: Expr) -> list[Expr]:
    if isinstance(expr, Paren | Unary):
        return [expr.expr]
    if isinstance(expr, MatrixSelector):
        return [expr.selector]
    if isinstance(expr, Subquery):
        return [expr.expr]
    if isinstance(expr, Call):
        return list(expr.args)
    if isinstance(expr, Aggregate):
        return [expr.expr] if expr.param is None else [expr.param, expr.expr]
    if isinstance(expr, Binary):
        return [expr.lhs, expr.rhs]
    return []


def walk(expr: Expr) -> list[Expr]:
    """All nodes, pre-order."""
    out = [expr]
    for child in children(expr):
        out.extend(walk(child))
    return out


def with_at(expr: Expr, time_ms: int) -> Expr:
    """A copy with `@ time` set on every selector and subquery lacking one.

    Selectors inside a subquery that gets the `@` are left alone, as Prometheus's test runner does.
    """
    at = At(AT_TIME, time_ms)
    if isinstance(expr, VectorSelector):
        return expr if _has_fixed_at(expr.at) else replace(expr, at=at)
    if isinstance(expr, MatrixSelector):
        selector = with_at(expr.selector, time_ms)
        assert isinstance(selector, VectorSelector)
        return replace(expr, selector=selector)
    if isinstance(expr, Subquery):
        return expr if _has_fixed_at(expr.at) else replace(expr, at=at)
    if isinstance(expr, Paren | Unary):
        return replace(expr, expr=with_at(expr.expr, time_ms))
    if isinstance(expr, Call):
        return replace(expr, args=[with_at(a, time_ms) for a in expr.args])
    if isinstance(expr, Aggregate):
        param = with_at(expr.param, time_ms) if expr.param is not None else None
        return replace(expr, expr=with_at(expr.expr, time_ms), param=param)
    if isinstance(expr, Binary):
        return replace(expr, lhs=with_at(expr.lhs, time_ms), rhs=with_at(expr.rhs, time_ms))
    return expr


def _has_fixed_at(at: At | None) -> bool:
    # Prometheus's rewrite overwrites start()/end(): only a literal time counts as set.
    return at is not None and at.kind == AT_TIME
