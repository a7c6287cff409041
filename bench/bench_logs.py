"""Log benchmarks: Loki push ingest rate over HTTP, substring search over N stored lines,
stored bytes vs raw, with ripgrep on the same raw file as the floor, in one run.

    .venv/bin/python -m bench.bench_logs [--lines 10000000] [--push-lines 1000000]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cramjam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn
from fastapi import FastAPI

from bench.record import record
from signalroom.auth import Authenticator
from signalroom.config import AuthConfig
from signalroom.ingest.loki import PushRequest
from signalroom.logs.config import LogsConfig, ThrottleConfig
from signalroom.logs.logql.parser import parse
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.logs.service import LogService
from signalroom.web import logs_api

NEEDLE = "needle-7f3a9c"
PATHS = ["/api/orders", "/api/leads", "/api/cart", "/health", "/api/samples", "/checkout"]
SERVICES = ["shop", "crm", "catering", "integration", "marketplace"]


def make_lines(n: int, seed: int = 1) -> pa.Array:
    """Realistic access-log style lines, built column-wise."""
    rng = np.random.default_rng(seed)
    status = rng.choice([200, 200, 200, 201, 204, 301, 404, 500], n).astype(str)
    path = np.array(PATHS)[rng.integers(0, len(PATHS), n)]
    ms = rng.integers(1, 2000, n).astype(str)
    user = rng.integers(1000, 99999, n).astype(str)
    req = np.char.mod("%016x", rng.integers(0, 2**62, n))
    lines = pc.binary_join_element_wise(
        pa.array(np.full(n, "level=info method=GET path=")), pa.array(path),
        pa.array(np.full(n, " status=")), pa.array(status),
        pa.array(np.full(n, " duration_ms=")), pa.array(ms),
        pa.array(np.full(n, " user_id=")), pa.array(user),
        pa.array(np.full(n, " request_id=")), pa.array(req), "",
    )  # fmt: skip
    # a few needles to find
    positions = rng.choice(n, 5, replace=False)
    values = lines.to_numpy(zero_copy_only=False)
    for p in positions:
        values[p] = values[p] + " " + NEEDLE
    return pa.array(values, pa.string())


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
                labels=f'{{service="{SERVICES[s % 5]}", pod="p{s}", env="prod"}}'
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


def bench_search(data_dir: Path, n: int) -> dict[str, Any]:
    from signalroom.logs.store import LogStore

    store = LogStore(data_dir / "search", wal_fsync="never", flush_rows=10**9).open()
    raw = data_dir / "raw.log"
    chunk = 1_000_000
    base = 1_700_000_000 * 10**9
    streams = [format_labels({"service": s, "env": "prod"}) for s in SERVICES]
    ids = [stream_id(s) for s in streams]
    raw_bytes = 0
    began = time.perf_counter()
    with raw.open("wb") as handle:
        for offset in range(0, n, chunk):
            size = min(chunk, n - offset)
            lines = make_lines(size, seed=offset + 11)
            which = np.arange(size) % len(streams)
            table = pa.Table.from_arrays(
                [
                    pa.array(base + (offset + np.arange(size)) * 1_000_000, pa.int64()),
                    pa.array(np.asarray(ids, np.int64)[which]),
                    pa.array(np.asarray(streams)[which]),
                    lines,
                    pa.nulls(size, pa.string()),
                    pa.nulls(size, pa.string()),
                    pa.nulls(size, pa.string()),
                ],
                schema=LOG_SCHEMA,
            )
            store.append("default", table)
            store.table.flush()
            text = "\n".join(lines.to_pylist()) + "\n"
            data = text.encode()
            raw_bytes += len(data)
            handle.write(data)
    load_s = time.perf_counter() - began
    stored = store.table.stats().bytes
    query = parse('{env="prod"} |= "' + NEEDLE + '"')
    timings = []
    found = 0
    for _ in range(3):
        t0 = time.perf_counter()
        result = store_engine(store).select_logs(
            "default",
            query,
            base,
            base + n * 1_000_000 + 1,
            limit=100,  # type: ignore[arg-type]
        )
        timings.append(time.perf_counter() - t0)
        found = sum(len(s.lines) for s in result.streams)
    count_q = parse('sum(count_over_time({env="prod"} |= "status=500" [1h]))')
    t0 = time.perf_counter()
    store_engine(store).query_instant("default", count_q, base + n * 1_000_000)  # type: ignore[arg-type]
    count_s = time.perf_counter() - t0
    rg_s = None
    rg_found = None
    if shutil.which("rg"):
        rg_times = []
        for _ in range(3):
            t0 = time.perf_counter()
            out = subprocess.run(["rg", "-c", NEEDLE, str(raw)], capture_output=True, text=True)
            rg_times.append(time.perf_counter() - t0)
            rg_found = int(out.stdout.strip() or 0)
        rg_s = min(rg_times)
    store.close()
    return {
        "search_lines": n, "load_seconds": round(load_s, 1), "raw_bytes": raw_bytes,
        "stored_bytes": stored, "stored_over_raw": round(stored / raw_bytes, 4),
        "search_seconds_best": round(min(timings), 3),
        "search_seconds_all": [round(t, 3) for t in timings],
        "search_found": found, "count_over_time_1h_seconds": round(count_s, 3),
        "ripgrep_seconds_best": None if rg_s is None else round(rg_s, 3), "ripgrep_found": rg_found,
    }  # fmt: skip


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
        f"{args.lines:,} lines {results['search_seconds_best']}s (ripgrep on raw "
        f"{results['ripgrep_seconds_best']}s); stored/raw {results['stored_over_raw']}"
    )
    record("logs", results, summary)
    print(summary)


if __name__ == "__main__":
    main()
