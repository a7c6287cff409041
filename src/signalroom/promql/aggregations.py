"""Aggregation operators (sum, avg, topk, quantile, count_values, limitk, ...)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import NAME_LABELS, Labels
from signalroom.promql import ast
from signalroom.promql.blocks import (
    BoolArray,
    FloatArray,
    IntArray,
    StringValue,
    VectorBlock,
    VectorBuilder,
)
from signalroom.promql.value import BadDataError, ExecutionError, format_float, format_go_g

if TYPE_CHECKING:
    from signalroom.promql.engine import Evaluator


def kahan_sum_rows(values: FloatArray, mask: BoolArray) -> FloatArray:
    """Column sums with Neumaier-compensated summation, as Prometheus's kahanSumInc."""
    total = np.zeros(values.shape[1])
    comp = np.zeros(values.shape[1])
    with np.errstate(all="ignore"):
        for row, m in zip(values, mask, strict=True):
            inc = np.where(m, row, 0.0)
            t = total + inc
            big = np.abs(total) >= np.abs(inc)
            delta = np.where(big, (total - t) + inc, (inc - t) + total)
            comp = np.where(np.isinf(t), 0.0, comp + np.where(m, delta, 0.0))
            total = np.where(m, t, total)
        return total + comp


def kahan_inc(inc: float, total: float, comp: float) -> tuple[float, float]:
    t = total + inc
    if math.isinf(t):
        comp = 0.0
    elif abs(total) >= abs(inc):
        comp += (total - t) + inc
    else:
        comp += (inc - t) + total
    return t, comp


def _div(a: float, b: float) -> float:
    """Go float division (no exceptions on zero)."""
    if b == 0:
        if a == 0 or math.isnan(a):
            return math.nan
        return math.copysign(math.inf, a) * math.copysign(1.0, b)
    return a / b


def _avg_column(vals: list[float]) -> float:
    """Mean as Prometheus computes it: Kahan sum, incremental once the sum overflows."""
    total, comp, mean = vals[0], 0.0, 0.0
    incremental = False
    count = 1.0
    for f in vals[1:]:
        count += 1
        if not incremental:
            new_total, new_comp = kahan_inc(f, total, comp)
            if not math.isinf(new_total):
                total, comp = new_total, new_comp
                continue
            incremental = True
            mean = total / (count - 1)
            comp /= count - 1
        q = (count - 1) / count
        mean, comp = kahan_inc(f / count, q * mean, q * comp)
    if incremental:
        return mean + comp
    return total / count + comp / count


def _avg_rows(values: FloatArray, mask: BoolArray) -> FloatArray:
    count = mask.sum(axis=0)
    with np.errstate(all="ignore"):
        total = kahan_sum_rows(values, mask)
        out = total / count
    # Fall back to the overflow-safe incremental mean where the plain sum overflowed.
    redo = np.isinf(total) & (count > 0)
    if redo.any():
        for s in np.nonzero(redo)[0]:
            out[s] = _avg_column(values[mask[:, s], s].tolist())
    return np.asarray(out, dtype=np.float64)


def quantile(q: float, values: list[float]) -> float:
    """Prometheus's quantile over a list of floats (linear interpolation)."""
    if not values or math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    ordered = sorted(values, key=lambda v: (not math.isnan(v), v if not math.isnan(v) else 0.0))
    n = len(ordered)
    rank = q * (n - 1)
    lower = max(0, math.floor(rank))
    upper = min(n - 1, lower + 1)
    weight = rank - math.floor(rank)
    return ordered[lower] * (1 - weight) + ordered[upper] * weight


def _grouping_labels(labels: Labels, node: ast.Aggregate) -> Labels:
    if node.without:
        return labels.without(*node.grouping, *NAME_LABELS)
    if node.grouping:
        return labels.only(*node.grouping)
    return Labels()


