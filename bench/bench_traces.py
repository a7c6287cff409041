"""Trace benchmarks: OTLP/HTTP protobuf ingest rate into a real uvicorn server (client in a
separate process), then trace-by-id and search latency over N stored spans.

    .venv/bin/python -m bench traces [--spans 10000000] [--push-spans 400000]
                                     [--skip-push | --push-only]

The query part loads the spans straight into segments; the ingest rate is measured separately
over HTTP. Each part's load averages are recorded with its results. A run of one part only
records the other part's last figures beside its own, with when they were measured
(``push_recorded_at`` / ``search_recorded_at``), and the README line says which is which.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import uvicorn
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench.record import record
from signalroom.auth import Authenticator
from signalroom.config import AuthConfig
from signalroom.traces.config import TracesConfig
from signalroom.traces.model import SPAN_SCHEMA
from signalroom.traces.query import TraceQuery, get_trace, search
from signalroom.traces.search_index import SearchIndex
from signalroom.traces.service import TraceService
from signalroom.traces.store import TraceStore
from signalroom.web import traces_api

SERVICES = ["frontend", "checkout", "orders", "payments", "catalog", "crm", "leads", "search"]
OPERATIONS = ["GET /api/orders", "POST /checkout", "SELECT", "INSERT", "publish", "GET /health"]
SPANS_PER_REQUEST = 2000
RESOURCE = '{"deployment.environment":"prod"}'

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
                r = await client.post("/v1/traces", content=body,
                                      headers={"Content-Type": "application/x-protobuf"})
                assert r.status_code == 200, r.text
        await asyncio.gather(*(worker() for _ in range(4)))
        print(time.perf_counter() - began)
asyncio.run(main())
"""

