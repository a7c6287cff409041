"""Columnar sample batches going into the store, and what the store answers."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import Labels
from signalroom.tsdb.errors import AppendError, InvalidLabelsError
from signalroom.tsdb.keys import decode_pairs_bytes

__all__ = ["MAX_ERRORS_KEPT", "METRIC_TYPES", "AppendResult", "MetricMetadata", "SampleBatch"]

MAX_ERRORS_KEPT = 100


@dataclass
class SampleBatch:
    """Samples of many series, as columns.

    ``series_index[i]`` is the series (an index into the label sets) of sample i, with
    ``timestamps[i]`` (int64 ms) and ``values[i]`` (float64, StaleNaN bits kept). Label sets
    come either as :class:`Labels` (``series``) or, from remote write, as wire-encoded labels
    fields (``keys``, see :mod:`signalroom.tsdb.keys`) that the store decodes only for series
    it has not seen; give one or both, with one entry per series.
    """

    series_index: npt.NDArray[np.int32]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]
    series: Sequence[Labels] | None = None
    keys: Sequence[bytes] | None = None

    def __post_init__(self) -> None:
        self.series_index = np.asarray(self.series_index, dtype=np.int32)
        self.timestamps = np.asarray(self.timestamps, dtype=np.int64)
        self.values = np.asarray(self.values, dtype=np.float64)
        n = len(self.series_index)
        if len(self.timestamps) != n or len(self.values) != n:
            raise ValueError(
                f"column lengths differ: series_index {n}, timestamps {len(self.timestamps)}, "
                f"values {len(self.values)}"
            )
        if self.series is None and self.keys is None:
            raise ValueError("a SampleBatch needs series label sets or keys")
        if self.series is not None and self.keys is not None and len(self.series) != len(self.keys):
            raise ValueError("series and keys must have one entry per series")
        if n and (self.series_index.min() < 0 or self.series_index.max() >= self.num_series):
            raise ValueError("series_index points outside the series list")

    @property
    def num_series(self) -> int:
        if self.keys is not None:
            return len(self.keys)
        assert self.series is not None
        return len(self.series)

    def __len__(self) -> int:
        return len(self.series_index)

    def pairs(self, i: int) -> list[tuple[str, str]]:
        """Label pairs of series i as sent (order and duplicates kept when the wire has them)."""
        if self.series is not None:
            return list(self.series[i].items())
        assert self.keys is not None
        try:
            raw = decode_pairs_bytes(self.keys[i])
            return [(n.decode(), v.decode()) for n, v in raw]
        except (ValueError, IndexError, UnicodeDecodeError) as exc:
            raise InvalidLabelsError(f"malformed labels of series #{i}: {exc}") from exc

    @classmethod
    def from_series(
        cls, items: Iterable[tuple[Labels, Sequence[int], Sequence[float]]]
    ) -> SampleBatch:
        """Build from (labels, timestamps, values) per series; handy in tests and scrapes."""
        series: list[Labels] = []
        index: list[npt.NDArray[np.int32]] = []
        stamps: list[npt.NDArray[np.int64]] = []
        vals: list[npt.NDArray[np.float64]] = []
        for i, (labels, ts, vs) in enumerate(items):
            t = np.asarray(ts, dtype=np.int64)
            v = np.asarray(vs, dtype=np.float64)
            if len(t) != len(v):
                raise ValueError(f"series {labels}: {len(t)} timestamps but {len(v)} values")
            series.append(labels)
            index.append(np.full(len(t), i, dtype=np.int32))
            stamps.append(t)
            vals.append(v)
        if not series:
            return cls(
                np.zeros(0, np.int32), np.zeros(0, np.int64), np.zeros(0, np.float64), series=[]
            )
        return cls(np.concatenate(index), np.concatenate(stamps), np.concatenate(vals), series)


@dataclass
class AppendResult:
    """What happened to a batch: samples stored, ignored duplicates, and rejections.

    ``errors`` keeps up to :data:`MAX_ERRORS_KEPT` typed errors (one per series and rule);
    ``rejected`` counts every rejected sample by reason.
    """

    accepted: int = 0
    duplicates_ignored: int = 0
    new_series: int = 0
    lsn: int = 0
    errors: list[AppendError] = field(default_factory=list)
    rejected: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.rejected

    @property
    def rejected_samples(self) -> int:
        return sum(self.rejected.values())

    def add_error(self, error: AppendError, samples: int) -> None:
        self.rejected[error.reason] = self.rejected.get(error.reason, 0) + samples
        if len(self.errors) < MAX_ERRORS_KEPT:
            self.errors.append(error)

    def raise_for_errors(self) -> None:
        """Raise the first error if any sample was rejected."""
        if self.errors:
            raise self.errors[0]

    def summary(self, limit: int = 5) -> str:
        """A human message: counts per reason and the first errors."""
        if self.ok:
            return f"{self.accepted} samples stored"
        counts = ", ".join(f"{n} {reason}" for reason, n in sorted(self.rejected.items()))
        first = "; ".join(str(e) for e in self.errors[:limit])
        more = len(self.errors) - limit
        tail = f" (and {more} more)" if more > 0 else ""
        return (
            f"{self.rejected_samples} samples rejected ({counts}), {self.accepted} stored: "
            f"{first}{tail}"
        )


METRIC_TYPES = (
    "unknown",
    "counter",
    "gauge",
    "histogram",
    "gaugehistogram",
    "summary",
    "info",
    "stateset",
)


@dataclass(frozen=True)
class MetricMetadata:
    """TYPE, HELP and UNIT of a metric family, as remote write and scrapes report them."""

    metric: str
    type: str = "unknown"
    help: str = ""
    unit: str = ""

    def to_api(self) -> dict[str, str]:
        """The form of one entry of /api/v1/metadata."""
        return {"type": self.type, "help": self.help, "unit": self.unit}
