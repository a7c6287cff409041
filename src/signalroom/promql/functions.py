"""PromQL functions for floats and classic histograms."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from itertools import pairwise
from typing import TYPE_CHECKING, Any

import numpy as np

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.promql import ast
from signalroom.promql.aggregations import _avg_column, kahan_inc, quantile
from signalroom.promql.blocks import (
    BoolArray,
    FloatArray,
    IntArray,
    RangeBlock,
    ScalarBlock,
    StringValue,
    Value,
    VectorBlock,
    VectorBuilder,
)
from signalroom.promql.storage import MatchType, compile_anchored
from signalroom.promql.value import BadDataError, ExecutionError, format_go_g

if TYPE_CHECKING:
    from signalroom.promql.engine import Evaluator

Handler = Callable[["Evaluator", ast.Call, IntArray], Value]
FUNCTIONS: dict[str, Handler] = {}


def _register(*names: str) -> Callable[[Handler], Handler]:
    def deco(fn: Handler) -> Handler:
        for n in names:
            FUNCTIONS[n] = fn
        return fn

    return deco


def call_function(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    handler = FUNCTIONS.get(node.name)
    if handler is None:
        raise BadDataError(f'unknown function with name "{node.name}"')
    return handler(ev, node, steps)


def _range_arg(ev: Evaluator, node: ast.Expr, steps: IntArray) -> RangeBlock:
    value = ev.eval(node, steps)
    if not isinstance(value, RangeBlock):
        raise BadDataError("expected range vector argument")
    return value


def _scalar_arg(ev: Evaluator, node: ast.Expr, steps: IntArray) -> FloatArray:
    return ev.eval_scalar(node, steps)


def _string_arg(ev: Evaluator, node: ast.Expr, steps: IntArray) -> str:
    value = ev.eval(node, steps)
    if not isinstance(value, StringValue):
        raise BadDataError("expected string argument")
    return value.value


# --- instant-vector math ---------------------------------------------------------------


def _map_values(vec: VectorBlock, values: FloatArray, keep_name: bool = False) -> VectorBlock:
    drop = vec.drop_name if keep_name else np.ones(len(vec), dtype=bool)
    return VectorBlock(vec.labels, values, vec.mask, drop)


def _simple(fn: Callable[[FloatArray], FloatArray]) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        vec = ev.eval_vector(node.args[0], steps)
        with np.errstate(all="ignore"):
            return _map_values(vec, fn(vec.values))

    return handler


def _sgn(v: FloatArray) -> FloatArray:
    return np.where(np.isnan(v), np.nan, np.sign(v))


_SIMPLE: dict[str, Callable[[FloatArray], FloatArray]] = {
    "abs": np.abs,
    "ceil": np.ceil,
    "floor": np.floor,
    "exp": np.exp,
    "sqrt": np.sqrt,
    "ln": np.log,
    "log2": np.log2,
    "log10": np.log10,
    "sgn": _sgn,
    "acos": np.arccos,
    "acosh": np.arccosh,
    "asin": np.arcsin,
    "asinh": np.arcsinh,
    "atan": np.arctan,
    "atanh": np.arctanh,
    "cos": np.cos,
    "cosh": np.cosh,
    "sin": np.sin,
    "sinh": np.sinh,
    "tan": np.tan,
    "tanh": np.tanh,
    "deg": np.degrees,
    "rad": np.radians,
}
for _name, _fn in _SIMPLE.items():
    FUNCTIONS[_name] = _simple(_fn)


@_register("round")
def _round(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    to_nearest = _scalar_arg(ev, node.args[1], steps) if len(node.args) > 1 else np.ones(len(steps))
    with np.errstate(all="ignore"):
        inverse = 1.0 / to_nearest
        values = np.floor(vec.values * inverse + 0.5) / inverse
    return _map_values(vec, values)


@_register("clamp")
def _clamp(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    lo = _scalar_arg(ev, node.args[1], steps)
    hi = _scalar_arg(ev, node.args[2], steps)
    values = np.maximum(lo, np.minimum(hi, vec.values))
    mask = vec.mask & ~(hi < lo)
    return VectorBlock(vec.labels, values, mask, np.ones(len(vec), dtype=bool))


@_register("clamp_min")
def _clamp_min(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    lo = _scalar_arg(ev, node.args[1], steps)
    return _map_values(vec, np.maximum(lo, vec.values))


@_register("clamp_max")
def _clamp_max(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    hi = _scalar_arg(ev, node.args[1], steps)
    return _map_values(vec, np.minimum(hi, vec.values))


# --- time and scalars -------------------------------------------------------------------------


@_register("time")
def _time(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    return ScalarBlock(steps / 1000.0)


@_register("pi")
def _pi(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    return ScalarBlock(np.full(len(steps), math.pi))


@_register("vector")
def _vector(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    values = _scalar_arg(ev, node.args[0], steps)
    return VectorBlock(
        [Labels()],
        values.reshape(1, -1).copy(),
        np.ones((1, len(steps)), dtype=bool),
        np.zeros(1, dtype=bool),
    )


@_register("scalar")
def _scalar(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    out = np.full(len(steps), np.nan)
    if len(vec):
        count = vec.mask.sum(axis=0)
        one = count == 1
        picked = np.where(vec.mask, vec.values, 0.0).sum(axis=0)
        out = np.where(one, picked, np.nan)
    return ScalarBlock(out)


@_register("timestamp")
def _timestamp(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    arg = ast.unwrap_parens(node.args[0])
    if isinstance(arg, ast.VectorSelector):
        vec, times = ev.select_instant_with_times(arg, steps)
        return VectorBlock(vec.labels, times, vec.mask, np.ones(len(vec), dtype=bool))
    vec = ev.eval_vector(node.args[0], steps)
    values = np.broadcast_to(steps / 1000.0, vec.values.shape).copy()
    return VectorBlock(vec.labels, values, vec.mask, np.ones(len(vec), dtype=bool))


def _date_handler(part: str) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        if node.args:
            vec = ev.eval_vector(node.args[0], steps)
        else:
            vec = VectorBlock(
                [Labels()],
                (steps / 1000.0).reshape(1, -1),
                np.ones((1, len(steps)), dtype=bool),
                np.zeros(1, dtype=bool),
            )
        values = np.full(vec.values.shape, np.nan)
        finite = np.isfinite(vec.values) & vec.mask
        secs = np.where(finite, vec.values, 0).astype(np.int64)
        dt = secs.astype("datetime64[s]")
        days = dt.astype("datetime64[D]")
        months = dt.astype("datetime64[M]")
        years = dt.astype("datetime64[Y]")
        if part == "minute":
            res = (secs // 60) % 60
        elif part == "hour":
            res = (secs // 3600) % 24
        elif part == "day_of_month":
            res = (days - months).astype(np.int64) + 1
        elif part == "day_of_week":
            res = (days.astype(np.int64) + 4) % 7
        elif part == "day_of_year":
            res = (days - years).astype(np.int64) + 1
        elif part == "month":
            res = months.astype(np.int64) % 12 + 1
        elif part == "year":
            res = years.astype(np.int64) + 1970
        else:  # days_in_month
            next_month = (months + 1).astype("datetime64[D]")
            res = (next_month - months.astype("datetime64[D]")).astype(np.int64)
        values = np.where(finite, res.astype(np.float64), np.nan)
        return VectorBlock(vec.labels, values, vec.mask, np.ones(len(vec), dtype=bool))

    return handler


for _part in (
    "minute",
    "hour",
    "day_of_month",
    "day_of_week",
    "day_of_year",
    "month",
    "year",
    "days_in_month",
):
    FUNCTIONS[_part] = _date_handler(_part)


# --- absent ----------------------------------------------------------------------------------


def _absent_labels(arg: ast.Expr) -> Labels:
    arg = ast.unwrap_parens(arg)
    if isinstance(arg, ast.MatrixSelector):
        arg = arg.selector
    if not isinstance(arg, ast.VectorSelector):
        return Labels()
    pairs: dict[str, str] = {}
    has: set[str] = set()
    for m in arg.matchers:
        if m.name == METRIC_NAME:
            continue
        if m.type is MatchType.EQUAL and m.name not in has:
            pairs[m.name] = m.value
            has.add(m.name)
        else:
            pairs.pop(m.name, None)
    return Labels(pairs)


def _single(labels: Labels, values: FloatArray, mask: BoolArray) -> VectorBlock:
    return VectorBlock(
        [labels], values.reshape(1, -1), mask.reshape(1, -1), np.zeros(1, dtype=bool)
    )


@_register("absent")
def _absent(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    present = np.zeros(len(steps), dtype=bool)
    if len(vec):
        present = np.asarray(vec.mask.any(axis=0), dtype=bool)
    return _single(_absent_labels(node.args[0]), np.ones(len(steps)), ~present)


@_register("absent_over_time")
def _absent_over_time(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)
    present = np.zeros(len(steps), dtype=bool)
    for first, last in rb.chunks():
        lo, hi = rb.window_bounds(first, last)
        present |= (hi > lo).any(axis=0)
    return _single(_absent_labels(node.args[0]), np.ones(len(steps)), ~present)


# --- range-vector functions ------------------------------------------------------------------

WindowFn = Callable[[IntArray, FloatArray, IntArray, IntArray, BoolArray, IntArray], FloatArray]


def _over_time(
    ev: Evaluator,
    rb: RangeBlock,
    fn: WindowFn,
    min_samples: int = 1,
    keep_name: bool = False,
) -> VectorBlock:
    """Apply a window function to every (series, step) window, all series in one pass.

    `fn` sees one chunk of series as flat arrays and every window's [lo, hi) sample range
    plus its step index; series never mix because windows never cross series boundaries.
    """
    n_steps = rb.steps
    labels: list[Labels] = []
    values: list[FloatArray] = []
    masks: list[BoolArray] = []
    drops: list[BoolArray] = []
    for first, last in rb.chunks():
        lo, hi = rb.window_bounds(first, last)
        mask = (hi - lo) >= min_samples
        ev.hold_streamed(hi - lo, mask.sum(axis=1))
        rows = np.nonzero(mask.any(axis=1))[0]
        if not len(rows):
            continue
        if len(rows) < last - first:
            lo, hi, mask = lo[rows], hi[rows], mask[rows]
        # Keep each call's (windows x longest window) grid within the matrix budget, so
        # window functions can take their one-grid path.
        longest = int((hi - lo).max()) * n_steps
        per_call = max(1, _MATRIX_BUDGET // max(longest, 1))
        for r0 in range(0, len(rows), per_call):
            part = slice(r0, r0 + per_call)
            p_lo, p_hi, p_mask = lo[part], hi[part], mask[part]
            a, b = int(p_lo.min()), int(p_hi.max())
            step = np.broadcast_to(np.arange(n_steps, dtype=np.int64), p_lo.shape).ravel()
            with np.errstate(all="ignore"):
                out = fn(
                    rb.timestamps[a:b],
                    rb.values[a:b],
                    (p_lo - a).ravel(),
                    (p_hi - a).ravel(),
                    p_mask.ravel(),
                    step,
                )
            out = np.asarray(out, dtype=np.float64).reshape(p_lo.shape)
            values.append(np.where(p_mask, out, 0.0))
            masks.append(p_mask)
        if len(rows) == last - first:
            labels.extend(rb.labels[first:last])
        else:
            labels.extend([rb.labels[first + r] for r in rows.tolist()])
        drops.append(rb.drop_name[first + rows] if keep_name else np.ones(len(rows), dtype=bool))
    if not labels:
        return VectorBlock.empty(n_steps)
    return VectorBlock(labels, np.vstack(values), np.vstack(masks), np.concatenate(drops))


def _per_window(func: Callable[[IntArray, FloatArray], float]) -> WindowFn:
    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        out = np.full(len(lo), np.nan)
        for s in np.nonzero(mask)[0]:
            a, b = int(lo[s]), int(hi[s])
            out[s] = func(ts[a:b], vals[a:b])
        return out

    return fn


def _cumulative(values: FloatArray) -> FloatArray:
    return np.concatenate(([0.0], np.cumsum(values)))


def _exact_cumsum_ok(vals: FloatArray) -> bool:
    if len(vals) == 0:
        return True
    if not np.isfinite(vals).all():
        return False
    return bool((np.abs(vals).sum() < 2**52) and (vals == np.round(vals)).all())


def _kahan_sum(vals: FloatArray) -> float:
    total, comp = 0.0, 0.0
    for v in vals.tolist():
        total, comp = kahan_inc(v, total, comp)
    return total + comp


# Windows are reduced column by column (k-th sample of every window at once) when there are
# enough steps for that to beat a Python loop per window.
_COLUMN_MIN_STEPS = 8


def _use_columns(mask: BoolArray) -> bool:
    return int(mask.sum()) >= _COLUMN_MIN_STEPS


def _columns(
    vals: FloatArray, lo: IntArray, hi: IntArray, mask: BoolArray
) -> list[tuple[IntArray, BoolArray]]:
    counts = np.where(mask, hi - lo, 0)
    longest = int(counts.max()) if len(counts) else 0
    last = max(len(vals) - 1, 0)
    return [(np.minimum(lo + k, last), k < counts) for k in range(longest)]


_MATRIX_BUDGET = 4_000_000


def _window_matrix(
    vals: FloatArray, lo: IntArray, hi: IntArray, mask: BoolArray
) -> tuple[IntArray, BoolArray] | None:
    """(steps x longest window) sample indices and validity, or None when too large."""
    counts = np.where(mask, hi - lo, 0)
    longest = int(counts.max()) if len(counts) else 0
    if longest * len(lo) > _MATRIX_BUDGET:
        return None
    offsets = np.arange(longest, dtype=np.int64)
    idx = np.minimum(lo[:, None] + offsets[None, :], max(len(vals) - 1, 0))
    valid = offsets[None, :] < counts[:, None]
    return idx, valid


def _kahan_vec(
    inc: FloatArray, total: FloatArray, comp: FloatArray, valid: BoolArray
) -> tuple[FloatArray, FloatArray]:
    t = total + inc
    delta = np.where(np.abs(total) >= np.abs(inc), (total - t) + inc, (inc - t) + total)
    new_comp = np.where(np.isinf(t), 0.0, comp + delta)
    return np.where(valid, t, total), np.where(valid, new_comp, comp)


def _kahan_windows(
    vals: FloatArray, lo: IntArray, hi: IntArray, mask: BoolArray
) -> tuple[FloatArray, FloatArray]:
    total = np.zeros(len(lo))
    comp = np.zeros(len(lo))
    for idx, valid in _columns(vals, lo, hi, mask):
        total, comp = _kahan_vec(vals[idx], total, comp, valid)
    return total, comp


def _sum_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    if _exact_cumsum_ok(vals):
        c = _cumulative(vals)
        return np.asarray(c[hi] - c[lo], dtype=np.float64)
    if _use_columns(mask):
        grid = _window_matrix(vals, lo, hi, mask)
        if grid is not None:
            idx, valid = grid
            return np.asarray(np.where(valid, vals[idx], 0.0).sum(axis=1), dtype=np.float64)
        total, comp = _kahan_windows(vals, lo, hi, mask)
        return np.asarray(np.where(np.isinf(total), total, total + comp), dtype=np.float64)
    return _per_window(lambda t, v: _kahan_sum(v))(ts, vals, lo, hi, mask, step)


def _avg_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    n = np.maximum(hi - lo, 1)
    if _exact_cumsum_ok(vals):
        c = _cumulative(vals)
        return np.asarray((c[hi] - c[lo]) / n, dtype=np.float64)
    if _use_columns(mask):
        grid = _window_matrix(vals, lo, hi, mask)
        if grid is not None:
            idx, valid = grid
            total = np.where(valid, vals[idx], 0.0).sum(axis=1)
            comp = np.zeros(len(lo))
        else:
            total, comp = _kahan_windows(vals, lo, hi, mask)
        out = total / n + comp / n
        # Overflowing sums switch to Prometheus's incremental mean.
        redo = mask & ~np.isfinite(total)
        for s in np.nonzero(redo)[0]:
            out[s] = _avg_column(vals[int(lo[s]) : int(hi[s])].tolist())
        return np.asarray(out, dtype=np.float64)
    return _per_window(lambda t, v: _avg_column(v.tolist()))(ts, vals, lo, hi, mask, step)


def _extreme_window(pick: Callable[[FloatArray, FloatArray], FloatArray]) -> WindowFn:
    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        grid = _window_matrix(vals, lo, hi, mask)
        if grid is not None:
            idx, valid = grid
            reduced = pick.reduce(np.where(valid, vals[idx], np.nan), axis=1)  # type: ignore[attr-defined]
            return np.asarray(reduced, dtype=np.float64)
        out = np.full(len(lo), np.nan)
        for idx, valid in _columns(vals, lo, hi, mask):
            out = np.where(valid, pick(out, vals[idx]), out)
        return out

    return fn


def _stdvar_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    if not _use_columns(mask):
        return _per_window(_stdvar_value)(ts, vals, lo, hi, mask, step)
    grid = _window_matrix(vals, lo, hi, mask)
    if grid is not None:
        idx, valid = grid
        n = np.maximum(valid.sum(axis=1), 1)
        window = np.where(valid, vals[idx], 0.0)
        mean = window.sum(axis=1) / n
        dev = np.where(valid, window - mean[:, None], 0.0)
        return np.asarray((dev * dev).sum(axis=1) / n, dtype=np.float64)
    size = len(lo)
    count = np.zeros(size)
    mean, c_mean = np.zeros(size), np.zeros(size)
    aux, c_aux = np.zeros(size), np.zeros(size)
    for idx, valid in _columns(vals, lo, hi, mask):
        v = vals[idx]
        count = count + valid
        delta = v - (mean + c_mean)
        mean, c_mean = _kahan_vec(delta / np.maximum(count, 1), mean, c_mean, valid)
        aux, c_aux = _kahan_vec(delta * (v - (mean + c_mean)), aux, c_aux, valid)
    return np.asarray((aux + c_aux) / np.maximum(count, 1), dtype=np.float64)


def _stddev_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    return np.asarray(np.sqrt(_stdvar_window(ts, vals, lo, hi, mask, step)), dtype=np.float64)


def _count_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    return (hi - lo).astype(np.float64)


def _last_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    return vals[np.clip(hi - 1, 0, None)]


def _first_window(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    step: IntArray,
) -> FloatArray:
    return vals[np.clip(lo, 0, len(vals) - 1)]


def _stdvar_value(t: IntArray, v: FloatArray) -> float:
    count = 0.0
    mean, c_mean = 0.0, 0.0
    aux, c_aux = 0.0, 0.0
    for f in v.tolist():
        count += 1
        delta = f - (mean + c_mean)
        mean, c_mean = kahan_inc(delta / count, mean, c_mean)
        aux, c_aux = kahan_inc(delta * (f - (mean + c_mean)), aux, c_aux)
    return (aux + c_aux) / count


def _mad_value(t: IntArray, v: FloatArray) -> float:
    values = v.tolist()
    median = quantile(0.5, values)
    return quantile(0.5, [abs(x - median) for x in values])


def _ts_of(kind: str) -> Callable[[IntArray, FloatArray], float]:
    def fn(t: IntArray, v: FloatArray) -> float:
        if kind == "last":
            return float(t[-1]) / 1000.0
        if kind == "first":
            return float(t[0]) / 1000.0
        best = 0
        for j in range(1, len(v)):
            x, cur = v[j], v[best]
            if math.isnan(cur) or (
                ((kind == "max" and x >= cur) or (kind == "min" and x <= cur)) and not math.isnan(x)
            ):
                best = j
        return float(t[best]) / 1000.0

    return fn


_OVER_TIME: dict[str, tuple[WindowFn, bool]] = {
    "sum_over_time": (_sum_window, False),
    "avg_over_time": (_avg_window, False),
    "count_over_time": (_count_window, False),
    "last_over_time": (_last_window, True),
    "first_over_time": (_first_window, True),
    "max_over_time": (_extreme_window(np.fmax), False),
    "min_over_time": (_extreme_window(np.fmin), False),
    "stdvar_over_time": (_stdvar_window, False),
    "stddev_over_time": (_stddev_window, False),
    "mad_over_time": (_per_window(_mad_value), False),
    "present_over_time": (lambda ts, vals, lo, hi, mask, step: np.ones(len(lo)), False),
    "ts_of_last_over_time": (_per_window(_ts_of("last")), False),
    "ts_of_first_over_time": (_per_window(_ts_of("first")), False),
    "ts_of_max_over_time": (_per_window(_ts_of("max")), False),
    "ts_of_min_over_time": (_per_window(_ts_of("min")), False),
}


def _over_time_handler(name: str) -> Handler:
    fn, keep = _OVER_TIME[name]

    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        rb = _range_arg(ev, node.args[0], steps)
        return _over_time(ev, rb, fn, keep_name=keep)

    return handler


for _name in _OVER_TIME:
    FUNCTIONS[_name] = _over_time_handler(_name)


@_register("quantile_over_time")
def _quantile_over_time(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    qs = _scalar_arg(ev, node.args[0], steps)
    rb = _range_arg(ev, node.args[1], steps)
    for q in set(qs.tolist()):
        if math.isnan(q) or q < 0 or q > 1:
            ev.warn(f"quantile value should be between 0 and 1, got {format_go_g(q)}")

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        out = np.full(len(lo), np.nan)
        for s in np.nonzero(mask)[0]:
            out[s] = quantile(float(qs[step[s]]), vals[int(lo[s]) : int(hi[s])].tolist())
        return out

    return _over_time(ev, rb, fn)


@_register("changes")
def _changes(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        prev, cur = vals[:-1], vals[1:]
        changed = ~((cur == prev) | (np.isnan(cur) & np.isnan(prev)))
        c = np.concatenate(([0], np.cumsum(changed)))
        last = np.clip(hi - 1, 0, None)
        return (c[last] - c[np.clip(lo, 0, len(c) - 1)]).astype(np.float64)

    return _over_time(ev, rb, fn)


@_register("resets")
def _resets(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        drops = vals[1:] < vals[:-1]
        c = np.concatenate(([0], np.cumsum(drops)))
        last = np.clip(hi - 1, 0, None)
        return (c[last] - c[np.clip(lo, 0, len(c) - 1)]).astype(np.float64)

    return _over_time(ev, rb, fn)


def _reset_corrections(
    corr: FloatArray, first_i: IntArray, last_i: IntArray, mask: BoolArray
) -> FloatArray:
    """Kahan sum of `corr[first:last]` per window (the values before each counter reset)."""
    if _exact_cumsum_ok(corr):
        c = _cumulative(corr)
        return np.asarray(c[last_i] - c[first_i], dtype=np.float64)
    # Resets are rare: a window with none adds 0 and one with a single reset adds its value
    # exactly; only windows with several resets need the compensated loop.
    where = np.nonzero(corr)[0]
    k = np.searchsorted(where, first_i, side="left")
    count = np.searchsorted(where, last_i, side="left") - k
    extra = np.zeros(len(first_i))
    one = mask & (count == 1)
    extra[one] = corr[where[k[one]]]
    for s in np.nonzero(mask & (count > 1))[0]:
        extra[s] = _kahan_sum(corr[int(first_i[s]) : int(last_i[s])])
    return extra


def _metric_names(arg: ast.Expr, labels: list[Labels]) -> Iterable[str]:
    """The distinct metric names of ``labels``, the series a range function got from ``arg``:
    the selector's own name when it has one (no look at every series)."""
    inner = ast.unwrap_parens(arg)
    if isinstance(inner, ast.MatrixSelector) and inner.selector.name:
        return (inner.selector.name,)
    return dict.fromkeys(lbl.name for lbl in labels)