_GRPC_CLIENT = """
import pickle, sys, time, grpc
from concurrent.futures import ThreadPoolExecutor
payloads = pickle.load(open(sys.argv[1], "rb"))
channel = grpc.insecure_channel(sys.argv[2])
export = channel.unary_unary("/opentelemetry.proto.collector.trace.v1.TraceService/Export")
began = time.perf_counter()
with ThreadPoolExecutor(4) as pool:
    list(pool.map(lambda body: export(body, timeout=120), payloads))
print(time.perf_counter() - began)
"""


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def otlp_request(batch: int, rng: np.random.Generator) -> bytes:
    """One ExportTraceServiceRequest: traces of 10 spans across services, 4 attributes each."""
    request = trace_service_pb2.ExportTraceServiceRequest()
    now = time.time_ns() - 600 * 10**9
    per_service: dict[str, Any] = {}
    for service in SERVICES:
        resource_spans = request.resource_spans.add()
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = "service.name", service
        kv = resource_spans.resource.attributes.add()
        kv.key, kv.value.string_value = "deployment.environment", "prod"
        per_service[service] = resource_spans.scope_spans.add()
        per_service[service].scope.name = "bench"
    for t in range(SPANS_PER_REQUEST // 10):
        trace_id = rng.bytes(16)
        parent = b""
        for s in range(10):
            service = SERVICES[(t + s) % len(SERVICES)]
            span = per_service[service].spans.add()
            span.trace_id, span.span_id = trace_id, rng.bytes(8)
            if parent:
                span.parent_span_id = parent
            parent = span.span_id
            span.name = OPERATIONS[(t + s) % len(OPERATIONS)]
            span.kind = 2 if s == 0 else 3
            span.start_time_unix_nano = now + batch * 10**6 + s * 1000
            span.end_time_unix_nano = span.start_time_unix_nano + int(rng.integers(10**5, 10**9))
            for key, value in (("http.method", "GET"), ("http.route", "/api/orders"),
                               ("customer.id", f"c{t % 997}")):  # fmt: skip
                kv = span.attributes.add()
                kv.key, kv.value.string_value = key, value
            kv = span.attributes.add()
            kv.key, kv.value.int_value = "http.status_code", 500 if t % 50 == 0 else 200
            if t % 50 == 0:
                span.status.code = 2
    body: bytes = request.SerializeToString()
    return body


def bench_push(
    data_dir: Path, total_spans: int, transports: tuple[str, ...] = ("http", "grpc")
) -> dict[str, Any]:
    import pickle

    rng = np.random.default_rng(3)
    payloads = [otlp_request(b, rng) for b in range(total_spans // SPANS_PER_REQUEST)]
    payload_file = data_dir / "payloads.pickle"
    payload_file.write_bytes(pickle.dumps(payloads))

    async def run(transport: str) -> tuple[float, float, float]:
        grpc_port = free_port()
        config = TracesConfig.model_validate(
            {"otlp_grpc": {"enabled": transport == "grpc", "listen": f"127.0.0.1:{grpc_port}"}}
        )
        service = TraceService(config, data_dir / f"push-{transport}")
        app = FastAPI()
        app.state.runtime = SimpleNamespace(
            traces=service, authenticator=Authenticator(AuthConfig())
        )
        app.include_router(traces_api.router)
        port = free_port()
        server = uvicorn.Server(
            uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
        )
        await service.start()
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.05)
        client, target = (
            (_GRPC_CLIENT, f"127.0.0.1:{grpc_port}") if transport == "grpc"
            else (_CLIENT, f"http://127.0.0.1:{port}")
        )  # fmt: skip
        cpu = time.process_time()  # this process: the server and its threads, not the client
        client_cpu = _children_cpu()
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", client, str(payload_file), target,
            stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        out, _ = await process.communicate()
        cpu = time.process_time() - cpu
        client_cpu = _children_cpu() - client_cpu
        server.should_exit = True
        await task
        await service.stop()
        return float(out.decode().strip()), cpu, client_cpu

    sent = len(payloads) * SPANS_PER_REQUEST
    results: dict[str, Any] = {"push_spans": sent, "push_bytes": sum(len(p) for p in payloads)}
    for transport, prefix in (("http", "push"), ("grpc", "push_grpc")):
        if transport not in transports:
            continue
        elapsed, cpu, client_cpu = asyncio.run(run(transport))
        results[f"{prefix}_seconds"] = round(elapsed, 3)
        results[f"{prefix}_spans_per_second"] = round(sent / elapsed)
        # server CPU per span: what the rate would be on a core of its own, whatever the load
        results[f"{prefix}_server_cpu_us_per_span"] = round(cpu / sent * 1e6, 2)
        # the client shares the 2 cores: what it burns is not the server's to use
        results[f"{prefix}_client_cpu_us_per_span"] = round(client_cpu / sent * 1e6, 2)
    return results


def _children_cpu() -> float:
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


_HEX_PAIRS = np.frombuffer(b"".join(b"%02x" % i for i in range(256)), np.uint16)
_MIX = np.uint64(0x9E3779B97F4A7C15)


def hex_strings(words: list[np.ndarray[Any, Any]]) -> pa.Array:
    """Fixed-width lower-case hex strings of the big-endian uint64 ``words`` side by side."""
    raw = np.stack([w.astype(np.uint64) for w in words], axis=1).astype(">u8").view(np.uint8)
    chars = _HEX_PAIRS[raw.reshape(len(words[0]), -1)]
    width = 16 * len(words)
    offsets = np.arange(0, width * len(words[0]) + 1, width, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), len(words[0]), [None, pa.py_buffer(offsets), pa.py_buffer(chars.tobytes())]
    )


def trace_id_of(trace: np.ndarray[Any, Any]) -> pa.Array:
    """Random-looking 128-bit trace ids (as real ones are), a pure function of the number."""
    number = trace.astype(np.uint64) + np.uint64(1)
    with np.errstate(over="ignore"):
        return hex_strings([number * _MIX, number])


def synthetic_spans(n: int, offset: int, start_ns: int, span_ns: int, rng: Any) -> pa.Table:
    """n spans in traces of 10 (spans of a trace start within a second), built column-wise."""
    index = np.arange(offset, offset + n)
    trace, position = index // 10, index % 10
    span_ids = hex_strings([index.astype(np.uint64) + 1])
    parents = pc.if_else(pa.array(position == 0), pa.scalar(None, pa.string()),
                         hex_strings([index.astype(np.uint64)]))  # fmt: skip
    service_idx = (trace + position) % len(SERVICES)
    trace_start = start_ns + (trace - offset // 10) * span_ns // max(1, n // 10)
    starts = trace_start + position * 1000 + rng.integers(0, 10**8, n) * (position > 0)
    durations = rng.integers(10**5, 10**9, n)
    errors = rng.random(n) < 0.01
    customer = pa.array([f'{{"customer.id":"c{i}","http.method":"GET"}}' for i in range(5000)])
    customer = customer.take(pa.array(rng.integers(0, 5000, n)))
    columns = {
        "trace_id": trace_id_of(trace), "span_id": span_ids,
        "parent_span_id": parents,
        "service": pa.array(SERVICES).take(pa.array(service_idx)),
        "name": pa.array(OPERATIONS).take(pa.array((service_idx + position) % len(OPERATIONS))),
        "kind": np.where(position == 0, 2, 3).astype(np.int8),
        "start_time": starts, "duration": durations,
        "status_code": np.where(errors, 2, 0).astype(np.int8), "status_message": None,
        "flags": np.zeros(n, np.int32), "trace_state": None, "scope": None,
        "attributes": customer,
        "resource": pa.array([RESOURCE]).take(pa.array(np.zeros(n, np.int64))),
        "events": None, "links": None,
    }  # fmt: skip
    arrays = []
    for f in SPAN_SCHEMA:
        value = columns[f.name]
        arrays.append(pa.nulls(n, f.type) if value is None else pa.array(value, f.type))
    return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)


_CPU_MS: dict[str, float] = {}


def timed(function: Any, repeat: int, name: str = "") -> tuple[float, Any]:
    """Median wall milliseconds and the last result; the median CPU milliseconds of this
    process (all its threads) go to ``_CPU_MS[name]``, a measure the machine's load barely
    changes."""
    times, cpus, result = [], [], None
    for _ in range(repeat):
        began, cpu = time.perf_counter(), time.process_time()
        result = function()
        times.append(time.perf_counter() - began)
        cpus.append(time.process_time() - cpu)
    _CPU_MS[name] = statistics.median(cpus) * 1000
    return statistics.median(times) * 1000, result


def bench_search(data_dir: Path, n: int) -> dict[str, Any]:
    """Load ``n`` spans over the last 24 h straight into segments (the store's bulk path, no
    WAL), index them as the service's maintenance does, then time lookups and searches."""
    store = TraceStore(data_dir / "search", wal_fsync="never", flush_rows=10**9)
    store.open()
    segments = store.table.store
    rng = np.random.default_rng(5)
    end_ns = time.time_ns()
    start_ns = end_ns - 24 * 3600 * 10**9
    chunk = 1_000_000
    began = time.perf_counter()
    for offset in range(0, n, chunk):
        rows = min(chunk, n - offset)
        span = (end_ns - start_ns) * rows // n
        base = start_ns + (end_ns - start_ns) * offset // n
        segments.append("default", synthetic_spans(rows, offset, base, span, rng))
        segments.flush()
    load_s = time.perf_counter() - began
    store.rebuild_catalog()
    began = time.perf_counter()
    store.index.warm(store.table.files("default"))
    index_s = time.perf_counter() - began
    began, cpu = time.perf_counter(), time.process_time()
    store.warm_index()  # what is left: the search index
    search_index_s, search_index_cpu_s = time.perf_counter() - began, time.process_time() - cpu
    lookups = trace_id_of(rng.integers(0, n // 10, 20)).to_pylist()
    found = 0

    def by_id() -> None:
        nonlocal found
        for trace_id in lookups[:5]:
            found += get_trace(store, "default", trace_id) is not None

    by_id_ms, _ = timed(by_id, 4, "trace_by_id")
    window = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="checkout", limit=20)
    service_ms, res1 = timed(lambda: search(store, "default", window), 5, "service")
    tagged = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="orders",
                        tags={"customer.id": "c42"}, min_duration_ns=5 * 10**8,
                        limit=20)  # fmt: skip
    tag_ms, res2 = timed(lambda: search(store, "default", tagged), 5, "tag")
    errors = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="payments", error=True,
                        operation="SELECT", limit=20)  # fmt: skip
    error_ms, res3 = timed(lambda: search(store, "default", errors), 5, "error")
    # a search with few matches in the whole window: every partition is scanned
    rare = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="crm", error=True,
                      tags={"customer.id": "c7"}, limit=20)  # fmt: skip
    rare_ms, res4 = timed(lambda: search(store, "default", rare), 3, "rare")
    # side by side: the same searches reading every row group (no search summaries)
    indexed, store.search_index = store.search_index, SearchIndex()
    unindexed = {
        name: round(timed(lambda q=q: search(store, "default", q), 3, f"{name}_unindexed")[0], 1)
        for name, q in (("service", window), ("tag", tagged), ("error", errors), ("rare", rare))
    }
    store.search_index = indexed
    stats = store.table.stats()
    search_index_bytes = store.search_index.nbytes
    store.close()
    return {
        "stored_spans": n,
        # searches start in the newest hour partition: how full it is moves their times
        "newest_partition_minutes": round(end_ns % (3600 * 10**9) / 60e9, 1),
        "load_seconds": round(load_s, 1),
        "index_seconds": round(index_s, 2),
        "search_index_seconds": round(search_index_s, 2),
        "search_index_cpu_seconds": round(search_index_cpu_s, 2),
        "search_index_bytes": search_index_bytes,
        "search_index_bytes_per_span": round(search_index_bytes / n, 2),
        "bytes_on_disk": stats.bytes,
        "trace_by_id_ms": round(by_id_ms / 5, 1),
        "trace_by_id_found": found,
        "search_service_ms": round(service_ms, 1),
        "search_service_tag_duration_ms": round(tag_ms, 1),
        "search_service_operation_error_ms": round(error_ms, 1),
        "search_rare_full_window_ms": round(rare_ms, 1),
        "results": [len(res1), len(res2), len(res3), len(res4)],
        "search_unindexed_ms": unindexed,
        "cpu_ms": {
            name: round(value / (5 if name == "trace_by_id" else 1), 1)
            for name, value in _CPU_MS.items()
        },
    }


