"""LogQL evaluation over the log store.

The stream selector, the time range and every line filter that precedes a ``line_format`` go
to DuckDB (``contains`` / ``regexp_matches``); the rest of the pipeline runs on the Arrow
batches DuckDB streams back, so a log query stops reading once it has ``limit`` lines.
Metric queries turn rows into per-series sorted timestamps and values and compute every step's
window with ``searchsorted`` and cumulative sums (NumPy), not per-sample loops.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from signalroom.logs.logql.parser import parse_bytes_value, parse_duration_ns
from signalroom.logs.model import format_labels
from signalroom.logs.store import Hidden, LogStore
from signalroom.templating import StringMap, Template

__all__ = [
    "LogQLEngine",
    "QueryResult",
    "QueryStats",
    "RowPipeline",
    "Series",
    "StreamEntries",
]

Direction = Literal["backward", "forward"]
_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_LOGFMT = re.compile(r'([^\s="]+)(?:=("(?:[^"\\]|\\.)*"|[^\s"]*))?')
_LABEL_SANITIZE = re.compile(r"[^a-zA-Z0-9_]")


class QueryLimitError(LogQLError):
    """A query hit a configured limit (series, time)."""


@dataclass
class QueryStats:
    """What a query read; shaped into Loki's ``stats`` object by the API."""

    lines_scanned: int = 0
    bytes_scanned: int = 0
    lines_post_filter: int = 0
    entries_returned: int = 0
    exec_time_s: float = 0.0


@dataclass
class StreamEntries:
    labels: dict[str, str]
    timestamps: list[int]
    lines: list[str]


@dataclass
class Series:
    labels: dict[str, str]
    values: np.ndarray[Any, np.dtype[np.float64]]  # one per step, NaN where absent


@dataclass
class QueryResult:
    """``streams`` for log queries; ``matrix``/``vector``/``scalar`` for metric queries."""

    kind: Literal["streams", "matrix", "vector", "scalar"]
    streams: list[StreamEntries] = field(default_factory=list)
    series: list[Series] = field(default_factory=list)
    steps_ns: np.ndarray[Any, np.dtype[np.int64]] = field(
        default_factory=lambda: np.zeros(0, np.int64)
    )
    scalar: float | None = None
    stats: QueryStats = field(default_factory=QueryStats)


# --- the row pipeline ---------------------------------------------------------------------


@dataclass
class Rows:
    """Rows flowing through a pipeline: labels stay per stream until a stage needs them
    per row."""

    ts: np.ndarray[Any, np.dtype[np.int64]]
    sid: np.ndarray[Any, np.dtype[np.int64]]
    lines: pa.Array | list[str] | None
    labels: list[dict[str, str]] | None = None
    values: np.ndarray[Any, np.dtype[np.float64]] | None = None

    def __len__(self) -> int:
        return len(self.ts)

    def take(self, mask: np.ndarray[Any, np.dtype[np.bool_]]) -> Rows:
        index = np.flatnonzero(mask)
        lines: pa.Array | list[str] | None
        if self.lines is None:
            lines = None
        elif isinstance(self.lines, pa.Array):
            lines = self.lines.take(pa.array(index))
        else:
            lines = [self.lines[i] for i in index.tolist()]
        return Rows(
            self.ts[index],
            self.sid[index],
            lines,
            None if self.labels is None else [self.labels[i] for i in index.tolist()],
            None if self.values is None else self.values[index],
        )

    def line_list(self) -> list[str]:
        if self.lines is None:
            return [""] * len(self)
        if isinstance(self.lines, pa.Array):
            self.lines = self.lines.to_pylist()
        return self.lines

    def line_array(self) -> pa.Array:
        if isinstance(self.lines, pa.Array):
            return self.lines
        return pa.array(self.lines or [""] * len(self), pa.string())


def split_pushdown(stages: Sequence[Stage]) -> tuple[list[LineFilter], list[Stage]]:
    """Line filters that can run in SQL (those before any stage that rewrites the line)."""
    pushed: list[LineFilter] = []
    rest: list[Stage] = []
    rewritten = False
    for stage in stages:
        if isinstance(stage, LineFormat | Decolorize):
            rewritten = True
        if isinstance(stage, LineFilter) and not rewritten:
            pushed.append(stage)
        else:
            rest.append(stage)
    return pushed, rest


