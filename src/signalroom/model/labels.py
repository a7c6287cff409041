"""Label sets: the identity of a time series.

`Labels` is immutable, hashable and kept sorted by name, so two label sets with the same pairs
compare and hash equal whatever order they were built in. Empty values are dropped, as in
Prometheus (a label with an empty value is the same as no label).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from typing import overload

METRIC_NAME = "__name__"
METRIC_TYPE = "__type__"
METRIC_UNIT = "__unit__"
# Labels that belong to the metric's identity and go away with the name (Prometheus 3.5).
NAME_LABELS = (METRIC_NAME, METRIC_TYPE, METRIC_UNIT)


class Labels:
    """An immutable, sorted set of label name/value pairs."""

    __slots__ = ("_hash", "_map", "_pairs", "_without_name")

    _pairs: tuple[tuple[str, str], ...]
    _map: dict[str, str]
    _hash: int
    _without_name: Labels | None

    def __init__(self, pairs: Mapping[str, str] | Iterable[tuple[str, str]] | None = None) -> None:
        if pairs is None:
            items: Iterable[tuple[str, str]] = ()
        elif isinstance(pairs, Mapping):
            items = pairs.items()
        else:
            items = pairs
        mapping = {k: v for k, v in items if v != ""}
        self._pairs = tuple(sorted(mapping.items()))
        self._map = dict(self._pairs)
        self._hash = hash(self._pairs)
        self._without_name = None

    @classmethod
    def _from_sorted(cls, pairs: tuple[tuple[str, str], ...]) -> Labels:
        obj = cls.__new__(cls)
        obj._pairs = pairs
        obj._map = dict(pairs)
        obj._hash = hash(pairs)
        obj._without_name = None
        return obj

    @classmethod
    def of(cls, **kwargs: str) -> Labels:
        """Build from keyword arguments: `Labels.of(job="api")`."""
        return cls(kwargs)

    # --- mapping-like access -------------------------------------------------
    def get(self, name: str, default: str = "") -> str:
        """Value of `name`, or `default` ("" like Prometheus) when absent."""
        return self._map.get(name, default)

    def __contains__(self, name: object) -> bool:
        return name in self._map

    def __getitem__(self, name: str) -> str:
        return self._map[name]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._pairs)

    def __len__(self) -> int:
        return len(self._pairs)

    def __bool__(self) -> bool:
        return bool(self._pairs)

    def names(self) -> list[str]:
        return [k for k, _ in self._pairs]

    def items(self) -> tuple[tuple[str, str], ...]:
        return self._pairs

    def to_dict(self) -> dict[str, str]:
        return dict(self._map)

    @property
    def name(self) -> str:
        """The metric name (`__name__`), "" when absent."""
        return self._map.get(METRIC_NAME, "")

    # --- derived sets -----------------------------------------------------------
    def without(self, *names: str) -> Labels:
        """A copy with the given label names removed."""
        if not any(n in self._map for n in names):
            return self
        if len(names) == 1:
            (only,) = names
            return Labels._from_sorted(tuple(p for p in self._pairs if p[0] != only))
        drop = set(names)
        return Labels._from_sorted(tuple(p for p in self._pairs if p[0] not in drop))

    def only(self, *names: str) -> Labels:
        """A copy keeping only the given label names."""
        keep = set(names)
        return Labels._from_sorted(tuple(p for p in self._pairs if p[0] in keep))

    def without_name(self) -> Labels:
        """Drop `__name__` (and the `__type__`/`__unit__` metadata labels that go with it)."""
        # Cached: the store hands out the same Labels object per series, and every query
        # result drops the name of most of its series.
        if self._without_name is None:
            self._without_name = self.without(*NAME_LABELS)
        return self._without_name

    @overload
    def with_(self, name: str, value: str) -> Labels: ...
    @overload
    def with_(self, name: Mapping[str, str]) -> Labels: ...

    def with_(self, name: str | Mapping[str, str], value: str = "") -> Labels:
        """A copy with labels set (an empty value deletes the label)."""
        updates = {name: value} if isinstance(name, str) else dict(name)
        merged = dict(self._map)
        for k, v in updates.items():
            if v == "":
                merged.pop(k, None)
            else:
                merged[k] = v
        return Labels(merged)

    def match_signature(self, names: Iterable[str], on: bool) -> tuple[tuple[str, str], ...]:
        """The key used for vector matching.

        With `on=True` only `names` are kept; otherwise `names` and `__name__` are dropped.
        """
        wanted = set(names)
        if on:
            return tuple(p for p in self._pairs if p[0] in wanted)
        wanted.add(METRIC_NAME)
        return tuple(p for p in self._pairs if p[0] not in wanted)

    def hash64(self) -> int:
        """Prometheus's labels.Hash(): xxhash64 of `name\xffvalue\xff...`."""
        buf = bytearray()
        for k, v in self._pairs:
            buf += k.encode()
            buf += b"\xff"
            buf += v.encode()
            buf += b"\xff"
        return xxhash64(bytes(buf))

    # --- identity -----------------------------------------------------------------
    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Labels):
            return NotImplemented
        return self._hash == other._hash and self._pairs == other._pairs

    def __lt__(self, other: Labels) -> bool:
        return compare_labels(self, other) < 0

    def __repr__(self) -> str:
        return f"Labels({self})"

    def __str__(self) -> str:
        """Prometheus text form: `name{a="b", c="d"}`."""
        inner = ", ".join(f"{k}={_quote(v)}" for k, v in self._pairs if k != METRIC_NAME)
        return f"{self.name}{{{inner}}}"


