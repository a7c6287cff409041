"""Binary operators: arithmetic, comparisons, set operators and vector matching."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.promql import ast
from signalroom.promql.blocks import (
    BoolArray,
    FloatArray,
    IntArray,
    ScalarBlock,
    Value,
    VectorBlock,
    VectorBuilder,
)
from signalroom.promql.value import BadDataError, ExecutionError

if TYPE_CHECKING:
    from signalroom.promql.engine import Evaluator

ARITHMETIC = {"+", "-", "*", "/", "%", "^", "atan2"}


def apply_op(op: str, a: FloatArray, b: FloatArray) -> FloatArray:
    """Elementwise arithmetic with Go's float semantics, or the comparison result as 0/1."""
    with np.errstate(all="ignore"):
        if op == "+":
            return a + b
        if op == "-":
            return a - b
        if op == "*":
            return a * b
        if op == "/":
            return a / b
        if op == "%":
            return np.fmod(a, b)
        if op == "^":
            return np.power(a, b)
        if op == "atan2":
            return np.arctan2(a, b)
        return compare(op, a, b).astype(np.float64)


def compare(op: str, a: FloatArray, b: FloatArray) -> BoolArray:
    with np.errstate(all="ignore"):
        if op == "==":
            return np.asarray(a == b)
        if op == "!=":
            return np.asarray(a != b)
        if op == ">":
            return np.asarray(a > b)
        if op == "<":
            return np.asarray(a < b)
        if op == ">=":
            return np.asarray(a >= b)
        if op == "<=":
            return np.asarray(a <= b)
    raise BadDataError(f"operator {op!r} not allowed here")


def binary(ev: Evaluator, node: ast.Binary, steps: IntArray) -> Value:
    lhs = ev.eval(node.lhs, steps)
    rhs = ev.eval(node.rhs, steps)
    op = node.op
    if isinstance(lhs, ScalarBlock) and isinstance(rhs, ScalarBlock):
        if op in ast.COMPARISON_OPS and not node.return_bool:
            raise BadDataError("comparisons between scalars must use BOOL modifier")
        return ScalarBlock(apply_op(op, lhs.values, rhs.values))
    if isinstance(lhs, VectorBlock) and isinstance(rhs, ScalarBlock):
        return _vector_scalar(op, lhs, rhs.values, swap=False, return_bool=node.return_bool)
    if isinstance(lhs, ScalarBlock) and isinstance(rhs, VectorBlock):
        return _vector_scalar(op, rhs, lhs.values, swap=True, return_bool=node.return_bool)
    if isinstance(lhs, VectorBlock) and isinstance(rhs, VectorBlock):
        if op in ast.SET_OPS:
            return _set_op(op, lhs, rhs, node.matching)
        return _vector_vector(op, lhs, rhs, node.matching, node.return_bool)
    raise BadDataError("binary expression must contain only scalar and instant vector types")


def _vector_scalar(
    op: str, vec: VectorBlock, scalar: FloatArray, swap: bool, return_bool: bool
) -> VectorBlock:
    if op in ast.SET_OPS:
        raise BadDataError(f"set operator {op!r} not allowed in binary scalar expression")
    s = np.broadcast_to(scalar, vec.values.shape)
    a, b = (s, vec.values) if swap else (vec.values, s)
    if op in ast.COMPARISON_OPS:
        keep = compare(op, a, b)
        if return_bool:
            values = keep.astype(np.float64)
            return VectorBlock(vec.labels, values, vec.mask, np.ones(len(vec), dtype=bool))
        return VectorBlock(vec.labels, vec.values, vec.mask & keep, vec.drop_name)
    values = apply_op(op, a, b)
    return VectorBlock(vec.labels, values, vec.mask, np.ones(len(vec), dtype=bool))


def _signature(labels: Labels, matching: ast.VectorMatching) -> tuple[tuple[str, str], ...]:
    return labels.match_signature(matching.labels, matching.on)


def _presence_by_signature(
    block: VectorBlock, matching: ast.VectorMatching
) -> tuple[list[tuple[tuple[str, str], ...]], dict[tuple[tuple[str, str], ...], BoolArray]]:
    sigs = [_signature(lbl, matching) for lbl in block.labels]
    present: dict[tuple[tuple[str, str], ...], BoolArray] = {}
    for i, sig in enumerate(sigs):
        m = block.mask[i]
        prev = present.get(sig)
        present[sig] = m.copy() if prev is None else prev | m
    return sigs, present


