"""Rough timings of the PromQL engine on synthetic data (not a test; run by hand).

.venv/bin/python bench/bench_promql_engine.py [series] [hours]
"""

from __future__ import annotations

import sys
import time

import numpy as np

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage


class ArrayStorage(MemoryStorage):
    """MemoryStorage filled straight from arrays (skips per-sample inserts)."""

    def put(self, labels: Labels, ts: np.ndarray, values: np.ndarray) -> None:
        self.add(labels, int(ts[0]), float(values[0]))
        self._frozen[labels] = (ts, values)


def main() -> None:
    n_series = int(sys.argv[1]) if len(sys.argv) > 1 else 1000
    hours = int(sys.argv[2]) if len(sys.argv) > 2 else 6
    step = 15_000
    ts = np.arange(0, hours * 3_600_000, step, dtype=np.int64)
    rng = np.random.default_rng(1)
    storage = ArrayStorage()
    for i in range(n_series):
        counter = np.cumsum(rng.integers(0, 10, len(ts))).astype(np.float64)
        storage.put(Labels.of(__name__="req_total", job=f"j{i % 10}", inst=f"i{i}"), ts, counter)
        gauge = rng.normal(50, 10, len(ts))
        storage.put(Labels.of(__name__="temp", job=f"j{i % 10}", inst=f"i{i}"), ts, gauge)
    engine = Engine()
    end = int(ts[-1])
    queries = [
        "rate(req_total[5m])",
        "sum by (job) (rate(req_total[5m]))",
        "max_over_time(temp[10m])",
        "avg_over_time(temp[10m])",
        "histogram_quantile(0.9, sum by (le) (rate(req_total[5m])))",
        "temp > 70",
        "req_total / on(job, inst) group_left temp",
        "predict_linear(temp[30m], 3600)",
    ]
    print(f"{n_series} series x {len(ts)} samples, range query step 60s over {hours}h")
    for q in queries:
        t0 = time.perf_counter()
        res = engine.range_query(storage, q, 0, end, 60_000)
        dt = time.perf_counter() - t0
        print(f"{dt:7.3f}s  {q}  ({len(res.value.series)} series)")  # type: ignore[union-attr]


if __name__ == "__main__":
    main()
