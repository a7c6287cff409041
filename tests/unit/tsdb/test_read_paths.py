"""Read paths that trade memory for speed: the cache of small decoded selections, the head's
raw parts, interleaving sources without sorting, and the malloc settings."""

from __future__ import annotations

import numpy as np
import pytest

from signalroom.tsdb.codec import DecodedCache, decoded_cache, encode_chunkset
from signalroom.tsdb.db import _interleave
from signalroom.tsdb.head import Head
from signalroom.tsdb.malloc import glibc_tunables, tune_malloc

pytestmark = pytest.mark.unit


def _chunkset(series: int = 200, per: int = 100, t0: int = 0) -> tuple:
    gids = np.repeat(np.arange(series, dtype=np.int64), per)
    ts = np.tile(np.arange(per, dtype=np.int64) * 15_000, series) + t0
    values = np.cumsum(np.arange(series * per, dtype=np.float64) % 7) / 4
    return encode_chunkset(gids, ts, values, group_samples=4096), gids, ts, values


def test_a_small_selection_is_decoded_once_and_answers_the_same() -> None:
    chunks, gids, ts, values = _chunkset()
    decoded_cache.clear()
    wanted = np.array([57, 58], dtype=np.int64)
    first = chunks.select(wanted, 0, 10**12)
    assert len(decoded_cache) == 1  # both series are in one group: one entry
    second = chunks.select(wanted, 30_000, 600_000)  # another range: the same entry
    assert len(decoded_cache) == 1
    want = np.isin(gids, wanted)
    for got, expected in zip(first, (gids[want], ts[want], values[want]), strict=True):
        np.testing.assert_array_equal(got, expected)
    inside = want & (ts >= 30_000) & (ts <= 600_000)
    np.testing.assert_array_equal(second[1], ts[inside])
    np.testing.assert_array_equal(second[2], values[inside])
    # what the cache holds cannot be changed by a reader
    assert not any(a.flags.writeable for entry in decoded_cache._entries.values() for a in entry)
    # a new chunk set with the same ids is another entry, never the old one's samples
    other, *_ = _chunkset(t0=1)
    np.testing.assert_array_equal(other.select(wanted, 0, 10**12)[1], ts[want] + 1)
    assert len(decoded_cache) == 2


def test_the_cache_stays_within_its_bytes() -> None:
    cache = DecodedCache(max_bytes=10_000, max_entry_samples=100)
    for i in range(50):
        cache.put((1, i, b""), (np.zeros(50, np.int64), np.zeros(50, np.float64)))
    assert cache.nbytes <= 10_000
    assert cache.get((1, 49, b"")) is not None  # the newest stay
    assert cache.get((1, 0, b"")) is None  # the oldest went
    assert 0 < len(cache) < 50


def test_many_appends_keep_few_raw_parts_and_every_sample() -> None:
    head = Head(chunk_samples=1 << 20, group_samples=1 << 12, level=1)
    for i in range(100):
        head.add(np.array([i % 3], np.int64), np.array([i], np.int64), np.array([float(i)]))
    _, raw = head.snapshot()
    assert len(raw) < 32
    ts = np.sort(np.concatenate([p[1] for p in raw]))
    np.testing.assert_array_equal(ts, np.arange(100))


def test_interleave_puts_disjoint_parts_in_order_and_refuses_overlaps() -> None:
    ids = np.array([1, 2], np.int64)
    old = (np.array([1, 1, 2]), np.array([0, 10, 5]), np.array([0.0, 1.0, 2.0]))
    new = (np.array([1, 2, 2]), np.array([20, 15, 25]), np.array([3.0, 4.0, 5.0]))
    parts = [new, old]
    gids, ts, vals = _interleave(parts, ids) or ((), (), ())
    assert list(gids) == [1, 1, 1, 2, 2, 2]
    assert list(ts) == [0, 10, 20, 5, 15, 25]
    assert list(vals) == [0.0, 1.0, 3.0, 2.0, 4.0, 5.0]
    assert parts == []  # consumed while copying
    overlapping = (np.array([2]), np.array([5]), np.array([9.0]))  # series 2 at 5 again
    parts = [old, overlapping]
    assert _interleave(parts, ids) is None
    assert len(parts) == 2  # left for the caller to merge


def test_malloc_settings() -> None:
    assert tune_malloc() in (True, False)  # False only off glibc
    assert glibc_tunables(2, 4096, 8192) == (
        "glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=4096:glibc.malloc.trim_threshold=8192"
    )


def test_interleave_of_one_series_orders_its_parts_by_time() -> None:
    def part(ts: list[int]) -> tuple:
        t = np.array(ts, dtype=np.int64)
        return np.full(len(t), 5, np.int64), t, t.astype(np.float64) / 2

    ids = np.array([5], dtype=np.int64)
    got = _interleave([part([40, 50]), part([1, 2, 3]), part([10, 20])], ids)
    assert got is not None
    assert got[1].tolist() == [1, 2, 3, 10, 20, 40, 50]
    assert got[2].tolist() == [0.5, 1.0, 1.5, 5.0, 10.0, 20.0, 25.0]
    assert got[0].tolist() == [5] * 7
    assert _interleave([part([1, 20]), part([10, 30])], ids) is None  # overlapping in time