def _set_op(
    op: str, lhs: VectorBlock, rhs: VectorBlock, matching: ast.VectorMatching
) -> VectorBlock:
    lsigs, lpresent = _presence_by_signature(lhs, matching)
    rsigs, rpresent = _presence_by_signature(rhs, matching)
    steps = lhs.values.shape[1]
    none = np.zeros(steps, dtype=bool)
    builder = VectorBuilder(steps)
    if op == "and":
        for i, lbl in enumerate(lhs.labels):
            mask = lhs.mask[i] & rpresent.get(lsigs[i], none)
            builder.add(lbl, lhs.values[i], mask, bool(lhs.drop_name[i]))
        return builder.build()
    if op == "unless":
        for i, lbl in enumerate(lhs.labels):
            mask = lhs.mask[i] & ~rpresent.get(lsigs[i], none)
            builder.add(lbl, lhs.values[i], mask, bool(lhs.drop_name[i]))
        return builder.build()
    for i, lbl in enumerate(lhs.labels):
        builder.add(lbl, lhs.values[i], lhs.mask[i], bool(lhs.drop_name[i]))
    for i, lbl in enumerate(rhs.labels):
        mask = rhs.mask[i] & ~lpresent.get(rsigs[i], none)
        builder.add(lbl, rhs.values[i], mask, bool(rhs.drop_name[i]))
    return builder.build()


def _result_labels(
    many: Labels, one: Labels, matching: ast.VectorMatching, keep_name: bool
) -> Labels:
    pairs = dict(many.items())
    if not keep_name:
        pairs.pop(METRIC_NAME, None)
    if matching.card == "one-to-one":
        if matching.on:
            pairs = {k: v for k, v in pairs.items() if k in matching.labels}
        else:
            for name in matching.labels:
                pairs.pop(name, None)
    for name in matching.include:
        value = one.get(name)
        if value:
            pairs[name] = value
        else:
            pairs.pop(name, None)
    return Labels(pairs)


def _format_match_labels(labels: Labels, matching: ast.VectorMatching) -> str:
    if matching.on:
        kept = labels.only(*matching.labels)
    else:
        kept = labels.without(*matching.labels, METRIC_NAME)
    inner = ", ".join(f'{k}="{v}"' for k, v in kept.items())
    return "{" + inner + "}"


def _vector_vector(
    op: str,
    lhs: VectorBlock,
    rhs: VectorBlock,
    matching: ast.VectorMatching,
    return_bool: bool,
) -> VectorBlock:
    steps = lhs.values.shape[1]
    card = matching.card
    many, one = (rhs, lhs) if card == "one-to-many" else (lhs, rhs)
    is_comparison = op in ast.COMPARISON_OPS
    # Arithmetic and `bool` comparisons drop the name, but only at the end (Prometheus 3).
    drop = (not is_comparison) or return_bool

    one_sigs = [_signature(lbl, matching) for lbl in one.labels]
    one_rows: dict[tuple[tuple[str, str], ...], list[int]] = {}
    for i, sig in enumerate(one_sigs):
        one_rows.setdefault(sig, []).append(i)
    for sig, rows in one_rows.items():
        if len(rows) < 2:
            continue
        counts = one.mask[rows].sum(axis=0)
        if (counts > 1).any():
            step = int(np.argmax(counts > 1))
            present = [r for r in rows if one.mask[r, step]]
            side = "left" if card == "one-to-many" else "right"
            first, second = one.labels[present[1]], one.labels[present[0]]
            raise ExecutionError(
                f"found duplicate series for the match group "
                f"{_format_match_labels(first, matching)} on the {side} hand-side of the "
                f"operation: [{first}, {second}];many-to-many matching not allowed: "
                "matching labels must be unique on one side"
            )
        del sig

    builder = VectorBuilder(steps)
    # For one-to-one matching each signature may match at most one "many" series per step.
    matched_count: dict[tuple[tuple[str, str], ...], np.ndarray] = {}
    for i, lbl in enumerate(many.labels):
        sig = _signature(lbl, matching)
        candidates = one_rows.get(sig)
        if not candidates:
            continue
        for j in candidates:
            both = many.mask[i] & one.mask[j]
            if not both.any():
                continue
            if card == "one-to-one":
                count = matched_count.get(sig)
                if count is None:
                    matched_count[sig] = both.astype(np.int64)
                else:
                    count += both
                    if (count > 1).any():
                        raise ExecutionError(
                            "multiple matches for labels: many-to-one matching must be "
                            "explicit (group_left/group_right)"
                        )
            a, b = many.values[i], one.values[j]
            if card == "one-to-many":
                a, b = b, a
            if is_comparison:
                keep = compare(op, a, b)
                if return_bool:
                    values = keep.astype(np.float64)
                    mask = both
                else:
                    values = a
                    mask = both & keep
            else:
                values = apply_op(op, a, b)
                mask = both
            out_labels = _result_labels(lbl, one.labels[j], matching, keep_name=True)
            error = (
                "multiple matches for labels: grouping labels must ensure unique matches"
                if card != "one-to-one"
                else "multiple matches for labels: many-to-one matching must be explicit "
                "(group_left/group_right)"
            )
            # Filtering comparisons keep the input's pending name removal.
            row_drop = drop or bool(many.drop_name[i])
            builder.add(out_labels, values, mask, row_drop, error)
    return builder.build()