def _json_path(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for match in re.finditer(r'\[\s*"([^"]*)"\s*\]|\[\s*(\d+)\s*\]|([^.\[\]]+)', path):
        if match.group(1) is not None:
            parts.append(match.group(1))
        elif match.group(2) is not None:
            parts.append(int(match.group(2)))
        else:
            parts.append(match.group(3))
    return parts


def _json_value(value: Any) -> str | None:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, separators=(",", ":"))
    return str(value)


def _sanitize(key: str) -> str:
    key = _LABEL_SANITIZE.sub("_", key)
    return "_" + key if key[:1].isdigit() else key


def _flatten_json(obj: Mapping[str, Any], prefix: str, out: dict[str, str]) -> None:
    for key, value in obj.items():
        name = prefix + _sanitize(key)
        if isinstance(value, dict):
            _flatten_json(value, name + "_", out)
        elif isinstance(value, list):
            continue  # Loki's json parser skips arrays
        else:
            text = _json_value(value)
            out[name] = "" if text is None else text


def _pattern_regex(pattern: str) -> re.Pattern[str]:
    parts = re.split(r"(<[A-Za-z_][A-Za-z0-9_]*>)", pattern)
    regex = []
    names = []
    for i, part in enumerate(parts):
        if not part:
            continue
        if part.startswith("<") and part.endswith(">"):
            name = part[1:-1]
            last = all(not p for p in parts[i + 1 :])
            body = ".*" if last else ".*?"
            if name == "_":
                regex.append(f"(?:{body})")
            else:
                if name in names:
                    raise LogQLError(f"pattern {pattern!r}: duplicate capture <{name}>")
                names.append(name)
                regex.append(f"(?P<{name}>{body})")
        else:
            regex.append(re.escape(part))
    if not names:
        raise LogQLError(f"pattern {pattern!r} needs at least one named capture such as <ip>")
    return re.compile("".join(regex), re.DOTALL)


