"""WAL append throughput: fsync=always/batch/never, 1 and 8 writer threads, 100 B and 4 KiB.

Each case appends one record per call for a fixed time and reports the median of 3 runs:
appends/s, MB/s of payload, median append latency and fsyncs per append. The floor is a plain
``os.write`` (+ ``os.fdatasync``) loop on one file in the same run, the cost of the syscalls
alone. Results go to ``bench/results/wal.json`` and a table on stdout.

    .venv/bin/python bench/bench_wal.py [--seconds 1.0] [--runs 3] [--dir /path/on/target/disk]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY

from bench.record import record as record_result
from signalroom.storage.wal import WAL, FsyncPolicy

RESULTS = Path(__file__).resolve().parent / "results" / "wal.json"


def _fsyncs(name: str) -> float:
    value = REGISTRY.get_sample_value("signalroom_wal_fsync_duration_seconds_count", {"wal": name})
    return value or 0.0


def run_wal(
    base: Path,
    policy: FsyncPolicy,
    writers: int,
    size: int,
    seconds: float,
    batch_interval: float,
    run_id: str,
) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(dir=base))
    name = f"bench-{run_id}"
    payload = os.urandom(size)
    counts = [0] * writers
    latencies: list[list[float]] = [[] for _ in range(writers)]
    start_barrier = threading.Barrier(writers + 1)
    deadline = 0.0
    wal = WAL(directory, name=name, fsync=policy, batch_interval=batch_interval).open()

    def writer(index: int) -> None:
        start_barrier.wait()
        n = 0
        lat = latencies[index]
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= deadline:
                break
            wal.append([payload])
            lat.append(clock() - t0)
            n += 1
        counts[index] = n

    threads = [threading.Thread(target=writer, args=(i,)) for i in range(writers)]
    for thread in threads:
        thread.start()
    fsyncs_before = _fsyncs(name)
    began = time.perf_counter()
    deadline = began + seconds
    start_barrier.wait()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    fsyncs = _fsyncs(name) - fsyncs_before
    wal.close()
    shutil.rmtree(directory)
    total = sum(counts)
    all_latencies = [x for lat in latencies for x in lat]
    return {
        "appends_per_s": total / elapsed,
        "mb_per_s": total * size / elapsed / 1e6,
        "p50_latency_us": statistics.median(all_latencies) * 1e6 if all_latencies else 0.0,
        "fsyncs_per_append": fsyncs / total if total else 0.0,
    }


def run_wal_async(
    base: Path,
    policy: FsyncPolicy,
    writers: int,
    size: int,
    seconds: float,
    batch_interval: float,
    run_id: str,
) -> dict[str, float]:
    """Like run_wal, with ``writers`` asyncio tasks on one event loop (the server's path)."""
    directory = Path(tempfile.mkdtemp(dir=base))
    name = f"bench-{run_id}"
    payload = os.urandom(size)
    wal = WAL(directory, name=name, fsync=policy, batch_interval=batch_interval).open()
    latencies: list[float] = []

    async def writer(deadline: float) -> int:
        n = 0
        clock = time.perf_counter
        while True:
            t0 = clock()
            if t0 >= deadline:
                return n
            await wal.append_async([payload])
            latencies.append(clock() - t0)
            n += 1

    async def all_writers() -> int:
        deadline = time.perf_counter() + seconds
        return sum(await asyncio.gather(*(writer(deadline) for _ in range(writers))))

    fsyncs_before = _fsyncs(name)
    began = time.perf_counter()
    total = asyncio.run(all_writers())
    elapsed = time.perf_counter() - began
    fsyncs = _fsyncs(name) - fsyncs_before
    wal.close()
    shutil.rmtree(directory)
    return {
        "appends_per_s": total / elapsed,
        "mb_per_s": total * size / elapsed / 1e6,
        "p50_latency_us": statistics.median(latencies) * 1e6 if latencies else 0.0,
        "fsyncs_per_append": fsyncs / total if total else 0.0,
    }


def run_floor(base: Path, sync: bool, size: int, seconds: float) -> dict[str, float]:
    directory = Path(tempfile.mkdtemp(dir=base))
    path = directory / "floor.bin"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    record = os.urandom(size + 16)  # same bytes on disk as a WAL record of this payload
    sync_call: Callable[[int], None] = getattr(os, "fdatasync", os.fsync)
    n = 0
    latencies = []
    began = time.perf_counter()
    deadline = began + seconds
    clock = time.perf_counter
    while True:
        t0 = clock()
        if t0 >= deadline:
            break
        os.write(fd, record)
        if sync:
            sync_call(fd)
        latencies.append(clock() - t0)
        n += 1
    elapsed = time.perf_counter() - began
    os.close(fd)
    shutil.rmtree(directory)
    return {
        "appends_per_s": n / elapsed,
        "mb_per_s": n * size / elapsed / 1e6,
        "p50_latency_us": statistics.median(latencies) * 1e6,
        "fsyncs_per_append": 1.0 if sync else 0.0,
    }


def median_of(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=1.0, help="duration of one run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where to write (target disk)")
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="bench-wal-", dir=args.dir))

    cases: list[dict[str, Any]] = []
    for size in (100, 4096):
        for sync in (True, False):
            cases.append({"kind": "floor", "policy": "os.write+fdatasync" if sync else "os.write",
                          "writers": 1, "record_bytes": size, "sync": sync})  # fmt: skip
        for policy in ("always", "batch", "never"):
            for writers in (1, 8):
                cases.append({"kind": "wal", "policy": policy, "writers": writers,
                              "record_bytes": size, "batch_interval": 0.002})  # fmt: skip
        # batch without spacing: pure leader/follower coalescing, as "always".
        cases.append({"kind": "wal", "policy": "batch", "writers": 8,
                      "record_bytes": size, "batch_interval": 0.0})  # fmt: skip
        # asyncio tasks on one loop: the HTTP server's path (fsync by the flusher thread).
        for policy, interval in (("always", 0.002), ("batch", 0.002), ("batch", 0.0)):
            cases.append({"kind": "async", "policy": policy, "writers": 8,
                          "record_bytes": size, "batch_interval": interval})  # fmt: skip

    results = []
    try:
        for index, case in enumerate(cases):
            runs = []
            for run in range(args.runs):
                if case["kind"] == "floor":
                    runs.append(run_floor(base, case["sync"], case["record_bytes"], args.seconds))
                else:
                    runner = run_wal if case["kind"] == "wal" else run_wal_async
                    runs.append(
                        runner(
                            base,
                            case["policy"],
                            case["writers"],
                            case["record_bytes"],
                            args.seconds,
                            case["batch_interval"],
                            f"{index}-{run}",
                        )
                    )
            label = case["policy"]
            if case["kind"] != "floor" and case["policy"] == "batch":
                label = f"batch({case['batch_interval'] * 1000:g}ms)"
            if case["kind"] == "async":
                label += " async"
            results.append({**case, "label": label, **median_of(runs)})
    finally:
        shutil.rmtree(base, ignore_errors=True)

    def rate(label: str, writers: int, size: int) -> float:
        return next(
            r["appends_per_s"]
            for r in results
            if r["label"] == label and r["writers"] == writers and r["record_bytes"] == size
        )

    floor = rate("os.write+fdatasync", 1, 100)
    summary = (
        f"100 B records, appends/s (median of {args.runs}): always 1 writer "
        f"{rate('always', 1, 100):,.0f} vs bare write+fdatasync {floor:,.0f} "
        f"({rate('always', 1, 100) / floor:.2f}x); "
        f"batch 8 writers {rate('batch(2ms)', 8, 100):,.0f}; "
        f"never {rate('never', 1, 100):,.0f}; 4 KiB always 8 writers {rate('always', 8, 4096):,.0f}"
    )
    record_result(
        "wal",
        {
            "seconds_per_run": args.seconds,
            "runs": args.runs,
            "statistic": "median of runs",
            "directory": str(args.dir or tempfile.gettempdir()),
            "cases": results,
        },
        summary,
    )

    header = (
        f"{'case':<20} {'writers':>7} {'bytes':>6} {'appends/s':>11} {'MB/s':>8} "
        f"{'p50 us':>9} {'fsync/app':>9}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        print(
            f"{r['label']:<20} {r['writers']:>7} {r['record_bytes']:>6} "
            f"{r['appends_per_s']:>11,.0f} {r['mb_per_s']:>8.2f} "
            f"{r['p50_latency_us']:>9.0f} {r['fsyncs_per_append']:>9.3f}"
        )
    print(f"\nwritten to {RESULTS}")
    print(summary)


if __name__ == "__main__":
    main()
