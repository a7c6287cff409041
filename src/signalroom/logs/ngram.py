"""A trigram skip index per Parquet row group, so a substring search skips row groups that
cannot hold the needle (the idea of ClickHouse's ``ngrambf_v1``).

When a segment file is written, each row group's lines are reduced to the set of byte trigrams
they contain, hashed into a bitmap sized to about three bits per distinct trigram, and the
zstd-compressed bitmaps go into the file's footer. A ``|= "needle"`` filter keeps a row group
only if every trigram of the needle has its bit set: no false negatives, a small share of false
positives. Needles shorter than three bytes, and needles made only of trigrams every row group
has (say, a hex id), prune nothing and fall back to the full scan.
"""

from __future__ import annotations

import struct
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cramjam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from signalroom.logs.codec import LINE_BYTES_KEY, is_encoded

__all__ = ["META_KEY", "TrigramIndex", "build_metadata", "row_group_bitmap"]

META_KEY = b"signalroom.logs.trigrams"
_META_MIN_TS = b"signalroom.min_ts"  # written by storage.segments
_META_MAX_TS = b"signalroom.max_ts"
_VERSION = 1
_MIN_BITS_LOG2 = 10
_HASH = np.uint32(0x9E3779B1)
_CHUNK_BYTES = 1 << 22  # trigram codes are built this many bytes at a time (cache-sized)

Bitmap = np.ndarray[Any, np.dtype[np.bool_]]


_SCRATCH_LOG2 = 20  # trigrams are first hashed to this many bits; bitmaps fold it down


def _hash(codes: np.ndarray[Any, Any], bits_log2: int) -> np.ndarray[Any, Any]:
    """Fibonacci hashing of 24-bit trigram codes to ``bits_log2`` bits (the top bits of the
    product, so a smaller bitmap is a shift of a larger one)."""
    mixed = codes.astype(np.uint32, copy=False) * _HASH  # wraps modulo 2**32, as intended
    return mixed >> np.uint32(32 - bits_log2)


def _trigram_codes(data: np.ndarray[Any, np.dtype[np.uint8]]) -> np.ndarray[Any, Any]:
    """The 24-bit code of every trigram of ``data`` (bytes little-endian), read as unaligned
    32-bit words of a padded copy: one pass instead of three shifts."""
    padded = np.zeros(len(data) + 1, np.uint8)
    padded[:-1] = data
    words = np.ndarray(shape=(len(data) - 2,), dtype="<u4", buffer=padded, strides=(1,))
    codes: np.ndarray[Any, Any] = words & np.uint32(0xFFFFFF)
    return codes


def row_group_bitmap(lines: pa.Array) -> tuple[int, Bitmap]:
    """``(bits_log2, bitmap)`` of the trigrams in ``lines`` (a string array).

    Trigrams across the boundary of two adjacent lines are included too; they only add
    false positives."""
    if isinstance(lines, pa.ChunkedArray):
        lines = lines.combine_chunks()
    seen = np.zeros(1 << _SCRATCH_LOG2, np.bool_)  # 1 MiB: the scatter stays in cache
    if len(lines):
        offsets = np.frombuffer(lines.buffers()[1], np.int32, len(lines) + 1, lines.offset * 4)
        data = np.frombuffer(lines.buffers()[2], np.uint8)[offsets[0] : offsets[-1]]
        for start in range(0, len(data), _CHUNK_BYTES):
            chunk = data[start : start + _CHUNK_BYTES + 2]
            if len(chunk) >= 3:
                codes = _trigram_codes(chunk)
                np.multiply(codes, _HASH, out=codes)  # _hash, in place
                np.right_shift(codes, np.uint32(32 - _SCRATCH_LOG2), out=codes)
                seen[codes] = True
    hashed = np.flatnonzero(seen)
    wanted = np.ceil(np.log2(max(len(hashed), 1) * 3))
    bits_log2 = int(np.clip(wanted, _MIN_BITS_LOG2, _SCRATCH_LOG2))
    bitmap = np.zeros(1 << bits_log2, np.bool_)
    bitmap[hashed >> (_SCRATCH_LOG2 - bits_log2)] = True
    return bits_log2, bitmap


def build_metadata(table: pa.Table, row_group_rows: int) -> dict[bytes, bytes]:
    """The footer entry for ``table`` written with ``row_group_rows`` rows per row group. An
    encoded table (:mod:`signalroom.logs.codec`) is indexed by its templates (its raw line
    where it has no template): its variables are not worth indexing (ids hold every hex
    trigram), and a search tests them by scanning their own small columns."""
    if "tpl" in table.column_names:
        lines = pc.coalesce(table.column("tpl"), table.column("raw"))
    else:
        lines = table.column("line")
    parts = [struct.pack("<BI", _VERSION, 0)]
    groups = 0
    for start in range(0, table.num_rows, row_group_rows):
        bits_log2, bitmap = row_group_bitmap(lines.slice(start, row_group_rows))
        packed = bytes(cramjam.zstd.compress(np.packbits(bitmap, bitorder="little").tobytes(), 3))
        parts.append(struct.pack("<BI", bits_log2, len(packed)))
        parts.append(packed)
        groups += 1
    parts[0] = struct.pack("<BI", _VERSION, groups)
    return {META_KEY: b"".join(parts)}


