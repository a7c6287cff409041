"""The storage interface the PromQL engine reads, and an in-memory implementation.

The time-series store implements `Querier` structurally; promql never imports it.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
import re2

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.model.samples import STALE_NAN as STALE_NAN  # re-exported
from signalroom.model.samples import STALE_NAN_BITS as STALE_NAN_BITS
from signalroom.model.samples import is_stale_nan as is_stale_nan
from signalroom.model.samples import stale_mask as stale_mask


class MatchType(enum.Enum):
    EQUAL = "="
    NOT_EQUAL = "!="
    REGEX = "=~"
    NOT_REGEX = "!~"


@dataclass(frozen=True)
class Matcher:
    """A label matcher; regexes are RE2, fully anchored, and `.` matches newlines."""

    type: MatchType
    name: str
    value: str
    _regex: Any = field(default=None, compare=False, hash=False, repr=False)

    def __post_init__(self) -> None:
        if self.type in (MatchType.REGEX, MatchType.NOT_REGEX):
            object.__setattr__(self, "_regex", compile_anchored(self.value))

    def matches(self, value: str) -> bool:
        if self.type is MatchType.EQUAL:
            return value == self.value
        if self.type is MatchType.NOT_EQUAL:
            return value != self.value
        matched = self._regex.fullmatch(value) is not None
        return matched if self.type is MatchType.REGEX else not matched

    def matches_empty(self) -> bool:
        return self.matches("")

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.type.value}"{escaped}"'


_REGEX_CACHE: dict[str, Any] = {}


def compile_anchored(pattern: str) -> Any:
    """Compile an RE2 regex that must match the whole string, with `.` matching newlines."""
    compiled = _REGEX_CACHE.get(pattern)
    if compiled is None:
        options = re2.Options()
        options.dot_nl = True
        options.log_errors = False  # invalid patterns raise; RE2 need not also log them
        compiled = re2.compile(f"^(?:{pattern})$", options)
        if len(_REGEX_CACHE) > 10_000:
            _REGEX_CACHE.clear()
        _REGEX_CACHE[pattern] = compiled
    return compiled


@dataclass
class SeriesData:
    """One series' samples in a time range: int64 ms timestamps and float64 values."""

    labels: Labels
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


class Querier(Protocol):
    """What the engine needs from a time-series store."""

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> Iterable[SeriesData]:
        """Series matching all matchers, with their samples in [start_ms, end_ms]."""
        ...


Flat = tuple[list[Labels], npt.NDArray[np.int64], npt.NDArray[np.float64], npt.NDArray[np.int64]]
"""Series in label order (`Labels.items()`) with flat timestamp and value arrays: series i
owns samples ``offsets[i]:offsets[i + 1]`` (the last array)."""


