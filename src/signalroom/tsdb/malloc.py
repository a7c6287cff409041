"""glibc malloc settings for a long-running server of large, short-lived NumPy arrays.

A query allocates arrays of many megabytes and frees them when it answers. With glibc's
defaults the mmap threshold grows with every large block freed (up to 32 MiB), so later
arrays come from the heap, and freed heap memory goes back to the system only from its top:
the process keeps the peak of every past query resident. Fixing the thresholds makes large
arrays mmap'd (returned on free) and the heap trimmed; two arenas keep the worker threads
from each growing their own.

Call :func:`tune_malloc` once at server start, before threads start. The same settings as
an environment variable (``GLIBC_TUNABLES``) are :func:`glibc_tunables`, for child processes.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["ARENA_MAX", "MMAP_THRESHOLD", "TRIM_THRESHOLD", "glibc_tunables", "tune_malloc"]

logger = logging.getLogger(__name__)

ARENA_MAX = 2
# Measured (bench query, 10k series): a 128 KiB threshold halves the peak RSS but makes every
# mid-sized array a fresh mapping and page faults: instant queries got ~1.5x slower. At 8 MiB
# only the large temporaries of range queries are mapped.
MMAP_THRESHOLD = 8 << 20
TRIM_THRESHOLD = 64 << 20

# mallopt parameters, from glibc's malloc.h
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
_M_ARENA_MAX = -8


def tune_malloc(
    arena_max: int = ARENA_MAX,
    mmap_threshold: int = MMAP_THRESHOLD,
    trim_threshold: int = TRIM_THRESHOLD,
) -> bool:
    """Apply the settings with mallopt(3); False (and nothing changed) where the C library
    is not glibc."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError, TypeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = all(
        mallopt(param, value) == 1
        for param, value in (
            (_M_ARENA_MAX, arena_max),
            (_M_MMAP_THRESHOLD, mmap_threshold),
            (_M_TRIM_THRESHOLD, trim_threshold),
        )
    )
    if not done:
        logger.warning("mallopt refused a setting; malloc keeps its defaults")
    return done


def glibc_tunables(
    arena_max: int = ARENA_MAX,
    mmap_threshold: int = MMAP_THRESHOLD,
    trim_threshold: int = TRIM_THRESHOLD,
) -> str:
    """The settings of :func:`tune_malloc` as a ``GLIBC_TUNABLES`` value."""
    return (
        f"glibc.malloc.arena_max={arena_max}:glibc.malloc.mmap_threshold={mmap_threshold}"
        f":glibc.malloc.trim_threshold={trim_threshold}"
    )
