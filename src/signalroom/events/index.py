"""An in-memory integer index of stored events: the hot paths of analytics (funnels, active
users) run on it with NumPy instead of scanning Parquet strings on every query.

Per Parquet file it keeps the time (ns) and a user code (int32) of each row, grouped by event
name (the store sorts files by event, then time), and lazily the distinct users of each event.
User ids and event names become dense integers per tenant. Segment files never change in place
(compaction and GDPR rewrites write new paths), so an entry stays valid while its path is in the
store's snapshot; entries of vanished files are dropped. Rows still in the memory buffer are
indexed per query. Memory: 12 bytes per row; past ``max_rows`` the least recently used files are
evicted (and rebuilt when read again).
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from signalroom.events.store import EventStore

__all__ = ["EventIndex", "Rows"]

_DAY_NS = 86_400 * 10**9
_I64 = np.ndarray[Any, np.dtype[np.int64]]
_I32 = np.ndarray[Any, np.dtype[np.int32]]
_ATTEMPTS = 5


@dataclass(frozen=True)
class Rows:
    """Rows of some events: time (ns), user code and event code, one entry per row."""

    t: _I64
    user: _I32
    event: _I32

    def __len__(self) -> int:
        return len(self.t)


@dataclass
class _Part:
    """The indexed rows of one file (or of the buffer): per event code, a time-sorted slice."""

    t: _I64
    user: _I32
    slices: dict[int, tuple[int, int]]
    min_t: int
    max_t: int
    distinct: dict[int | None, _I32] = field(default_factory=dict)  # event -> sorted users
    _rank: _I32 | None = None
    _sorted_t: _I64 | None = None

    @property
    def rows(self) -> int:
        return len(self.t)

    def select(self, code: int, start: int, end: int) -> tuple[_I64, _I32]:
        lo, hi = self.slices.get(code, (0, 0))
        t = self.t[lo:hi]
        if start > self.min_t or end <= self.max_t:
            a, b = np.searchsorted(t, [start, end])
            return t[a:b], self.user[lo + a : lo + b]
        return t, self.user[lo:hi]

    def events(self) -> _I32:
        """The event code of every row."""
        codes = list(self.slices)
        sizes = [b - a for a, b in self.slices.values()]
        return np.repeat(np.array(codes, np.int32), sizes)

    def time_rank(self) -> tuple[_I32, _I64]:
        """Each row's position in time order (ties in stored order), and the sorted times.
        Computed on first use (strict funnels) and kept: 12 more bytes a row."""
        if self._rank is None or self._sorted_t is None:
            order = np.argsort(self.t, kind="stable")
            rank = np.empty(len(order), np.int32)
            rank[order] = np.arange(len(order), dtype=np.int32)
            self._rank, self._sorted_t = rank, self.t[order]
        return self._rank, self._sorted_t

    def users(self, code: int | None) -> _I32:
        """Distinct users of the part (doing ``code``, or anything)."""
        found = self.distinct.get(code)
        if found is None:
            if code is None:
                found = np.unique(self.user)
            else:
                lo, hi = self.slices.get(code, (0, 0))
                found = np.unique(self.user[lo:hi])
            self.distinct[code] = found
        return found


class _Codes:
    """Dense integer codes of strings; a forgotten string's code is never reused."""

    def __init__(self) -> None:
        self.by_name: dict[str, int] = {}
        self.size = 0

    def code(self, name: str) -> int:
        found = self.by_name.get(name)
        if found is None:
            found = self.by_name[name] = self.size
            self.size += 1
        return found

    def map(self, names: Sequence[str]) -> _I32:
        code = self.code
        return np.fromiter((code(n) for n in names), np.int32, len(names))