def compare_labels(a: Labels, b: Labels) -> int:
    """Order label sets as Prometheus's labels.Compare does (pairwise name, then value)."""
    pa, pb = a.items(), b.items()
    for (an, av), (bn, bv) in zip(pa, pb, strict=False):
        if an != bn:
            return -1 if an < bn else 1
        if av != bv:
            return -1 if av < bv else 1
    return len(pa) - len(pb)


def _quote(value: str) -> str:
    escaped = value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


EMPTY_LABELS = Labels()

_M64 = (1 << 64) - 1
_P1 = 11400714785074694791
_P2 = 14029467366897019727
_P3 = 1609587929392839161
_P4 = 9650029242287828579
_P5 = 2870177450012600261


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M64


def _round(acc: int, lane: int) -> int:
    acc = (acc + lane * _P2) & _M64
    return (_rotl(acc, 31) * _P1) & _M64


def xxhash64(data: bytes, seed: int = 0) -> int:
    """XXH64 (used by Prometheus for label hashes, e.g. limit_ratio sampling)."""
    n = len(data)
    pos = 0
    if n >= 32:
        v1 = (seed + _P1 + _P2) & _M64
        v2 = (seed + _P2) & _M64
        v3 = seed
        v4 = (seed - _P1) & _M64
        while pos + 32 <= n:
            v1 = _round(v1, int.from_bytes(data[pos : pos + 8], "little"))
            v2 = _round(v2, int.from_bytes(data[pos + 8 : pos + 16], "little"))
            v3 = _round(v3, int.from_bytes(data[pos + 16 : pos + 24], "little"))
            v4 = _round(v4, int.from_bytes(data[pos + 24 : pos + 32], "little"))
            pos += 32
        h = (_rotl(v1, 1) + _rotl(v2, 7) + _rotl(v3, 12) + _rotl(v4, 18)) & _M64
        for v in (v1, v2, v3, v4):
            h ^= _round(0, v)
            h = (h * _P1 + _P4) & _M64
    else:
        h = (seed + _P5) & _M64
    h = (h + n) & _M64
    while pos + 8 <= n:
        h ^= _round(0, int.from_bytes(data[pos : pos + 8], "little"))
        h = (_rotl(h, 27) * _P1 + _P4) & _M64
        pos += 8
    if pos + 4 <= n:
        h ^= (int.from_bytes(data[pos : pos + 4], "little") * _P1) & _M64
        h = (_rotl(h, 23) * _P2 + _P3) & _M64
        pos += 4
    while pos < n:
        h ^= (data[pos] * _P5) & _M64
        h = (_rotl(h, 11) * _P1) & _M64
        pos += 1
    h ^= h >> 33
    h = (h * _P2) & _M64
    h ^= h >> 29
    h = (h * _P3) & _M64
    h ^= h >> 32
    return h