def _decode(blob: bytes) -> list[tuple[int, Bitmap]] | None:
    version, groups = struct.unpack_from("<BI", blob, 0)
    if version != _VERSION:
        return None
    position = 5
    out: list[tuple[int, Bitmap]] = []
    for _ in range(groups):
        bits_log2, size = struct.unpack_from("<BI", blob, position)
        position += 5
        packed = np.frombuffer(
            bytes(cramjam.zstd.decompress(blob[position : position + size])), np.uint8
        )
        position += size
        out.append((bits_log2, np.unpackbits(packed, bitorder="little").astype(np.bool_)))
    return out


def _needle_codes(needle: str) -> np.ndarray[Any, Any] | None:
    data = np.frombuffer(needle.encode(), np.uint8)
    if len(data) < 3:
        return None
    return np.unique(_trigram_codes(data))


@dataclass(frozen=True)
class _Footer:
    min_ts: int
    max_ts: int
    rows: int
    row_group_rows: list[int]
    line_bytes: int  # uncompressed size of the line column, with Parquet's length prefixes
    bitmaps: list[tuple[int, Bitmap]] | None
    encoded: bool  # lines stored as templates and variables (signalroom.logs.codec)


class TrigramIndex:
    """Reads what the footers of segment files say (time span, rows, trigram bitmaps; cached,
    as files never change once written) and answers which row groups may hold a line
    containing given substrings."""

    def __init__(self, max_files: int = 4096) -> None:
        self._cache: OrderedDict[Path, _Footer] = OrderedDict()
        self._lock = threading.Lock()
        self._max_files = max_files

    def _footer(self, path: Path) -> _Footer:
        with self._lock:
            footer = self._cache.get(path)
            if footer is not None:
                self._cache.move_to_end(path)
                return footer
        metadata = pq.read_metadata(path)
        kv: Mapping[bytes, bytes] = metadata.metadata or {}
        blob = kv.get(META_KEY)
        encoded = is_encoded(kv)
        footer = _Footer(
            int(kv.get(_META_MIN_TS, b"0")),
            int(kv.get(_META_MAX_TS, str(2**63 - 1).encode())),
            metadata.num_rows,
            [metadata.row_group(i).num_rows for i in range(metadata.num_row_groups)],
            int(kv[LINE_BYTES_KEY]) + 4 * metadata.num_rows
            if encoded and LINE_BYTES_KEY in kv
            else sum(
                group.column(c).total_uncompressed_size
                for group in (metadata.row_group(i) for i in range(metadata.num_row_groups))
                for c in range(group.num_columns)
                if group.column(c).path_in_schema == "line"
            ),
            None if blob is None else _decode(blob),
            encoded,
        )
        with self._lock:
            self._cache[path] = footer
            while len(self._cache) > self._max_files:
                self._cache.popitem(last=False)
        return footer

    def span(self, path: Path) -> tuple[int, int, int]:
        """``(min_ts, max_ts, rows)`` of a segment file."""
        footer = self._footer(path)
        return footer.min_ts, footer.max_ts, footer.rows

    def average_line_bytes(self, path: Path) -> float:
        footer = self._footer(path)
        return max(footer.line_bytes / max(footer.rows, 1) - 4, 0.0)  # minus the length prefix

    def encoded(self, path: Path) -> bool:
        """Whether the file stores line templates and variables instead of ``line``."""
        return self._footer(path).encoded

    def row_group_rows(self, path: Path) -> list[int]:
        return self._footer(path).row_group_rows

    def bitmaps(self, path: Path) -> list[tuple[int, Bitmap]] | None:
        return self._footer(path).bitmaps

    def candidates(self, path: Path, needles: Sequence[Sequence[str]]) -> list[int] | None:
        """Row groups of ``path`` that may match every group of ``needles`` (a group matches
        when any of its substrings may occur), or None when the file has no index or no
        needle can prune."""
        groups = []
        for alternatives in needles:
            codes = [_needle_codes(n) for n in alternatives]
            if codes and all(c is not None for c in codes):
                groups.append([c for c in codes if c is not None])
        if not groups:
            return None
        bitmaps = self.bitmaps(path)
        if bitmaps is None:
            return None
        keep = []
        for number, (bits_log2, bitmap) in enumerate(bitmaps):
            if all(
                any(bool(bitmap[_hash(c, bits_log2)].all()) for c in alternatives)
                for alternatives in groups
            ):
                keep.append(number)
        return keep