def _template_funcs(row: dict[str, Any]) -> dict[str, Callable[..., Any]]:
    def regex_replace_all(pattern: str, text: str, replacement: str) -> str:
        return re.sub(pattern, replacement.replace("$", "\\"), text)

    return {
        "__line__": lambda: row["line"],
        "__timestamp__": lambda: row["ts"],
        "ToUpper": str.upper, "ToLower": str.lower, "upper": str.upper, "lower": str.lower,
        "TrimSpace": str.strip, "trim": str.strip,
        "trimPrefix": lambda p, s: s.removeprefix(p), "trimSuffix": lambda p, s: s.removesuffix(p),
        "replace": lambda old, new, s: s.replace(old, new),
        "default": lambda d, v="": v if v not in (None, "") else d,
        "contains": lambda sub, s: sub in s, "hasPrefix": lambda p, s: s.startswith(p),
        "hasSuffix": lambda p, s: s.endswith(p), "regexReplaceAll": regex_replace_all,
        "len": len, "toJson": lambda v: json.dumps(v),
        "substr": lambda a, b, s: s[int(a) : int(b)],
        "int": lambda v: int(float(v)), "float64": float,
        "add": lambda a, b: float(a) + float(b), "sub": lambda a, b: float(a) - float(b),
        "mul": lambda a, b: float(a) * float(b), "div": lambda a, b: float(a) / float(b),
        "unixEpoch": lambda t: str(int(t) // 10**9),
    }  # fmt: skip


class RowPipeline:
    """Runs the non-pushed stages of a log query over batches of rows."""

    def __init__(self, stages: Sequence[Stage], base_labels: Mapping[int, dict[str, str]]):
        self.stages = list(stages)
        self.base = base_labels
        self._compiled: dict[int, Any] = {}
        self._row: dict[str, Any] = {"line": "", "ts": 0}
        for i, stage in enumerate(self.stages):
            if isinstance(stage, Parser) and stage.kind == "regexp":
                self._compiled[i] = re.compile(stage.argument or "")
            elif isinstance(stage, Parser) and stage.kind == "pattern":
                self._compiled[i] = _pattern_regex(stage.argument or "")
            elif isinstance(stage, LineFormat):
                self._compiled[i] = self._template(stage.template)
            elif isinstance(stage, LabelFormat):
                self._compiled[i] = [
                    self._template(src) if is_tmpl else None for _, src, is_tmpl in stage.items
                ]

    def _template(self, text: str) -> Template:
        try:
            return Template("line", _template_funcs(self._row)).parse(text)
        except Exception as exc:
            raise LogQLError(f"invalid template {text!r}: {exc}") from None

    @property
    def needs_lines(self) -> bool:
        return bool(self.stages)

    def run(self, rows: Rows) -> Rows:
        for i, stage in enumerate(self.stages):
            if not len(rows):
                return rows
            rows = self._apply(i, stage, rows)
        return rows

    def _labels(self, rows: Rows) -> list[dict[str, str]]:
        if rows.labels is None:
            base = self.base
            rows.labels = [dict(base.get(s, {})) for s in rows.sid.tolist()]
        return rows.labels

    def _apply(self, i: int, stage: Stage, rows: Rows) -> Rows:
        if isinstance(stage, LineFilter):
            return rows.take(line_filter_mask(stage, rows.line_array()))
        if isinstance(stage, Parser):
            self._parse(i, stage, rows)
            return rows
        if isinstance(stage, LabelFilterTerm | LabelFilterAnd | LabelFilterOr):
            labels = self._labels(rows)
            mask = np.fromiter((label_filter(stage, r) for r in labels), np.bool_, len(labels))
            return rows.take(mask)
        if isinstance(stage, LineFormat):
            template: Template = self._compiled[i]
            labels = self._labels(rows)
            lines = rows.line_list()
            out = []
            for ts, line, row_labels in zip(rows.ts.tolist(), lines, labels, strict=True):
                self._row["line"], self._row["ts"] = line, ts
                out.append(template.execute(StringMap(row_labels)))
            rows.lines = out
            return rows
        if isinstance(stage, LabelFormat):
            labels = self._labels(rows)
            templates = self._compiled[i]
            lines = rows.line_list()
            for row_index, row_labels in enumerate(labels):
                self._row["line"], self._row["ts"] = lines[row_index], int(rows.ts[row_index])
                data = StringMap(row_labels)
                for (dst, src, is_tmpl), tmpl in zip(stage.items, templates, strict=True):
                    if is_tmpl:
                        row_labels[dst] = tmpl.execute(data)
                    elif src in row_labels:
                        row_labels[dst] = row_labels.pop(src)
            return rows
        if isinstance(stage, Unwrap):
            return self._unwrap(stage, rows)
        if isinstance(stage, Drop):
            for row_labels in self._labels(rows):
                for name in stage.names:
                    row_labels.pop(name, None)
            return rows
        if isinstance(stage, Keep):
            names = set(stage.names)
            rows.labels = [{k: v for k, v in r.items() if k in names} for r in self._labels(rows)]
            return rows
        if isinstance(stage, Decolorize):
            rows.lines = pc.replace_substring_regex(rows.line_array(), r"\x1b\[[0-9;]*[A-Za-z]", "")
            return rows
        raise LogQLError(f"unsupported stage {stage!r}")

    def _parse(self, i: int, stage: Parser, rows: Rows) -> None:
        labels = self._labels(rows)
        lines = rows.line_list()
        sids = rows.sid.tolist()
        kind = stage.kind
        regex = self._compiled.get(i)
        params = [(label, _json_path(path)) for label, path in stage.params]
        for row_labels, line, sid in zip(labels, lines, sids, strict=True):
            stream = self.base.get(sid, {})
            extracted: dict[str, str] = {}
            error = None
            if kind in ("json", "unpack"):
                try:
                    obj = json.loads(line, parse_float=str, parse_int=str)
                except ValueError:
                    obj, error = None, "JSONParserErr"
                if obj is not None and not isinstance(obj, dict):
                    obj, error = None, "JSONParserErr"
                if obj is not None:
                    if params:
                        for label, path in params:
                            value: Any = obj
                            for part in path:
                                if isinstance(value, dict) and isinstance(part, str):
                                    value = value.get(part)
                                elif isinstance(value, list) and isinstance(part, int):
                                    value = value[part] if part < len(value) else None
                                else:
                                    value = None
                                    break
                            text = _json_value(value) if value is not None else ""
                            extracted[label] = text or ""
                    elif kind == "unpack":
                        for key, value in obj.items():
                            if key == "_entry":
                                rows.line_list()[0:0] = []
                            extracted[_sanitize(key)] = _json_value(value) or ""
                    else:
                        _flatten_json(obj, "", extracted)
            elif kind == "logfmt":
                for match in _LOGFMT.finditer(line):
                    raw = match.group(2)
                    if raw is None:
                        raw = ""
                    elif raw.startswith('"'):
                        try:
                            raw = json.loads(raw)
                        except ValueError:
                            raw = raw[1:-1]
                    extracted[_sanitize(match.group(1))] = raw
            else:
                assert regex is not None
                found = regex.search(line) if kind == "regexp" else regex.match(line)
                if found is not None:
                    extracted = {k: v for k, v in found.groupdict().items() if v is not None}
            for key, value in extracted.items():
                if key in stream:
                    key += "_extracted"
                row_labels[key] = value
            if error is not None:
                row_labels["__error__"] = error

    def _unwrap(self, stage: Unwrap, rows: Rows) -> Rows:
        labels = self._labels(rows)
        values = np.empty(len(labels), np.float64)
        ok = np.ones(len(labels), np.bool_)
        for index, row_labels in enumerate(labels):
            text = row_labels.pop(stage.label, None)
            try:
                if text is None:
                    raise ValueError
                if stage.conversion in ("duration", "duration_seconds"):
                    values[index] = parse_duration_ns(text.strip()) / 1e9
                elif stage.conversion == "bytes":
                    values[index] = parse_bytes_value(text)
                else:
                    values[index] = float(text)
            except ValueError:
                ok[index] = False
        rows.values = values
        return rows if bool(ok.all()) else rows.take(ok)


def line_filter_mask(stage: LineFilter, lines: pa.Array) -> np.ndarray[Any, np.dtype[np.bool_]]:
    masks = []
    for value in stage.values:
        if stage.op in ("|=", "!="):
            masks.append(pc.match_substring(lines, value))
        else:
            masks.append(pc.match_substring_regex(lines, value))
    mask = masks[0]
    for other in masks[1:]:
        mask = pc.or_(mask, other)
    result: np.ndarray[Any, np.dtype[np.bool_]] = mask.to_numpy(zero_copy_only=False)
    return result if stage.op in ("|=", "|~") else ~result


def label_filter(node: LabelFilter, labels: Mapping[str, str]) -> bool:
    if isinstance(node, LabelFilterAnd):
        return label_filter(node.left, labels) and label_filter(node.right, labels)
    if isinstance(node, LabelFilterOr):
        return label_filter(node.left, labels) or label_filter(node.right, labels)
    text = labels.get(node.name, "")
    if node.kind == "string":
        if node.op == "=":
            return text == node.value
        if node.op == "!=":
            return text != node.value
        assert node.regex is not None
        hit = node.regex.fullmatch(text) is not None
        return hit if node.op == "=~" else not hit
    try:
        if node.kind == "duration":
            actual = parse_duration_ns(text.strip()) / 1e9
        elif node.kind == "bytes":
            actual = parse_bytes_value(text)
        else:
            actual = float(text)
    except ValueError:
        return False
    expected = float(node.value)
    return {
        "==": actual == expected, "!=": actual != expected, ">": actual > expected,
        ">=": actual >= expected, "<": actual < expected, "<=": actual <= expected,
    }[node.op]  # fmt: skip


# --- the engine -----------------------------------------------------------------------------


class LogQLEngine:
    """Evaluates parsed LogQL over a :class:`LogStore`."""

    def __init__(
        self,
        store: LogStore,
        *,
        max_series: int = 500,
        timeout_s: float = 60.0,
        hidden: Callable[[str, Sequence[int]], list[Hidden]] | None = None,
    ) -> None:
        self.store = store
        self.max_series = max_series
        self.timeout_s = timeout_s
        self._hidden = hidden or (lambda tenant, ids: [])

    # -- log queries
    def select_logs(
        self,
        tenant: str,
        query: LogQuery,
        start_ns: int,
        end_ns: int,
        *,
        limit: int,
        direction: Direction = "backward",
    ) -> QueryResult:
        """Lines of ``[start_ns, end_ns)`` through the pipeline, at most ``limit``, grouped by
        their final label set."""
        began = time.monotonic()
        stats = QueryStats()
        streams = self.store.streams(tenant, query.matchers, start_ns, end_ns)
        result = QueryResult("streams", stats=stats)
        if not streams or limit <= 0:
            return result
        base = {s.id: s.labels for s in streams}
        pushed, rest = split_pushdown(query.stages)
        pipeline = RowPipeline(rest, base)
        ids = list(base)
        deadline = began + self.timeout_s
        batches = self.store.scan(
            tenant, start_ns, end_ns, stream_ids=ids, line_filters=pushed,
            columns=("timestamp", "stream_id", "line"), direction=direction,
            limit=None if rest else limit, hidden=self._hidden(tenant, ids),
        )  # fmt: skip
        grouped: dict[str, StreamEntries] = {}
        sid_keys: dict[int, str] = {}
        taken = 0
        for batch in batches:
            self._check(deadline)
            rows = _rows_of(batch, with_lines=True)
            stats.lines_scanned += len(rows)
            stats.bytes_scanned += int(pc.sum(pc.binary_length(batch.column(2))).as_py() or 0)
            rows = pipeline.run(rows)
            stats.lines_post_filter += len(rows)
            if not len(rows):
                continue
            keep = min(len(rows), limit - taken)
            lines = rows.line_list()[:keep]
            stamps = rows.ts[:keep].tolist()
            if rows.labels is None:
                keys = []
                for sid in rows.sid[:keep].tolist():
                    key = sid_keys.get(sid)
                    if key is None:
                        key = sid_keys[sid] = format_labels(base[sid])
                    keys.append(key)
                label_sets: Iterable[dict[str, str]] = (base[s] for s in rows.sid[:keep].tolist())
            else:
                keys = [format_labels(r) for r in rows.labels[:keep]]
                label_sets = rows.labels[:keep]
            for key, labels, ts, line in zip(keys, label_sets, stamps, lines, strict=False):
                entry = grouped.get(key)
                if entry is None:
                    entry = grouped[key] = StreamEntries(dict(labels), [], [])
                entry.timestamps.append(ts)
                entry.lines.append(line)
            taken += keep
            if taken >= limit:
                break
        if hasattr(batches, "close"):
            batches.close()
        result.streams = list(grouped.values())
        stats.entries_returned = taken
        stats.exec_time_s = time.monotonic() - began
        return result

    # -- metric queries
    def query_range(
        self, tenant: str, expr: MetricExpr, start_ns: int, end_ns: int, step_ns: int
    ) -> QueryResult:
        if step_ns <= 0:
            raise LogQLError("zero or negative query resolution step widths are not accepted")
        began = time.monotonic()
        steps = np.arange(start_ns, end_ns + 1, step_ns, dtype=np.int64)
        if len(steps) > 11_000:
            raise LogQLError(
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)"
            )
        stats = QueryStats()
        value = self._eval(tenant, expr, steps, stats, began + self.timeout_s)
        stats.exec_time_s = time.monotonic() - began
        if isinstance(value, float):
            series = [Series({}, np.full(len(steps), value))]
            return QueryResult("matrix", series=series, steps_ns=steps, stats=stats)
        series = [s for s in value if not bool(np.all(np.isnan(s.values)))]
        return QueryResult("matrix", series=series, steps_ns=steps, stats=stats)

    def query_instant(self, tenant: str, expr: MetricExpr, at_ns: int) -> QueryResult:
        began = time.monotonic()
        steps = np.array([at_ns], np.int64)
        stats = QueryStats()
        value = self._eval(tenant, expr, steps, stats, began + self.timeout_s)
        stats.exec_time_s = time.monotonic() - began
        if isinstance(value, float):
            return QueryResult("scalar", scalar=value, steps_ns=steps, stats=stats)
        series = [s for s in value if not math.isnan(float(s.values[0]))]
        if isinstance(expr, VectorAggregation) and expr.op in ("sort", "sort_desc", "topk",
                                                                 "bottomk"):  # fmt: skip
            reverse = expr.op in ("sort_desc", "topk")
            series.sort(key=lambda s: float(s.values[0]), reverse=reverse)
        return QueryResult("vector", series=series, steps_ns=steps, stats=stats)

    def _check(self, deadline: float) -> None:
        if time.monotonic() > deadline:
            raise QueryLimitError(f"query timed out (logs.query_timeout {self.timeout_s:g}s)")

    def _eval(
        self,
        tenant: str,
        expr: Expr,
        steps: np.ndarray[Any, np.dtype[np.int64]],
        stats: QueryStats,
        deadline: float,
    ) -> float | list[Series]:
        if isinstance(expr, NumberLiteral):
            return expr.value
        if isinstance(expr, VectorLiteral):
            return [Series({}, np.full(len(steps), expr.value, np.float64))]
        if isinstance(expr, RangeAggregation):
            return self._range(tenant, expr, steps, stats, deadline)
        if isinstance(expr, VectorAggregation):
            inner = self._eval(tenant, expr.expr, steps, stats, deadline)
            if isinstance(inner, float):
                raise LogQLError(f"{expr.op} needs a vector, got a scalar")
            return _aggregate(expr, inner)
        if isinstance(expr, BinaryOp):
            left = self._eval(tenant, expr.left, steps, stats, deadline)
            right = self._eval(tenant, expr.right, steps, stats, deadline)
            return _binary(expr, left, right)
        raise LogQLError("a log query cannot be used where a metric query is expected")

    def _range(
        self,
        tenant: str,
        expr: RangeAggregation,
        steps: np.ndarray[Any, np.dtype[np.int64]],
        stats: QueryStats,
        deadline: float,
    ) -> list[Series]:
        if expr.op in ("absent_over_time", "rate_counter"):
            raise LogQLError(f"{expr.op} is not supported yet")
        query = expr.query
        first = int(steps[0]) - expr.offset_ns - expr.range_ns + 1
        last = int(steps[-1]) - expr.offset_ns + 1
        streams = self.store.streams(tenant, query.matchers, first, last)
        if not streams:
            return []
        base = {s.id: s.labels for s in streams}
        pushed, rest = split_pushdown(query.stages)
        pipeline = RowPipeline(rest, base)
        need_bytes = expr.op in ("bytes_over_time", "bytes_rate")
        columns = ["timestamp", "stream_id"]
        if rest or need_bytes:
            columns.append("line")
        ids = list(base)
        batches = self.store.scan(
            tenant, first, last, stream_ids=ids, line_filters=pushed, columns=columns,
            direction="none", hidden=self._hidden(tenant, ids),
        )  # fmt: skip
        ts_parts: list[np.ndarray[Any, Any]] = []
        value_parts: list[np.ndarray[Any, Any]] = []
        key_parts: list[np.ndarray[Any, Any]] = []
        key_codes: dict[str, int] = {}
        key_labels: list[dict[str, str]] = []
        for batch in batches:
            self._check(deadline)
            rows = _rows_of(batch, with_lines=len(columns) == 3)
            stats.lines_scanned += len(rows)
            if need_bytes:
                byte_counts = pc.binary_length(rows.line_array()).to_numpy(zero_copy_only=False)
            rows_before = rows
            rows = pipeline.run(rows)
            stats.lines_post_filter += len(rows)
            if not len(rows):
                continue
            if need_bytes and rows is rows_before and rows.values is None:
                values = byte_counts.astype(np.float64)
            elif need_bytes:
                values = pc.binary_length(rows.line_array()).to_numpy(zero_copy_only=False)
                values = values.astype(np.float64)
            elif rows.values is not None:
                values = rows.values
            else:
                values = np.ones(len(rows), np.float64)
            if rows.labels is None and expr.grouping is None:
                codes = np.empty(len(rows), np.int64)
                unique, inverse = np.unique(rows.sid, return_inverse=True)
                mapping = []
                for sid in unique.tolist():
                    key = f"s{sid}"
                    code = key_codes.get(key)
                    if code is None:
                        code = key_codes[key] = len(key_labels)
                        key_labels.append(dict(base[sid]))
                    mapping.append(code)
                codes = np.asarray(mapping, np.int64)[inverse]
            else:
                labels = rows.labels or [base[s] for s in rows.sid.tolist()]
                codes = np.empty(len(rows), np.int64)
                for index, row_labels in enumerate(labels):
                    final = _group_labels(row_labels, expr.grouping)
                    key = format_labels(final)
                    code = key_codes.get(key)
                    if code is None:
                        code = key_codes[key] = len(key_labels)
                        key_labels.append(final)
                    codes[index] = code
            if len(key_labels) > self.max_series:
                raise QueryLimitError(
                    f"maximum of series ({self.max_series}) reached for a single query "
                    "(logs.max_query_series)"
                )
            ts_parts.append(rows.ts)
            value_parts.append(values)
            key_parts.append(codes)
        if not ts_parts:
            return []
        ts = np.concatenate(ts_parts)
        values = np.concatenate(value_parts)
        codes = np.concatenate(key_parts)
        order = np.lexsort((ts, codes))
        ts, values, codes = ts[order], values[order], codes[order]
        bounds = np.flatnonzero(np.diff(codes)) + 1
        starts = np.concatenate(([0], bounds))
        ends = np.concatenate((bounds, [len(codes)]))
        window_end = steps - expr.offset_ns
        window_start = window_end - expr.range_ns
        range_s = expr.range_ns / 1e9
        out = []
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            series_ts = ts[start:end]
            series_values = values[start:end]
            left = np.searchsorted(series_ts, window_start, "right")
            right = np.searchsorted(series_ts, window_end, "right")
            result = _window(expr, series_values, left, right, range_s)
            out.append(Series(key_labels[int(codes[start])], result))
        return out


