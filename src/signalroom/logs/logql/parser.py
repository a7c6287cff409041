"""A recursive-descent parser for LogQL (Loki's query language)."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from signalroom.logs.logql.ast import (
    BinaryOp,
    Decolorize,
    Drop,
    Expr,
    Grouping,
    Keep,
    LabelFilter,
    LabelFilterAnd,
    LabelFilterOr,
    LabelFilterTerm,
    LabelFormat,
    LabelMatcher,
    LineFilter,
    LineFormat,
    LogQLError,
    LogQuery,
    MetricExpr,
    NumberLiteral,
    Parser,
    RangeAggregation,
    Stage,
    Unwrap,
    VectorAggregation,
    VectorLiteral,
)

__all__ = ["parse", "parse_bytes_value", "parse_duration_ns", "parse_selector_labels"]

RANGE_OPS = {
    "count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum_over_time",
    "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time", "stdvar_over_time",
    "quantile_over_time", "first_over_time", "last_over_time", "absent_over_time",
    "rate_counter",
}  # fmt: skip
UNWRAP_OPS = {
    "sum_over_time", "avg_over_time", "min_over_time", "max_over_time", "stddev_over_time",
    "stdvar_over_time", "quantile_over_time", "first_over_time", "last_over_time",
    "rate_counter",
}  # fmt: skip
VECTOR_OPS = {"sum", "avg", "min", "max", "count", "stddev", "stdvar", "topk", "bottomk",
              "sort", "sort_desc"}  # fmt: skip
PARSERS = {"json", "logfmt", "regexp", "pattern", "unpack"}
_PRECEDENCE = {"or": 1, "and": 2, "unless": 2, "==": 3, "!=": 3, ">": 3, ">=": 3, "<": 3,
               "<=": 3, "+": 4, "-": 4, "*": 5, "/": 5, "%": 5, "^": 6}  # fmt: skip

_TOKEN = re.compile(
    r"""
    (?P<ws>\s+)
  | (?P<string>"(?:[^"\\]|\\.)*"|`[^`]*`)
  | (?P<number>(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?(?:[a-zA-Zµ]+(?:\d+(?:\.\d*)?[a-zA-Zµ]+)*)?)
  | (?P<op>\|=|\|~|\|>|!=|!~|=~|==|>=|<=|[{}()\[\],|=<>+\-*/%^])
  | (?P<ident>[a-zA-Z_][a-zA-Z0-9_.]*)
    """,
    re.VERBOSE,
)

_DURATION_UNITS = {"ns": 1, "us": 1_000, "µs": 1_000, "ms": 1_000_000, "s": 10**9,
                   "m": 60 * 10**9, "h": 3600 * 10**9, "d": 86400 * 10**9,
                   "w": 7 * 86400 * 10**9, "y": 365 * 86400 * 10**9}  # fmt: skip
_BYTE_UNITS = {"b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3, "tb": 1000**4, "kib": 1024,
               "mib": 1024**2, "gib": 1024**3, "tib": 1024**4, "k": 1000, "m": 1000**2,
               "g": 1000**3, "ki": 1024, "mi": 1024**2, "gi": 1024**3}  # fmt: skip


def parse_duration_ns(text: str) -> int:
    """A Go/Prometheus duration such as ``5m``, ``1h30m``, ``250ms``. Raises ValueError."""
    parts = re.findall(r"(\d+(?:\.\d+)?)([a-zµ]+)", text)
    if not parts or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"invalid duration {text!r}")
    total = 0.0
    for number, unit in parts:
        if unit not in _DURATION_UNITS:
            raise ValueError(f"invalid duration {text!r}: unknown unit {unit!r}")
        total += float(number) * _DURATION_UNITS[unit]
    return int(total)


def parse_bytes_value(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-zA-Z]+)?", text.strip())
    if not match:
        raise ValueError(f"invalid size {text!r}")
    unit = (match.group(2) or "b").lower()
    if unit not in _BYTE_UNITS:
        raise ValueError(f"invalid size {text!r}")
    return float(match.group(1)) * _BYTE_UNITS[unit]


@dataclass
class _Token:
    kind: str
    text: str
    pos: int


def _tokenize(text: str) -> list[_Token]:
    tokens = []
    pos = 0
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if not match:
            raise LogQLError(f"parse error at line 1, col {pos + 1}: unexpected {text[pos]!r}")
        kind = match.lastgroup or ""
        if kind != "ws":
            tokens.append(_Token(kind, match.group(), pos))
        pos = match.end()
    tokens.append(_Token("eof", "", len(text)))
    return tokens


def _unquote(token: _Token) -> str:
    if token.text.startswith("`"):
        return token.text[1:-1]
    try:
        value = json.loads(token.text)
    except json.JSONDecodeError:
        # Go escapes JSON lacks, such as \. in a regular expression: keep them for the regex.
        value = re.sub(r'\\(["\\])', r"\1", token.text[1:-1])
    if not isinstance(value, str):
        raise LogQLError(f"parse error at col {token.pos + 1}: invalid string")
    return value


def _compile(pattern: str, where: str) -> re.Pattern[str]:
    try:
        return re.compile(pattern)
    except re.error as exc:
        raise LogQLError(f"invalid regular expression {pattern!r} in {where}: {exc}") from None


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0

    # -- helpers
    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def peek(self, offset: int = 1) -> _Token:
        return self.tokens[min(self.i + offset, len(self.tokens) - 1)]

    def error(self, message: str, token: _Token | None = None) -> LogQLError:
        token = token or self.tok
        near = token.text or "end of input"
        return LogQLError(f"parse error at line 1, col {token.pos + 1}: {message} (near {near!r})")

    def accept(self, text: str) -> bool:
        if self.tok.text == text and self.tok.kind in ("op", "ident"):
            self.i += 1
            return True
        return False

    def expect(self, text: str) -> _Token:
        if self.tok.text != text:
            raise self.error(f"expected {text!r}")
        token = self.tok
        self.i += 1
        return token

    def string(self) -> str:
        if self.tok.kind != "string":
            raise self.error("expected a string")
        value = _unquote(self.tok)
        self.i += 1
        return value

    def ident(self) -> str:
        if self.tok.kind != "ident":
            raise self.error("expected a label name")
        value = self.tok.text
        self.i += 1
        return value

    def duration(self) -> int:
        token = self.tok
        if token.kind not in ("number", "ident"):
            raise self.error("expected a duration")
        self.i += 1
        try:
            return parse_duration_ns(token.text)
        except ValueError as exc:
            raise self.error(str(exc), token) from None

    # -- grammar
    def parse(self) -> Expr:
        expr = self.expr(0)
        if self.tok.kind != "eof":
            raise self.error("unexpected input")
        return expr

    def expr(self, min_precedence: int) -> Expr:
        left = self.unary()
        while True:
            op = self.tok.text
            precedence = _PRECEDENCE.get(op)
            if self.tok.kind not in ("op", "ident") or precedence is None:
                return left
            if precedence < min_precedence:
                return left
            self.i += 1
            return_bool = self.accept("bool")
            right = self.expr(precedence if op == "^" else precedence + 1)
            if isinstance(left, LogQuery) or isinstance(right, LogQuery):
                raise self.error("binary operations need metric queries, not log queries")
            left = BinaryOp(op, left, right, return_bool)

    def unary(self) -> Expr:
        if self.tok.text == "-" and self.peek().kind == "number":
            self.i += 1
            return NumberLiteral(-self.number())
        return self.primary()

    def number(self) -> float:
        token = self.tok
        if token.kind != "number":
            raise self.error("expected a number")
        self.i += 1
        try:
            return float(token.text)
        except ValueError:
            raise self.error("expected a number", token) from None

    def primary(self) -> Expr:
        token = self.tok
        if token.text == "(":
            self.i += 1
            inner = self.expr(0)
            self.expect(")")
            return inner
        if token.kind == "number":
            return NumberLiteral(self.number())
        if token.text == "{":
            return self.log_query()
        if token.kind == "ident" and token.text in RANGE_OPS:
            return self.range_aggregation()
        if token.kind == "ident" and token.text in VECTOR_OPS:
            return self.vector_aggregation()
        if token.kind == "ident" and token.text == "vector" and self.peek().text == "(":
            self.i += 2
            negative = self.tok.text == "-"
            if negative:
                self.i += 1
            value = self.number()
            self.expect(")")
            return VectorLiteral(-value if negative else value)
        raise self.error("syntax error: expected a stream selector, a number or a function")

    def log_query(self) -> LogQuery:
        matchers = self.selector()
        stages = self.pipeline()
        return LogQuery(matchers, stages)

    def selector(self) -> tuple[LabelMatcher, ...]:
        self.expect("{")
        matchers: list[LabelMatcher] = []
        while self.tok.text != "}":
            name = self.ident()
            op = self.tok.text
            if op not in ("=", "!=", "=~", "!~"):
                raise self.error("expected one of = != =~ !~")
            self.i += 1
            value = self.string()
            regex = _compile(value, f"matcher {name}") if op in ("=~", "!~") else None
            matchers.append(LabelMatcher(name, op, value, regex))  # type: ignore[arg-type]
            if not self.accept(","):
                break
        self.expect("}")
        if not matchers:
            raise self.error("queries require at least one regexp or equality matcher")
        if all(m.matches("") for m in matchers):
            raise LogQLError(
                "parse error: queries require at least one regexp or equality matcher that "
                "does not have an empty-compatible value"
            )
        return tuple(matchers)

    def pipeline(self) -> tuple[Stage, ...]:
        stages: list[Stage] = []
        while True:
            text = self.tok.text
            if self.tok.kind == "op" and text in ("|=", "!=", "|~", "!~"):
                self.i += 1
                values = [self.string()]
                while self.tok.text == "or" and self.peek().kind == "string":
                    self.i += 1
                    values.append(self.string())
                if text in ("|~", "!~"):
                    for value in values:
                        _compile(value, "line filter")
                stages.append(LineFilter(text, tuple(values)))  # type: ignore[arg-type]
            elif text == "|" and self.tok.kind == "op":
                self.i += 1
                stages.append(self.stage())
            else:
                return tuple(stages)

    def stage(self) -> Stage:
        token = self.tok
        name = token.text
        comparison = self.peek().text in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
        if token.kind == "ident" and name in PARSERS and not comparison:
            self.i += 1
            if name in ("regexp", "pattern"):
                argument = self.string()
                if name == "regexp":
                    regex = _compile(argument, "regexp parser")
                    if not regex.groupindex:
                        raise self.error("regexp parser needs at least one named group", token)
                return Parser(name, argument)  # type: ignore[arg-type]
            params: list[tuple[str, str]] = []
            if name == "json":
                while self.tok.kind == "ident" and self.peek().text in (
                    "=",
                    ",",
                    "|",
                    ")",
                    "[",
                    "",
                ):
                    label = self.ident()
                    path = label
                    if self.accept("="):
                        path = self.string()
                    params.append((label, path))
                    if not self.accept(","):
                        break
            return Parser(name, None, tuple(params))  # type: ignore[arg-type]
        if name == "line_format":
            self.i += 1
            return LineFormat(self.string())
        if name == "label_format":
            self.i += 1
            items: list[tuple[str, str, bool]] = []
            while True:
                dst = self.ident()
                self.expect("=")
                if self.tok.kind == "string":
                    items.append((dst, self.string(), True))
                else:
                    items.append((dst, self.ident(), False))
                if not self.accept(","):
                    break
            return LabelFormat(tuple(items))
        if name == "unwrap":
            self.i += 1
            conversion = ""
            if self.tok.text in ("duration", "duration_seconds", "bytes") and (
                self.peek().text == "("
            ):
                conversion = self.tok.text
                self.i += 1
                self.expect("(")
                label = self.ident()
                self.expect(")")
            else:
                label = self.ident()
            return Unwrap(label, conversion)  # type: ignore[arg-type]
        if name in ("drop", "keep"):
            self.i += 1
            names = [self.ident()]
            while self.tok.text == "=" or self.tok.text == "!=":
                self.i += 1
                self.string()  # drop a="b": value conditions, treated as plain names
            while self.accept(","):
                names.append(self.ident())
                if self.tok.text in ("=", "!="):
                    self.i += 1
                    self.string()
            return Drop(tuple(names)) if name == "drop" else Keep(tuple(names))
        if name == "decolorize":
            self.i += 1
            return Decolorize()
        if token.kind in ("ident", "op") and (token.kind == "ident" or name == "("):
            return self.label_filter_or()
        raise self.error("expected a parser, a label filter, line_format, label_format or unwrap")

    def label_filter_or(self) -> LabelFilter:
        left = self.label_filter_and()
        while self.accept("or"):
            left = LabelFilterOr(left, self.label_filter_and())
        return left

    def label_filter_and(self) -> LabelFilter:
        left = self.label_filter_primary()
        while self.tok.text in ("and", ","):
            self.i += 1
            left = LabelFilterAnd(left, self.label_filter_primary())
        return left

    def label_filter_primary(self) -> LabelFilter:
        if self.accept("("):
            inner = self.label_filter_or()
            self.expect(")")
            return inner
        name = self.ident()
        op_token = self.tok
        op = op_token.text
        if op not in ("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.error("expected a comparison operator")
        self.i += 1
        value_token = self.tok
        if value_token.kind == "string":
            if op not in ("=", "!=", "=~", "!~"):
                raise self.error(f"operator {op} needs a number, duration or size", op_token)
            value = self.string()
            regex = _compile(value, f"label filter {name}") if op in ("=~", "!~") else None
            return LabelFilterTerm(name, op, value, "string", regex)
        if value_token.kind != "number":
            raise self.error("expected a string, number, duration or size")
        self.i += 1
        if op in ("=~", "!~"):
            raise self.error(f"operator {op} needs a string", op_token)
        text = value_token.text
        if op == "=":
            op = "=="
        try:
            return LabelFilterTerm(name, op, float(text), "number")
        except ValueError:
            pass
        try:
            return LabelFilterTerm(name, op, parse_duration_ns(text) / 1e9, "duration")
        except ValueError:
            pass
        try:
            return LabelFilterTerm(name, op, parse_bytes_value(text), "bytes")
        except ValueError:
            raise self.error("invalid number, duration or size", value_token) from None

    def grouping(self) -> Grouping | None:
        if self.tok.text not in ("by", "without"):
            return None
        without = self.tok.text == "without"
        self.i += 1
        self.expect("(")
        labels: list[str] = []
        while self.tok.text != ")":
            labels.append(self.ident())
            if not self.accept(","):
                break
        self.expect(")")
        return Grouping(without, tuple(labels))

    def range_aggregation(self) -> RangeAggregation:
        op_token = self.tok
        op = op_token.text
        self.i += 1
        self.expect("(")
        param = None
        if op == "quantile_over_time":
            param = self.number()
            self.expect(",")
        matchers = self.selector()
        stages: tuple[Stage, ...] = ()
        if self.tok.text == "[":
            range_ns = self.range()
            stages = self.pipeline()
        else:
            stages = self.pipeline()
            if self.tok.text != "[":
                raise self.error(f"{op} needs a range such as [5m]")
            range_ns = self.range()
        offset = 0
        if self.accept("offset"):
            offset = self.duration()
        self.expect(")")
        query = LogQuery(matchers, stages)
        has_unwrap = query.unwrap is not None
        if op in UNWRAP_OPS and not has_unwrap:
            raise self.error(f"{op} needs an unwrapped label (| unwrap <label>)", op_token)
        if op not in UNWRAP_OPS and has_unwrap and op not in ("rate",):
            raise self.error(f"{op} does not take an unwrapped label", op_token)
        grouping = self.grouping()
        if grouping is not None and op not in UNWRAP_OPS:
            raise self.error(f"grouping is not allowed on {op}", op_token)
        return RangeAggregation(op, query, range_ns, offset, param, grouping)

    def range(self) -> int:
        self.expect("[")
        value = self.duration()
        self.expect("]")
        if value <= 0:
            raise self.error("range must be positive")
        return value

    def vector_aggregation(self) -> VectorAggregation:
        op_token = self.tok
        op = op_token.text
        self.i += 1
        grouping = self.grouping()
        self.expect("(")
        param = None
        if op in ("topk", "bottomk"):
            param = self.number()
            if param != int(param) or param < 1:
                raise self.error(f"{op} needs a positive integer k", op_token)
            self.expect(",")
        inner = self.expr(0)
        self.expect(")")
        if grouping is None:
            grouping = self.grouping()
        if isinstance(inner, LogQuery):
            raise self.error(f"{op} needs a metric query, not a log query", op_token)
        return VectorAggregation(op, inner, grouping, param)


def parse(text: str) -> Expr:
    """Parse a LogQL query. Raises :class:`LogQLError` naming the position at fault."""
    if not text.strip():
        raise LogQLError("parse error: empty query")
    return _Parser(text).parse()


def parse_metric_or_log(text: str) -> tuple[LogQuery | None, MetricExpr | None]:
    expr = parse(text)
    if isinstance(expr, LogQuery):
        return expr, None
    return None, expr


def parse_selector_labels(text: str) -> dict[str, str]:
    """``{a="1", b="2"}`` (equality matchers only) to a dict. Raises ValueError."""
    parser = _Parser(text)
    parser.expect("{")
    labels: dict[str, str] = {}
    while parser.tok.text != "}":
        name = parser.ident()
        parser.expect("=")
        labels[name] = parser.string()
        if not parser.accept(","):
            break
    parser.expect("}")
    if parser.tok.kind != "eof":
        raise parser.error("unexpected input after the label set")
    return labels