def _valid_label_name(name: str) -> bool:
    if not name:
        return False
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def group_ids(labels: list[Labels], node: ast.Aggregate) -> tuple[IntArray, list[Labels]]:
    """Each series' group number (groups numbered in order of first appearance) and labels."""
    names = tuple(node.grouping)
    keys: list[object]
    if node.without:
        drop = (*names, *NAME_LABELS)
        keys = [lbl.without(*drop) for lbl in labels]
    elif len(names) == 1:  # A value (tuple of values) identifies a `by` group as its Labels do.
        keys = [lbl.get(names[0]) for lbl in labels]
    else:
        keys = [tuple(map(lbl.get, names)) for lbl in labels]
    # groups numbered in order of first appearance, without a Python loop over the series
    index = {key: g for g, key in enumerate(dict.fromkeys(keys))}
    ids = np.array(list(map(index.__getitem__, keys)), dtype=np.int64)
    group_labels: list[Labels] = []
    for i in np.unique(ids, return_index=True)[1].tolist():  # each group's first series
        key = keys[i]
        group_labels.append(key if isinstance(key, Labels) else _grouping_labels(labels[i], node))
    return ids, group_labels


_COLUMN_OPS = frozenset({"sum", "avg", "count", "group", "min", "max"})
# Columns reduced per NumPy pass (bounds the temporaries of range queries).
_CELLS_PER_PASS = 1 << 20
_LONG_EPS = float(np.finfo(np.longdouble).eps)
_MAX_FLOAT = float(np.finfo(np.float64).max)
# A fast sum is used where it provably agrees with Prometheus's Kahan sum to this (relative).
_SUM_TOLERANCE = 1e-12


