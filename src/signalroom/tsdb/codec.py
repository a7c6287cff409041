"""Chunk sets: samples sorted by (series, time), encoded in independently decodable groups.

The same format serves the head's frozen chunks (bytes in memory) and the blocks on disk
(bytes memory-mapped from a file). A chunk set has a series index -- sorted series ids and
the offset of each series' first sample -- and groups of consecutive series holding about
``group_samples`` samples each, so a query decodes only the groups of the series it wants.

A group's samples are encoded column by column, all vectorised:

* timestamps: each series' first timestamp relative to the group's minimum, then
  delta-of-delta (0 for a regular scrape interval, a few ms of jitter otherwise);
* values, chosen per series: when every value is a decimal number with at most 6 decimals
  that round-trips exactly (``round(v*10**k)/10**k`` has the same bits as ``v``), the scaled
  integers are stored as deltas (gauges) or delta-of-deltas (counters at a steady rate),
  whichever is smaller; otherwise the float bits are XORed with the previous value (Gorilla's
  idea: unchanged values become 0 and slowly moving ones share their high bits).

Each integer stream is zig-zagged, narrowed to the smallest byte width that holds it, split
into byte planes (byte-stream-split: the mostly-zero high bytes end up together), and the
group's planes are compressed as one zstd frame. Decoding exactly restores every bit,
StaleNaN included.
"""

from __future__ import annotations

import itertools
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt

__all__ = ["ChunkSet", "DecodedCache", "decoded_cache", "encode_chunkset", "merge_sorted", "ranges"]

I64 = npt.NDArray[np.int64]
F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

_SCALES = np.array([10.0**k for k in range(7)], dtype=np.float64)
_XOR_MODE = 255
_ORDER2 = 16  # added to the scale for delta-of-delta integer series
_INT_LIMIT = float(2**52)
_N_STREAMS = 7  # ts_first, ts_body, modes, int_first, int_body, xor_first, xor_body
_GROUP_HEAD = struct.Struct("<q" + "B" * _N_STREAMS + "I" * _N_STREAMS)


