"""Log benchmarks: Loki push ingest rate over HTTP, substring search over N stored lines,
stored bytes vs raw, with ripgrep on the same raw file as the floor, in one run.

    .venv/bin/python -m bench.bench_logs [--lines 10000000] [--push-lines 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cramjam
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn
from fastapi import FastAPI

from bench.record import record
from signalroom.auth import Authenticator
from signalroom.config import AuthConfig
from signalroom.ingest.loki import PushRequest
from signalroom.logs.codec import line_sql
from signalroom.logs.config import LogsConfig, ThrottleConfig
from signalroom.logs.logql.parser import parse
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.logs.service import LogService
from signalroom.web import logs_api

NEEDLE = "needle-7f3a9c"
S = pa.scalar
BASE_NS = 1_700_000_000 * 10**9
_HEX = np.frombuffer(b"0123456789abcdef", np.uint8)
_MILLIS = pa.array([f".{i:03d}Z" for i in range(1000)])

# Each service writes one format, as real services do: logfmt access logs, JSON application
# logs (with trace ids) or Java-style text. Ids are random (request/trace ids) or heavy-tailed
# (users, customers, orders), numbers spread as latencies and sizes do.
SERVICES = {
    "shop": "access", "integration": "access", "crm": "json", "marketplace": "json",
    "catering": "text",
}  # fmt: skip
HOSTS = ["node-a", "node-b", "node-c"]
PATHS = ["/api/orders", "/api/leads", "/api/cart", "/health", "/api/samples", "/checkout",
         "/api/users", "/api/invoices"]  # fmt: skip
METHODS = ["GET", "GET", "GET", "POST", "PUT", "DELETE"]
STATUS = [200] * 12 + [201, 204, 301, 304, 400, 401, 403, 404, 404, 429, 500, 502, 503]
APP_MESSAGES = [
    "order created", "order paid", "payment authorised", "payment declined", "cart updated",
    "lead assigned", "invoice sent", "email queued", "cache miss", "cache refreshed",
    "user signed in", "user signed out", "password reset requested", "sample dispatched",
    "stock reserved", "stock released", "webhook delivered", "webhook retry scheduled",
    "export finished", "job started", "job finished", "feature flag evaluated", "session expired",
]  # fmt: skip
LEVELS = ["info", "info", "info", "info", "debug", "debug", "warn", "error"]
TEXT_MESSAGES = [
    "Connection to db-{} timed out after 5000ms, retrying", "GC pause of {}ms exceeded target",
    "Slow query took {}ms: SELECT * FROM orders WHERE customer_id = ?",
    "Worker {} picked up batch", "Reconnected to broker kafka-{} after backoff",
    "Flushed {} records to warehouse",
    "Circuit breaker for inventory-service opened after {} failures",
    "Scheduled task reindex took {}s", "Received SIGHUP, reloading configuration (generation {})",
    "Thread pool saturated: {} tasks queued",
]  # fmt: skip
THREADS = ["main", "http-nio-8080-exec-1", "http-nio-8080-exec-2", "http-nio-8080-exec-7",
           "scheduler-1", "kafka-consumer-0"]  # fmt: skip
LOGGERS = ["c.f.orders.OrderService", "c.f.db.Pool", "c.f.http.Client", "c.f.jobs.Scheduler",
           "c.f.cache.Redis"]  # fmt: skip


def _join(*parts: Any) -> pa.Array:
    return pc.binary_join_element_wise(*[S(p) if isinstance(p, str) else p for p in parts], S(""))


def _pick(rng: np.random.Generator, choices: list[str], n: int) -> pa.Array:
    return pa.array(choices, pa.string()).take(pa.array(rng.integers(0, len(choices), n)))


def _text(values: np.ndarray[Any, Any]) -> pa.Array:
    return pc.cast(pa.array(values), pa.string())


def _heavy_tailed(rng: np.random.Generator, n: int, low: int, high: int) -> pa.Array:
    return _text(np.minimum(low + rng.pareto(1.2, n) * (high - low) / 50, high).astype(np.int64))


def _hex(rng: np.random.Generator, n: int, width: int) -> pa.Array:
    digits = _HEX[rng.integers(0, 16, (n, width), dtype=np.uint8)]
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets), pa.py_buffer(digits.tobytes()))


def rfc3339_ms(ts_ns: np.ndarray[Any, Any]) -> pa.Array:
    """RFC 3339 times with milliseconds, formatting each distinct second once."""
    seconds, inverse = np.unique(ts_ns // 10**9, return_inverse=True)
    texts = pa.array([time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(s)) for s in seconds.tolist()])
    return _join(texts.take(pa.array(inverse)), _MILLIS.take(pa.array(ts_ns // 10**6 % 1000)))


def _lines_of(kind: str, stamps: pa.Array, rng: np.random.Generator) -> pa.Array:
    n = len(stamps)
    if kind == "access":
        status = np.asarray(STATUS)[rng.integers(0, len(STATUS), n)]
        level = np.where(status >= 500, "error", np.where(status >= 400, "warn", "info"))
        return _join(
            "ts=", stamps, " level=", pa.array(level), " method=", _pick(rng, METHODS, n),
            " path=", _pick(rng, PATHS, n), "/", _heavy_tailed(rng, n, 1, 200_000),
            " status=", _text(status), " duration_ms=",
            _text(rng.lognormal(3, 1.2, n).astype(np.int64)),
            " bytes=", _text(rng.lognormal(7, 1.5, n).astype(np.int64)),
            " user_id=", _heavy_tailed(rng, n, 1000, 99_999), " request_id=", _hex(rng, n, 16),
        )  # fmt: skip
    if kind == "json":
        return _join(
            '{"ts":"', stamps, '","level":"', _pick(rng, LEVELS, n), '","msg":"',
            _pick(rng, APP_MESSAGES, n), '","order_id":', _heavy_tailed(rng, n, 100_000, 999_999),
            ',"customer_id":"c-', _heavy_tailed(rng, n, 1000, 60_000), '","amount_cents":',
            _text(rng.integers(100, 50_000, n)), ',"trace_id":"', _hex(rng, n, 32), '"}',
        )  # fmt: skip
    template = pa.array(rng.integers(0, len(TEXT_MESSAGES), n))
    heads = pa.array([m.split("{}")[0] for m in TEXT_MESSAGES]).take(template)
    tails = pa.array([m.split("{}")[1] for m in TEXT_MESSAGES]).take(template)
    return _join(
        stamps, " ", _pick(rng, ["INFO", "INFO", "WARN", "ERROR"], n), " [",
        _pick(rng, THREADS, n), "] ", _pick(rng, LOGGERS, n), ": ", heads,
        _heavy_tailed(rng, n, 1, 5000), tails,
    )  # fmt: skip


STREAMS = [(service, host) for service in SERVICES for host in HOSTS]
STREAM_TEXTS = [format_labels({"service": s, "host": h, "env": "prod"}) for s, h in STREAMS]


def make_rows(ts_ns: np.ndarray[Any, Any], seed: int) -> tuple[np.ndarray[Any, Any], pa.Array]:
    """``(stream index, line)`` for each time: streams interleaved at random, each stream's
    lines in its service's format, the time at the start of the line as the service wrote it."""
    rng = np.random.default_rng(seed)
    n = len(ts_ns)
    which = rng.integers(0, len(STREAMS), n)
    kinds = np.asarray([SERVICES[s] for s, _ in STREAMS])[which]
    stamps = rfc3339_ms(ts_ns)
    parts, positions = [], []
    for kind in ("access", "json", "text"):
        where = np.flatnonzero(kinds == kind)
        parts.append(_lines_of(kind, stamps.take(pa.array(where)), rng))
        positions.append(where)
    inverse = np.empty(n, np.int64)
    inverse[np.concatenate(positions)] = np.arange(n)
    return which, pa.concat_arrays(parts).take(pa.array(inverse))


