"""Chunk-set encoding: exact round trips (StaleNaN, -0.0, NaN, Inf), selection, merging."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalroom.promql.storage import STALE_NAN
from signalroom.tsdb.codec import encode_chunkset, merge_sorted, ranges

pytestmark = pytest.mark.unit


def _bits(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float64).view(np.uint64)


def test_round_trip_keeps_every_bit_and_compresses_regular_data() -> None:
    rng = np.random.default_rng(7)
    series, per = 300, 240
    gids = np.repeat(np.arange(series, dtype=np.int64) * 3 + 5, per)
    ts = np.tile(np.arange(per, dtype=np.int64) * 15_000, series) + 1_700_000_000_000
    values = np.concatenate(
        [
            np.cumsum(rng.poisson(3, per)).astype(np.float64)
            if s % 3 == 0
            else np.round(np.cumsum(rng.exponential(0.5, per)), 2)
            if s % 3 == 1
            else np.full(per, float(s))
            for s in range(series)
        ]
    )
    specials = [STALE_NAN, float("nan"), -0.0, float("inf"), -float("inf"), 5e-324, 1e308]
    values[: len(specials)] = specials
    chunks = encode_chunkset(gids, ts, values, group_samples=4096)
    g, t, v = chunks.decode_all()
    assert np.array_equal(g, gids)
    assert np.array_equal(t, ts)
    assert np.array_equal(_bits(v), _bits(values))
    assert chunks.nbytes / len(ts) < 2.0  # raw is 16 bytes per sample
    assert len(chunks.group_series) > 2  # several independently decodable groups


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 20),
            st.integers(-(2**62), 2**62),
            st.one_of(st.floats(allow_nan=True), st.integers(-(10**9), 10**9).map(float)),
        ),
        min_size=1,
        max_size=200,
    )
)
def test_round_trip_of_arbitrary_samples(samples: list[tuple[int, int, float]]) -> None:
    gids = np.array([s[0] for s in samples], dtype=np.int64)
    ts = np.array([s[1] for s in samples], dtype=np.int64)
    values = np.array([s[2] for s in samples], dtype=np.float64)
    gids, ts, values = merge_sorted(gids, ts, values)
    chunks = encode_chunkset(gids, ts, values, group_samples=16)
    g, t, v = chunks.decode_all()
    assert np.array_equal(g, gids) and np.array_equal(t, ts)
    assert np.array_equal(_bits(v), _bits(values))


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 12),
            st.integers(-(2**40), 2**40),
            st.one_of(st.floats(allow_nan=True), st.integers(-(10**6), 10**6).map(float)),
        ),
        min_size=1,
        max_size=150,
    ),
    st.sets(st.integers(0, 12), min_size=1),
)
def test_select_of_some_series_decodes_them_exactly(
    samples: list[tuple[int, int, float]], wanted: set[int]
) -> None:
    """Decoding only the wanted series of a group (integer and XOR series mixed) gives the
    same samples as decoding every series and filtering."""
    gids = np.array([s[0] for s in samples], dtype=np.int64)
    ts = np.array([s[1] for s in samples], dtype=np.int64)
    values = np.array([s[2] for s in samples], dtype=np.float64)
    gids, ts, values = merge_sorted(gids, ts, values)
    chunks = encode_chunkset(gids, ts, values, group_samples=64)
    ids = np.array(sorted(wanted), dtype=np.int64)
    g, t, v = chunks.select(ids, -(2**41), 2**41)
    keep = np.isin(gids, ids)
    assert np.array_equal(g, gids[keep]) and np.array_equal(t, ts[keep])
    assert np.array_equal(_bits(v), _bits(values[keep]))


def test_select_returns_only_wanted_series_in_range() -> None:
    gids = np.repeat(np.arange(100, dtype=np.int64), 10)
    ts = np.tile(np.arange(10, dtype=np.int64) * 1000, 100)
    values = gids.astype(np.float64) + ts / 1000
    chunks = encode_chunkset(gids, ts, values, group_samples=64)
    g, t, v = chunks.select(np.array([3, 50, 99, 500], dtype=np.int64), 2000, 4000)
    assert sorted(set(g.tolist())) == [3, 50, 99]
    assert t.tolist() == [2000, 3000, 4000] * 3
    assert np.array_equal(v, g + t / 1000)
    assert len(chunks.select(np.array([3], np.int64), 20_000, 30_000)[0]) == 0


def test_merge_sorted_orders_and_later_write_wins() -> None:
    g = np.array([2, 1, 1, 2, 1], dtype=np.int64)
    t = np.array([10, 20, 10, 10, 20], dtype=np.int64)
    v = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    mg, mt, mv = merge_sorted(g, t, v)
    assert mg.tolist() == [1, 1, 2]
    assert mt.tolist() == [10, 20, 10]
    assert mv.tolist() == [3.0, 5.0, 4.0]


def test_ranges() -> None:
    out = ranges(np.array([5, 0, 9], np.int64), np.array([2, 0, 3], np.int64))
    assert out.tolist() == [5, 6, 9, 10, 11]


@pytest.mark.parametrize(
    ("gid_high", "ts_low", "ts_high"),
    [(50, 0, 1_000), (10_000, -(2**40), 2**40), (2**40, 0, 2**30)],  # the last falls back
)
def test_stable_order_equals_lexsort(gid_high: int, ts_low: int, ts_high: int) -> None:
    from signalroom.tsdb.codec import _stable_order

    rng = np.random.default_rng(7)
    runs = []
    for _ in range(3):  # sorted runs, as concatenated chunk sets are
        gid = rng.integers(0, gid_high, 5_000)
        ts = rng.integers(ts_low, ts_high, 5_000)
        order = np.lexsort((ts, gid))
        runs.append((gid[order], ts[order]))
    gid = np.concatenate([r[0] for r in runs]).astype(np.int64)
    ts = np.concatenate([r[1] for r in runs]).astype(np.int64)
    assert np.array_equal(_stable_order(gid, ts), np.lexsort((ts, gid)))


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.lists(st.tuples(st.integers(0, 6), st.integers(0, 60)), min_size=1, max_size=40),
        min_size=2,
        max_size=4,
    ),
    st.booleans(),
)
def test_interleaving_parts_equals_merging_them(
    raw_parts: list[list[tuple[int, int]]], disjoint: bool
) -> None:
    """Reading from several chunk sets: put together without sorting when every series' parts
    follow each other in time, else merged; the answer is the same either way."""
    from signalroom.tsdb.db import _interleave

    parts = []
    for k, samples in enumerate(raw_parts):
        g = np.array([s[0] for s in samples], dtype=np.int64)
        t = np.array([s[1] for s in samples], dtype=np.int64) + (100 * k if disjoint else 0)
        parts.append(merge_sorted(g, t, (g * 1000 + t).astype(np.float64)))
    ids = np.arange(7, dtype=np.int64)
    expected = merge_sorted(*(np.concatenate(c) for c in zip(*parts, strict=True)))
    got = _interleave(parts, ids)
    if disjoint:
        assert got is not None
    if got is not None:
        for a, b in zip(got, expected, strict=True):
            assert np.array_equal(a, b)
