"""LogQL syntax tree."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "BinaryOp", "Drop", "Expr", "Keep", "LabelFilter", "LabelFilterAnd", "LabelFilterOr",
    "LabelFilterTerm", "LabelFormat", "LabelMatcher", "LineFilter", "LineFormat", "LogQLError",
    "LogQuery", "MetricExpr", "NumberLiteral", "Parser", "RangeAggregation", "Stage", "Unwrap",
    "VectorAggregation", "VectorLiteral",
]  # fmt: skip


class LogQLError(ValueError):
    """A query that cannot be parsed or evaluated; the message says where and why."""


@dataclass(frozen=True)
class LabelMatcher:
    name: str
    op: Literal["=", "!=", "=~", "!~"]
    value: str
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def matches(self, value: str) -> bool:
        if self.op == "=":
            return value == self.value
        if self.op == "!=":
            return value != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(value) is not None
        return hit if self.op == "=~" else not hit

    def __str__(self) -> str:
        from signalroom.logs.model import _quote

        return f"{self.name}{self.op}{_quote(self.value)}"


@dataclass(frozen=True)
class LineFilter:
    """``|= "a" or "b"``: ``values`` are alternatives (any may match)."""

    op: Literal["|=", "!=", "|~", "!~"]
    values: tuple[str, ...]


@dataclass(frozen=True)
class Parser:
    kind: Literal["json", "logfmt", "regexp", "pattern", "unpack"]
    argument: str | None = None
    params: tuple[tuple[str, str], ...] = ()  # json a="b.c": (label, path)


@dataclass(frozen=True)
class LabelFilterTerm:
    name: str
    op: str  # = != =~ !~ for strings; == != > >= < <= for numbers
    value: str | float
    kind: Literal["string", "number", "duration", "bytes"] = "string"
    regex: re.Pattern[str] | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class LabelFilterAnd:
    left: LabelFilter
    right: LabelFilter


@dataclass(frozen=True)
class LabelFilterOr:
    left: LabelFilter
    right: LabelFilter


LabelFilter = LabelFilterTerm | LabelFilterAnd | LabelFilterOr


@dataclass(frozen=True)
class LineFormat:
    template: str


@dataclass(frozen=True)
class LabelFormat:
    """``dst=src`` renames (``is_template`` false) or ``dst="{{...}}"`` templates."""

    items: tuple[tuple[str, str, bool], ...]


@dataclass(frozen=True)
class Unwrap:
    label: str
    conversion: Literal["", "duration", "duration_seconds", "bytes"] = ""


@dataclass(frozen=True)
class Drop:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Keep:
    names: tuple[str, ...]


@dataclass(frozen=True)
class Decolorize:
    pass


Stage = (
    LineFilter | Parser | LabelFilterTerm | LabelFilterAnd | LabelFilterOr | LineFormat
    | LabelFormat | Unwrap | Drop | Keep | Decolorize
)  # fmt: skip


@dataclass(frozen=True)
class LogQuery:
    matchers: tuple[LabelMatcher, ...]
    stages: tuple[Stage, ...] = ()

    @property
    def unwrap(self) -> Unwrap | None:
        for stage in self.stages:
            if isinstance(stage, Unwrap):
                return stage
        return None


@dataclass(frozen=True)
class Grouping:
    without: bool
    labels: tuple[str, ...]


@dataclass(frozen=True)
class RangeAggregation:
    op: str
    query: LogQuery
    range_ns: int
    offset_ns: int = 0
    param: float | None = None
    grouping: Grouping | None = None


@dataclass(frozen=True)
class VectorAggregation:
    op: str
    expr: MetricExpr
    grouping: Grouping | None = None
    param: float | None = None


@dataclass(frozen=True)
class BinaryOp:
    op: str
    left: MetricExpr
    right: MetricExpr
    return_bool: bool = False


@dataclass(frozen=True)
class NumberLiteral:
    value: float


@dataclass(frozen=True)
class VectorLiteral:
    """``vector(1)``: one series without labels, the same value at every step."""

    value: float


MetricExpr = RangeAggregation | VectorAggregation | BinaryOp | NumberLiteral | VectorLiteral
Expr = LogQuery | MetricExpr
