"""Intermediate values of the evaluator: whole-query-range blocks of series.

An instant vector over S evaluation steps is a `VectorBlock`: labels per series plus
(series x steps) arrays of values and presence. A range vector is a `RangeBlock`: per series
the raw samples plus one window (start exclusive, end inclusive) per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import Labels
from signalroom.promql.value import ExecutionError

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

DUPLICATE_LABELSET = "vector cannot contain metrics with the same labelset"


@dataclass
class ScalarBlock:
    """A scalar per step."""

    values: FloatArray


@dataclass
class StringValue:
    value: str


@dataclass
class VectorBlock:
    """An instant vector evaluated at every step."""

    labels: list[Labels]
    values: FloatArray  # (n, S)
    mask: BoolArray  # (n, S)
    drop_name: BoolArray  # (n,): `__name__` is removed at the end (Prometheus 3)
    ordered: bool = False  # row order is meaningful for instant queries (sort, topk)

    @property
    def steps(self) -> int:
        return int(self.values.shape[1])

    def __len__(self) -> int:
        return len(self.labels)

    @staticmethod
    def empty(steps: int) -> VectorBlock:
        return VectorBlock(
            [],
            np.zeros((0, steps), dtype=np.float64),
            np.zeros((0, steps), dtype=bool),
            np.zeros(0, dtype=bool),
        )

    def take(self, rows: list[int] | IntArray) -> VectorBlock:
        idx = np.asarray(rows, dtype=np.int64)
        return VectorBlock(
            [self.labels[i] for i in idx],
            self.values[idx],
            self.mask[idx],
            self.drop_name[idx],
            self.ordered,
        )


# Windows evaluated per NumPy pass: bounds the (series x steps) temporaries of range functions.
WINDOW_CHUNK = 1 << 18


@dataclass
class RangeBlock:
    """A range vector: every series' samples in flat arrays plus a (start, end] window per step.

    Series i owns ``timestamps[offsets[i]:offsets[i + 1]]`` (sorted) and the same slice of
    ``values``; keeping all series in one array lets range functions run once for all of them.
    """

    labels: list[Labels]
    timestamps: IntArray  # all series' samples, concatenated
    values: FloatArray
    offsets: IntArray  # (n + 1,)
    win_start: IntArray  # (S,) exclusive
    win_end: IntArray  # (S,) inclusive
    range_ms: int
    drop_name: BoolArray
    metric_names: list[str] = field(default_factory=list)
    _bounds: tuple[IntArray, IntArray] | None = field(default=None, repr=False, compare=False)

    @staticmethod
    def from_series(
        labels: list[Labels],
        timestamps: list[IntArray],
        values: list[FloatArray],
        win_start: IntArray,
        win_end: IntArray,
        range_ms: int,
        drop_name: BoolArray,
    ) -> RangeBlock:
        offsets = np.zeros(len(labels) + 1, dtype=np.int64)
        np.cumsum([len(t) for t in timestamps], out=offsets[1:])
        return RangeBlock(
            labels,
            _concat(timestamps, np.int64),
            _concat(values, np.float64),
            offsets,
            win_start,
            win_end,
            range_ms,
            drop_name,
        )

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def steps(self) -> int:
        return len(self.win_end)

    def series(self, i: int) -> tuple[IntArray, FloatArray]:
        """Series i's timestamps and values (views)."""
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.timestamps[a:b], self.values[a:b]

    def bounds(self, i: int) -> tuple[IntArray, IntArray]:
        """Index range [lo, hi) of series i's samples inside each step's window."""
        ts, _ = self.series(i)
        lo = np.searchsorted(ts, self.win_start, side="right").astype(np.int64)
        hi = np.searchsorted(ts, self.win_end, side="right").astype(np.int64)
        return lo, hi

    def chunks(self) -> list[tuple[int, int]]:
        """Series ranges [first, last) of about WINDOW_CHUNK windows each."""
        per = max(1, WINDOW_CHUNK // max(self.steps, 1))
        n = len(self.labels)
        return [(a, min(a + per, n)) for a in range(0, n, per)]

    def window_bounds(self, first: int = 0, last: int | None = None) -> tuple[IntArray, IntArray]:
        """Flat-array indices [lo, hi) of each window, shape (last - first, S)."""
        last = len(self.labels) if last is None else last
        whole = first == 0 and last == len(self.labels)
        if whole and self._bounds is not None:
            return self._bounds
        lo, hi = flat_search(
            self.timestamps, self.offsets[first : last + 1], self.win_start, self.win_end
        )
        if whole:
            self._bounds = (lo, hi)
        return lo, hi

    def sample_count(self) -> int:
        """Samples inside all windows (for the query's sample limit)."""
        total = 0
        for a, b in self.chunks():
            lo, hi = self.window_bounds(a, b)
            total += int((hi - lo).sum())
        return total


def _concat(parts: list[npt.NDArray[Any]], dtype: type) -> npt.NDArray[Any]:
    if not parts:
        return np.zeros(0, dtype=dtype)
    return np.concatenate(parts).astype(dtype, copy=False)


def flat_search(
    ts: IntArray, offsets: IntArray, starts: IntArray, ends: IntArray
) -> tuple[IntArray, IntArray]:
    """Per series and step, indices of the first sample > start and the first sample > end.

    ``ts[offsets[i]:offsets[i + 1]]`` is series i (sorted). One `searchsorted` over a composite
    key (series number, time) answers all series x steps at once; huge spans fall back to a
    loop per series so the key cannot overflow.
    """
    n = len(offsets) - 1
    steps = len(starts)
    base = int(offsets[0])
    seg = ts[base : int(offsets[-1])]
    if n <= 0 or steps == 0:
        empty = np.zeros((max(n, 0), steps), dtype=np.int64)
        return empty, empty.copy()
    if len(seg) == 0:
        zero = np.full((n, steps), base, dtype=np.int64)
        return zero, zero.copy()
    t_min = int(seg.min())
    t_max = int(seg.max())
    width = t_max - t_min + 3
    if width * (n + 1) >= 2**62:
        lo = np.empty((n, steps), dtype=np.int64)
        hi = np.empty((n, steps), dtype=np.int64)
        for i in range(n):
            a, b = int(offsets[i]), int(offsets[i + 1])
            lo[i] = a + np.searchsorted(ts[a:b], starts, side="right")
            hi[i] = a + np.searchsorted(ts[a:b], ends, side="right")
        return lo, hi
    grid_step = _grid_step(ends) if steps >= _MIN_GRID_STEPS else 0
    inside = (
        min(t_min, int(starts.min())) > -_GRID_LIMIT and max(t_max, int(ends.max())) < _GRID_LIMIT
    )
    if grid_step and inside and _grid_step(starts) == grid_step:
        return _grid_search(seg, offsets, starts, ends, grid_step)
    # Series i's samples map to keys i*width + 1 .. i*width + width - 2; clipping a bound into
    # [0, width - 1] keeps it between series i-1's largest key and series i+1's smallest.
    counts = np.diff(offsets)
    series_base = np.arange(n, dtype=np.int64) * width
    keys = np.repeat(series_base, counts) + (seg - (t_min - 1))
    rows = series_base[:, None]

    def search(bounds: IntArray) -> IntArray:
        key = rows + np.clip(bounds - (t_min - 1), 0, width - 1)[None, :]
        found: IntArray = np.searchsorted(keys, key, side="right").astype(np.int64, copy=False)
        return found + base

    hi = search(ends)
    # Windows of a range query overlap on the step grid: when each window starts where the
    # window `shift` steps earlier ends, those starts were found with the ends already.
    shift = _shared_bounds(starts, ends)
    if shift is None:
        return search(starts), hi
    lo = np.empty_like(hi)
    lo[:, shift:] = hi[:, : steps - shift]
    if shift:
        lo[:, :shift] = search(starts[:shift])
    return lo, hi


# From this many steps on an evenly spaced grid, counting samples per step beats a binary
# search per (series, step): O(samples + series x steps) instead of a log factor on the
# (series x steps) searches.
_MIN_GRID_STEPS = 16
_GRID_LIMIT = 2**61  # times within this: the bin arithmetic cannot overflow


def _grid_step(bounds: IntArray) -> int:
    """The spacing of evenly spaced, increasing ``bounds``; 0 if they are not."""
    if len(bounds) < 2:
        return 0
    step = int(bounds[1] - bounds[0])
    if step <= 0 or int(bounds[-1] - bounds[0]) != step * (len(bounds) - 1):
        return 0
    expected = bounds[0] + step * np.arange(len(bounds), dtype=np.int64)
    return step if np.array_equal(bounds, expected) else 0


def _count_upto(seg: IntArray, lengths: IntArray, bounds: IntArray, step: int) -> IntArray:
    """Per series (of ``lengths`` samples each) and bound, how many of the series' samples
    are at or before the bound (``bounds`` evenly spaced by ``step``): each sample counted in
    the bin of the first bound it does not pass, then a running sum along the bounds."""
    n, steps = len(lengths), len(bounds)
    # bin b holds samples in (bounds[b-1], bounds[b]]; bin `steps` those after the last.
    # In place: two arrays of one int64 per sample at most, as a binary search needs.
    bins = seg - int(bounds[0])
    bins += step - 1
    bins //= step
    np.clip(bins, 0, steps, out=bins)
    bins += np.repeat(np.arange(0, n * (steps + 1), steps + 1, dtype=np.int64), lengths)
    counts = np.bincount(bins, minlength=n * (steps + 1))
    del bins
    upto: IntArray = np.cumsum(counts.reshape(n, steps + 1)[:, :steps], axis=1)
    return upto


def _grid_search(
    seg: IntArray, offsets: IntArray, starts: IntArray, ends: IntArray, step: int
) -> tuple[IntArray, IntArray]:
    """`flat_search` for windows starting and ending on an evenly spaced grid."""
    lengths = np.diff(offsets)
    first = offsets[:-1, None]
    steps = len(ends)
    shift = _shared_bounds(starts, ends)
    if shift is not None:
        # the starts before the first end lie on the same grid: one count covers both
        bounds = int(starts[0]) + step * np.arange(shift + steps, dtype=np.int64)
        upto = _count_upto(seg, lengths, bounds, step)
        upto += first
        return upto[:, :steps], upto[:, shift:]
    hi = _count_upto(seg, lengths, ends, step)
    hi += first
    lo = _count_upto(seg, lengths, starts, step)
    lo += first
    return lo, hi


def _shared_bounds(starts: IntArray, ends: IntArray) -> int | None:
    """k such that ``starts[k:] == ends[:-k]`` (0: equal arrays), if there is one."""
    steps = len(ends)
    if np.array_equal(starts, ends):
        return 0
    if steps < 2:
        return None
    step = int(ends[1] - ends[0])
    width = int(ends[0] - starts[0])
    if step <= 0 or width <= 0 or width % step:
        return None
    shift = width // step
    if shift >= steps or not np.array_equal(starts[shift:], ends[: steps - shift]):
        return None
    return shift


Value = ScalarBlock | StringValue | VectorBlock | RangeBlock


class VectorBuilder:
    """Collects output series, merging rows with equal labels and rejecting collisions."""

    def __init__(self, steps: int) -> None:
        self.steps = steps
        self._index: dict[Labels, int] = {}
        self._labels: list[Labels] = []
        self._values: list[FloatArray] = []
        self._masks: list[BoolArray] = []
        self._drop: list[bool] = []

    def add(
        self,
        labels: Labels,
        values: FloatArray,
        mask: BoolArray,
        drop_name: bool,
        error: str = DUPLICATE_LABELSET,
    ) -> None:
        if not mask.any():
            return
        i = self._index.get(labels)
        if i is None:
            self._index[labels] = len(self._labels)
            self._labels.append(labels)
            self._values.append(np.where(mask, values, 0.0))
            self._masks.append(mask.copy())
            self._drop.append(drop_name)
            return
        if (self._masks[i] & mask).any():
            raise ExecutionError(error)
        self._values[i] = np.where(mask, values, self._values[i])
        self._masks[i] = self._masks[i] | mask
        self._drop[i] = self._drop[i] and drop_name

    def build(self, ordered: bool = False) -> VectorBlock:
        if not self._labels:
            return VectorBlock.empty(self.steps)
        return VectorBlock(
            self._labels,
            np.vstack(self._values),
            np.vstack(self._masks),
            np.array(self._drop, dtype=bool),
            ordered,
        )