@runtime_checkable
class FlatQuerier(Querier, Protocol):
    """A `Querier` that also answers `select` as flat arrays (stores that read many series at
    once, without an object per series)."""

    def select_flat(self, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Flat:
        """Series with samples in [start_ms, end_ms], as `Flat`."""
        ...


def select_flat(querier: Querier, matchers: Sequence[Matcher], start_ms: int, end_ms: int) -> Flat:
    """Matching series with samples in the range as `Flat`: the querier's own `select_flat`
    when it is a `FlatQuerier`, else its `select` sorted and concatenated."""
    if isinstance(querier, FlatQuerier):
        return querier.select_flat(matchers, start_ms, end_ms)
    found = sorted(
        (s for s in querier.select(matchers, start_ms, end_ms) if len(s.timestamps)),
        key=lambda s: s.labels.items(),  # the order of Prometheus' labels.Compare
    )
    offsets = np.zeros(len(found) + 1, dtype=np.int64)
    if not found:
        return [], np.zeros(0, np.int64), np.zeros(0, np.float64), offsets
    np.cumsum([len(s.timestamps) for s in found], out=offsets[1:])
    ts = np.concatenate([s.timestamps for s in found]).astype(np.int64, copy=False)
    vals = np.concatenate([s.values for s in found]).astype(np.float64, copy=False)
    return [s.labels for s in found], ts, vals, offsets


class LabelQuerier(Protocol):
    """Optional label look-ups (for /api/v1/labels and /api/v1/label/<name>/values)."""

    def label_names(
        self, matchers: Sequence[Matcher] = (), start_ms: int = ..., end_ms: int = ...
    ) -> list[str]: ...

    def label_values(
        self, name: str, matchers: Sequence[Matcher] = (), start_ms: int = ..., end_ms: int = ...
    ) -> list[str]: ...


class _Series:
    __slots__ = ("labels", "timestamps", "values")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.timestamps: list[int] = []
        self.values: list[float] = []


class MemoryStorage:
    """An in-memory series store with an inverted index; for tests and promqltest."""

    def __init__(self) -> None:
        self._series: dict[Labels, _Series] = {}
        self._postings: dict[str, dict[str, set[Labels]]] = {}
        self._frozen: dict[Labels, tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]] = {}

    def clear(self) -> None:
        self._series.clear()
        self._postings.clear()
        self._frozen.clear()

    def add(self, labels: Labels, timestamp_ms: int, value: float) -> None:
        """Append a sample; out-of-order samples are inserted in place."""
        series = self._series.get(labels)
        if series is None:
            series = _Series(labels)
            self._series[labels] = series
            for name, val in labels:
                self._postings.setdefault(name, {}).setdefault(val, set()).add(labels)
        self._frozen.pop(labels, None)
        if series.timestamps and timestamp_ms <= series.timestamps[-1]:
            import bisect

            idx = bisect.bisect_left(series.timestamps, timestamp_ms)
            if idx < len(series.timestamps) and series.timestamps[idx] == timestamp_ms:
                series.values[idx] = value
                return
            series.timestamps.insert(idx, timestamp_ms)
            series.values.insert(idx, value)
            return
        series.timestamps.append(timestamp_ms)
        series.values.append(value)

    def add_series(
        self, labels: Labels, timestamps: Sequence[int], values: Sequence[float]
    ) -> None:
        for t, v in zip(timestamps, values, strict=True):
            self.add(labels, int(t), float(v))

    def _arrays(self, labels: Labels) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
        cached = self._frozen.get(labels)
        if cached is None:
            series = self._series[labels]
            cached = (
                np.array(series.timestamps, dtype=np.int64),
                np.array(series.values, dtype=np.float64),
            )
            self._frozen[labels] = cached
        return cached

    def _candidates(self, matchers: Sequence[Matcher]) -> tuple[Iterable[Labels], list[Matcher]]:
        """Series the postings allow, plus the matchers still to check on each of them."""
        # Matchers that cannot match the empty value select through the postings (and hold
        # for every series found there); the others are checked per series.
        postings: list[set[Labels]] = []
        rest: list[Matcher] = []
        for m in matchers:
            if m.matches_empty():
                rest.append(m)
                continue
            values = self._postings.get(m.name, {})
            if m.type is MatchType.EQUAL:
                found = values.get(m.value, set())
            else:
                found = set()
                for val, members in values.items():
                    if m.matches(val):
                        found |= members
            if not found:
                return (), rest
            postings.append(found)
        if not postings:
            return self._series.keys(), rest
        postings.sort(key=len)
        return postings[0].intersection(*postings[1:]), rest

    def select(
        self, matchers: Sequence[Matcher], start_ms: int, end_ms: int
    ) -> Iterable[SeriesData]:
        out: list[SeriesData] = []
        candidates, rest = self._candidates(matchers)
        for labels in candidates:
            if rest and not all(m.matches(labels.get(m.name)) for m in rest):
                continue
            ts, vals = self._arrays(labels)
            if not len(ts):
                continue
            lo = 0 if start_ms <= ts[0] else int(ts.searchsorted(start_ms, "left"))
            hi = len(ts) if end_ms >= ts[-1] else int(ts.searchsorted(end_ms, "right"))
            if hi <= lo:
                continue
            out.append(SeriesData(labels, ts[lo:hi], vals[lo:hi]))
        return out

    def label_names(
        self,
        matchers: Sequence[Matcher] = (),
        start_ms: int = -(2**62),
        end_ms: int = 2**62,
    ) -> list[str]:
        """Label names of series with samples in the range (all series if no matchers)."""
        if not matchers:
            return sorted(self._postings)
        names: set[str] = set()
        for series in self.select(matchers, start_ms, end_ms):
            names.update(series.labels.names())
        return sorted(names)

    def label_values(
        self,
        name: str,
        matchers: Sequence[Matcher] = (),
        start_ms: int = -(2**62),
        end_ms: int = 2**62,
    ) -> list[str]:
        """Values of one label over series with samples in the range."""
        if not matchers:
            return sorted(self._postings.get(name, {}))
        values = {s.labels.get(name) for s in self.select(matchers, start_ms, end_ms)}
        values.discard("")
        return sorted(values)

    def metric_names(self) -> list[str]:
        return self.label_values(METRIC_NAME)
