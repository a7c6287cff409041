"""Summaries with quantiles over a sliding window, as Prometheus's rule metrics report them.

client_golang summaries keep observations for `MaxAge` (10 minutes) and report the
configured quantile objectives over that window, plus a lifetime `_sum` and `_count`.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence

#: Quantile objectives of prometheus_rule_evaluation_duration_seconds.
RULE_EVAL_QUANTILES = (0.5, 0.9, 0.99)
#: Quantile objectives of prometheus_rule_group_duration_seconds.
GROUP_DURATION_QUANTILES = (0.01, 0.05, 0.5, 0.9, 0.99)


class WindowedSummary:
    """Observations of the last `max_age_s` seconds (at most `max_samples`), thread-safe."""

    def __init__(
        self,
        quantiles: Sequence[float],
        max_age_s: float = 600.0,
        max_samples: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.quantiles = tuple(quantiles)
        self.max_age_s = max_age_s
        self.clock = clock
        self.sum = 0.0
        self.count = 0
        self._window: deque[tuple[float, float]] = deque(maxlen=max_samples)
        self._lock = threading.Lock()

    def observe(self, value: float) -> None:
        with self._lock:
            self.sum += value
            self.count += 1
            self._window.append((self.clock(), value))

    def snapshot(self) -> tuple[list[tuple[float, float]], float, int]:
        """(quantile, value) pairs over the window (NaN when empty), sum and count."""
        with self._lock:
            cutoff = self.clock() - self.max_age_s
            while self._window and self._window[0][0] < cutoff:
                self._window.popleft()
            values = sorted(v for _, v in self._window)
            total, count = self.sum, self.count
        out: list[tuple[float, float]] = []
        for q in self.quantiles:
            if not values:
                out.append((q, math.nan))
                continue
            # The observation of rank ceil(q*n) (1-based), the targeted-quantile answer.
            rank = max(1, math.ceil(q * len(values)))
            out.append((q, values[rank - 1]))
        return out, total, count