def _rows_of(batch: pa.RecordBatch, *, with_lines: bool) -> Rows:
    ts = batch.column(0).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    sid = batch.column(1).to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    lines = batch.column(2) if with_lines and batch.num_columns > 2 else None
    if lines is not None and isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    if lines is not None and not pa.types.is_string(lines.type):
        lines = lines.cast(pa.string())
    return Rows(ts, sid, lines)


def _group_labels(labels: Mapping[str, str], grouping: Grouping | None) -> dict[str, str]:
    if grouping is None:
        return dict(labels)
    if grouping.without:
        return {k: v for k, v in labels.items() if k not in grouping.labels}
    return {k: labels[k] for k in grouping.labels if k in labels}


def _window(
    expr: RangeAggregation,
    values: np.ndarray[Any, np.dtype[np.float64]],
    left: np.ndarray[Any, np.dtype[np.intp]],
    right: np.ndarray[Any, np.dtype[np.intp]],
    range_s: float,
) -> np.ndarray[Any, np.dtype[np.float64]]:
    count = (right - left).astype(np.float64)
    empty = count == 0
    op = expr.op
    with np.errstate(invalid="ignore", divide="ignore"):
        if op in ("count_over_time", "rate", "bytes_over_time", "bytes_rate", "sum_over_time",
                  "avg_over_time"):  # fmt: skip
            if op == "count_over_time":
                result = count
            elif op == "rate" and expr.query.unwrap is None:
                result = count / range_s
            else:
                cumulative = np.concatenate(([0.0], np.cumsum(values)))
                sums = cumulative[right] - cumulative[left]
                if op in ("bytes_rate", "rate"):
                    result = sums / range_s
                elif op == "avg_over_time":
                    result = sums / count
                else:
                    result = sums
        else:
            result = np.full(len(left), np.nan)
            for i, (lo, hi) in enumerate(zip(left.tolist(), right.tolist(), strict=True)):
                if hi <= lo:
                    continue
                window = values[lo:hi]
                if op == "min_over_time":
                    result[i] = window.min()
                elif op == "max_over_time":
                    result[i] = window.max()
                elif op == "stddev_over_time":
                    result[i] = window.std()
                elif op == "stdvar_over_time":
                    result[i] = window.var()
                elif op == "first_over_time":
                    result[i] = window[0]
                elif op == "last_over_time":
                    result[i] = window[-1]
                elif op == "quantile_over_time":
                    result[i] = _quantile(float(expr.param or 0), window)
    result = result.astype(np.float64)
    result[empty] = np.nan
    return result