# Figures of each part of the benchmark; a run of one part records the other's last figures.
_PUSH_PREFIXES = ("push_", "load_average_push_")


def _is_push(key: str) -> bool:
    return key.startswith(_PUSH_PREFIXES)


def _carried(results: dict[str, Any], part: str, flag: str, text: Any, load_key: str) -> str:
    """Carry ``part``'s last recorded figures into ``results`` (marked with when they were
    measured) and say so for the README line."""
    previous, stamp = _previous(part)
    if not previous:
        return f"{part} not run ({flag})"
    results.update(previous, **{f"{part}_recorded_at": stamp})
    return (
        f"{part} not run ({flag}; from {stamp}: {text(previous)}, load "
        f"{previous.get(load_key + '_start')}-{previous.get(load_key + '_end')})"
    )


def _previous(part: str) -> tuple[dict[str, Any], str]:
    """The last recorded figures of ``part`` ("push" or "search") and when they were measured
    (their own ``<part>_recorded_at`` when an earlier run carried them over already)."""
    import json

    from bench.record import RESULTS_DIR

    try:
        payload = json.loads((RESULTS_DIR / "traces.json").read_text())
    except (OSError, ValueError):
        return {}, ""
    results: dict[str, Any] = payload.get("results", {})
    figures = {
        key: value
        for key, value in results.items()
        if _is_push(key) == (part == "push") and not key.endswith("_recorded_at")
    }
    stamp = str(results.get(f"{part}_recorded_at") or payload.get("recorded_at", ""))
    required = "push_spans_per_second" if part == "push" else "search_rare_full_window_ms"
    return (figures, stamp) if required in figures else ({}, "")


