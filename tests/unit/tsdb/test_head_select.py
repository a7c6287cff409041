"""The head's raw-buffer read against a plain Python filter, for one and for many series."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from signalroom.tsdb.head import Samples, select_raw

pytestmark = pytest.mark.unit


def _naive(
    parts: list[Samples], wanted: np.ndarray[Any, Any], mint: int, maxt: int
) -> list[tuple[int, int, float]]:
    keep = set(wanted.tolist())
    return [
        (int(g), int(t), float(v))
        for gids, ts, vals in parts
        for g, t, v in zip(gids, ts, vals, strict=True)
        if int(g) in keep and mint <= t <= maxt
    ]


@pytest.mark.parametrize("how_many", [1, 2, 7, 40])
def test_select_raw_matches_a_plain_filter(how_many: int) -> None:
    rng = np.random.default_rng(how_many)
    parts: list[Samples] = []
    for _ in range(5):
        n = int(rng.integers(0, 400))
        parts.append(
            (
                rng.integers(0, 60, n).astype(np.int64),
                rng.integers(0, 1000, n).astype(np.int64),
                rng.random(n),
            )
        )
    for _ in range(20):
        wanted = np.unique(rng.integers(0, 80, how_many)).astype(np.int64)  # some beyond any id
        mint, maxt = sorted(int(x) for x in rng.integers(0, 1000, 2))
        gids, ts, vals = select_raw(parts, wanted, mint, maxt)
        got = list(zip(gids.tolist(), ts.tolist(), vals.tolist(), strict=True))
        assert got == _naive(parts, wanted, mint, maxt)  # same rows, in write order