def _extrapolated(is_counter: bool, is_rate: bool) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        rb = _range_arg(ev, node.args[0], steps)
        range_s = rb.range_ms / 1000.0
        start = rb.win_start
        end = rb.win_end

        def fn(
            ts: IntArray,
            vals: FloatArray,
            lo: IntArray,
            hi: IntArray,
            mask: BoolArray,
            step: IntArray,
        ) -> FloatArray:
            last_i = np.clip(hi - 1, 0, len(vals) - 1)
            first_i = np.clip(lo, 0, len(vals) - 1)
            first_v, last_v = vals[first_i], vals[last_i]
            result = last_v - first_v
            if is_counter:
                corr = np.where(vals[1:] < vals[:-1], vals[:-1], 0.0)
                result = result + _reset_corrections(corr, first_i, last_i, mask)
            first_t = ts[first_i].astype(np.float64)
            last_t = ts[last_i].astype(np.float64)
            dur_start = (first_t - start[step]) / 1000.0
            dur_end = (end[step] - last_t) / 1000.0
            sampled = (last_t - first_t) / 1000.0
            avg = sampled / np.maximum(hi - lo - 1, 1)
            threshold = avg * 1.1
            dur_start = np.where(dur_start >= threshold, avg / 2, dur_start)
            if is_counter:
                to_zero = np.where(
                    (result > 0) & (first_v >= 0), sampled * (first_v / result), dur_start
                )
                dur_start = np.minimum(dur_start, to_zero)
            dur_end = np.where(dur_end >= threshold, avg / 2, dur_end)
            factor = (sampled + dur_start + dur_end) / sampled
            if is_rate:
                factor = factor / range_s
            return result * factor

        out = _over_time(ev, rb, fn, min_samples=2)
        if node.name in ("rate", "increase") and out.labels:
            for name in _metric_names(node.args[0], out.labels):
                if name and not name.endswith(("_total", "_sum", "_count", "_bucket")):
                    ev.info(
                        "metric might not be a counter, name does not end in "
                        f'_total/_sum/_count/_bucket: "{name}"'
                    )
        return out

    return handler