def _aggregate_columns(
    op: str, vec: VectorBlock, ids: IntArray, group_labels: list[Labels]
) -> VectorBlock:
    """sum/avg/count/group/min/max for all groups at once (series sorted by group)."""
    n_steps = vec.steps
    if not len(vec):
        return VectorBlock.empty(n_steps)
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    starts = np.nonzero(np.concatenate(([True], sorted_ids[1:] != sorted_ids[:-1])))[0]
    ends = np.append(starts[1:], len(order))
    groups = sorted_ids[starts]
    out = np.zeros((len(groups), n_steps))
    present = np.zeros((len(groups), n_steps), dtype=bool)
    per_pass = max(1, _CELLS_PER_PASS // len(order))
    for c0 in range(0, n_steps, per_pass):
        cols = slice(c0, min(c0 + per_pass, n_steps))
        values = vec.values[order, cols]
        mask = vec.mask[order, cols]
        count = np.add.reduceat(mask.astype(np.int64), starts, axis=0)
        present[:, cols] = count > 0
        with np.errstate(all="ignore"):
            if op == "count":
                res = count.astype(np.float64)
            elif op == "group":
                res = np.ones(count.shape)
            elif op in ("min", "max"):
                pick = np.fmax if op == "max" else np.fmin
                res = pick.reduceat(np.where(mask, values, np.nan), starts, axis=0)
            else:
                res = _group_sums(op, values, mask, starts, ends, count)
        out[:, cols] = res
    rows = np.nonzero(present.any(axis=1))[0]
    first_member = order[starts[rows]]
    return VectorBlock(
        [group_labels[g] for g in groups[rows].tolist()],
        np.where(present[rows], out[rows], 0.0),
        present[rows],
        vec.drop_name[first_member].astype(bool),
    )


def _group_sums(
    op: str,
    values: FloatArray,
    mask: BoolArray,
    starts: IntArray,
    ends: IntArray,
    count: npt.NDArray[np.int64],
) -> FloatArray:
    """Group sums (op "sum") or means (op "avg") of rows sorted by group.

    Prometheus adds with Kahan compensation one series at a time. Here each group is summed
    in extended precision at once, and the running-error bound n * eps * sum|x| decides per
    (group, step) whether that provably matches the compensated sum; columns that do not
    (cancellation, overflow, non-finite values) take Prometheus's sequential path.
    """
    x = np.where(mask, values, 0.0)
    wide = x.astype(np.longdouble)
    total = np.add.reduceat(wide, starts, axis=0)
    magnitude = np.add.reduceat(np.abs(wide), starts, axis=0)
    members = (ends - starts)[:, None]
    result = total.astype(np.float64)
    fast = (magnitude <= _MAX_FLOAT) & (
        members * _LONG_EPS * magnitude <= _SUM_TOLERANCE * np.abs(total)
    )
    # Integers whose magnitudes sum below 2**53 add exactly in any order.
    fraction = np.add.reduceat((x != np.floor(x)).astype(np.int64), starts, axis=0)
    fast |= (fraction == 0) & (magnitude < 2.0**53)
    if op == "avg":
        result = result / np.maximum(count, 1)
    for g, s in zip(*np.nonzero(~fast & (count > 0)), strict=True):
        a, b = int(starts[g]), int(ends[g])
        column = values[a:b, s][mask[a:b, s]]
        if op == "avg":
            result[g, s] = _avg_column(column.tolist())
        else:
            total_f, comp = 0.0, 0.0
            for v in column.tolist():
                total_f, comp = kahan_inc(v, total_f, comp)
            result[g, s] = total_f + comp
    return np.asarray(result, dtype=np.float64)


def aggregate(ev: Evaluator, node: ast.Aggregate, steps: IntArray) -> VectorBlock:
    op = node.op
    n_steps = len(steps)
    param_values: FloatArray | None = None
    label_param = ""
    if op == "count_values":
        assert node.param is not None
        pv = ev.eval(node.param, steps)
        if not isinstance(pv, StringValue):
            raise BadDataError("expected string parameter for count_values")
        label_param = pv.value
        literal = ast.unwrap_parens(node.param)
        if isinstance(literal, ast.StringLiteral) and literal.invalid_utf8 is not None:
            raise ExecutionError(f"invalid label name {literal.invalid_utf8}")
        if not _valid_label_name(label_param):
            raise ExecutionError(f'invalid label name "{label_param}"')
    elif node.param is not None:
        param_values = ev.eval_scalar(node.param, steps)

    vec = ev.eval_vector(node.expr, steps)
    ids, group_labels = group_ids(vec.labels, node)
    if op in _COLUMN_OPS:
        return _aggregate_columns(op, vec, ids, group_labels)
    group_of: dict[Labels, list[int]] = {key: [] for key in group_labels}
    for i, g in enumerate(ids.tolist()):
        group_of[group_labels[g]].append(i)

    if op in ("topk", "bottomk", "limitk", "limit_ratio"):
        assert param_values is not None
        return _select_series(ev, op, vec, group_of, param_values)

    builder = VectorBuilder(n_steps)
    if op == "count_values":
        for key in group_labels:
            rows = group_of[key]
            counts: dict[str, np.ndarray] = {}
            for r in rows:
                for s in np.nonzero(vec.mask[r])[0]:
                    text = format_float(float(vec.values[r, s]))
                    arr = counts.get(text)
                    if arr is None:
                        arr = counts[text] = np.zeros(n_steps)
                    arr[s] += 1
            for text, arr in counts.items():
                builder.add(key.with_(label_param, text), arr, arr > 0, False)
        return builder.build()

    if op == "quantile":
        assert param_values is not None
        for q in set(param_values.tolist()):
            if math.isnan(q) or q < 0 or q > 1:
                ev.warn(f"quantile value should be between 0 and 1, got {format_go_g(q)}")

    for key in group_labels:
        rows = group_of[key]
        values = vec.values[rows]
        mask = vec.mask[rows]
        present = np.asarray(mask.any(axis=0), dtype=bool)
        drop = bool(vec.drop_name[rows[0]])
        with np.errstate(all="ignore"):
            if op == "sum":
                out = kahan_sum_rows(values, mask)
            elif op == "avg":
                out = _avg_rows(values, mask)
            elif op == "count":
                out = mask.sum(axis=0).astype(np.float64)
            elif op == "group":
                out = np.ones(n_steps)
            elif op == "max":
                out = np.where(mask, values, np.nan)
                out = np.fmax.reduce(out, axis=0)
            elif op == "min":
                out = np.where(mask, values, np.nan)
                out = np.fmin.reduce(out, axis=0)
            elif op in ("stddev", "stdvar"):
                out = _stdvar_rows(values, mask)
                if op == "stddev":
                    out = np.sqrt(out)
            elif op == "quantile":
                assert param_values is not None
                out = np.full(n_steps, np.nan)
                for s in np.nonzero(present)[0]:
                    out[s] = quantile(float(param_values[s]), values[mask[:, s], s].tolist())
            else:
                raise BadDataError(f"unknown aggregation {op!r}")
        builder.add(key, out, present, drop)
    return builder.build()


def _stdvar_rows(values: FloatArray, mask: BoolArray) -> FloatArray:
    count = np.zeros(values.shape[1])
    mean = np.zeros(values.shape[1])
    acc = np.zeros(values.shape[1])
    with np.errstate(all="ignore"):
        for row, m in zip(values, mask, strict=True):
            new_count = count + m
            delta = row - mean
            new_mean = mean + delta / np.where(m, new_count, 1)
            new_acc = acc + delta * (row - new_mean)
            count = new_count
            mean = np.where(m, new_mean, mean)
            acc = np.where(m, new_acc, acc)
        return acc / count


def _k_value(v: float, op: str) -> int:
    if math.isnan(v):
        raise ExecutionError(f"Parameter value is NaN for {op}")
    if v >= 2**63 or v < -(2**63):
        raise ExecutionError(f"Scalar value {format_go_g(v)} overflows int64")
    return int(v)


def _select_series(
    ev: Evaluator,
    op: str,
    vec: VectorBlock,
    group_of: dict[Labels, list[int]],
    params: FloatArray,
) -> VectorBlock:
    n, n_steps = vec.values.shape
    out_mask = np.zeros((n, n_steps), dtype=bool)
    # Per step, the chosen rows in output order (for instant queries).
    order: list[int] = []
    if op == "limit_ratio":
        for r in set(params.tolist()):
            if math.isnan(r):
                raise ExecutionError("Ratio value is NaN")
            if r < -1 or r > 1:
                capped = 1.0 if r > 1 else -1.0
                ev.warn(
                    f"ratio value should be between -1 and 1, got {format_go_g(r)}, "
                    f"capping to {format_go_g(capped)}"
                )
        offsets = np.array([lbl.hash64() / float(2**64 - 1) for lbl in vec.labels])
        for s in range(n_steps):
            ratio = min(1.0, max(-1.0, float(params[s])))
            chosen = offsets < ratio if ratio >= 0 else offsets >= 1.0 + ratio
            out_mask[:, s] = vec.mask[:, s] & chosen
        return VectorBlock(vec.labels, vec.values, out_mask, vec.drop_name)

    groups = [np.asarray(rows, dtype=np.int64) for rows in group_of.values()]
    sign = -1.0 if op == "topk" else 1.0  # topk sorts by the negated value
    for s in range(n_steps):
        k = _k_value(float(params[s]), op)
        if k < 1:
            continue
        for rows in groups:
            present = rows[vec.mask[rows, s]]
            if not len(present):
                continue
            if op == "limitk":
                picked = present[:k]
            else:
                # NaN last, then by value; a stable sort keeps ties in series order
                vals = vec.values[present, s]
                nan = np.isnan(vals)
                picked = present[np.lexsort((np.where(nan, 0.0, sign * vals), nan))[:k]]
            out_mask[picked, s] = True
            if n_steps == 1:
                order.extend(picked.tolist())
    if n_steps == 1 and op != "limitk":
        in_order = set(order)
        rest = [r for r in range(n) if r not in in_order]
        block = VectorBlock(vec.labels, vec.values, out_mask, vec.drop_name).take(order + rest)
        block.ordered = True
        return block
    return VectorBlock(vec.labels, vec.values, out_mask, vec.drop_name)