class EventIndex:
    """See the module doc. Thread-safe; loading a file runs outside the lock."""

    def __init__(self, store: EventStore, *, max_rows: int = 50_000_000) -> None:
        self.store = store
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._parts: OrderedDict[Path, _Part] = OrderedDict()  # LRU order
        self._rows = 0
        self._users: dict[str, _Codes] = {}
        self._events: dict[str, _Codes] = {}

    # ------------------------------------------------------------------ codes

    def event_code(self, tenant: str, name: str) -> int:
        with self._lock:
            return self._events.setdefault(tenant, _Codes()).code(name)

    def user_count(self, tenant: str) -> int:
        """An upper bound of the user codes of ``tenant`` (arrays indexed by user use it)."""
        with self._lock:
            return self._users.setdefault(tenant, _Codes()).size

    @property
    def indexed_rows(self) -> int:
        return self._rows

    # ------------------------------------------------------------------ reading

    def parts(self, tenant: str, start_ns: int | None, end_ns: int | None) -> list[_Part]:
        """Indexed parts (files, then the buffer) that may hold rows in ``[start, end)``."""
        for attempt in range(_ATTEMPTS):
            snapshot = self.store.table.snapshot(tenant, start_ns, end_ns)
            try:
                parts = [self._file(tenant, path) for path in snapshot.files]
                break
            except FileNotFoundError:
                if attempt == _ATTEMPTS - 1:
                    raise  # compaction or a rewrite replaced files between snapshot and read
        if snapshot.buffered.num_rows:
            table = snapshot.buffered.select(["timestamp", "event", "user_id"])
            parts.append(self._build(tenant, table))
        self._evict()
        return parts

    def rows(
        self,
        tenant: str,
        events: Sequence[str] | None,
        start_ns: int,
        end_ns: int,
        parts: Sequence[_Part] | None = None,
    ) -> Rows:
        """Rows of ``events`` (all when None) with time in ``[start_ns, end_ns)``, from
        ``parts`` when given (several reads of one query then see one snapshot)."""
        if parts is None:
            parts = self.parts(tenant, start_ns, end_ns)
        if events is None:
            codes = sorted({c for p in parts for c in p.slices})
        else:
            codes = sorted({self.event_code(tenant, e) for e in events})
        ts: list[_I64] = []
        users: list[_I32] = []
        sizes: list[int] = []
        kinds: list[int] = []
        for part in parts:
            for code in codes:
                t, u = part.select(code, start_ns, end_ns)
                if len(t):
                    ts.append(t)
                    users.append(u)
                    sizes.append(len(t))
                    kinds.append(code)
        if not ts:
            return Rows(np.empty(0, np.int64), np.empty(0, np.int32), np.empty(0, np.int32))
        if len(codes) == 1:
            event = np.full(sum(sizes), codes[0], np.int32)
        else:
            event = np.repeat(np.array(kinds, np.int32), sizes)
        return Rows(np.concatenate(ts), np.concatenate(users), event)

    def refresh(self) -> int:
        """Index the files of every tenant not indexed yet and drop entries of files that are
        gone (run after flushes, so queries find the index warm); returns the rows indexed."""
        live: set[Path] = set()
        for tenant in self.store.table.tenants():
            for path in self.store.table.files(tenant):
                if self._rows < self.max_rows:
                    try:
                        self._file(tenant, path)
                    except FileNotFoundError:
                        continue
                live.add(path)
        with self._lock:
            gone = [p for p in self._parts if p not in live]
        self.forget(gone)
        return self._rows

    def forget_user(self, tenant: str, user_id: str) -> None:
        """Drop an erased user's id from memory (GDPR); their rows are gone from the files."""
        with self._lock:
            codes = self._users.get(tenant)
            if codes is not None:
                codes.by_name.pop(user_id, None)

    # ------------------------------------------------------------------ internals

    def _file(self, tenant: str, path: Path) -> _Part:
        with self._lock:
            part = self._parts.get(path)
            if part is not None:
                self._parts.move_to_end(path)
                return part
        table = pq.read_table(
            path, columns=["timestamp", "event", "user_id"], read_dictionary=["event", "user_id"]
        )
        part = self._build(tenant, table)
        part.users(None)  # active users read it per file: compute it with the file
        with self._lock:
            if path not in self._parts:
                self._parts[path] = part
                self._rows += part.rows
        return part

    def _build(self, tenant: str, table: pa.Table) -> _Part:
        t = table.column("timestamp").cast(pa.int64()).to_numpy()
        with self._lock:
            event = self._encode(self._events.setdefault(tenant, _Codes()), table.column("event"))
            user = self._encode(self._users.setdefault(tenant, _Codes()), table.column("user_id"))
        # Files are sorted by event name, then time: rows are grouped by event already, and
        # only a buffer (or an unsorted file) needs sorting.
        changes = np.diff(event) != 0
        runs = event[np.concatenate(([0], np.flatnonzero(changes) + 1))] if len(event) else event
        grouped = len(np.unique(runs)) == len(runs)
        if not (grouped and bool(np.all((np.diff(t) >= 0) | changes))):
            order = np.lexsort((t, event))
            t, event, user = t[order], event[order], user[order]
        bounds = np.flatnonzero(np.diff(event)) + 1
        starts = np.concatenate(([0], bounds)).tolist()
        ends = np.concatenate((bounds, [len(event)])).tolist()
        slices = {int(event[a]): (a, b) for a, b in zip(starts, ends, strict=True) if b > a}
        lo = int(t.min()) if len(t) else 0
        hi = int(t.max()) if len(t) else -1
        return _Part(t, user, slices, lo, hi)

    @staticmethod
    def _encode(codes: _Codes, column: pa.ChunkedArray) -> _I32:
        """Codes of a (dictionary or plain) string column; only dictionaries are mapped."""
        out: list[_I32] = []
        for chunk in column.chunks:
            if not pa.types.is_dictionary(chunk.type):
                chunk = chunk.dictionary_encode()
            mapping = codes.map(chunk.dictionary.to_pylist())  # the columns hold no nulls
            indices = chunk.indices.fill_null(0).to_numpy(zero_copy_only=False)
            out.append(mapping[indices] if len(mapping) else np.zeros(len(chunk), np.int32))
        return np.concatenate(out) if out else np.empty(0, np.int32)

    def _evict(self) -> None:
        with self._lock:
            while self._rows > self.max_rows and len(self._parts) > 1:
                _, part = self._parts.popitem(last=False)
                self._rows -= part.rows

    def forget(self, paths: Iterable[Path]) -> None:
        """Drop entries of files that are gone (GDPR rewrite, compaction, retention)."""
        with self._lock:
            for path in paths:
                part = self._parts.pop(path, None)
                if part is not None:
                    self._rows -= part.rows