FUNCTIONS["rate"] = _extrapolated(True, True)
FUNCTIONS["increase"] = _extrapolated(True, False)
FUNCTIONS["delta"] = _extrapolated(False, False)


def _instant_delta(is_rate: bool) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        rb = _range_arg(ev, node.args[0], steps)

        def fn(
            ts: IntArray,
            vals: FloatArray,
            lo: IntArray,
            hi: IntArray,
            mask: BoolArray,
            step: IntArray,
        ) -> FloatArray:
            last_i = np.clip(hi - 1, 0, len(vals) - 1)
            prev_i = np.clip(hi - 2, 0, len(vals) - 1)
            last, prev = vals[last_i], vals[prev_i]
            result = last - prev
            if is_rate:
                result = np.where(last < prev, last, result)
                result = result / ((ts[last_i] - ts[prev_i]) / 1000.0)
            return result

        return _over_time(ev, rb, fn, min_samples=2)

    return handler


FUNCTIONS["irate"] = _instant_delta(True)
FUNCTIONS["idelta"] = _instant_delta(False)


def linear_regression(t: IntArray, v: FloatArray, intercept_time: int) -> tuple[float, float]:
    """Least-squares slope and intercept with Kahan sums, as Prometheus."""
    values = v.tolist()
    init_y = values[0]
    const_y = all(x == init_y for x in values[1:])
    if const_y:
        if math.isinf(init_y):
            return math.nan, math.nan
        return 0.0, init_y
    n = 0.0
    sx = cx = sy = cy = sxy = cxy = sx2 = cx2 = 0.0
    for ti, y in zip(t.tolist(), values, strict=True):
        n += 1.0
        x = (ti - intercept_time) / 1e3
        sx, cx = kahan_inc(x, sx, cx)
        sy, cy = kahan_inc(y, sy, cy)
        sxy, cxy = kahan_inc(x * y, sxy, cxy)
        sx2, cx2 = kahan_inc(x * x, sx2, cx2)
    sx += cx
    sy += cy
    sxy += cxy
    sx2 += cx2
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    try:
        slope = cov / var
    except ZeroDivisionError:
        slope = math.nan if cov == 0 else math.copysign(math.inf, cov)
    return slope, sy / n - slope * sx / n


