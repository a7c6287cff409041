"""One store read per selector family for a whole group evaluation.

The rules of a group read the same few metrics over and over (a rate by job, by code, an error
ratio over 5m and 1h, an alert on the same ratio). Before a group evaluates, `ReadPlan` walks
its rules' expressions and folds their selectors into *bases*: a base's matchers are a subset
of every selector it serves, and its time range (relative to the evaluation time) covers all of
theirs. `GroupQuerier` then reads each base from the store once per evaluation and answers the
engine's `select` calls from memory: the extra matchers filter rows, the time range slices them.

Selectors that may read what the group itself writes (its recording rules' names, ALERTS,
ALERTS_FOR_STATE) always go to the store, so a rule still sees the rules before it, as in
Prometheus; so do selectors with `@` or inside subqueries, whose time ranges are not fixed by the
evaluation time (they are still cached by exact request within the evaluation).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import METRIC_NAME
from signalroom.promql import ast
from signalroom.promql.storage import Flat, Matcher, MatchType, Querier, SeriesData, select_flat

MatcherSet = frozenset[Matcher]
#: Metric names that need no escaping inside a regular expression.
_PLAIN_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")


@dataclass
class Base:
    """A selector read once per evaluation: [ts - back_ms, ts - ahead_ms] around eval time ts."""

    matchers: MatcherSet
    back_ms: int
    ahead_ms: int
    #: The store read that holds this base's series (see `Fetch`).
    fetch: int = -1

    def covers(self, back_ms: int, ahead_ms: int) -> bool:
        return self.back_ms >= back_ms and self.ahead_ms <= ahead_ms


@dataclass
class Fetch:
    """One store read serving one or more bases: bases that differ only in their metric name
    and read the same time range are read together (`__name__=~"a|b|c"`), since each store
    read has a fixed cost (index look-up, head snapshot, decoding shared chunk groups)."""

    matchers: list[Matcher]
    #: Matchers every series of the read satisfies (those of the bases minus their names).
    common: MatcherSet
    back_ms: int
    ahead_ms: int


@dataclass
class ReadPlan:
    """The bases of one group's rules (computed once per group and rule set)."""

    bases: list[Base] = field(default_factory=list)
    fetches: list[Fetch] = field(default_factory=list)
    #: Names the group writes: selectors that may match one of them are never served cached.
    written: frozenset[str] = frozenset()
    #: Per expression: whether it may read what the group writes (unparsed ones may).
    reads_written: list[bool] = field(default_factory=list)

    @classmethod
    def build(
        cls, exprs: Iterable[ast.Expr | None], written: Iterable[str], lookback_ms: int
    ) -> ReadPlan:
        plan = cls(written=frozenset(written))
        wanted: list[tuple[MatcherSet, int, int]] = []
        for expr in exprs:
            if expr is None:
                plan.reads_written.append(True)
                continue
            _selectors(expr, lookback_ms, wanted)
            plan.reads_written.append(
                any(
                    isinstance(node, ast.VectorSelector)
                    and not plan.cacheable(frozenset(node.matchers))
                    for node in ast.walk(expr)
                )
            )
        # Most general selectors first, so the narrower ones fold into them.
        wanted.sort(key=lambda w: len(w[0]))
        for matchers, back, ahead in wanted:
            if not plan.cacheable(matchers):
                continue
            for base in plan.bases:
                if base.matchers <= matchers:
                    base.back_ms = max(base.back_ms, back)
                    base.ahead_ms = min(base.ahead_ms, ahead)
                    break
            else:
                plan.bases.append(Base(matchers, back, ahead))
        plan._plan_fetches()
        return plan

    def _plan_fetches(self) -> None:
        together: dict[tuple[MatcherSet, int, int], list[Base]] = {}
        for base in self.bases:
            names = [m for m in base.matchers if m.name == METRIC_NAME]
            if (
                len(names) == 1
                and names[0].type is MatchType.EQUAL
                and _PLAIN_NAME.match(names[0].value)
            ):
                key = (base.matchers - {names[0]}, base.back_ms, base.ahead_ms)
                together.setdefault(key, []).append(base)
            else:
                base.fetch = len(self.fetches)
                self.fetches.append(
                    Fetch(list(base.matchers), base.matchers, base.back_ms, base.ahead_ms)
                )
        for (common, back, ahead), bases in together.items():
            metrics = sorted({m.value for b in bases for m in b.matchers if m.name == METRIC_NAME})
            read_name = (
                Matcher(MatchType.EQUAL, METRIC_NAME, metrics[0])
                if len(metrics) == 1
                else Matcher(MatchType.REGEX, METRIC_NAME, "|".join(metrics))
            )
            for base in bases:
                base.fetch = len(self.fetches)
            self.fetches.append(Fetch([read_name, *common], common, back, ahead))

    def cacheable(self, matchers: MatcherSet) -> bool:
        """True if some `__name__` matcher rules out every name the group writes."""
        return any(
            m.name == METRIC_NAME and not any(m.matches(name) for name in self.written)
            for m in matchers
        )