def ranges(starts: I64, lengths: I64) -> I64:
    """Concatenated ``arange(s, s + n)`` for each (s, n), vectorised."""
    lengths = np.asarray(lengths, dtype=np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    keep = lengths > 0
    starts, lengths = np.asarray(starts, dtype=np.int64)[keep], lengths[keep]
    steps = np.ones(total, dtype=np.int64)
    heads = np.cumsum(lengths) - lengths
    steps[0] = starts[0]
    steps[heads[1:]] = starts[1:] - (starts[:-1] + lengths[:-1] - 1)
    return np.cumsum(steps)


def _zigzag(x: I64) -> U64:
    return ((x << 1) ^ (x >> 63)).view(np.uint64)


def _unzigzag(u: U64) -> I64:
    return ((u >> np.uint64(1)) ^ (np.uint64(0) - (u & np.uint64(1)))).view(np.int64)


def _narrow(u: U64) -> tuple[int, bytes]:
    """Byte width and byte planes of a uint64 stream."""
    if len(u) == 0:
        return 1, b""
    top = int(u.max())
    width = 1 if top < 1 << 8 else 2 if top < 1 << 16 else 4 if top < 1 << 32 else 8
    as_bytes = u.astype(f"<u{width}").view(np.uint8)
    return width, b"".join(as_bytes[w::width].tobytes() for w in range(width))


def _widen(data: npt.NDArray[np.uint8], count: int, width: int) -> U64:
    # Interleave the planes with one strided copy each: far faster than copying the
    # transposed (width, count) view.
    out = np.empty(count * width, dtype=np.uint8)
    for w in range(width):
        out[w::width] = data[w * count : (w + 1) * count]
    return out.view(f"<u{width}").astype(np.uint64)


def _seg_cumsum(x: I64, starts: I64, base: I64 | None = None) -> I64:
    """Cumulative sums restarting at each segment start (``starts``: sorted, first 0, no
    empty segment), plus each segment's ``base`` if given. One cumsum: the first value of
    each segment also takes away what the segment before it summed to."""
    if not len(x):
        return x.copy()
    shift = -np.add.reduceat(x, starts)[:-1]
    z = x.copy()
    if base is not None:
        shift += np.diff(base)
        z[0] += base[0]
    z[starts[1:]] += shift
    return np.cumsum(z)


def _deltas(x: I64, is_start: npt.NDArray[np.bool_]) -> I64:
    """x[i] - x[i-1] within a series, 0 at series starts."""
    d = np.zeros(len(x), dtype=np.int64)
    if len(x) > 1:
        d[1:] = x[1:] - x[:-1]
    d[is_start] = 0
    return d


@np.errstate(over="ignore", invalid="ignore")  # huge values overflow when scaled: not integers
def _encode_group(ts: I64, values: F64, lengths: I64, level: int) -> bytes:
    n = len(ts)
    starts = np.cumsum(lengths) - lengths
    is_start = np.zeros(n, dtype=np.bool_)
    is_start[starts] = True
    body = ~is_start
    series_of = np.repeat(np.arange(len(lengths)), lengths)

    # timestamps: first per series, then delta-of-delta
    base = int(ts.min())
    ts_first = (ts[starts] - base).view(np.uint64)
    d1 = _deltas(ts, is_start)
    # at the second sample of a series the delta-of-delta is the first delta (d1 is 0 at start)
    ts_body = _zigzag(_deltas(d1, is_start))[body]

    # values: decimal-integer series vs XOR series
    need = np.full(n, 127, dtype=np.int64)
    finite = np.isfinite(values)
    safe = np.where(finite, values, 0.0)
    for k in range(len(_SCALES) - 1, -1, -1):
        scaled = safe * _SCALES[k]
        # through int64, as decoding does (-0.0 becomes 0 and must fail the check)
        back = np.round(scaled).astype(np.int64).astype(np.float64) / _SCALES[k]
        ok = (
            finite
            & (np.abs(scaled) < _INT_LIMIT)
            & (back.view(np.uint64) == values.view(np.uint64))
        )
        need[ok] = k
    scale_of_series = np.maximum.reduceat(need, starts)
    scale = scale_of_series[series_of].clip(0, len(_SCALES) - 1)
    scaled = safe * _SCALES[scale]
    q = np.round(scaled).astype(np.int64).astype(np.float64)
    ok = (
        finite
        & (np.abs(scaled) < _INT_LIMIT)
        & ((q / _SCALES[scale]).view(np.uint64) == values.view(np.uint64))
    )
    int_series = (scale_of_series < len(_SCALES)) & np.logical_and.reduceat(ok, starts)
    qi = np.where(ok, q, 0.0).astype(np.int64)
    dq = _deltas(qi, is_start)
    ddq = _deltas(dq, is_start)
    cost1 = np.add.reduceat(np.abs(dq), starts)
    cost2 = np.add.reduceat(np.abs(ddq), starts)
    order2 = cost2 < cost1
    modes = np.where(int_series, scale_of_series + np.where(order2, _ORDER2, 0), _XOR_MODE)
    int_sample = int_series[series_of]
    o2_sample = order2[series_of]
    int_first = _zigzag(qi[starts][int_series])
    int_body = _zigzag(np.where(o2_sample, ddq, dq)[int_sample & body])
    bits = values.view(np.uint64)
    xored = bits.copy()
    if n > 1:
        xored[1:] ^= bits[:-1]
    xor_sample = ~int_sample
    xor_first = bits[starts][~int_series]
    xor_body = xored[xor_sample & body]

    streams = [
        ts_first,
        ts_body,
        modes.astype(np.uint64),
        int_first,
        int_body,
        xor_first,
        xor_body,
    ]
    widths: list[int] = []
    counts: list[int] = []
    planes: list[bytes] = []
    for stream in streams:
        width, data = _narrow(stream)
        widths.append(width)
        counts.append(len(stream))
        planes.append(data)
    packed = bytes(cramjam.zstd.compress(b"".join(planes), level=level))
    return _GROUP_HEAD.pack(base, *widths, *counts) + packed


def _widen_at(data: npt.NDArray[np.uint8], count: int, width: int, idx: I64) -> U64:
    """`_widen` of only the entries at ``idx`` (sorted)."""
    if len(idx) * 4 > count:  # most of the stream: widen it whole, then pick
        return _widen(data, count, width)[idx]
    out = np.empty(len(idx) * width, dtype=np.uint8)
    for w in range(width):
        out[w::width] = data[w * count + idx]
    return out.view(f"<u{width}").astype(np.uint64)


def _stream_rows(
    views: list[tuple[npt.NDArray[np.uint8], int, int]], lengths: I64, rows: I64
) -> list[U64]:
    """The streams of only the series ``rows`` (sorted indices into ``lengths``), in the
    layout a group of just those series would have: the other series cost no work."""
    modes = _widen(*views[2]).astype(np.int64)
    body = lengths - 1
    int_series = modes != _XOR_MODE

    def body_idx(members: npt.NDArray[np.bool_]) -> I64:
        own = np.where(members, body, 0)
        start = np.cumsum(own) - own
        picked = rows[members[rows]]
        return ranges(start[picked], body[picked])

    def first_idx(members: npt.NDArray[np.bool_]) -> I64:
        rank: I64 = np.cumsum(members) - members
        return rank[rows[members[rows]]]

    everyone = np.ones(len(lengths), dtype=np.bool_)
    wanted = [
        rows,
        body_idx(everyone),
        rows,
        first_idx(int_series),
        body_idx(int_series),
        first_idx(~int_series),
        body_idx(~int_series),
    ]
    return [_widen_at(d, c, w, idx) for (d, c, w), idx in zip(views, wanted, strict=True)]


def _decode_group(
    blob: bytes | memoryview, lengths: I64, rows: I64 | None = None
) -> tuple[I64, F64]:
    """Timestamps and values of a group's series (only of series ``rows`` when given)."""
    head = _GROUP_HEAD.unpack_from(blob, 0)
    base = head[0]
    widths = head[1 : 1 + _N_STREAMS]
    counts = head[1 + _N_STREAMS :]
    raw = np.frombuffer(memoryview(cramjam.zstd.decompress(blob[_GROUP_HEAD.size :])), np.uint8)
    views: list[tuple[npt.NDArray[np.uint8], int, int]] = []
    pos = 0
    for width, count in zip(widths, counts, strict=True):
        size = width * count
        views.append((raw[pos : pos + size], count, width))
        pos += size
    if rows is None:
        streams = [_widen(*view) for view in views]
    else:
        streams = _stream_rows(views, lengths, rows)
        lengths = lengths[rows]
    ts_first, ts_body, modes_u, int_first, int_body, xor_first, xor_body = streams
    n = int(lengths.sum())
    starts = np.cumsum(lengths) - lengths
    is_start = np.zeros(n, dtype=np.bool_)
    is_start[starts] = True
    body = ~is_start
    series_of = np.repeat(np.arange(len(lengths)), lengths)

    dod = np.zeros(n, dtype=np.int64)
    dod[body] = _unzigzag(ts_body)
    d1 = _seg_cumsum(dod, starts)
    ts = _seg_cumsum(d1, starts, ts_first.view(np.int64) + base)

    modes = modes_u.astype(np.int64)
    int_series = modes != _XOR_MODE
    int_sample = int_series[series_of]
    values = np.empty(n, dtype=np.float64)
    if int_series.any():
        o2 = (modes >= _ORDER2) & int_series
        scale_of_series = np.where(int_series, modes % _ORDER2, 0)
        enc = np.zeros(n, dtype=np.int64)
        enc[int_sample & body] = _unzigzag(int_body)
        first_vals = np.zeros(len(lengths), dtype=np.int64)
        first_vals[int_series] = _unzigzag(int_first)
        # enc is 0 outside integer series, so a cumsum over all of them is right where needed
        if not o2.any():
            dq = enc
        elif np.array_equal(o2, int_series):
            dq = _seg_cumsum(enc, starts)
        else:
            dq = np.where(o2[series_of], _seg_cumsum(enc, starts), enc)
        scaled = _seg_cumsum(dq, starts, first_vals).astype(np.float64)
        scales = scale_of_series[int_series]
        if scales.min() == scales.max():  # one scale (often 10**0): no per-sample gather
            if scales[0]:
                scaled /= _SCALES[scales[0]]
        else:
            scaled /= _SCALES[scale_of_series[series_of]]
        if int_series.all():
            return ts, scaled
        values[int_sample] = scaled[int_sample]
    if not int_series.all():
        xor_sample = ~int_sample
        x = np.zeros(n, dtype=np.uint64)
        x[xor_sample & body] = xor_body
        x[starts[~int_series]] = xor_first
        # bits[i] = x[i] ^ bits[i-1] within a series: a segmented XOR scan
        bits = _seg_xor_scan(x, starts)
        if not int_series.any():
            return ts, bits.view(np.float64)
        values[xor_sample] = bits.view(np.float64)[xor_sample]
    return ts, values


def _seg_xor_scan(x: U64, starts: I64) -> U64:
    """Prefix XOR restarting at each segment start (``starts``: sorted, first 0, no empty
    segment); ``x`` is overwritten. Each segment's first value also XORs out what the
    segment before it came to, so one scan over everything restarts at every start."""
    x[starts[1:]] ^= np.bitwise_xor.reduceat(x, starts)[:-1]
    return np.bitwise_xor.accumulate(x)


class DecodedCache:
    """A bounded LRU of small decoded selections: (chunk set, group, rows) -> (ts, values).

    Reading a few series of a group still decompresses the whole group (one zstd frame), so
    a dashboard re-reading one series over a day costs a group per chunk set it touches on
    every refresh. Chunk sets never change, so their decoded series can be kept; only
    selections of at most ``max_entry_samples`` are cached, all within ``max_bytes``.
    """

    def __init__(self, max_bytes: int = 16 << 20, max_entry_samples: int = 8192) -> None:
        self.max_bytes = max_bytes
        self.max_entry_samples = max_entry_samples
        self.nbytes = 0
        self._entries: OrderedDict[tuple[int, int, bytes], tuple[I64, F64]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[int, int, bytes]) -> tuple[I64, F64] | None:
        with self._lock:
            found = self._entries.get(key)
            if found is not None:
                self._entries.move_to_end(key)
            return found

    def put(self, key: tuple[int, int, bytes], value: tuple[I64, F64]) -> None:
        size = value[0].nbytes + value[1].nbytes + len(key[2]) + 200
        if size > self.max_bytes:
            return
        for array in value:
            array.flags.writeable = False  # shared by every later reader
        with self._lock:
            if key in self._entries:
                return
            self._entries[key] = value
            self.nbytes += size
            while self.nbytes > self.max_bytes:
                (_, _, rows), (ts, vals) = self._entries.popitem(last=False)
                self.nbytes -= ts.nbytes + vals.nbytes + len(rows) + 200

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.nbytes = 0

    def __len__(self) -> int:
        return len(self._entries)


decoded_cache = DecodedCache()
"""The process's cache of small decoded selections (shared by every chunk set)."""

_tokens = itertools.count()


@dataclass
class ChunkSet:
    """Encoded samples of many series, sorted by (series id, time)."""

    gids: I64  # sorted unique series ids
    offsets: I64  # len(gids) + 1: first sample of each series
    group_series: I64  # n_groups + 1: first series (index into gids) of each group
    group_bytes: I64  # n_groups + 1: byte offset of each group in data
    data: Any  # bytes, or an mmap / memoryview of a block file
    min_time: int
    max_time: int
    # names this chunk set in the decoded cache (unlike id(), never reused)
    token: int = field(default_factory=_tokens.__next__, compare=False, repr=False)

    @property
    def num_samples(self) -> int:
        return int(self.offsets[-1])

    @property
    def num_series(self) -> int:
        return len(self.gids)

    @property
    def nbytes(self) -> int:
        index = self.gids.nbytes + self.offsets.nbytes
        index += self.group_series.nbytes + self.group_bytes.nbytes
        return index + int(self.group_bytes[-1])

    def decode_group(self, g: int, rows: I64 | None = None) -> tuple[I64, F64]:
        """Samples of group g, of only its series ``rows`` (indices within the group) if given."""
        s0, s1 = int(self.group_series[g]), int(self.group_series[g + 1])
        b0, b1 = int(self.group_bytes[g]), int(self.group_bytes[g + 1])
        lengths = np.diff(self.offsets[s0 : s1 + 1])
        return _decode_group(memoryview(self.data)[b0:b1], lengths, rows)

    def decode_all(self) -> tuple[I64, I64, F64]:
        """(series id per sample, timestamps, values) of every sample."""
        ts_parts: list[I64] = []
        val_parts: list[F64] = []
        for g in range(len(self.group_series) - 1):
            ts, vals = self.decode_group(g)
            ts_parts.append(ts)
            val_parts.append(vals)
        gid_of = np.repeat(self.gids, np.diff(self.offsets))
        if not ts_parts:
            return gid_of, np.zeros(0, np.int64), np.zeros(0, np.float64)
        return gid_of, np.concatenate(ts_parts), np.concatenate(val_parts)

    def select(self, wanted: I64, mint: int, maxt: int) -> tuple[I64, I64, F64]:
        """Samples of the wanted series (sorted ids) in [mint, maxt]."""
        empty = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float64))
        if maxt < self.min_time or mint > self.max_time or not len(wanted) or not len(self.gids):
            return empty
        pos = np.searchsorted(self.gids, wanted)
        if len(pos) == 1:  # one series (a single-series panel): no per-group bookkeeping
            p = int(pos[0])
            if p == len(self.gids) or self.gids[p] != wanted[0]:
                return empty
            g = int(np.searchsorted(self.group_series, p, side="right")) - 1
            return self._select_group(g, pos, mint, maxt)
        inside = pos < len(self.gids)
        pos = pos[inside]
        pos = pos[self.gids[pos] == wanted[inside]]
        if not len(pos):
            return empty
        groups = np.unique(np.searchsorted(self.group_series, pos, side="right") - 1)
        gid_parts: list[I64] = []
        ts_parts: list[I64] = []
        val_parts: list[F64] = []
        for g in groups.tolist():
            s0, s1 = int(self.group_series[g]), int(self.group_series[g + 1])
            gids, ts, vals = self._select_group(g, pos[(pos >= s0) & (pos < s1)], mint, maxt)
            gid_parts.append(gids)
            ts_parts.append(ts)
            val_parts.append(vals)
        return np.concatenate(gid_parts), np.concatenate(ts_parts), np.concatenate(val_parts)

    def _select_group(self, g: int, mine: I64, mint: int, maxt: int) -> tuple[I64, I64, F64]:
        """Samples in [mint, maxt] of the series at positions ``mine`` (sorted, all in
        group ``g``)."""
        s0, s1 = int(self.group_series[g]), int(self.group_series[g + 1])
        lengths = self.offsets[mine + 1] - self.offsets[mine]
        shared = False  # arrays of the decoded cache are never handed out themselves
        if len(mine) == s1 - s0:  # all of the group's series: no gather needed
            ts, vals = self.decode_group(g)
        elif int(lengths.sum()) <= decoded_cache.max_entry_samples:
            key = (self.token, g, mine.tobytes())
            cached = decoded_cache.get(key)
            if cached is None:
                cached = self.decode_group(g, mine - s0)
                decoded_cache.put(key, cached)
            ts, vals = cached
            shared = True
        else:  # decode only the wanted series
            ts, vals = self.decode_group(g, mine - s0)
        gids = np.repeat(self.gids[mine], lengths)
        if not shared and mint <= self.min_time and maxt >= self.max_time:
            return gids, ts, vals
        keep = (ts >= mint) & (ts <= maxt)
        return gids[keep], ts[keep], vals[keep]


