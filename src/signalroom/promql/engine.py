"""The PromQL engine: evaluates a query over all its steps at once.

Every node evaluates to a block covering all evaluation steps (see `blocks.py`), so range
queries cost about as much as instant queries per series, with NumPy doing the per-step work.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np

from signalroom.model.labels import Labels
from signalroom.promql import ast
from signalroom.promql.blocks import (
    DUPLICATE_LABELSET,
    FloatArray,
    IntArray,
    RangeBlock,
    ScalarBlock,
    StringValue,
    Value,
    VectorBlock,
    flat_search,
)
from signalroom.promql.storage import Matcher, Querier, select_flat, stale_mask
from signalroom.promql.value import (
    BadDataError,
    ExecutionError,
    Matrix,
    QueryTimeoutError,
    QueryValue,
    Result,
    Sample,
    Scalar,
    Series,
    String,
    Vector,
)

MAX_POINTS_PER_SERIES = 11_000
TOO_MANY_SAMPLES = "query processing would load too many samples into memory in query execution"


class Engine:
    """Evaluates PromQL against a `Querier` with Prometheus 3 semantics."""

    def __init__(
        self,
        lookback_delta_ms: int = 300_000,
        max_samples: int = 50_000_000,
        timeout_s: float = 120.0,
        default_subquery_step_ms: int = 60_000,
    ) -> None:
        self.lookback_delta_ms = lookback_delta_ms
        self.max_samples = max_samples
        self.timeout_s = timeout_s
        self.default_subquery_step_ms = default_subquery_step_ms

    def instant_query(self, querier: Querier, expr: str | ast.Expr, time_ms: int) -> Result:
        """Evaluate `expr` at one instant."""
        node = ast.parse(expr) if isinstance(expr, str) else expr
        ev = Evaluator(self, querier, time_ms, time_ms, 0)
        value = ev.eval(node, np.array([time_ms], dtype=np.int64))
        out: QueryValue
        if isinstance(value, ScalarBlock):
            out = Scalar(float(value.values[0]), time_ms)
        elif isinstance(value, StringValue):
            out = String(value.value, time_ms)
        elif isinstance(value, RangeBlock):
            out = _range_block_to_matrix(value)
        else:
            out = _vector_block_to_vector(value, time_ms)
        return ev.result(out)

    def range_query(
        self, querier: Querier, expr: str | ast.Expr, start_ms: int, end_ms: int, step_ms: int
    ) -> Result:
        """Evaluate `expr` at start, start+step, ... <= end; returns a Matrix."""
        if step_ms <= 0:
            raise BadDataError(
                "zero or negative query resolution step widths are not accepted. "
                "Try a positive integer"
            )
        if end_ms < start_ms:
            raise BadDataError("end timestamp must not be before start time")
        if (end_ms - start_ms) // step_ms + 1 > MAX_POINTS_PER_SERIES:
            raise BadDataError(
                "exceeded maximum resolution of 11,000 points per timeseries. "
                "Try decreasing the query resolution (?step=XX)"
            )
        node = ast.parse(expr) if isinstance(expr, str) else expr
        kind = static_type(node)
        if kind not in ("scalar", "vector"):
            raise BadDataError(
                f'invalid expression type "{_type_display(kind)}" for range query, '
                "must be Scalar or instant Vector"
            )
        steps = np.arange(start_ms, end_ms + 1, step_ms, dtype=np.int64)
        ev = Evaluator(self, querier, start_ms, end_ms, step_ms)
        value = ev.eval(node, steps)
        if isinstance(value, ScalarBlock):
            out = Matrix([Series(Labels(), steps.copy(), value.values.copy())])
        else:
            assert isinstance(value, VectorBlock)
            out = _vector_block_to_matrix(value, steps)
        return ev.result(out)


def _type_display(kind: str) -> str:
    return {"matrix": "range vector", "vector": "instant vector"}.get(kind, kind)


_SCALAR_FUNCS = {"time", "scalar", "pi"}


def static_type(node: ast.Expr) -> str:
    """The PromQL value type an expression produces: scalar, string, vector or matrix."""
    node = ast.unwrap_parens(node)
    if isinstance(node, ast.NumberLiteral):
        return "scalar"
    if isinstance(node, ast.StringLiteral):
        return "string"
    if isinstance(node, ast.VectorSelector | ast.Aggregate):
        return "vector"
    if isinstance(node, ast.MatrixSelector | ast.Subquery):
        return "matrix"
    if isinstance(node, ast.Call):
        return "scalar" if node.name in _SCALAR_FUNCS else "vector"
    if isinstance(node, ast.Unary):
        return static_type(node.expr)
    if isinstance(node, ast.Binary):
        if static_type(node.lhs) == "scalar" and static_type(node.rhs) == "scalar":
            return "scalar"
        return "vector"
    return "vector"


def _final_labels(block: VectorBlock) -> list[Labels]:
    return [
        lbl.without_name() if drop else lbl
        for lbl, drop in zip(block.labels, block.drop_name, strict=True)
    ]


def _vector_block_to_vector(block: VectorBlock, time_ms: int) -> Vector:
    rows = np.flatnonzero(block.mask[:, 0]).tolist()
    drop = block.drop_name.tolist()
    labels = [block.labels[i].without_name() if drop[i] else block.labels[i] for i in rows]
    if len(set(labels)) != len(labels):
        raise ExecutionError(DUPLICATE_LABELSET)
    values = block.values[rows, 0].tolist()
    return Vector([Sample(lbl, v, time_ms) for lbl, v in zip(labels, values, strict=True)])


def _vector_block_to_matrix(block: VectorBlock, steps: IntArray) -> Matrix:
    labels = _final_labels(block)
    series: list[Series] = []
    seen: set[Labels] = set()
    for i, lbl in enumerate(labels):
        m = block.mask[i]
        if not m.any():
            continue
        if lbl in seen:
            raise ExecutionError(DUPLICATE_LABELSET)
        seen.add(lbl)
        series.append(Series(lbl, steps[m], block.values[i][m]))
    series.sort(key=lambda s: s.labels.items())
    return Matrix(series)


def _range_block_to_matrix(block: RangeBlock) -> Matrix:
    series: list[Series] = []
    lo, hi = block.window_bounds()
    for i, lbl in enumerate(block.labels):
        a, b = int(lo[i, 0]), int(hi[i, 0])
        if b <= a:
            continue
        final = lbl.without_name() if block.drop_name[i] else lbl
        series.append(Series(final, block.timestamps[a:b], block.values[a:b]))
    series.sort(key=lambda s: s.labels.items())
    return Matrix(series)


class Evaluator:
    """State of one query evaluation."""

    def __init__(
        self, engine: Engine, querier: Querier, start_ms: int, end_ms: int, step_ms: int
    ) -> None:
        self.engine = engine
        self.querier = querier
        self.start_ms = start_ms
        self.end_ms = end_ms
        self.step_ms = step_ms
        self.lookback_ms = engine.lookback_delta_ms
        self.deadline = time.monotonic() + engine.timeout_s
        # Samples in memory as Prometheus counts them (query.max-samples): the outputs a node
        # holds while its parent runs, plus the window a range function buffers per series.
        self.current = 0
        self.samples = 0  # the peak of `current`
        self._streamed: set[int] = set()  # matrix selectors a function reads series by series
        self._stream_out = 0  # outputs of the series a range function has done so far
        self._invariant: dict[int, bool] = {}
        self.warnings: dict[str, None] = {}
        self.infos: dict[str, None] = {}

    # --- annotations ----------------------------------------------------------------
    def warn(self, message: str) -> None:
        self.warnings[f"PromQL warning: {message}"] = None

    def info(self, message: str) -> None:
        self.infos[f"PromQL info: {message}"] = None

    def result(self, value: QueryValue) -> Result:
        return Result(value, list(self.warnings), list(self.infos))

    # --- the sample limit -------------------------------------------------------------
    def _hold(self, total: int) -> None:
        """`total` samples are in memory now."""
        if total > self.engine.max_samples:
            raise ExecutionError(TOO_MANY_SAMPLES)
        self.samples = max(self.samples, total)

    def hold_streamed(self, windows: IntArray, outputs: IntArray) -> None:
        """Account a range function over a matrix selector as Prometheus runs it: series by
        series, each buffering its window at every step (``windows``: series x steps sample
        counts) next to the outputs of the series before it (``outputs`` per series)."""
        if not len(outputs):
            return
        before = self._stream_out + np.cumsum(outputs) - outputs
        peak = before + np.maximum(windows.max(axis=1), outputs + windows[:, -1])
        self._hold(self.current + int(peak.max()))
        self._stream_out += int(outputs.sum())

    def _is_invariant(self, node: ast.Expr) -> bool:
        """Prometheus' step invariance: the node gives the same result at every step (all its
        selectors have `@`), so it is evaluated once and the result repeated."""
        key = id(node)
        known = self._invariant.get(key)
        if known is None:
            known = self._invariant[key] = _step_invariant(node, self._is_invariant)
        return known

    # --- dispatch -------------------------------------------------------------------------
    def eval(self, node: ast.Expr, steps: IntArray) -> Value:
        if time.monotonic() > self.deadline:
            raise QueryTimeoutError("query timed out in query execution")
        start = self.current
        if len(steps) > 1 and not isinstance(node, _NOT_REPEATED) and self._is_invariant(node):
            value = _repeat_steps(self.eval(node, steps[:1]), len(steps))
            self.current = start  # the one-step result is dropped as it is repeated
        else:
            value = self._dispatch(node, steps)
            if isinstance(node, _PASS_THROUGH):
                return value  # holds its operand's samples (Prometheus changes them in place)
        held = 0 if id(node) in self._streamed else _points(value)
        self._hold(self.current + held)
        self.current = start + held
        return value

    def _dispatch(self, node: ast.Expr, steps: IntArray) -> Value:
        if isinstance(node, ast.NumberLiteral):
            return ScalarBlock(np.full(len(steps), node.value, dtype=np.float64))
        if isinstance(node, ast.StringLiteral):
            return StringValue(node.value)
        if isinstance(node, ast.Paren):
            return self.eval(node.expr, steps)
        if isinstance(node, ast.Unary):
            return self._eval_unary(node, steps)
        if isinstance(node, ast.VectorSelector):
            return self.select_instant(node, steps)
        if isinstance(node, ast.MatrixSelector):
            return self.select_range(node, steps)
        if isinstance(node, ast.Subquery):
            return self.eval_subquery(node, steps)
        if isinstance(node, ast.Call):
            from signalroom.promql.functions import call_function

            for arg in node.args:
                inner = ast.unwrap_parens(arg)
                if isinstance(inner, ast.MatrixSelector):
                    self._streamed.add(id(inner))
            outer_stream, self._stream_out = self._stream_out, 0
            try:
                return call_function(self, node, steps)
            finally:
                self._stream_out = outer_stream
        if isinstance(node, ast.Aggregate):
            from signalroom.promql.aggregations import aggregate

            return aggregate(self, node, steps)
        if isinstance(node, ast.Binary):
            from signalroom.promql.binary import binary

            return binary(self, node, steps)
        raise BadDataError(f"unsupported expression {node!r}")

    def eval_vector(self, node: ast.Expr, steps: IntArray) -> VectorBlock:
        value = self.eval(node, steps)
        if not isinstance(value, VectorBlock):
            raise BadDataError("expected instant vector")
        return value

    def eval_scalar(self, node: ast.Expr, steps: IntArray) -> FloatArray:
        value = self.eval(node, steps)
        if not isinstance(value, ScalarBlock):
            raise BadDataError("expected scalar")
        return value.values

    def _eval_unary(self, node: ast.Unary, steps: IntArray) -> Value:
        value = self.eval(node.expr, steps)
        if isinstance(value, ScalarBlock):
            return ScalarBlock(-value.values)
        if isinstance(value, VectorBlock):
            return VectorBlock(
                value.labels,
                -value.values,
                value.mask,
                np.ones(len(value.labels), dtype=bool),
            )
        raise BadDataError("unary expression only allowed on expressions of type scalar or vector")

    # --- time -------------------------------------------------------------------------------
    def effective_times(self, at: ast.At | None, offset_ms: int, steps: IntArray) -> IntArray:
        """The time each step reads at, after `@` and `offset`."""
        if at is None:
            base = steps
        elif at.kind == ast.AT_START:
            base = np.full(len(steps), self.start_ms, dtype=np.int64)
        elif at.kind == ast.AT_END:
            base = np.full(len(steps), self.end_ms, dtype=np.int64)
        else:
            base = np.full(len(steps), at.time_ms, dtype=np.int64)
        return (base - offset_ms).astype(np.int64)

    # --- selectors -------------------------------------------------------------------------------
    def _select(
        self, matchers: Sequence[Matcher], lo: int, hi: int
    ) -> tuple[list[Labels], IntArray, FloatArray, IntArray]:
        """Matching series with samples, in label order, as flat arrays (`storage.Flat`)."""
        labels, ts, vals, offsets = select_flat(self.querier, matchers, lo, hi)
        nonempty = np.diff(offsets) > 0
        if nonempty.all():
            return labels, ts, vals, offsets
        rows = np.flatnonzero(nonempty)
        return [labels[i] for i in rows.tolist()], ts, vals, np.append(offsets[rows], offsets[-1])

    def select_instant(self, node: ast.VectorSelector, steps: IntArray) -> VectorBlock:
        block, _ = self.select_instant_with_times(node, steps)
        return block

    def select_instant_with_times(
        self, node: ast.VectorSelector, steps: IntArray
    ) -> tuple[VectorBlock, FloatArray]:
        """Instant selector plus, per point, the timestamp (s) of the sample it came from."""
        times = self.effective_times(node.at, node.offset_ms, steps)
        n_steps = len(steps)
        if n_steps == 0:
            return VectorBlock.empty(0), np.zeros((0, 0))
        lo = int(times.min()) - self.lookback_ms + 1
        hi = int(times.max())
        labels, ts, vals, offsets = self._select(node.matchers, lo, hi)
        if not labels:
            return VectorBlock.empty(n_steps), np.zeros((0, n_steps))
        # The newest sample at or before each step, if inside the lookback window.
        _, after = flat_search(ts, offsets, times, times)
        idx = after - 1
        valid = idx >= offsets[:-1, None]
        idx = np.clip(idx, 0, None)
        picked_t = ts[idx]
        picked_v = vals[idx]
        valid &= picked_t > times[None, :] - self.lookback_ms
        valid &= ~stale_mask(picked_v)
        keep = valid.any(axis=1)
        if not keep.all():
            rows = np.nonzero(keep)[0]
            labels = [labels[i] for i in rows.tolist()]
            valid, picked_t, picked_v = valid[rows], picked_t[rows], picked_v[rows]
        if not labels:
            return VectorBlock.empty(n_steps), np.zeros((0, n_steps))
        block = VectorBlock(
            labels,
            np.where(valid, picked_v, 0.0),
            valid,
            np.zeros(len(labels), dtype=bool),
        )
        return block, picked_t / 1000.0

    def select_range(self, node: ast.MatrixSelector, steps: IntArray) -> RangeBlock:
        vs = node.selector
        times = self.effective_times(vs.at, vs.offset_ms, steps)
        win_start = times - node.range_ms
        labels: list[Labels] = []
        ts = np.zeros(0, dtype=np.int64)
        vals = np.zeros(0, dtype=np.float64)
        offsets = np.zeros(1, dtype=np.int64)
        if len(steps):
            labels, ts, vals, offsets = self._select(
                vs.matchers, int(win_start.min()) + 1, int(times.max())
            )
            # Range vectors skip stale markers; series left without samples disappear.
            stale = stale_mask(vals)
            if stale.any():
                keep = ~stale
                kept_before = np.concatenate(([0], np.cumsum(keep)))
                offsets = kept_before[offsets].astype(np.int64)
                ts, vals = ts[keep], vals[keep]
                nonempty = np.diff(offsets) > 0
                if not nonempty.all():
                    rows = np.nonzero(nonempty)[0]
                    labels = [labels[i] for i in rows.tolist()]
                    offsets = np.concatenate((offsets[rows], offsets[-1:]))
        block = RangeBlock(
            labels,
            ts,
            vals,
            offsets,
            win_start,
            times,
            node.range_ms,
            np.zeros(len(labels), dtype=bool),
        )
        return block

    def eval_subquery(self, node: ast.Subquery, steps: IntArray) -> RangeBlock:
        times = self.effective_times(node.at, node.offset_ms, steps)
        step = node.step_ms or self.engine.default_subquery_step_ms
        win_start = times - node.range_ms
        labels: list[Labels] = []
        ts_list: list[IntArray] = []
        val_list: list[FloatArray] = []
        drops: list[bool] = []
        if len(steps):
            # Inner steps are multiples of the subquery step inside some window.
            grids = _subquery_grids(win_start, times, step)
            per_series: dict[Labels, tuple[list[IntArray], list[FloatArray], bool]] = {}
            for grid in grids:
                if len(grid) == 0:
                    continue
                inner = self.eval(node.expr, grid)
                if isinstance(inner, ScalarBlock):
                    entry = per_series.setdefault(Labels(), ([], [], False))
                    entry[0].append(grid)
                    entry[1].append(inner.values)
                    continue
                if not isinstance(inner, VectorBlock):
                    raise BadDataError("subquery is only allowed on instant vector")
                for i, lbl in enumerate(inner.labels):
                    m = inner.mask[i]
                    if not m.any():
                        continue
                    entry = per_series.setdefault(lbl, ([], [], bool(inner.drop_name[i])))
                    entry[0].append(grid[m])
                    entry[1].append(inner.values[i][m])
            for lbl in sorted(per_series, key=Labels.items):
                t_parts, v_parts, drop = per_series[lbl]
                ts = np.concatenate(t_parts)
                vals = np.concatenate(v_parts)
                if len(t_parts) > 1:
                    ts, uniq = np.unique(ts, return_index=True)
                    vals = vals[uniq]
                labels.append(lbl)
                ts_list.append(ts)
                val_list.append(vals)
                drops.append(drop)
        return RangeBlock.from_series(
            labels,
            ts_list,
            val_list,
            win_start,
            times,
            node.range_ms,
            np.array(drops, dtype=bool),
        )


# Functions whose result depends on the evaluation time even when their arguments do not
# (Prometheus' AtModifierUnsafeFunctions).
_TIME_DEPENDENT = {"days_in_month", "day_of_month", "day_of_week", "day_of_year", "hour",
                   "minute", "month", "year", "predict_linear", "time", "timestamp"}  # fmt: skip
_NOT_REPEATED = (ast.NumberLiteral, ast.StringLiteral, ast.MatrixSelector, ast.Subquery, ast.Paren)
_PASS_THROUGH = (ast.Paren, ast.Unary, ast.Subquery, ast.StringLiteral)


def _step_invariant(node: ast.Expr, invariant: Callable[[ast.Expr], bool]) -> bool:
    if isinstance(node, ast.NumberLiteral | ast.StringLiteral):
        return True
    if isinstance(node, ast.VectorSelector):
        return node.at is not None
    if isinstance(node, ast.MatrixSelector):
        return node.selector.at is not None
    if isinstance(node, ast.Subquery):
        return node.at is not None
    if isinstance(node, ast.Paren | ast.Unary):
        return invariant(node.expr)
    if isinstance(node, ast.Aggregate):
        return invariant(node.expr) and (node.param is None or invariant(node.param))
    if isinstance(node, ast.Binary):
        return invariant(node.lhs) and invariant(node.rhs)
    if isinstance(node, ast.Call):
        return node.name not in _TIME_DEPENDENT and all(invariant(a) for a in node.args)
    return False


def _points(value: Value) -> int:
    """Samples a value holds, as Prometheus counts them."""
    if isinstance(value, VectorBlock):
        return int(value.mask.sum())
    if isinstance(value, ScalarBlock):
        return len(value.values)
    if isinstance(value, RangeBlock):
        return len(value.timestamps)
    return 0


def _repeat_steps(value: Value, steps: int) -> Value:
    """A one-step value repeated at every step."""
    if isinstance(value, ScalarBlock):
        return ScalarBlock(np.repeat(value.values, steps))
    if isinstance(value, VectorBlock):
        return VectorBlock(
            value.labels,
            np.repeat(value.values, steps, axis=1),
            np.repeat(value.mask, steps, axis=1),
            value.drop_name,
            value.ordered,
        )
    return value


def _subquery_grids(win_start: IntArray, win_end: IntArray, step: int) -> list[IntArray]:
    """Inner evaluation times: one shared grid when windows overlap, else one per window."""
    firsts = (win_start // step + 1) * step
    lasts = (win_end // step) * step
    per_window = int(np.maximum((lasts - firsts) // step + 1, 0).sum())
    first, last = int(firsts.min()), int(lasts.max())
    union = max((last - first) // step + 1, 0)
    if union <= 2 * per_window + 2:
        return [np.arange(first, last + 1, step, dtype=np.int64)]
    grids: list[IntArray] = []
    seen: set[tuple[int, int]] = set()
    for f, la in zip(firsts.tolist(), lasts.tolist(), strict=True):
        if (f, la) in seen:
            continue
        seen.add((f, la))
        grids.append(np.arange(f, la + 1, step, dtype=np.int64))
    return grids