def _push_text(results: dict[str, Any]) -> str:
    return (
        f"OTLP/HTTP protobuf {results['push_spans_per_second']:,} spans/s "
        f"({results.get('push_server_cpu_us_per_span')} µs server CPU/span), OTLP/gRPC "
        f"{results.get('push_grpc_spans_per_second', 0):,} spans/s over "
        f"{results.get('push_spans', 0):,} spans"
    )


def _search_text(results: dict[str, Any]) -> str:
    return (
        f"over {results['stored_spans']:,} spans: trace by id {results['trace_by_id_ms']} ms, "
        f"search {results['search_service_ms']}/{results['search_service_tag_duration_ms']}/"
        f"{results['search_service_operation_error_ms']}/"
        f"{results['search_rare_full_window_ms']} ms (service/tag+duration/error/rare over 24 h)"
        + (
            f" (without the search index {'/'.join(str(v) for v in unindexed.values())} ms)"
            if (unindexed := results.get("search_unindexed_ms"))
            else ""
        )
        + (
            f", search index {results['search_index_bytes_per_span']} B/span built in "
            f"{results['search_index_seconds']} s"
            if "search_index_bytes_per_span" in results
            else ""
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=10_000_000)
    parser.add_argument("--push-spans", type=int, default=400_000)
    parser.add_argument("--full", action="store_true", help="same as --spans 10000000")
    parser.add_argument("--skip-push", action="store_true")
    parser.add_argument("--push-only", action="store_true", help="no search part")
    parser.add_argument("--transport", choices=["http", "grpc"], help="push over one only")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    n = 10_000_000 if args.full else args.spans
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        if not args.skip_push:
            results["load_average_push_start"] = round(os.getloadavg()[0], 2)
            transports = (args.transport,) if args.transport else ("http", "grpc")
            results.update(bench_push(Path(tmp), args.push_spans, transports))
            results["load_average_push_end"] = round(os.getloadavg()[0], 2)
            if not args.push_only:
                print(results, flush=True)
        if not args.push_only:
            results["load_average_1m_start"] = round(os.getloadavg()[0], 2)
            results.update(bench_search(Path(tmp), n))
            results["load_average_1m_end"] = round(os.getloadavg()[0], 2)
    print(results)
    if args.no_record:
        return
    # A run of one part carries the other part's last recorded figures, marked with when
    # they were measured, so traces.json always holds both.
    parts = [
        _carried(results, "push", "--skip-push", _push_text, "load_average_push")
        if args.skip_push
        else f"{_push_text(results)} (load {results['load_average_push_start']}-"
        f"{results['load_average_push_end']})",
        _carried(results, "search", "--push-only", _search_text, "load_average_1m")
        if args.push_only
        else f"{_search_text(results)}; load {results['load_average_1m_start']}-"
        f"{results['load_average_1m_end']}",
    ]
    record("traces", results, "; ".join(parts))


if __name__ == "__main__":
    main()
