"""Special sample values shared by scraping, storage and queries."""

from __future__ import annotations

import struct

import numpy as np
import numpy.typing as npt

STALE_NAN_BITS = 0x7FF0000000000002
"""Prometheus' staleness marker: a NaN with exactly these bits."""
NORMAL_NAN_BITS = 0x7FF8000000000001
"""The NaN Prometheus stores for a NaN sample value, so it never looks stale."""

STALE_NAN: float = struct.unpack("<d", struct.pack("<Q", STALE_NAN_BITS))[0]
NORMAL_NAN: float = struct.unpack("<d", struct.pack("<Q", NORMAL_NAN_BITS))[0]


def is_stale_nan(value: float) -> bool:
    """True for the staleness marker, not for any other NaN."""
    return bool(struct.pack("<d", value) == struct.pack("<Q", STALE_NAN_BITS))


def stale_mask(values: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Vectorised ``is_stale_nan`` over a float64 array."""
    bits = np.asarray(values, dtype=np.float64).view(np.uint64)
    result: npt.NDArray[np.bool_] = bits == np.uint64(STALE_NAN_BITS)
    return result


# Prometheus' boundaries for "no start" and "no end" of a query (minInt64/4, maxInt64/4 in ms).
MIN_TIME_MS = -9223372036854775808 // 4 // 1000 * 1000
MAX_TIME_MS = 9223372036854775807 // 4 // 1000 * 1000
