"""TSDB benchmarks: remote-write ingest, memory per series, bytes per sample on disk.

* ingest: 100,000 series x N samples as remote-write requests of 2,000 samples (one sample
  per series per request, as Prometheus's shards send them), each through
  ``decode_write_request`` + ``TSDB.append`` with the WAL on fsync=batch; samples/s, median of
  3 runs on a fresh store. Bodies are encoded before the clock starts.
* memory: resident memory per active series at 100k and 1M series (RSS delta of a fresh
  process after appending 2 samples to each series through the key path remote write uses).
* disk: node_exporter-like data (targets of 500 series: constant and rarely changing gauges,
  integer and float counters, noisy gauges; one shared scrape timestamp per target with a few
  ms of jitter), 2 hours at 15 s, appended, flushed and compacted; bytes per sample of the
  blocks on disk.

    .venv/bin/python bench/bench_tsdb.py [--samples 5] [--runs 3] [--quick]
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.record import record  # noqa: E402
from signalroom.ingest.remote_write import decode_write_request, encode_write_request  # noqa: E402
from signalroom.model.labels import Labels  # noqa: E402
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions  # noqa: E402
from signalroom.tsdb.keys import encode_key  # noqa: E402

T0 = 1_700_000_000_000


def series_labels(i: int) -> Labels:
    return Labels(
        {
            "__name__": f"bench_metric_{i % 100}",
            "instance": f"host-{i // 1000}:9100",
            "job": "node",
            "series": str(i),
        }
    )


def build_requests(num_series: int, samples: int, per_request: int = 2000) -> list[bytes]:
    labels = [series_labels(i) for i in range(num_series)]
    bodies = []
    for k in range(samples):
        ts = T0 + k * 15_000
        for start in range(0, num_series, per_request):
            chunk = labels[start : start + per_request]
            bodies.append(
                encode_write_request(
                    (lab, [(ts, float(k * 10 + j % 7))]) for j, lab in enumerate(chunk)
                )
            )
    return bodies


def run_ingest(bodies: list[bytes], base: Path, rounds_of: int) -> dict[str, float]:
    """Ingest all bodies; the first ``rounds_of`` bodies create every series."""
    directory = base / "ingest"
    shutil.rmtree(directory, ignore_errors=True)
    db = TSDB(directory, options=TSDBOptions(max_series_total=0)).open(background=False)
    gc.collect()
    started = time.perf_counter()
    decode_s = 0.0
    total = 0
    first_round = 0.0
    first_samples = 0
    for n, body in enumerate(bodies):
        t = time.perf_counter()
        batch, _ = decode_write_request(body, "snappy")
        decode_s += time.perf_counter() - t
        result = db.append("default", batch)
        total += result.accepted
        if n + 1 == rounds_of:
            first_round = time.perf_counter() - started
            first_samples = total
    elapsed = time.perf_counter() - started
    db.close()
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "samples": total,
        "seconds": elapsed,
        "decode_seconds": decode_s,
        "steady_samples_per_second": (total - first_samples) / (elapsed - first_round),
        "new_series_samples_per_second": first_samples / first_round,
    }


def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def memory_child(num_series: int, directory: str) -> None:
    """Run in a fresh process: print the RSS delta of num_series series x 2 samples."""
    db = TSDB(Path(directory), options=TSDBOptions(max_series_total=0, wal_fsync="never"))
    db.open(background=False)
    step = 20_000
    gc.collect()
    before = rss_bytes()
    for k in range(2):
        for start in range(0, num_series, step):
            n = min(step, num_series - start)
            keys = [
                encode_key(
                    (
                        ("__name__", f"bench_metric_{i % 100}"),
                        ("instance", f"host-{i // 1000}:9100"),
                        ("job", "node"),
                        ("series", str(i)),
                    )
                )
                for i in range(start, start + n)
            ]
            batch = SampleBatch(
                np.arange(n, dtype=np.int32),
                np.full(n, T0 + k * 15_000, dtype=np.int64),
                np.arange(n, dtype=np.float64) + k,
                keys=keys,
            )
            db.append("default", batch)
            del keys, batch
    db.head.encode_pending()
    gc.collect()
    after = rss_bytes()
    print(
        json.dumps(
            {
                "series": db.index.num_series,
                "rss_delta_bytes": after - before,
                "head_sample_bytes": db.head.nbytes,
            }
        )
    )
    db.close()


def measure_memory(num_series: int, base: Path) -> dict[str, float]:
    directory = base / f"mem-{num_series}"
    shutil.rmtree(directory, ignore_errors=True)
    out = subprocess.run(
        [sys.executable, __file__, "--memory-child", str(num_series), str(directory)],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT)])},
    ).stdout
    shutil.rmtree(directory, ignore_errors=True)
    data = json.loads(out.strip().splitlines()[-1])
    return {
        "series": data["series"],
        "rss_delta_bytes": data["rss_delta_bytes"],
        "bytes_per_series": data["rss_delta_bytes"] / data["series"],
        "head_sample_bytes": data["head_sample_bytes"],
    }


def node_exporter_values(rng: np.random.Generator, kind: int, n: int) -> np.ndarray:
    if kind == 0:  # constant gauge (sizes, info metrics, limits)
        return np.full(n, float(rng.choice([0, 1, 4096, 1.6e10, 3.3e12])))
    if kind == 1:  # integer counter (bytes, packets, interrupts)
        rate = rng.choice([0.5, 20, 5e3, 2e6])
        return np.cumsum(rng.poisson(rate * 15, n)).astype(np.float64) + rng.integers(1e6)
    if kind == 2:  # float counter with 2 decimals (cpu seconds)
        return np.round(1e5 + np.cumsum(rng.exponential(rng.choice([0.05, 3, 14]), n)), 2)
    if kind == 3:  # noisy gauge: memory bytes in pages, load average
        if rng.random() < 0.5:
            return (8e9 + np.cumsum(rng.normal(0, 50, n)).round() * 4096).astype(np.float64)
        return np.round(np.abs(1.5 + np.cumsum(rng.normal(0, 0.05, n))), 2)
    # rarely changing gauge (entropy, file descriptors, processes)
    steps = (rng.random(n) < 0.02) * rng.integers(-3, 4, n)
    return 100.0 + np.cumsum(steps)


def measure_disk(base: Path, targets: int, hours: float) -> dict[str, float]:
    directory = base / "disk"
    shutil.rmtree(directory, ignore_errors=True)
    rng = np.random.default_rng(42)
    per_target = 500
    scrapes = int(hours * 3600 / 15)
    kinds = rng.choice(5, size=per_target * targets, p=[0.35, 0.2, 0.15, 0.15, 0.15])
    values = np.stack([node_exporter_values(rng, int(k), scrapes) for k in kinds])
    db = TSDB(directory, options=TSDBOptions(wal_fsync="never")).open(background=False)
    labels = [
        Labels({"__name__": f"node_metric_{s % 120}", "instance": f"10.0.0.{t}:9100",
                "job": "node", "n": str(s)})
        for t in range(targets) for s in range(per_target)
    ]  # fmt: skip
    total = 0
    for k in range(scrapes):
        for t in range(targets):
            ts = T0 + k * 15_000 + int(rng.integers(-2, 3))  # one timestamp per scrape
            rows = slice(t * per_target, (t + 1) * per_target)
            batch = SampleBatch(
                np.arange(per_target, dtype=np.int32),
                np.full(per_target, ts, dtype=np.int64),
                values[rows, k],
                series=labels[rows],
            )
            total += db.append("default", batch).accepted
    db.flush()
    db.compact()
    blocks = db.blocks
    block_bytes = sum(b.size_bytes for b in blocks)
    chunk_bytes = sum(int(b.chunks.group_bytes[-1]) for b in blocks)
    db.close()
    shutil.rmtree(directory, ignore_errors=True)
    return {
        "samples": total,
        "series": len(labels),
        "blocks": len(blocks),
        "bytes_on_disk": block_bytes,
        "bytes_per_sample": block_bytes / total,
        "chunk_bytes_per_sample": chunk_bytes / total,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=5, help="samples per series (ingest)")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="small sizes, no recording")
    parser.add_argument("--dir", type=Path, default=None)
    parser.add_argument("--memory-child", nargs=2, metavar=("SERIES", "DIR"))
    args = parser.parse_args()
    if args.memory_child:
        memory_child(int(args.memory_child[0]), args.memory_child[1])
        return
    base = Path(tempfile.mkdtemp(prefix="bench-tsdb-", dir=args.dir))
    try:
        series = 10_000 if args.quick else args.series
        print(f"encoding {series} series x {args.samples} samples ...", flush=True)
        bodies = build_requests(series, args.samples)
        per_round = -(-series // 2000)
        runs = [run_ingest(bodies, base, per_round) for _ in range(1 if args.quick else args.runs)]
        rates = [r["samples"] / r["seconds"] for r in runs]
        decode_share = statistics.median(r["decode_seconds"] / r["seconds"] for r in runs)
        ingest = {
            "series": series,
            "samples_per_series": args.samples,
            "samples_per_request": 2000,
            "samples_per_second_median": statistics.median(rates),
            "samples_per_second_runs": rates,
            "steady_state_samples_per_second_median": statistics.median(
                r["steady_samples_per_second"] for r in runs
            ),
            "first_round_creating_series_samples_per_second_median": statistics.median(
                r["new_series_samples_per_second"] for r in runs
            ),
            "decode_share_of_time": decode_share,
            "wal_fsync": "batch",
        }
        print(json.dumps(ingest, indent=1), flush=True)
        memory = {
            str(n): measure_memory(n, base)
            for n in ((20_000,) if args.quick else (100_000, 1_000_000))
        }
        print(json.dumps(memory, indent=1), flush=True)
        disk = measure_disk(base, targets=2 if args.quick else 10, hours=0.5 if args.quick else 2)
        print(json.dumps(disk, indent=1), flush=True)
        results: dict[str, Any] = {"ingest": ingest, "memory": memory, "disk": disk}
        if not args.quick:
            mem_1m = memory.get("1000000", {}).get("bytes_per_series", float("nan"))
            mem_100k = memory.get("100000", {}).get("bytes_per_series", float("nan"))
            summary = (
                f"remote-write ingest {ingest['samples_per_second_median']:,.0f} samples/s "
                f"overall, {ingest['steady_state_samples_per_second_median']:,.0f} once series "
                f"exist ({series:,} series, 1 thread, fsync=batch); "
                f"memory {mem_100k:,.0f} B/series "
                f"at 100k, {mem_1m:,.0f} B/series at 1M; node_exporter-like blocks "
                f"{disk['bytes_per_sample']:.2f} B/sample"
            )
            record("tsdb", results, summary)
            print(summary)
    finally:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