def encode_chunkset(
    gid_of: I64, ts: I64, values: F64, *, group_samples: int = 1 << 16, level: int = 3
) -> ChunkSet:
    """Encode samples already sorted by (series id, timestamp), one sample per (id, ts)."""
    n = len(ts)
    if n == 0:
        z = np.zeros(1, dtype=np.int64)
        return ChunkSet(np.zeros(0, np.int64), z, z, z, b"", 0, -1)
    change = np.flatnonzero(np.diff(gid_of)) + 1
    first = np.concatenate([[0], change]).astype(np.int64)
    gids = gid_of[first].astype(np.int64)
    offsets = np.append(first, n).astype(np.int64)
    # group boundaries: series whose first sample crosses a multiple of group_samples
    cuts = np.searchsorted(offsets[:-1], np.arange(0, n, group_samples), side="left")
    group_series = np.unique(np.append(cuts, len(gids))).astype(np.int64)
    if group_series[0] != 0:
        group_series = np.concatenate([[0], group_series])
    blobs: list[bytes] = []
    for s0, s1 in zip(group_series[:-1].tolist(), group_series[1:].tolist(), strict=True):
        a, b = int(offsets[s0]), int(offsets[s1])
        blobs.append(_encode_group(ts[a:b], values[a:b], np.diff(offsets[s0 : s1 + 1]), level))
    group_bytes = np.concatenate([[0], np.cumsum([len(b) for b in blobs])]).astype(np.int64)
    return ChunkSet(
        gids=gids,
        offsets=offsets,
        group_series=group_series,
        group_bytes=group_bytes,
        data=b"".join(blobs),
        min_time=int(ts.min()),
        max_time=int(ts.max()),
    )