def _quantile(q: float, values: np.ndarray[Any, np.dtype[np.float64]]) -> float:
    """Prometheus' quantile: linear interpolation between closest ranks."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = np.sort(values)
    rank = q * (len(ordered) - 1)
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    weight = rank - low
    return float(ordered[low] * (1 - weight) + ordered[high] * weight)


def _aggregate(expr: VectorAggregation, series: list[Series]) -> list[Series]:
    if expr.op in ("sort", "sort_desc"):
        return series
    groups: dict[str, tuple[dict[str, str], list[Series]]] = {}
    for item in series:
        if expr.grouping is None:
            labels: dict[str, str] = {}
        else:
            labels = _group_labels(item.labels, expr.grouping)
        key = format_labels(labels)
        groups.setdefault(key, (labels, []))[1].append(item)
    out: list[Series] = []
    for labels, members in groups.values():
        matrix = np.vstack([m.values for m in members])
        present = ~np.isnan(matrix)
        absent = ~present.any(axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            if expr.op in ("topk", "bottomk"):
                k = int(expr.param or 1)
                filled = np.where(present, matrix, -np.inf if expr.op == "topk" else np.inf)
                order = np.argsort(-filled if expr.op == "topk" else filled, axis=0, kind="stable")
                chosen = np.zeros_like(present)
                np.put_along_axis(chosen, order[:k], True, axis=0)
                chosen &= present
                for member, mask in zip(members, chosen, strict=True):
                    out.append(Series(member.labels, np.where(mask, member.values, np.nan)))
                continue
            if expr.op == "sum":
                values = np.nansum(matrix, axis=0)
            elif expr.op == "avg":
                values = np.nansum(matrix, axis=0) / present.sum(axis=0)
            elif expr.op == "count":
                values = present.sum(axis=0).astype(np.float64)
            elif expr.op == "min":
                values = np.nanmin(np.where(present, matrix, np.inf), axis=0)
            elif expr.op == "max":
                values = np.nanmax(np.where(present, matrix, -np.inf), axis=0)
            elif expr.op in ("stddev", "stdvar"):
                mean = np.nansum(matrix, axis=0) / present.sum(axis=0)
                var = np.nansum(np.where(present, (matrix - mean) ** 2, 0), axis=0) / present.sum(
                    axis=0
                )
                values = np.sqrt(var) if expr.op == "stddev" else var
            else:
                raise LogQLError(f"unsupported aggregation {expr.op}")
        values = values.astype(np.float64)
        values[absent] = np.nan
        out.append(Series(labels, values))
    return out


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": np.add, "-": np.subtract, "*": np.multiply, "/": np.divide, "%": np.fmod,
    "^": np.power,
}  # fmt: skip
_COMPARISON: dict[str, Callable[[Any, Any], Any]] = {
    "==": np.equal, "!=": np.not_equal, ">": np.greater, ">=": np.greater_equal,
    "<": np.less, "<=": np.less_equal,
}  # fmt: skip


def _binary(
    expr: BinaryOp, left: float | list[Series], right: float | list[Series]
) -> float | list[Series]:
    op = expr.op
    if op in ("and", "or", "unless"):
        if isinstance(left, float) or isinstance(right, float):
            raise LogQLError(f"set operator {op} needs vectors on both sides")
        right_by = {format_labels(s.labels): s for s in right}
        left_keys = {format_labels(s.labels) for s in left}
        if op == "and":
            return [
                Series(s.labels, np.where(np.isnan(right_by[k].values), np.nan, s.values))
                for s in left
                if (k := format_labels(s.labels)) in right_by
            ]
        if op == "unless":
            out = []
            for s in left:
                other = right_by.get(format_labels(s.labels))
                out.append(
                    s
                    if other is None
                    else Series(s.labels, np.where(np.isnan(other.values), s.values, np.nan))
                )
            return out
        return left + [s for k, s in right_by.items() if k not in left_keys]
    function = _ARITHMETIC.get(op) or _COMPARISON.get(op)
    if function is None:
        raise LogQLError(f"unsupported operator {op}")
    comparison = op in _COMPARISON

    def apply(a: Any, b: Any, keep: Any) -> Any:
        with np.errstate(invalid="ignore", divide="ignore"):
            result = function(a, b)
        if not comparison:
            return np.asarray(result, np.float64)
        if expr.return_bool:
            return np.where(np.isnan(a + b), np.nan, np.asarray(result, np.float64))
        return np.where(result, keep, np.nan)

    if isinstance(left, float) and isinstance(right, float):
        value = apply(np.float64(left), np.float64(right), np.float64(left))
        return float(value)
    if isinstance(left, float):
        assert isinstance(right, list)
        return [Series(s.labels, apply(left, s.values, s.values)) for s in right]
    if isinstance(right, float):
        return [Series(s.labels, apply(s.values, right, s.values)) for s in left]
    right_by = {format_labels(s.labels): s for s in right}
    out = []
    for s in left:
        other = right_by.get(format_labels(s.labels))
        if other is not None:
            out.append(Series(s.labels, apply(s.values, other.values, s.values)))
    return out


def iter_batches(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    yield from batches
