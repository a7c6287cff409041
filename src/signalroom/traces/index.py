"""Which row groups of which segment file hold a trace id.

Segment files are immutable, so each gets its entry once: the first 64 bits of every trace id
in it (a *fingerprint*), sorted, beside the row group holding that id. Finding a trace is then
one ``searchsorted`` per file instead of opening every file's footer and row groups; a
fingerprint shared by two traces only costs reading one extra row group. Entries are built
from the file's ``trace_id`` column (lazily, or ahead of time by :meth:`TraceIndex.warm`) and
dropped when their file leaves the store (compaction, retention).
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

__all__ = ["FileEntry", "PerFileIndex", "TraceIndex", "fingerprints"]

EntryT = TypeVar("EntryT")

_NIBBLE = np.zeros(256, np.uint8)
for _digit, _char in enumerate(b"0123456789abcdef"):
    _NIBBLE[_char] = _digit
    _NIBBLE[bytes([_char]).upper()[0]] = _digit
_META_MIN_TS = b"signalroom.min_ts"
_META_MAX_TS = b"signalroom.max_ts"


def fingerprints(trace_ids: pa.Array | pa.ChunkedArray) -> np.ndarray[Any, np.dtype[np.uint64]]:
    """The first 16 hex digits of each trace id (stored ids are 32 hex digits) as uint64."""
    if isinstance(trace_ids, pa.ChunkedArray):
        trace_ids = trace_ids.combine_chunks()
    if trace_ids.type != pa.string():
        trace_ids = trace_ids.cast(pa.string())
    n = len(trace_ids)
    if n == 0:
        return np.zeros(0, np.uint64)
    offsets = np.frombuffer(trace_ids.buffers()[1], np.int32)[trace_ids.offset :][: n + 1]
    data = np.frombuffer(trace_ids.buffers()[2], np.uint8)
    starts = offsets[:-1]
    if len(data) >= 32 * n and np.array_equal(starts, np.arange(0, 32 * n, 32, dtype=np.int32)):
        digits = data[: 32 * n].reshape(n, 32)[:, :16]  # the usual case: all ids 32 digits
    else:
        digits = data[np.minimum(starts[:, None] + np.arange(16), len(data) - 1)]
    nibbles = _NIBBLE[digits]
    packed = (nibbles[:, 0::2] << 4) | nibbles[:, 1::2]  # 8 bytes per id, big-endian
    values: np.ndarray[Any, np.dtype[np.uint64]] = (
        np.ascontiguousarray(packed).view(">u8").ravel().astype(np.uint64)
    )
    return values


@dataclass(frozen=True)
class FileEntry:
    """What the index knows of one segment file."""

    metadata: pq.FileMetaData
    min_ts: int
    max_ts: int
    keys: np.ndarray[Any, np.dtype[np.uint64]] | None = None
    """Sorted fingerprints (None until the trace ids were read)."""
    row_groups: np.ndarray[Any, np.dtype[np.int32]] | None = None

    def row_groups_of(self, wanted: np.ndarray[Any, np.dtype[np.uint64]]) -> list[int]:
        """Row groups that may hold any of the ``wanted`` fingerprints."""
        assert self.keys is not None and self.row_groups is not None
        lo = np.searchsorted(self.keys, wanted, side="left")
        hi = np.searchsorted(self.keys, wanted, side="right")
        groups: set[int] = set()
        for a, b in zip(lo.tolist(), hi.tolist(), strict=True):
            if b > a:
                groups.update(self.row_groups[a:b].tolist())
        return sorted(groups)


def _time_bounds(metadata: pq.FileMetaData) -> tuple[int, int]:
    meta = metadata.metadata or {}
    try:
        return int(meta[_META_MIN_TS]), int(meta[_META_MAX_TS])
    except (KeyError, ValueError):
        return -(2**63), 2**63 - 1


class PerFileIndex(Generic[EntryT]):
    """Entries about immutable segment files, by path, shared by every reader (thread-safe);
    an entry goes when its file leaves the store (compaction, retention)."""

    def __init__(self) -> None:
        self._entries: dict[Path, EntryT] = {}
        self._lock = threading.Lock()

    def retain(self, live: Sequence[Path]) -> None:
        """Forget files that are no longer in the store."""
        keep = set(live)
        with self._lock:
            for path in [p for p in self._entries if p not in keep]:
                del self._entries[path]


class TraceIndex(PerFileIndex[FileEntry]):
    """Per-file trace-id fingerprints and footers."""

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)

    def entry(self, path: Path, *, keys: bool = True) -> FileEntry:
        """The entry of ``path``, read now if needed (``keys``: with its fingerprints).
        Raises FileNotFoundError when a compaction removed the file."""
        with self._lock:
            entry = self._entries.get(path)
        if entry is not None and (entry.keys is not None or not keys):
            return entry
        metadata = entry.metadata if entry is not None else pq.read_metadata(path)
        min_ts, max_ts = _time_bounds(metadata)
        if keys:
            ids = pq.ParquetFile(path, metadata=metadata).read(columns=["trace_id"])
            values = fingerprints(ids.column("trace_id"))
            sizes = [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)]
            groups = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
            order = np.lexsort((groups, values))
            values, groups = values[order], groups[order]
            distinct = np.ones(len(values), np.bool_)
            distinct[1:] = (values[1:] != values[:-1]) | (groups[1:] != groups[:-1])
            entry = FileEntry(metadata, min_ts, max_ts, values[distinct], groups[distinct])
        else:
            entry = FileEntry(metadata, min_ts, max_ts)
        with self._lock:
            current = self._entries.get(path)
            if current is None or current.keys is None:
                self._entries[path] = entry
        return entry

    def warm(self, paths: Iterable[Path]) -> int:
        """Index files not indexed yet; returns how many."""
        built = 0
        for path in paths:
            with self._lock:
                entry = self._entries.get(path)
            if entry is None or entry.keys is None:
                try:
                    self.entry(path)
                except FileNotFoundError:
                    continue
                built += 1
        return built