def _stable_order(gid_of: I64, ts: I64) -> I64:
    """The stable (series id, time) order. One int64 key sorted with NumPy's stable sort
    (timsort, fast on the few sorted runs that concatenated sources are) when both fit in it;
    lexsort over two keys otherwise."""
    t0 = int(ts.min())
    span = int(ts.max()) - t0 + 1
    if int(gid_of.min()) >= 0 and (int(gid_of.max()) + 1) * span < 2**62:
        key = gid_of * np.int64(span) + (ts - np.int64(t0))
        order: I64 = np.argsort(key, kind="stable")
        return order
    lex: I64 = np.lexsort((ts, gid_of))  # stable
    return lex


def merge_sorted(
    gid_of: I64, ts: I64, values: F64, *, assume_sorted: bool = False
) -> tuple[I64, I64, F64]:
    """Sort samples by (series id, time) keeping input order among equal keys, then keep the
    last of each (series, timestamp): later sources win, like a later write."""
    if len(ts) == 0:
        return gid_of, ts, values
    if not assume_sorted:
        if len(ts) > 1:
            dg = np.diff(gid_of)
            ordered = bool(np.all((dg > 0) | ((dg == 0) & (np.diff(ts) > 0))))
        else:
            ordered = True
        if ordered:
            return gid_of, ts, values
        order = _stable_order(gid_of, ts)
        gid_of, ts, values = gid_of[order], ts[order], values[order]
    last = np.ones(len(ts), dtype=np.bool_)
    last[:-1] = (gid_of[1:] != gid_of[:-1]) | (ts[1:] != ts[:-1])
    if last.all():
        return gid_of, ts, values
    return gid_of[last], ts[last], values[last]