def _regression_windows(
    ts: IntArray,
    vals: FloatArray,
    lo: IntArray,
    hi: IntArray,
    mask: BoolArray,
    intercept_times: IntArray | None,
) -> tuple[FloatArray, FloatArray]:
    """`linear_regression` for every window at once (intercept at the first sample if None)."""
    size = len(lo)
    if not _use_columns(mask):
        slopes = np.full(size, np.nan)
        intercepts = np.full(size, np.nan)
        for s in np.nonzero(mask)[0]:
            a, b = int(lo[s]), int(hi[s])
            at = int(ts[a]) if intercept_times is None else int(intercept_times[s])
            slopes[s], intercepts[s] = linear_regression(ts[a:b], vals[a:b], at)
        return slopes, intercepts
    first = np.minimum(lo, max(len(vals) - 1, 0))
    origin = ts[first] if intercept_times is None else intercept_times
    init_y = vals[first]
    grid = _window_matrix(vals, lo, hi, mask)
    if grid is not None:
        # Two-pass centred least squares over the whole (steps x window) grid.
        idx, valid = grid
        count = np.maximum(valid.sum(axis=1), 1)
        ys = np.where(valid, vals[idx], 0.0)
        xs = np.where(valid, (ts[idx] - origin[:, None]) / 1e3, 0.0)
        mean_x = xs.sum(axis=1) / count
        mean_y = ys.sum(axis=1) / count
        dx = np.where(valid, xs - mean_x[:, None], 0.0)
        dy = np.where(valid, ys - mean_y[:, None], 0.0)
        slope = (dx * dy).sum(axis=1) / (dx * dx).sum(axis=1)
        intercept = mean_y - slope * mean_x
        constant = (np.where(valid, vals[idx], init_y[:, None]) == init_y[:, None]).all(axis=1)
        const_inf = constant & np.isinf(init_y)
        slope = np.where(constant, np.where(const_inf, np.nan, 0.0), slope)
        intercept = np.where(constant, np.where(const_inf, np.nan, init_y), intercept)
        return np.asarray(slope, dtype=np.float64), np.asarray(intercept, dtype=np.float64)
    const_y = np.ones(size, dtype=bool)
    n = np.zeros(size)
    sums = {k: (np.zeros(size), np.zeros(size)) for k in ("x", "y", "xy", "x2")}
    for idx, valid in _columns(vals, lo, hi, mask):
        y = vals[idx]
        x = (ts[idx] - origin) / 1e3
        const_y &= ~valid | (y == init_y)
        n = n + valid
        for key, inc in (("x", x), ("y", y), ("xy", x * y), ("x2", x * x)):
            total, comp = sums[key]
            sums[key] = _kahan_vec(inc, total, comp, valid)
    sx, sy, sxy, sx2 = (sums[k][0] + sums[k][1] for k in ("x", "y", "xy", "x2"))
    n = np.maximum(n, 1)
    cov = sxy - sx * sy / n
    var = sx2 - sx * sx / n
    slope = cov / var
    intercept = sy / n - slope * sx / n
    const_inf = const_y & np.isinf(init_y)
    slope = np.where(const_y, np.where(const_inf, np.nan, 0.0), slope)
    intercept = np.where(const_y, np.where(const_inf, np.nan, init_y), intercept)
    return np.asarray(slope, dtype=np.float64), np.asarray(intercept, dtype=np.float64)


