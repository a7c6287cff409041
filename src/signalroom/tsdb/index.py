"""Series ids and the inverted label index, per tenant.

Per series the index keeps its key (bytes, see :mod:`signalroom.tsdb.keys`) in one dict and
NumPy columns indexed by series id (tenant, first and newest timestamp, newest value); no
Python object per series beyond the key. Postings -- label name -> value -> sorted series
ids -- are compact ``array('q')`` buffers. Series ids are never reused, so they stay valid in
blocks and the WAL across restarts.
"""

from __future__ import annotations

import re
import threading
from array import array
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb.keys import ParsedKeys, group_values, key_labels

__all__ = ["SeriesIndex", "TenantIndex", "validate_pairs"]

I64 = npt.NDArray[np.int64]
_EMPTY = np.zeros(0, dtype=np.int64)
NO_TIME = np.iinfo(np.int64).min  # newest timestamp of a series without samples
NO_DATA = np.iinfo(np.int64).max  # first timestamp of a series without samples
LABELS_CACHE_SIZE = 200_000  # decoded label sets kept for queries

_METRIC_NAME_RE = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_LABEL_NAME_RE = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*\Z")


def validate_pairs(pairs: Sequence[tuple[str, str]]) -> str | None:
    """What is wrong with a label set as sent, or None. Unsorted pairs are fine."""
    if not pairs:
        return "series has no labels"
    seen: set[str] = set()
    metric = None
    for name, value in pairs:
        if not name:
            return "empty label name"
        if name in seen:
            return f"duplicate label name {name!r}"
        seen.add(name)
        if name == METRIC_NAME:
            metric = value
            if not _METRIC_NAME_RE.match(value):
                return f"invalid metric name {value!r}"
        elif not _LABEL_NAME_RE.match(name):
            return f"invalid label name {name!r}"
    if not metric:
        return "missing metric name (__name__ label)"
    return None


class _Column:
    """A growable NumPy column indexed by series id."""

    __slots__ = ("data",)

    def __init__(self, dtype: type, fill: int | float) -> None:
        self.data: npt.NDArray[Any] = np.full(1024, fill, dtype=dtype)

    def ensure(self, size: int, fill: int | float) -> None:
        if size > len(self.data):
            grown = np.full(max(size, len(self.data) * 2), fill, dtype=self.data.dtype)
            grown[: len(self.data)] = self.data
            self.data = grown


@dataclass
class TenantIndex:
    """The series of one tenant: key -> id and the postings."""

    name: str
    number: int
    ids: dict[bytes, int] = field(default_factory=dict)
    postings: dict[str, dict[str, array]] = field(default_factory=dict)  # type: ignore[type-arg]
    all_ids: array = field(default_factory=lambda: array("q"))  # type: ignore[type-arg]

    @property
    def num_series(self) -> int:
        return len(self.ids)

    def series_of_metric(self, metric: str) -> int:
        members = self.postings.get(METRIC_NAME, {}).get(metric)
        return len(members) if members is not None else 0


