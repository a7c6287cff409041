"""Timings of the PromQL engine on synthetic data (not a test; run by hand).

.venv/bin/python -m bench.bench_promql_engine [--cases range,instant,rules] [--series N]
    [--hours H] [--instant-series 10000,100000] [--no-record]

- range: range queries (step 60 s) over `--series` series x `--hours` of 15 s samples;
- instant: instant queries (rule evaluation, dashboards' single stats) over 10,000 and
  100,000 series of 40 samples;
- rules: one "rule round", 100 instant rule expressions over 10,000 series (100 metrics x
  100 series), the engine's share of `python -m bench rules`.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import numpy as np

from bench.record import record
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage

STEP_MS = 15_000

RANGE_QUERIES = [
    "rate(req_total[5m])",
    "sum by (job) (rate(req_total[5m]))",
    "max_over_time(temp[10m])",
    "avg_over_time(temp[10m])",
    "histogram_quantile(0.9, sum by (le) (rate(req_total[5m])))",
    "temp > 70",
    "req_total / on(job, inst) group_left temp",
    "predict_linear(temp[30m], 3600)",
]

INSTANT_QUERIES = [
    "rate(req_total[5m])",
    "sum by (job) (rate(req_total[5m]))",
    "rate(req_total[5m]) > 0.5",
    "increase(req_total[5m])",
    "max_over_time(temp[10m])",
    "avg by (job) (temp)",
]


class ArrayStorage(MemoryStorage):
    """MemoryStorage filled straight from arrays (skips per-sample inserts)."""

    def put(self, labels: Labels, ts: np.ndarray, values: np.ndarray) -> None:
        self.add(labels, int(ts[0]), float(values[0]))
        self._frozen[labels] = (ts, values)


def build(n_series: int, points: int, gauges: bool = True) -> tuple[ArrayStorage, int]:
    """`req_total` counters (and `temp` gauges) for n series; returns storage and last ts."""
    ts = np.arange(0, points * STEP_MS, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(1)
    storage = ArrayStorage()
    counters = np.cumsum(rng.integers(0, 10, (n_series, points)), axis=1).astype(np.float64)
    temps = rng.normal(50, 10, (n_series, points))
    for i in range(n_series):
        base = {"job": f"j{i % 10}", "inst": f"i{i}"}
        storage.put(Labels({"__name__": "req_total", **base}), ts, counters[i])
        if gauges:
            storage.put(Labels({"__name__": "temp", **base}), ts, temps[i])
    return storage, int(ts[-1])


def _timed(fn: Any, repeat: int = 1) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_range(n_series: int, hours: int) -> dict[str, float]:
    storage, end = build(n_series, hours * 3_600_000 // STEP_MS)
    engine = Engine()
    print(f"range: {n_series} series x {hours}h of 15s samples, step 60s")
    out: dict[str, float] = {}
    for q in RANGE_QUERIES:
        dt, res = _timed(lambda q=q: engine.range_query(storage, q, 0, end, 60_000))
        out[q] = round(dt, 4)
        print(f"{dt:8.3f}s  {q}  ({len(res.value.series)} series)")
    return out


def bench_instant(n_series: int) -> dict[str, float]:
    storage, end = build(n_series, 40)
    engine = Engine()
    print(f"instant: {n_series} series x 40 samples")
    out: dict[str, float] = {}
    for q in INSTANT_QUERIES:
        dt, res = _timed(lambda q=q: engine.instant_query(storage, q, end), repeat=3)
        out[q] = round(dt, 4)
        print(f"{dt:8.3f}s  {q}  ({len(res.value.samples)} samples)")
    return out


def bench_rule_round(n_series: int = 10_000, n_rules: int = 100, metrics: int = 100) -> float:
    """100 rule expressions (as bench_rules.py) evaluated once each, engine only."""
    ts = np.arange(0, 40 * STEP_MS, STEP_MS, dtype=np.int64)
    rng = np.random.default_rng(1)
    storage = ArrayStorage()
    per_metric = n_series // metrics
    for m in range(metrics):
        counters = np.cumsum(rng.integers(0, 10, (per_metric, len(ts))), axis=1).astype(float)
        for s in range(per_metric):
            labels = Labels(
                {
                    "__name__": f"http_requests_total_{m}",
                    "job": f"job{s % 10}",
                    "instance": f"i{s}",
                    "code": ("200", "500")[s % 2],
                }
            )
            storage.put(labels, ts, counters[s])
    exprs = []
    for i in range(n_rules):
        metric = f"http_requests_total_{i % metrics}"
        if i % 2 == 0:
            exprs.append(f"sum by (job) (rate({metric}[5m]))")
        else:
            exprs.append(f'sum by (job) (rate({metric}{{code="500"}}[5m])) > 0.1')
    engine = Engine()
    at = int(ts[-1])

    def round_() -> None:
        for e in exprs:
            engine.instant_query(storage, e, at)

    dt, _ = _timed(round_, repeat=3)
    print(f"rules: {n_rules} rules over {n_series} series: {dt:.3f}s per round")
    return round(dt, 4)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default="range,instant,rules")
    parser.add_argument("--series", type=int, default=1000, help="series for range queries")
    parser.add_argument("--hours", type=int, default=6)
    parser.add_argument("--instant-series", default="10000,100000")
    parser.add_argument("--no-record", dest="record", action="store_false")
    args, _names = parser.parse_known_args()
    cases = set(args.cases.split(","))
    results: dict[str, Any] = {}
    summary: list[str] = []
    if "rules" in cases:
        dt = bench_rule_round()
        results["rule_round_100_rules_10000_series_seconds"] = dt
        summary.append(f"rule round (100 rules/10k series) {dt:.3f}s")
    if "instant" in cases:
        for n in (int(x) for x in args.instant_series.split(",") if x):
            res = bench_instant(n)
            results[f"instant_{n}_series_seconds"] = res
            rate_q = "sum by (job) (rate(req_total[5m]))"
            summary.append(f"instant `{rate_q}` over {n} series {res[rate_q]:.3f}s")
    if "range" in cases:
        res = bench_range(args.series, args.hours)
        results[f"range_{args.series}_series_{args.hours}h_seconds"] = res
        summary.append(
            f"range queries ({args.series} series, {args.hours}h) total {sum(res.values()):.2f}s"
        )
    if args.record:
        record("promql_engine", results, "; ".join(summary))


if __name__ == "__main__":
    main()