@_register("deriv")
def _deriv(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        return _regression_windows(ts, vals, lo, hi, mask, None)[0]

    return _over_time(ev, rb, fn, min_samples=2)


@_register("predict_linear")
def _predict_linear(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)
    duration = _scalar_arg(ev, node.args[1], steps)

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        slope, intercept = _regression_windows(ts, vals, lo, hi, mask, steps[step])
        return np.asarray(slope * duration[step] + intercept, dtype=np.float64)

    return _over_time(ev, rb, fn, min_samples=2)


@_register("double_exponential_smoothing", "holt_winters")
def _double_exponential_smoothing(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    rb = _range_arg(ev, node.args[0], steps)
    sfs = _scalar_arg(ev, node.args[1], steps)
    tfs = _scalar_arg(ev, node.args[2], steps)

    def fn(
        ts: IntArray,
        vals: FloatArray,
        lo: IntArray,
        hi: IntArray,
        mask: BoolArray,
        step: IntArray,
    ) -> FloatArray:
        out = np.full(len(lo), np.nan)
        for s in np.nonzero(mask)[0]:
            sf, tf = float(sfs[step[s]]), float(tfs[step[s]])
            if not 0 < sf < 1:
                raise ExecutionError(f"invalid smoothing factor. Expected: 0 < sf < 1, got: {sf:f}")
            if not 0 < tf < 1:
                raise ExecutionError(f"invalid trend factor. Expected: 0 < tf < 1, got: {tf:f}")
            window = vals[int(lo[s]) : int(hi[s])].tolist()
            s0, s1 = 0.0, window[0]
            b = window[1] - window[0]
            for i in range(1, len(window)):
                x = sf * window[i]
                if i - 1 != 0:
                    b = tf * (s1 - s0) + (1 - tf) * b
                y = (1 - sf) * (s1 + b)
                s0, s1 = s1, x + y
            out[s] = s1
        return out

    return _over_time(ev, rb, fn, min_samples=2)


# --- labels ---------------------------------------------------------------------------------------


def _valid_label_name(name: str) -> bool:
    if not name:
        return False
    return not any(0xD800 <= ord(ch) <= 0xDFFF or ch == "\ufffd" for ch in name)


def _invalid_literal(node: ast.Expr) -> bool:
    node = ast.unwrap_parens(node)
    return isinstance(node, ast.StringLiteral) and node.invalid_utf8 is not None


def _go_expand(template: str, match: Any) -> str:
    """Go's Regexp.ExpandString: `$1`, `${1}`, `$name`, `${name}`, `$$`."""
    out: list[str] = []
    i = 0
    n = len(template)
    groups = match.groups()
    named = match.re.groupindex
    while i < n:
        ch = template[i]
        if ch != "$" or i + 1 >= n:
            out.append(ch)
            i += 1
            continue
        nxt = template[i + 1]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = template.find("}", i + 2)
            name = template[i + 2 : close] if close != -1 else ""
            if close == -1 or not name or not all(c.isalnum() or c == "_" for c in name):
                out.append(ch)
                i += 1
                continue
            i = close + 1
        else:
            j = i + 1
            while j < n and (template[j].isalnum() or template[j] == "_"):
                j += 1
            name = template[i + 1 : j]
            if not name:
                out.append(ch)
                i += 1
                continue
            i = j
        if name.isdigit():
            idx = int(name)
            if 0 <= idx <= len(groups):
                value = match.group(idx)
                out.append(value or "")
        elif name in named:
            out.append(match.group(name) or "")
    return "".join(out)


@_register("label_replace")
def _label_replace(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    dst = _string_arg(ev, node.args[1], steps)
    repl = _string_arg(ev, node.args[2], steps)
    src = _string_arg(ev, node.args[3], steps)
    pattern = _string_arg(ev, node.args[4], steps)
    try:
        regex = compile_anchored(pattern)
    except Exception as exc:
        raise BadDataError(f"invalid regular expression in label_replace(): {pattern}") from exc
    if not _valid_label_name(dst) or _invalid_literal(node.args[1]):
        raise BadDataError(f"invalid destination label name in label_replace(): {dst}")
    builder = VectorBuilder(len(steps))
    for i, lbl in enumerate(vec.labels):
        match = regex.search(lbl.get(src))
        out = lbl
        drop = bool(vec.drop_name[i])
        if match is not None:
            value = _go_expand(repl, match)
            out = lbl.with_(dst, value)
            if dst == METRIC_NAME:
                drop = False
        builder.add(out, vec.values[i], vec.mask[i], drop)
    return builder.build()


@_register("label_join")
def _label_join(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    vec = ev.eval_vector(node.args[0], steps)
    dst = _string_arg(ev, node.args[1], steps)
    sep = _string_arg(ev, node.args[2], steps)
    srcs = [_string_arg(ev, a, steps) for a in node.args[3:]]
    if not _valid_label_name(dst) or _invalid_literal(node.args[1]):
        raise BadDataError(f"invalid destination label name in label_join(): {dst}")
    builder = VectorBuilder(len(steps))
    for i, lbl in enumerate(vec.labels):
        value = sep.join(lbl.get(s) for s in srcs)
        drop = bool(vec.drop_name[i])
        if dst == METRIC_NAME:
            drop = False
        builder.add(lbl.with_(dst, value), vec.values[i], vec.mask[i], drop)
    return builder.build()


# --- sorting --------------------------------------------------------------------------------------


def _sort_handler(descending: bool) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        vec = ev.eval_vector(node.args[0], steps)
        if len(steps) != 1 or not len(vec):
            return vec
        vals = vec.values[:, 0]

        def key(i: int) -> tuple[bool, float]:
            v = float(vals[i])
            if math.isnan(v):
                return (True, 0.0)
            return (False, -v if descending else v)

        order = sorted(range(len(vec)), key=key)
        block = vec.take(order)
        block.ordered = True
        return block

    return handler


FUNCTIONS["sort"] = _sort_handler(False)
FUNCTIONS["sort_desc"] = _sort_handler(True)


def _natural_key(value: str) -> list[tuple[int, Any]]:
    parts: list[tuple[int, Any]] = []
    num = ""
    text = ""
    for ch in value:
        if ch.isdigit():
            if text:
                parts.append((1, text))
                text = ""
            num += ch
        else:
            if num:
                parts.append((0, int(num)))
                num = ""
            text += ch
    if num:
        parts.append((0, int(num)))
    if text:
        parts.append((1, text))
    return parts


def _sort_by_label_handler(descending: bool) -> Handler:
    def handler(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
        vec = ev.eval_vector(node.args[0], steps)
        names = [_string_arg(ev, a, steps) for a in node.args[1:]]
        if len(steps) != 1 or not len(vec):
            return vec
        import functools

        def cmp(i: int, j: int) -> int:
            a, b = vec.labels[i], vec.labels[j]
            for name in names:
                ka, kb = _natural_key(a.get(name)), _natural_key(b.get(name))
                if ka != kb:
                    res = -1 if ka < kb else 1
                    return -res if descending else res
            if a == b:
                return 0
            res = -1 if a < b else 1
            return -res if descending else res

        order = sorted(range(len(vec)), key=functools.cmp_to_key(cmp))
        block = vec.take(order)
        block.ordered = True
        return block

    return handler


FUNCTIONS["sort_by_label"] = _sort_by_label_handler(False)
FUNCTIONS["sort_by_label_desc"] = _sort_by_label_handler(True)


# --- classic histograms ---------------------------------------------------------------


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> tuple[float, bool]:
    """histogram_quantile over classic (upper bound, cumulative count) buckets.

    Returns the value and whether counts had to be forced monotonic.
    """
    if math.isnan(q):
        return math.nan, False
    if q < 0:
        return -math.inf, False
    if q > 1:
        return math.inf, False
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or not math.isinf(ordered[-1][0]) or ordered[-1][0] < 0:
        return math.nan, False
    merged: list[list[float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    forced = False
    prev = merged[0][1]
    for b in merged[1:]:
        cur = b[1]
        if cur == prev:
            continue
        if _almost_equal(prev, cur, 1e-12):
            b[1] = prev
            continue
        if cur < prev:
            b[1] = prev
            forced = True
            continue
        prev = cur
    if len(merged) < 2:
        return math.nan, forced
    observations = merged[-1][1]
    if observations == 0:
        return math.nan, forced
    rank = q * float(observations)  # a Python float: 0 x inf is NaN without a NumPy warning
    idx = len(merged) - 1
    for i in range(len(merged) - 1):
        if merged[i][1] >= rank:
            idx = i
            break
    if idx == len(merged) - 1:
        return merged[-2][0], forced
    if idx == 0 and merged[0][0] <= 0:
        return merged[0][0], forced
    start = 0.0
    end = merged[idx][0]
    count = merged[idx][1]
    if idx > 0:
        start = merged[idx - 1][0]
        count -= merged[idx - 1][1]
        rank -= merged[idx - 1][1]
    return start + (end - start) * (rank / count), forced


def bucket_quantiles(
    qs: FloatArray, bounds: FloatArray, counts: FloatArray
) -> tuple[FloatArray, bool]:
    """`bucket_quantile` at many steps: ``bounds`` sorted, distinct, ending with +Inf, and
    ``counts`` (buckets x steps) all present. Returns the values and whether any step's
    counts had to be forced monotonic."""
    value, forced = _bucket_quantile_columns(qs, bounds, counts)
    return value, bool(forced.any())


def _bucket_quantile_columns(
    qs: FloatArray, bounds: FloatArray, counts: FloatArray
) -> tuple[FloatArray, BoolArray]:
    """`bucket_quantiles` with the forced-monotonic flag of every column (a column is a step
    of one histogram; many histograms with the same bounds go side by side)."""
    counts = counts.copy()
    valid_q = (qs >= 0) & (qs <= 1)
    forced = np.zeros(counts.shape[1], dtype=bool)
    with np.errstate(all="ignore"):
        prev = counts[0]
        for b in range(1, len(bounds)):
            cur = counts[b]
            same = cur == prev
            almost = ~same & _almost_equal_array(prev, cur, 1e-12)
            lower = ~same & ~almost & (cur < prev)
            cur = np.where(almost | lower, prev, cur)
            counts[b] = cur
            forced |= lower
            prev = cur
        observations = counts[-1]
        rank = qs * observations
        reached = counts[:-1] >= rank[None, :]
        idx = np.where(reached.any(axis=0), reached.argmax(axis=0), len(bounds) - 1)
        columns = np.arange(counts.shape[1])
        inner = idx > 0
        below = np.maximum(idx - 1, 0)
        below_count = np.where(inner, counts[below, columns], 0.0)
        start = np.where(inner, bounds[below], 0.0)
        end = bounds[idx]
        count = counts[idx, columns] - below_count
        value = start + (end - start) * ((rank - below_count) / count)
        value = np.where((idx == 0) & (bounds[0] <= 0), bounds[0], value)
        value = np.where(idx == len(bounds) - 1, bounds[-2], value)
        value = np.where(observations == 0, np.nan, value)
    value = np.where(valid_q, value, np.where(qs < 0, -np.inf, np.where(qs > 1, np.inf, np.nan)))
    return value, forced & valid_q


def _almost_equal_array(a: FloatArray, b: FloatArray, epsilon: float) -> BoolArray:
    """`_almost_equal` elementwise."""
    min_normal = 2.2250738585072014e-308
    abs_sum = np.abs(a) + np.abs(b)
    diff = np.abs(a - b)
    tiny = (a == 0) | (b == 0) | (abs_sum < min_normal)
    relative = diff / np.minimum(abs_sum, 1.7976931348623157e308) < epsilon
    close = np.where(tiny, diff < epsilon * min_normal, relative)
    return np.asarray((a == b) | close, dtype=bool)


def _almost_equal(a: float, b: float, epsilon: float) -> bool:
    min_normal = 2.2250738585072014e-308
    if a == b:
        return True
    abs_sum = abs(a) + abs(b)
    diff = abs(a - b)
    if a == 0 or b == 0 or abs_sum < min_normal:
        return diff < epsilon * min_normal
    return diff / min(abs_sum, 1.7976931348623157e308) < epsilon


def _parse_le(text: str) -> float | None:
    try:
        cleaned = text.strip()
        if not cleaned or "_" in cleaned:
            return None
        return float(cleaned)
    except ValueError:
        if not text.strip().lstrip("+-").lower().startswith("0x"):
            return None
        try:
            return float.fromhex(text.strip())
        except ValueError:
            return None


_NOT_MONOTONIC = (
    "input to histogram_quantile needed to be fixed for monotonicity (see "
    "https://prometheus.io/docs/prometheus/latest/querying/functions/"
    '#histogram_quantile) for metric name "{}"'
)


@_register("histogram_quantile")
def _histogram_quantile(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    qs = _scalar_arg(ev, node.args[0], steps)
    vec = ev.eval_vector(node.args[1], steps)
    for q in set(qs.tolist()):
        if math.isnan(q) or q < 0 or q > 1:
            ev.warn(f"quantile value should be between 0 and 1, got {format_go_g(q)}")
    # Well-formed histograms (distinct bounds up to +Inf, every bucket at every step they
    # have) with the same bounds and steps are computed together, one bucket after another
    # over all of them: a histogram per series (`hq(0.5, rate(x_bucket[5m]))`) costs a few
    # NumPy calls in all instead of a Python loop per histogram and step.
    batches: dict[tuple[tuple[float, ...], bytes], list[tuple[int, list[int]]]] = {}
    histograms = _classic_buckets(ev, vec)
    if not histograms:
        return VectorBlock.empty(len(steps))
    keys = list(histograms)
    # per histogram at once: its steps with any bucket, and whether all buckets are there
    all_rows = np.array([r for members in histograms.values() for r, _ in members])
    sizes = np.array([len(members) for members in histograms.values()])
    starts = np.cumsum(sizes) - sizes
    masks = vec.mask[all_rows]
    presents = np.logical_or.reduceat(masks, starts, axis=0)
    complete = np.asarray(
        np.logical_and.reduceat(masks | ~np.repeat(presents, sizes, axis=0), starts, axis=0),
        dtype=bool,
    ).all(axis=1)
    out = np.full(presents.shape, np.nan)
    wholes: list[bool] = np.asarray(complete, dtype=bool).tolist()
    for h, (members, whole) in enumerate(zip(histograms.values(), wholes, strict=True)):
        ordered = sorted(members, key=lambda member: member[1])
        bound_list = tuple(b for _, b in ordered)
        if (
            whole
            and len(bound_list) >= 2
            and bound_list[-1] == math.inf
            and all(a < b for a, b in pairwise(bound_list))  # distinct, and no NaN
        ):
            batch_key = (bound_list, presents[h].tobytes())
            batches.setdefault(batch_key, []).append((h, [r for r, _ in ordered]))
            continue
        for s in np.nonzero(presents[h])[0]:
            buckets = [(b, float(vec.values[r, s])) for r, b in members if vec.mask[r, s]]
            value, forced = bucket_quantile(float(qs[s]), buckets)
            if forced:
                ev.info(_NOT_MONOTONIC.format(keys[h].name))
            out[h, s] = value
    for (bound_key, _), batch in batches.items():
        hs = np.array([h for h, _ in batch], dtype=np.int64)
        cols = np.flatnonzero(presents[hs[0]])
        stacked = np.array([rows for _, rows in batch], dtype=np.int64)  # histograms x buckets
        # buckets x (histogram, step): each histogram's present steps side by side
        columns = vec.values[stacked][:, :, cols].transpose(1, 0, 2).reshape(len(bound_key), -1)
        quantiles, forced_columns = _bucket_quantile_columns(
            np.tile(qs[cols], len(batch)), np.array(bound_key), columns
        )
        out[np.ix_(hs, cols)] = quantiles.reshape(len(batch), len(cols))
        forced_rows = forced_columns.reshape(len(batch), len(cols)).any(axis=1)
        for h in hs[forced_rows].tolist():
            ev.info(_NOT_MONOTONIC.format(keys[h].name))
    # one output series per histogram (their label sets differ), as VectorBuilder gives them
    alive = np.flatnonzero(presents.any(axis=1))
    mask = presents[alive]
    return VectorBlock(
        [keys[h] for h in alive.tolist()],
        np.where(mask, out[alive], 0.0),
        mask,
        np.ones(len(alive), dtype=bool),
    )


def _native_only(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    # Floats carry no native histograms: these functions return nothing for them.
    for arg in node.args:
        ev.eval(arg, steps)
    return VectorBlock.empty(len(steps))


def bucket_fraction(lower: float, upper: float, buckets: list[tuple[float, float]]) -> float:
    """histogram_fraction over classic buckets: share of observations in (lower, upper]."""
    ordered = sorted(buckets, key=lambda b: b[0])
    if not ordered or not (math.isinf(ordered[-1][0]) and ordered[-1][0] > 0):
        return math.nan
    merged: list[list[float]] = []
    for bound, count in ordered:
        if merged and merged[-1][0] == bound:
            merged[-1][1] += count
        else:
            merged.append([bound, count])
    count = merged[-1][1]
    if count == 0 or math.isnan(lower) or math.isnan(upper):
        return math.nan
    if lower >= upper:
        return 0.0
    rank = lower_rank = upper_rank = 0.0
    lower_set = upper_set = False
    for i, (upper_bound, bucket_count) in enumerate(merged):
        lower_bound = merged[i - 1][0] if i > 0 else 0.0 if upper_bound > 0 else -math.inf

        def interpolate(
            v: float,
            lb: float = lower_bound,
            ub: float = upper_bound,
            bc: float = bucket_count,
            r: float = rank,
        ) -> float:
            if math.isinf(lb) or math.isinf(ub):
                return r if math.isinf(lb) else bc
            return r + (bc - r) * (v - lb) / (ub - lb)

        if not lower_set and lower_bound >= lower:
            lower_rank, lower_set = rank, True
        if not upper_set and lower_bound >= upper:
            upper_rank, upper_set = rank, True
        if lower_set and upper_set:
            break
        if not lower_set and lower_bound < lower < upper_bound:
            lower_rank, lower_set = interpolate(lower), True
        if not upper_set and lower_bound < upper < upper_bound:
            upper_rank, upper_set = interpolate(upper), True
        if lower_set and upper_set:
            break
        rank = bucket_count
    if not lower_set or lower_rank > count:
        lower_rank = count
    if not upper_set or upper_rank > count:
        upper_rank = count
    return (upper_rank - lower_rank) / count


def _classic_buckets(ev: Evaluator, vec: VectorBlock) -> dict[Labels, list[tuple[int, float]]]:
    """Rows of each histogram (labels without ``le``) with their upper bounds."""
    by_pairs: dict[tuple[tuple[str, str], ...], list[tuple[int, float]]] = {}
    first: dict[tuple[tuple[str, str], ...], Labels] = {}
    parsed: dict[str, float | None] = {}  # a few distinct `le` values over many series
    alive: list[bool] = np.asarray(vec.mask.any(axis=1), dtype=bool).tolist()
    for i, lbl in enumerate(vec.labels):
        if not alive[i]:
            continue
        le = lbl.get("le")
        bound = parsed[le] if le in parsed else parsed.setdefault(le, _parse_le(le))
        if bound is None:
            ev.warn(
                f'bucket label "le" is missing or has a malformed value of "{le}" '
                f'for metric name "{lbl.name}"'
            )
            continue
        items = lbl.items()
        at = items.index(("le", le))  # a slice around it: no Python loop over the pairs
        pairs = items[:at] + items[at + 1 :]
        rows = by_pairs.get(pairs)
        if rows is None:
            rows = by_pairs[pairs] = []
            first[pairs] = lbl
        rows.append((i, bound))
    return {first[pairs].without("le"): rows for pairs, rows in by_pairs.items()}


@_register("histogram_fraction")
def _histogram_fraction(ev: Evaluator, node: ast.Call, steps: IntArray) -> Value:
    lowers = _scalar_arg(ev, node.args[0], steps)
    uppers = _scalar_arg(ev, node.args[1], steps)
    vec = ev.eval_vector(node.args[2], steps)
    builder = VectorBuilder(len(steps))
    for key, members in _classic_buckets(ev, vec).items():
        rows = [r for r, _ in members]
        bounds = [b for _, b in members]
        out = np.full(len(steps), np.nan)
        present = np.asarray(vec.mask[rows].any(axis=0), dtype=bool)
        for s in np.nonzero(present)[0]:
            buckets = [
                (bounds[k], float(vec.values[r, s])) for k, r in enumerate(rows) if vec.mask[r, s]
            ]
            out[s] = bucket_fraction(float(lowers[s]), float(uppers[s]), buckets)
        builder.add(key, out, present, True)
    return builder.build()


for _name in (
    "histogram_count",
    "histogram_sum",
    "histogram_avg",
    "histogram_stddev",
    "histogram_stdvar",
):
    FUNCTIONS[_name] = _native_only