def make_lines(n: int, seed: int = 1) -> pa.Array:
    """``n`` lines one millisecond apart (for the push bench)."""
    ts = 1_700_000_000 * 10**9 + np.arange(n, dtype=np.int64) * 10**6
    return make_rows(ts, seed)[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


_CLIENT = """
import asyncio, pickle, sys, time, httpx
payloads = pickle.load(open(sys.argv[1], "rb"))
async def main():
    async with httpx.AsyncClient(base_url=sys.argv[2], timeout=120) as client:
        queue = list(payloads)
        began = time.perf_counter()
        async def worker():
            while queue:
                body = queue.pop()
                r = await client.post("/loki/api/v1/push", content=body,
                                      headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 204, r.text
        await asyncio.gather(*(worker() for _ in range(4)))
        print(time.perf_counter() - began)
asyncio.run(main())
"""


def bench_push(data_dir: Path, total_lines: int, batch_lines: int = 10_000) -> dict[str, Any]:
    """Push snappy protobuf batches from a separate client process to a real uvicorn server."""
    import pickle
    import sys

    lines = make_lines(batch_lines, seed=7).to_pylist()
    payloads = []
    base = time.time_ns() - 3600 * 10**9
    per_stream = batch_lines // 10
    for b in range(total_lines // batch_lines):
        request = PushRequest()
        for s in range(10):
            stream = request.streams.add(
                labels=f'{{service="{list(SERVICES)[s % 5]}", pod="p{s}", env="prod"}}'
            )
            for i in range(per_stream):
                entry = stream.entries.add(line=lines[s * per_stream + i])
                t = base + b * batch_lines + s * per_stream + i
                entry.timestamp.seconds, entry.timestamp.nanos = divmod(t, 10**9)
        payloads.append(bytes(cramjam.snappy.compress_raw(request.SerializeToString())))
    payload_file = data_dir / "payloads.pickle"
    payload_file.write_bytes(pickle.dumps(payloads))

    async def run() -> float:
        config = LogsConfig(throttle=ThrottleConfig(lines_per_second=1e9, burst_lines=10**9))
        service = LogService(config, data_dir / "logs")
        app = FastAPI()
        app.state.runtime = SimpleNamespace(logs=service, authenticator=Authenticator(AuthConfig()))
        app.include_router(logs_api.router)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
        )
        await service.start()
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", _CLIENT, str(payload_file), f"http://127.0.0.1:{port}",
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        server.should_exit = True
        await task
        await service.stop()
        return float(out.decode().strip())

    elapsed = asyncio.run(run())
    sent = len(payloads) * batch_lines
    return {"push_lines": sent, "push_seconds": round(elapsed, 3),
            "push_lines_per_second": round(sent / elapsed)}  # fmt: skip


def _timed(work: Any, repeats: int = 3) -> tuple[float, Any]:
    """Median seconds of ``repeats`` runs, and the last result."""
    times, out = [], None
    for _ in range(repeats):
        began = time.perf_counter()
        out = work()
        times.append(time.perf_counter() - began)
    return float(np.median(times)), out


def load_store(data_dir: Path, n: int, chunk: int = 1_000_000) -> dict[str, Any]:
    """Write ``n`` generated lines (1 ms apart, 15 streams) through the store's append and
    flush, and the same lines as a text file (``raw.log``, what a file tailer would read)."""
    from signalroom.logs.store import LogStore

    store = LogStore(data_dir / "search", wal_fsync="never", flush_rows=10**9).open()
    ids = np.asarray([stream_id(s) for s in STREAM_TEXTS], np.int64)
    texts = pa.array(STREAM_TEXTS, pa.string())
    raw_bytes = 0
    generate_s = 0.0
    began = time.perf_counter()
    with (data_dir / "raw.log").open("wb") as handle:
        for offset in range(0, n, chunk):
            size = min(chunk, n - offset)
            t0 = time.perf_counter()
            ts = BASE_NS + (offset + np.arange(size, dtype=np.int64)) * 10**6
            which, lines = make_rows(ts, seed=offset + 11)
            if offset == 0:  # a rare word, and one request id, to find
                values = lines.to_pylist()
                for position in (size // 7, size // 3, size // 2, size - 5, size - 1):
                    values[position] += " " + NEEDLE
                lines = pa.array(values, pa.string())
            text = pc.binary_join_element_wise(lines, S("\n"), S(""))
            generate_s += time.perf_counter() - t0
            table = pa.Table.from_arrays(
                [pa.array(ts), pa.array(ids[which]), texts.take(pa.array(which)), lines,
                 pa.nulls(size, pa.string()), pa.nulls(size, pa.string()),
                 pa.nulls(size, pa.string())],
                schema=LOG_SCHEMA,
            )  # fmt: skip
            store.append("default", table)
            store.table.flush()
            ends = np.frombuffer(text.buffers()[1], np.int32, size + 1, text.offset)
            data = memoryview(text.buffers()[2])[ends[0] : ends[-1]]
            raw_bytes += len(data)
            handle.write(data)
    store.close()
    return {"raw_bytes": raw_bytes, "generate_seconds": round(generate_s, 1),
            "load_seconds": round(time.perf_counter() - began - generate_s, 1)}  # fmt: skip


def bench_search(data_dir: Path, n: int) -> dict[str, Any]:
    from signalroom.logs.store import LogStore

    loaded = load_store(data_dir, n)
    raw = data_dir / "raw.log"
    store = LogStore(data_dir / "search", wal_fsync="never", flush_rows=10**9).open()
    stored = store.table.stats().bytes
    engine = store_engine(store)
    end = BASE_NS + n * 10**6 + 1
    # a needle a request id deep in the oldest data (the trigram index cannot prune hex)
    with raw.open() as handle:
        hex_needle = next(x.split("request_id=")[1][:12] for x in handle if "request_id=" in x)
    queries = {
        "rare_word": '{env="prod"} |= "' + NEEDLE + '"',
        "rare_hex_full_scan": '{env="prod"} |= "' + hex_needle + '"',
        "common_limit_100": '{env="prod"} |= "status=500"',
    }
    out: dict[str, Any] = {"search_lines": n, **loaded, "stored_bytes": stored,
                           "stored_over_raw": round(stored / loaded["raw_bytes"], 4),
                           "load_avg_before": [round(x, 2) for x in os.getloadavg()]}  # fmt: skip
    for name, text in queries.items():
        query = parse(text)
        seconds, result = _timed(
            lambda q=query: engine.select_logs("default", q, BASE_NS, end, limit=100)
        )
        out[f"search_{name}_seconds"] = round(seconds, 3)
        out[f"search_{name}_found"] = sum(len(s.lines) for s in result.streams)
    out["search_seconds"] = out["search_rare_word_seconds"]
    # Files store line templates and variables (signalroom.logs.codec). The floor of a hex id
    # search the index cannot prune: reading the hex id columns; and what reading every line
    # costs now: rebuilding them all.
    files = [str(p) for p in sorted((data_dir / "search").rglob("*.parquet"))]
    for name, expression in (
        ("read_hex_columns", "sum(strlen(h0)) + sum(strlen(h1))"),
        ("rebuild_all_lines", f"sum(strlen({line_sql()}))"),
    ):
        seconds, _ = _timed(
            lambda e=expression: (
                duckdb.connect()
                .execute(
                    f"SELECT {e} FROM read_parquet($files, hive_partitioning=false)",
                    {"files": files},
                )
                .fetchall()
            )
        )
        out[f"{name}_seconds"] = round(seconds, 3)
    count_q = parse('sum(count_over_time({env="prod"} |= "status=500" [1h]))')
    seconds, _ = _timed(lambda: engine.query_instant("default", count_q, end), repeats=1)
    out["count_over_time_1h_seconds"] = round(seconds, 3)
    # What a general-purpose compressor makes of the same raw bytes (a 32 MiB sample, in
    # arrival order), for scale: the random ids and numbers in the lines bound any ratio.
    with raw.open("rb") as handle:
        sample = handle.read(32 * 2**20)
    for level in (3, 19):
        packed = len(cramjam.zstd.compress(sample, level))
        out[f"zstd{level}_on_raw_sample_ratio"] = round(packed / len(sample), 4)
    floor = shutil.which("rg") or "grep"
    for name, needle in (("rare_word", NEEDLE), ("rare_hex_full_scan", hex_needle)):
        seconds, done = _timed(
            lambda nd=needle, tool=floor: subprocess.run(
                [tool, "-c", "-F", nd, str(raw)], capture_output=True, text=True
            )
        )
        out[f"floor_{name}_seconds"] = round(seconds, 3)
        out[f"floor_{name}_found"] = int(done.stdout.strip() or 0)
    out["floor"] = Path(shutil.which("rg") or "grep").name
    out["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
    store.close()
    return out


def store_engine(store: Any) -> Any:
    from signalroom.logs.logql.engine import LogQLEngine

    return LogQLEngine(store, timeout_s=600)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=10_000_000)
    parser.add_argument("--push-lines", type=int, default=500_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        results = bench_search(Path(tmp), args.lines)
        print(results, flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        push = bench_push(Path(tmp), args.push_lines)
        print(push, flush=True)
    results.update(push)
    summary = (
        f"Loki push {results['push_lines_per_second']:,} lines/s; substring search over "
        f"{args.lines:,} lines: rare word {results['search_rare_word_seconds']}s, rare hex id "
        f"(full scan) {results['search_rare_hex_full_scan_seconds']}s, common term limit 100 "
        f"{results['search_common_limit_100_seconds']}s, reading the hex id columns alone "
        f"{results['read_hex_columns_seconds']}s, rebuilding every line "
        f"{results['rebuild_all_lines_seconds']}s ({results['floor']} on the raw file "
        f"{results['floor_rare_word_seconds']}s / {results['floor_rare_hex_full_scan_seconds']}s); "
        f"stored/raw {results['stored_over_raw']} (zstd -19 on the raw file "
        f"{results['zstd19_on_raw_sample_ratio']}); load {results['load_avg_after'][0]}"
    )
    record("logs", results, summary)
    print(summary)


if __name__ == "__main__":
    main()
