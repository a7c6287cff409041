"""flat_search: window bounds of many series at once, against one searchsorted per series."""

from __future__ import annotations

import numpy as np
import pytest

from signalroom.promql.blocks import flat_search

pytestmark = pytest.mark.unit


def _naive(
    ts: np.ndarray, offsets: np.ndarray, starts: np.ndarray, ends: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    lo = np.empty((len(offsets) - 1, len(starts)), dtype=np.int64)
    hi = np.empty_like(lo)
    for i in range(len(offsets) - 1):
        a, b = int(offsets[i]), int(offsets[i + 1])
        lo[i] = a + np.searchsorted(ts[a:b], starts, side="right")
        hi[i] = a + np.searchsorted(ts[a:b], ends, side="right")
    return lo, hi


@pytest.mark.parametrize(
    ("range_ms", "step_ms", "steps"),
    [
        (300_000, 15_000, 241),  # windows overlap, range a multiple of the step
        (300_000, 300_000, 20),  # each window starts where the previous one ends
        (60_000, 300_000, 20),  # gaps between windows
        (100_000, 15_000, 50),  # overlap, not a multiple
        (300_000, 15_000, 5),  # fewer steps than one range
        (0, 15_000, 30),  # instant selection: starts == ends
        (300_000, 15_000, 1),
    ],
)
def test_flat_search_matches_per_series_search(range_ms: int, step_ms: int, steps: int) -> None:
    rng = np.random.default_rng(range_ms + step_ms + steps)
    counts = rng.integers(0, 120, 40)
    counts[3] = 0  # an empty series in the middle
    parts = [np.sort(rng.choice(4_000_000, int(n), replace=False)) for n in counts]
    ts = np.concatenate(parts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    ends = 200_000 + step_ms * np.arange(steps, dtype=np.int64)
    starts = ends - range_ms
    for first, last in ((0, len(counts)), (5, 17)):
        got = flat_search(ts, offsets[first : last + 1], starts, ends)
        want = _naive(ts, offsets[first : last + 1], starts, ends)
        np.testing.assert_array_equal(got[0], want[0])
        np.testing.assert_array_equal(got[1], want[1])


@pytest.mark.parametrize(("range_ms", "step_ms"), [(300_000, 15_000), (60_000, 300_000)])
def test_flat_search_with_samples_on_the_window_bounds(range_ms: int, step_ms: int) -> None:
    """Samples exactly at a step (inside its window) and exactly at a window start (outside)."""
    rng = np.random.default_rng(7)
    counts = rng.integers(0, 200, 30)
    parts = [np.sort(rng.choice(800, int(n), replace=False)) * 5_000 for n in counts]
    ts = np.concatenate(parts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int64)
    ends = 300_000 + step_ms * np.arange(40, dtype=np.int64)
    starts = ends - range_ms
    got = flat_search(ts, offsets, starts, ends)
    want = _naive(ts, offsets, starts, ends)
    np.testing.assert_array_equal(got[0], want[0])
    np.testing.assert_array_equal(got[1], want[1])