class SeriesIndex:
    """All series of all tenants. Thread-safe: writers and readers take ``lock``."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tenants: dict[str, TenantIndex] = {}
        self.tenant_names: list[str] = []
        self.keys: list[bytes | None] = []  # series id -> key
        self.next_id = 0
        self._labels_cache: dict[int, Labels] = {}
        self._order_cache: dict[int, str | None] = {}
        self._tenant = _Column(np.int32, -1)
        self._first = _Column(np.int64, NO_DATA)
        self._last = _Column(np.int64, NO_TIME)
        self._last_value = _Column(np.float64, 0.0)
        self.num_series = 0
        self.removals = 0  # bumped whenever series are forgotten

    # -- columns ----------------------------------------------------------------------

    @property
    def tenant_of(self) -> npt.NDArray[np.int32]:
        return self._tenant.data

    @property
    def first_ts(self) -> I64:
        return self._first.data

    @property
    def last_ts(self) -> I64:
        return self._last.data

    @property
    def last_value(self) -> npt.NDArray[np.float64]:
        return self._last_value.data

    def tenant(self, name: str) -> TenantIndex:
        found = self.tenants.get(name)
        if found is None:
            with self.lock:
                found = self.tenants.get(name)
                if found is None:
                    found = TenantIndex(name, len(self.tenant_names))
                    self.tenant_names.append(name)
                    self.tenants[name] = found
        return found

    # -- writes (caller holds lock) ---------------------------------------------------

    def add(
        self,
        tenant: TenantIndex,
        key: bytes,
        pairs: Iterable[tuple[str, str]],
        series_id: int | None = None,
    ) -> int:
        """Register a new series (with a given id when restoring); returns its id."""
        sid = self.next_id if series_id is None else series_id
        self.next_id = max(self.next_id, sid + 1)
        size = sid + 1
        if size > len(self.keys):
            self.keys.extend([None] * (size - len(self.keys)))
        for column, fill in (
            (self._tenant, -1),
            (self._first, NO_DATA),
            (self._last, NO_TIME),
            (self._last_value, 0.0),
        ):
            column.ensure(size, fill)
        self.keys[sid] = key
        self._tenant.data[sid] = tenant.number
        tenant.ids[key] = sid
        tenant.all_ids.append(sid)
        postings = tenant.postings
        for name, value in pairs:
            values = postings.get(name)
            if values is None:
                values = postings[name] = {}
            members = values.get(value)
            if members is None:
                members = values[value] = array("q")
            members.append(sid)
        self.num_series += 1
        return sid

    def add_parsed(
        self, tenant: TenantIndex, keys: Sequence[bytes], parsed: ParsedKeys, chosen: I64
    ) -> I64:
        """Register new series at once: ``keys`` are the keys at ``chosen`` (indices of ok
        keys of ``parsed``, ascending, none known yet); returns their ids, in that order.

        Ids are handed out in order, so appending them to postings keeps those sorted. The
        postings are updated per distinct label value, grouped with NumPy, not per label."""
        count = len(chosen)
        first = self.next_id
        ids = np.arange(first, first + count, dtype=np.int64)
        if not count:
            return ids
        if len(keys) != count:
            raise ValueError("add_parsed needs one key per chosen series")
        size = first + count
        self.next_id = size
        for column, fill in (
            (self._tenant, -1),
            (self._first, NO_DATA),
            (self._last, NO_TIME),
            (self._last_value, 0.0),
        ):
            column.ensure(size, fill)
        self._tenant.data[first:size] = tenant.number
        owner = parsed.owner
        if len(self.keys) < first:
            self.keys.extend([None] * (first - len(self.keys)))
        self.keys.extend(keys)
        tenant.ids.update(zip(keys, range(first, size), strict=True))
        tenant.all_ids.frombytes(ids.tobytes())
        # labels of the chosen keys, each with its new id
        id_of = np.full(len(parsed.ok), -1, dtype=np.int64)
        id_of[chosen] = ids
        label_ids = id_of[owner]
        mine = label_ids >= 0
        label_ids = label_ids[mine]
        postings = tenant.postings
        rows_by_name = np.argsort(parsed.name_of[mine], kind="stable")
        label_rows = np.flatnonzero(mine)[rows_by_name]
        cuts = np.searchsorted(parsed.name_of[label_rows], np.arange(len(parsed.names) + 1))
        label_ids = label_ids[rows_by_name]
        for j, name in enumerate(parsed.names):
            if cuts[j] == cuts[j + 1]:
                continue
            rows = label_rows[cuts[j] : cuts[j + 1]]
            sids = label_ids[cuts[j] : cuts[j + 1]]
            values, value_of = group_values(parsed, rows)
            members_of = postings.get(name)
            if members_of is None:
                members_of = postings[name] = {}
            if len(values) == len(rows):  # one series per value (an id label, say)
                get = members_of.get
                for value, sid in zip(values, sids[np.argsort(value_of)].tolist(), strict=True):
                    members = get(value)
                    if members is None:
                        members_of[value] = array("q", (sid,))
                    else:
                        members.append(sid)
                continue
            by_value = np.argsort(value_of, kind="stable")
            bounds = np.searchsorted(value_of[by_value], np.arange(len(values) + 1)).tolist()
            grouped = sids[by_value]
            for k, value in enumerate(values):
                chunk = grouped[bounds[k] : bounds[k + 1]].tobytes()
                members = members_of.get(value)
                if members is None:
                    members = members_of[value] = array("q")
                members.frombytes(chunk)
        self.num_series += count
        return ids

    def finish_restore(self) -> None:
        """Sort postings after ids were added out of order (restoring snapshot + WAL)."""
        for tenant in self.tenants.values():
            tenant.all_ids = array(
                "q", np.unique(np.frombuffer(tenant.all_ids, np.int64)).tobytes()
            )
            for values in tenant.postings.values():
                for value, members in values.items():
                    arr = np.frombuffer(members, dtype=np.int64)
                    if len(arr) > 1 and not bool(np.all(arr[1:] > arr[:-1])):
                        values[value] = array("q", np.unique(arr).tobytes())

    def remove(self, ids: I64) -> int:
        """Forget series (their data is gone); returns how many were removed."""
        removed = 0
        with self.lock:
            doomed_by_tenant: dict[int, list[int]] = {}
            for sid in ids.tolist():
                key = self.keys[sid] if sid < len(self.keys) else None
                if key is None:
                    continue
                tenant = self.tenants[self.tenant_names[int(self._tenant.data[sid])]]
                del tenant.ids[key]
                self.keys[sid] = None
                doomed_by_tenant.setdefault(tenant.number, []).append(sid)
                removed += 1
            for number, doomed_list in doomed_by_tenant.items():
                tenant = self.tenants[self.tenant_names[number]]
                doomed = np.array(sorted(doomed_list), dtype=np.int64)
                keep = np.frombuffer(tenant.all_ids, np.int64)
                tenant.all_ids = array("q", np.setdiff1d(keep, doomed).tobytes())
                for name in list(tenant.postings):
                    values = tenant.postings[name]
                    for value in list(values):
                        arr = np.frombuffer(values[value], np.int64)
                        left = np.setdiff1d(arr, doomed, assume_unique=True)
                        if len(left) == len(arr):
                            continue
                        if len(left):
                            values[value] = array("q", left.tobytes())
                        else:
                            del values[value]
                    if not values:
                        del tenant.postings[name]
            self.num_series -= removed
            if removed:
                self.removals += 1
        return removed

    # -- reads ------------------------------------------------------------------------

    def labels(self, sid: int) -> Labels:
        # Decoding a key costs more than the rest of a small query, and the same series are
        # asked for again and again; ids are never reused, so a cached entry never goes wrong.
        cached = self._labels_cache.get(sid)
        if cached is not None:
            return cached
        key = self.keys[sid]
        if key is None:
            raise KeyError(f"series {sid} is not in the index")
        labels = key_labels(key)
        if len(self._labels_cache) >= LABELS_CACHE_SIZE:
            self._labels_cache.clear()  # bounded memory; the hot series come back quickly
        self._labels_cache[sid] = labels
        return labels

    def order_keys(self, sids: Iterable[int]) -> list[str] | None:
        """Per series a string that sorts as its ``Labels.items()`` tuple does (Prometheus'
        label order), or None when a label contains NUL, the separator. Comparing one string
        is a memcmp; comparing nested tuples of strings is ~7x slower in a sort."""
        cache = self._order_cache
        if len(cache) >= LABELS_CACHE_SIZE:
            cache.clear()
        out: list[str] = []
        for sid in sids:
            key = cache.get(sid, "")
            if key == "":
                pairs = self.labels(sid).items()
                text = "\x00".join([part for pair in pairs for part in pair])
                # NUL sorts below every other character, so pair by pair the string compares
                # as the tuple does, unless a name or value holds a NUL itself
                key = cache[sid] = text if text.count("\x00") == 2 * len(pairs) - 1 else None
            if key is None:
                return None
            out.append(key)
        return out

    def match(self, tenant_name: str, matchers: Sequence[Matcher]) -> I64:
        """Sorted ids of the tenant's series that match all matchers."""
        tenant = self.tenants.get(tenant_name)
        if tenant is None:
            return _EMPTY
        with self.lock:
            result: I64 | None = None
            negative: list[Matcher] = []
            for m in matchers:
                if m.matches_empty():
                    negative.append(m)
                    continue
                if m.type is MatchType.EQUAL:
                    found = _members(tenant, m.name, m.value)
                else:
                    found = _postings_where(tenant, m.name, m.matches)
                result = found if result is None else np.intersect1d(result, found, True)
                if not len(result):
                    return _EMPTY
            if result is None:
                result = np.frombuffer(tenant.all_ids, np.int64).copy()
            for m in negative:
                # drop series that have the label with a value the matcher rejects
                if m.type is MatchType.NOT_EQUAL:
                    drop = _members(tenant, m.name, m.value)
                else:
                    drop = _postings_where(tenant, m.name, _rejects(m))
                if len(drop):
                    result = np.setdiff1d(result, drop, assume_unique=True)
            return result


def _rejects(m: Matcher) -> Callable[[str], bool]:
    return lambda value: not m.matches(value)


def _members(tenant: TenantIndex, name: str, value: str) -> I64:
    members = tenant.postings.get(name, {}).get(value)
    return _EMPTY if members is None else np.frombuffer(members, np.int64).copy()


def _postings_where(tenant: TenantIndex, name: str, test: Callable[[str], bool]) -> I64:
    values = tenant.postings.get(name)
    if not values:
        return _EMPTY
    parts = [np.frombuffer(mem, np.int64) for v, mem in values.items() if test(v)]
    if not parts:
        return _EMPTY
    if len(parts) == 1:
        return parts[0].copy()
    return np.unique(np.concatenate(parts))