def _selectors(expr: ast.Expr, lookback_ms: int, out: list[tuple[MatcherSet, int, int]]) -> None:
    """Selectors whose read range follows from the evaluation time alone."""
    if isinstance(expr, ast.Subquery):
        return  # inner evaluation times vary: read through
    if isinstance(expr, ast.MatrixSelector | ast.VectorSelector):
        selector = expr.selector if isinstance(expr, ast.MatrixSelector) else expr
        if selector.at is None:
            span = expr.range_ms if isinstance(expr, ast.MatrixSelector) else lookback_ms
            # The engine reads (t - span, t] at t = ts - offset.
            out.append(
                (frozenset(selector.matchers), selector.offset_ms + span, selector.offset_ms)
            )
        return
    for child in ast.children(expr):
        _selectors(child, lookback_ms, out)


class _Rows:
    """A base's series as flat columns, filtered and sliced without touching the store."""

    def __init__(self, flat: Flat) -> None:
        labels, ts, vals, offsets = flat
        nonempty = np.diff(offsets) > 0
        if not nonempty.all():
            rows = np.flatnonzero(nonempty)
            labels = [labels[i] for i in rows.tolist()]
            offsets = np.append(offsets[rows], offsets[-1])
        self.labels, self.ts, self.vals, self.offsets = labels, ts, vals, offsets
        self.first = ts[offsets[:-1]]
        self.last = ts[offsets[1:] - 1]
        self._columns: dict[str, tuple[list[str], npt.NDArray[np.intp]]] = {}

    def _column(self, name: str) -> tuple[list[str], npt.NDArray[np.intp]]:
        """Distinct values of a label and each row's index into them."""
        column = self._columns.get(name)
        if column is None:
            codes: dict[str, int] = {}
            index = np.fromiter(
                (codes.setdefault(lbls.get(name), len(codes)) for lbls in self.labels),
                np.intp,
                len(self.labels),
            )
            column = (list(codes), index)
            self._columns[name] = column
        return column

    def select(self, extra: Iterable[Matcher], start_ms: int, end_ms: int) -> Flat:
        if not self.labels:
            return [], self.ts, self.vals, self.offsets
        rows = (self.last >= start_ms) & (self.first <= end_ms)
        for m in extra:
            values, index = self._column(m.name)
            allowed = np.fromiter((m.matches(v) for v in values), bool, len(values))
            rows &= allowed[index]
        offsets = self.offsets
        starts = offsets[:-1]
        lo, hi = starts, offsets[1:]
        sliced = False
        if not ((self.first[rows] >= start_ms).all() and (self.last[rows] <= end_ms).all()):
            # Per row, the samples in [start_ms, end_ms] (each row's timestamps are sorted).
            lo = starts + np.add.reduceat((self.ts < start_ms).astype(np.int64), starts)
            hi = starts + np.add.reduceat((self.ts <= end_ms).astype(np.int64), starts)
            rows &= hi > lo
            sliced = True
        if not sliced and rows.all():
            return self.labels, self.ts, self.vals, offsets
        keep = np.flatnonzero(rows)
        lo, hi = lo[keep], hi[keep]
        lengths = hi - lo
        out_offsets = np.zeros(len(keep) + 1, dtype=np.int64)
        np.cumsum(lengths, out=out_offsets[1:])
        idx = np.arange(out_offsets[-1], dtype=np.int64) + np.repeat(lo - out_offsets[:-1], lengths)
        labels = self.labels
        return [labels[i] for i in keep.tolist()], self.ts[idx], self.vals[idx], out_offsets


class GroupQuerier:
    """The `Querier` the rules of one group evaluation read (see the module docstring)."""

    def __init__(self, store: Querier, plan: ReadPlan, eval_ms: int) -> None:
        self.store = store
        self.plan = plan
        self.eval_ms = eval_ms
        self._rows: dict[int, _Rows] = {}
        self._exact: dict[tuple[MatcherSet, int, int], Flat] = {}
        self.store_reads = 0

    def select_flat(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Flat:
        wanted = frozenset(matchers)
        if not self.plan.cacheable(wanted):
            self.store_reads += 1
            return select_flat(self.store, matchers, start_ms, end_ms)
        back, ahead = self.eval_ms - start_ms + 1, self.eval_ms - end_ms
        for base in self.plan.bases:
            if base.matchers <= wanted and base.covers(back, ahead):
                rows = self._rows.get(base.fetch)
                fetch = self.plan.fetches[base.fetch]
                if rows is None:
                    flat = select_flat(
                        self.store,
                        fetch.matchers,
                        self.eval_ms - fetch.back_ms + 1,
                        self.eval_ms - fetch.ahead_ms,
                    )
                    self.store_reads += 1
                    rows = self._rows[base.fetch] = _Rows(flat)
                return rows.select(wanted - fetch.common, start_ms, end_ms)
        key = (wanted, start_ms, end_ms)
        hit = self._exact.get(key)
        if hit is None:
            self.store_reads += 1
            hit = self._exact[key] = select_flat(self.store, matchers, start_ms, end_ms)
        return hit

    def select(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> list[SeriesData]:
        labels, ts, vals, offsets = self.select_flat(matchers, start_ms, end_ms)
        bounds = offsets.tolist()
        return [
            SeriesData(lbls, ts[a:b], vals[a:b])
            for lbls, a, b in zip(labels, bounds[:-1], bounds[1:], strict=True)
            if b > a
        ]


__all__ = ["Base", "Fetch", "GroupQuerier", "ReadPlan"]
