"""Typed errors of the time-series store.

Every rejection names the rule it broke (``reason``: the limit's or rule's name, as used in the
``signalroom_tsdb_rejected_samples_total{reason}`` counter) and the series or metric at fault.
``retryable`` tells an HTTP layer whether the sender may try again later (429) or must drop the
data (400).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = [
    "AppendError",
    "DuplicateSampleError",
    "InvalidLabelsError",
    "LimitError",
    "OutOfBoundsError",
    "OutOfOrderError",
    "TSDBError",
]


class TSDBError(RuntimeError):
    """Base class of the store's errors."""


class AppendError(TSDBError):
    """Samples of one series (or a whole request) that were not stored, and why."""

    reason: str = "invalid"
    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        series: str = "",
        metric: str = "",
        timestamps: Sequence[int] = (),
        samples: int = 0,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.series = series
        self.metric = metric
        self.timestamps = tuple(int(t) for t in timestamps[:10])
        self.samples = samples or len(timestamps)

    def __str__(self) -> str:
        return self.message


class LimitError(AppendError):
    """A configured limit was breached; ``limit`` is its name (``max_series_per_metric``...)."""

    def __init__(
        self,
        limit: str,
        message: str,
        *,
        retryable: bool,
        series: str = "",
        metric: str = "",
        samples: int = 0,
    ) -> None:
        super().__init__(message, series=series, metric=metric, samples=samples)
        self.limit = limit
        self.reason = limit
        self.retryable = retryable


class InvalidLabelsError(AppendError):
    """The series' label set is not valid (bad metric or label name, duplicate name...)."""

    reason = "invalid_labels"


class OutOfOrderError(AppendError):
    """Samples older than the series' newest sample, beyond the out-of-order window."""

    reason = "out_of_order"


class OutOfBoundsError(AppendError):
    """Samples of a new series older than the data already compacted out of the head."""

    reason = "out_of_bounds"


class DuplicateSampleError(AppendError):
    """A sample at an existing timestamp with a different value."""

    reason = "duplicate_sample"
