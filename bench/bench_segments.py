"""Benchmark of the columnar segment store with a logs-like schema.

Measures append + flush throughput (rows/s, MB/s of Arrow data) for the bare SegmentStore and for
the DurableTable (WAL first), bytes on disk against raw bytes, and the scan of one hour with a
DuckDB substring filter. The floor in the same run is one plain ``pq.write_table`` of the same
rows (no sorting, no partitioning). Writes ``bench/results/segments.json`` and a README line.

    .venv/bin/python -m bench segments
    .venv/bin/python bench/bench_segments.py [--rows 1000000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from signalroom.storage.segments import SegmentStore
from signalroom.storage.table import DurableTable

if __package__ in (None, ""):  # run as a script: make ``bench`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.record import record

HOUR = 3600 * 10**9
BASE = 1_700_000_000 * 10**9 // HOUR * HOUR
HOURS = 6
BATCH_ROWS = 10_000
NEEDLE = "payment_declined"
STORE_OPTIONS: dict[str, Any] = {
    "sort_by": ("service",),
    "dictionary_columns": ("service", "level"),
}

SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns", "UTC"), nullable=False),
        pa.field("service", pa.string()),
        pa.field("level", pa.string()),
        pa.field("message", pa.string()),
    ]
)

_SERVICES = np.array(
    ["checkout", "cart", "catalog", "search", "payments", "auth", "orders", "shipping"]
)
_LEVELS = np.array(["debug", "info", "info", "info", "warn", "error"])
_PATHS = np.array(["/api/v1/orders", "/api/v1/cart", "/api/v1/items", "/api/v1/users"])
_EVENTS = np.array(["request_done", "cache_miss", "db_query", "retrying", NEEDLE, "upstream_ok"])


def make_logs(rows: int, seed: int = 42) -> pa.Table:
    """``rows`` log lines over HOURS hours with ~200-byte messages (random ids keep them real)."""
    rng = np.random.default_rng(seed)
    times = BASE + np.sort(rng.integers(0, HOURS * HOUR, rows))
    rng.shuffle(times[: rows // 10])  # some disorder, as from several senders
    ids = rng.integers(0, 2**63, size=(rows, 2), dtype=np.int64)
    status = rng.choice([200, 200, 200, 201, 404, 500], rows)
    millis = rng.integers(1, 3000, rows)
    paths = rng.choice(_PATHS, rows)
    events = rng.choice(_EVENTS, rows, p=[0.5, 0.2, 0.2, 0.05, 0.01, 0.04])
    messages = [
        f"event={e} method=GET path={p}/{a & 0xFFFFFF} status={s} duration_ms={m} "
        f"trace_id={a:016x}{b:016x} span_id={b & 0xFFFFFFFF:08x} user_agent=Mozilla/5.0 "
        f"(X11; Linux x86_64) client=web region=eu-central-1"
        for e, p, a, b, s, m in zip(
            events.tolist(),
            paths.tolist(),
            ids[:, 0].tolist(),
            ids[:, 1].tolist(),
            status.tolist(),
            millis.tolist(),
            strict=True,
        )
    ]
    return pa.table(
        {
            "timestamp": pa.array(times, pa.timestamp("ns", "UTC")),
            "service": pa.array(rng.choice(_SERVICES, rows)),
            "level": pa.array(rng.choice(_LEVELS, rows)),
            "message": pa.array(messages),
        },
        schema=SCHEMA,
    )


def raw_bytes(table: pa.Table) -> int:
    """Bytes of the data itself: 8 per timestamp plus the UTF-8 of each string."""
    total: int = 8 * table.num_rows
    for name in ("service", "level", "message"):
        column = table.column(name)
        total += sum(chunk.buffers()[2].size for chunk in column.chunks)
    return total


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median total time, plus every run's rows/s."""
    ordered = sorted(runs, key=lambda r: r["append_s"] + r["flush_s"])
    median = dict(ordered[len(ordered) // 2])
    median["runs_rows_per_s"] = [r["rows_per_s"] for r in runs]
    return median


def _throughput(table: pa.Table, append_s: float, flush_s: float) -> dict[str, Any]:
    total_s = append_s + flush_s
    return {
        "append_s": round(append_s, 4),
        "flush_s": round(flush_s, 4),
        "rows_per_s": round(table.num_rows / total_s),
        "mb_per_s": round(raw_bytes(table) / total_s / 2**20, 1),
    }


def bench_store(table: pa.Table, root: Path) -> tuple[dict[str, Any], SegmentStore]:
    store = SegmentStore(root, SCHEMA, name="bench-store", **STORE_OPTIONS)
    batches = [table.slice(i, BATCH_ROWS) for i in range(0, table.num_rows, BATCH_ROWS)]

    def append_all() -> None:
        for batch in batches:
            store.append("default", batch)

    append_s, _ = timed(append_all)
    flush_s, files = timed(store.flush)
    result = _throughput(table, append_s, flush_s)
    result.update(files=len(files), disk_bytes=sum(p.stat().st_size for p in files))
    return result, store


def bench_durable(table: pa.Table, root: Path) -> dict[str, Any]:
    batches = [table.slice(i, BATCH_ROWS) for i in range(0, table.num_rows, BATCH_ROWS)]
    durable = DurableTable(root, SCHEMA, name="bench-durable", **STORE_OPTIONS).open()

    def append_all() -> None:
        for batch in batches:
            durable.append("default", batch)

    append_s, _ = timed(append_all)
    flush_s, _ = timed(durable.flush)
    durable.close()
    result = _throughput(table, append_s, flush_s)
    result.update(batch_rows=BATCH_ROWS, wal_fsync="batch")
    return result


def bench_floor(table: pa.Table, root: Path) -> dict[str, Any]:
    """The floor: one unsorted, unpartitioned ``pq.write_table`` of the same rows."""
    root.mkdir(parents=True, exist_ok=True)
    path = root / "floor.parquet"
    write_s, _ = timed(
        lambda: pq.write_table(
            table,
            path,
            compression="zstd",
            row_group_size=128_000,
            use_dictionary=list(STORE_OPTIONS["dictionary_columns"]),
        )
    )
    result = _throughput(table, 0.0, write_s)
    result["disk_bytes"] = path.stat().st_size
    path.unlink()
    return result


def bench_scan(store: SegmentStore, repeats: int = 5) -> dict[str, Any]:
    start, end = BASE + 2 * HOUR, BASE + 3 * HOUR
    files = [str(p) for p in store.files("default", start, end)]
    con = duckdb.connect()
    con.execute("SET threads = 2")
    query = (
        "select count(*) from read_parquet(?) where timestamp >= make_timestamp(?::bigint // 1000) "
        "and timestamp < make_timestamp(?::bigint // 1000) and message like ?"
    )
    duck_times, hits = [], None
    for _ in range(repeats):
        seconds, result = timed(
            lambda: con.execute(query, [files, start, end, f"%{NEEDLE}%"]).fetchone()
        )
        duck_times.append(seconds)
        hits = result[0]
    arrow_times, rows = [], 0
    for _ in range(repeats):
        seconds, scanned = timed(lambda: store.scan("default", start, end))
        arrow_times.append(seconds)
        rows = scanned.num_rows
    return {
        "hour_rows": rows,
        "files_read": len(files),
        "duckdb_substring_hits": hits,
        "duckdb_substring_median_s": round(statistics.median(duck_times), 4),
        "arrow_scan_hour_median_s": round(statistics.median(arrow_times), 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    gen_s, table = timed(lambda: make_logs(args.rows))
    raw = raw_bytes(table)
    store_runs: list[dict[str, Any]] = []
    durable_runs: list[dict[str, Any]] = []
    floor_runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-segments-") as tmp:
        for run in range(args.repeats):
            result, store = bench_store(table, Path(tmp) / f"store{run}")
            store_runs.append(result)
            durable_runs.append(bench_durable(table, Path(tmp) / f"durable{run}"))
            floor_runs.append(bench_floor(table, Path(tmp) / "floor"))
        scan_result = bench_scan(store)

    store_result = _median_run(store_runs)
    durable_result = _median_run(durable_runs)
    floor_result = _median_run(floor_runs)
    results = {
        "rows": args.rows,
        "repeats": args.repeats,
        "schema": "timestamp, service, level, message (~200 B)",
        "avg_message_bytes": round(
            sum(c.buffers()[2].size for c in table.column("message").chunks) / args.rows, 1
        ),
        "store_options": {k: list(v) for k, v in STORE_OPTIONS.items()},
        "raw_bytes": raw,
        "arrow_bytes": table.nbytes,
        "generate_s": round(gen_s, 2),
        "segment_store": store_result,
        "durable_table": durable_result,
        "floor_single_parquet_write": floor_result,
        "compression_ratio_raw_over_disk": round(raw / store_result["disk_bytes"], 2),
        "store_vs_floor_throughput": round(
            store_result["rows_per_s"] / floor_result["rows_per_s"], 2
        ),
        "scan_one_hour": scan_result,
        "versions": {"pyarrow": pa.__version__, "duckdb": duckdb.__version__},
    }
    summary = (
        f"{args.rows:,} log rows: store append+flush {store_result['rows_per_s']:,} rows/s "
        f"({store_result['mb_per_s']} MB/s; floor {floor_result['mb_per_s']} MB/s), durable "
        f"{durable_result['rows_per_s']:,} rows/s, {results['compression_ratio_raw_over_disk']}x "
        f"smaller than raw, 1-hour DuckDB substring scan "
        f"{scan_result['duckdb_substring_median_s'] * 1000:.0f} ms"
    )
    path = record("segments", results, summary)
    print(json.dumps(results, indent=2))
    print(f"{summary}\nwritten to {path}")


if __name__ == "__main__":
    main()
