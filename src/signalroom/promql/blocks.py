"""Intermediate values of the evaluator: whole-query-range blocks of series.

An instant vector over S evaluation steps is a `VectorBlock`: labels per series plus
(series x steps) arrays of values and presence. A range vector is a `RangeBlock`: per series
the raw samples plus one window (start exclusive, end inclusive) per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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


@dataclass
class RangeBlock:
    """A range vector: samples per series and a (start, end] window per step."""

    labels: list[Labels]
    timestamps: list[IntArray]
    values: list[FloatArray]
    win_start: IntArray  # (S,) exclusive
    win_end: IntArray  # (S,) inclusive
    range_ms: int
    drop_name: BoolArray
    metric_names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.labels)

    def bounds(self, i: int) -> tuple[IntArray, IntArray]:
        """Index range [lo, hi) of series i's samples inside each step's window."""
        ts = self.timestamps[i]
        lo = np.searchsorted(ts, self.win_start, side="right").astype(np.int64)
        hi = np.searchsorted(ts, self.win_end, side="right").astype(np.int64)
        return lo, hi


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
