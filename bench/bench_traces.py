"""Trace benchmarks: OTLP/HTTP protobuf ingest rate into a real uvicorn server (client in a
separate process), then trace-by-id and search latency over N stored spans.

    .venv/bin/python -m bench traces [--spans 2000000] [--push-spans 400000] [--full]

``--full`` stores 10 million spans for the search test.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pyarrow as pa
import uvicorn
from fastapi import FastAPI
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2

from bench.record import record
from signalroom.auth import Authenticator
from signalroom.config import AuthConfig
from signalroom.traces.config import TracesConfig
from signalroom.traces.model import SPAN_SCHEMA
from signalroom.traces.query import TraceQuery, get_trace, search
from signalroom.traces.service import TraceService
from signalroom.traces.store import TraceStore
from signalroom.web import traces_api

SERVICES = ["frontend", "checkout", "orders", "payments", "catalog", "crm", "leads", "search"]
OPERATIONS = ["GET /api/orders", "POST /checkout", "SELECT", "INSERT", "publish", "GET /health"]
SPANS_PER_REQUEST = 2000

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
    return request.SerializeToString()


def bench_push(data_dir: Path, total_spans: int) -> dict[str, Any]:
    import pickle

    rng = np.random.default_rng(3)
    payloads = [otlp_request(b, rng) for b in range(total_spans // SPANS_PER_REQUEST)]
    payload_file = data_dir / "payloads.pickle"
    payload_file.write_bytes(pickle.dumps(payloads))

    async def run() -> float:
        service = TraceService(TracesConfig(), data_dir / "push")
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
    sent = len(payloads) * SPANS_PER_REQUEST
    return {
        "push_spans": sent,
        "push_bytes": sum(len(p) for p in payloads),
        "push_seconds": round(elapsed, 3),
        "push_spans_per_second": round(sent / elapsed),
    }


def synthetic_spans(n: int, offset: int, start_ns: int, span_ns: int, rng: Any) -> pa.Table:
    """n spans in traces of 10, built column-wise."""
    traces = np.arange(offset // 10, (offset + n + 9) // 10)
    trace_ids = np.char.mod("%032x", traces * 2654435761 % (2**61))
    trace_col = np.repeat(trace_ids, 10)[:n]
    span_ids = np.char.mod("%016x", np.arange(offset, offset + n) + 1)
    position = np.arange(offset, offset + n) % 10
    parents = np.where(position == 0, None, np.roll(span_ids, 1)).tolist()
    service_idx = (np.repeat(traces, 10)[:n] + position) % len(SERVICES)
    services = np.array(SERVICES)[service_idx]
    names = np.array(OPERATIONS)[(service_idx + position) % len(OPERATIONS)]
    starts = start_ns + np.sort(rng.integers(0, span_ns, n))
    durations = rng.integers(10**5, 10**9, n)
    errors = rng.random(n) < 0.01
    customer = np.char.mod('{"customer.id":"c%d","http.method":"GET"}', rng.integers(0, 5000, n))
    columns = {
        "trace_id": trace_col, "span_id": span_ids, "parent_span_id": parents,
        "service": services, "name": names, "kind": np.where(position == 0, 2, 3).astype(np.int8),
        "start_time": starts, "duration": durations,
        "status_code": np.where(errors, 2, 0).astype(np.int8), "status_message": None,
        "flags": np.zeros(n, np.int32), "trace_state": None, "scope": None,
        "attributes": customer, "resource": np.full(n, '{"deployment.environment":"prod"}'),
        "events": None, "links": None,
    }  # fmt: skip
    arrays = []
    for f in SPAN_SCHEMA:
        value = columns[f.name]
        arrays.append(pa.nulls(n, f.type) if value is None else pa.array(value, f.type))
    return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)


def timed(function: Any, repeat: int) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        began = time.perf_counter()
        result = function()
        times.append(time.perf_counter() - began)
    return statistics.median(times) * 1000, result


def bench_search(data_dir: Path, n: int) -> dict[str, Any]:
    store = TraceStore(data_dir / "search", wal_fsync="never", flush_rows=10**9)
    store.open()
    rng = np.random.default_rng(5)
    end_ns = time.time_ns()
    start_ns = end_ns - 24 * 3600 * 10**9
    chunk = 1_000_000
    began = time.perf_counter()
    for offset in range(0, n, chunk):
        rows = min(chunk, n - offset)
        span = (end_ns - start_ns) * rows // n
        base = start_ns + (end_ns - start_ns) * offset // n
        store.append("default", synthetic_spans(rows, offset, base, span, rng))
        store.table.flush()
    load_s = time.perf_counter() - began
    trace_ids = [f"{(t * 2654435761) % 2**61:032x}" for t in rng.integers(0, n // 10, 20)]
    found = 0

    def by_id() -> None:
        nonlocal found
        for trace_id in trace_ids[:5]:
            found += get_trace(store, "default", trace_id) is not None

    by_id_ms, _ = timed(by_id, 4)
    window = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="checkout", limit=20)
    service_ms, res1 = timed(lambda: search(store, "default", window), 5)
    tagged = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="orders",
                        tags={"customer.id": "c42"}, min_duration_ns=5 * 10**8, limit=20)  # fmt: skip  # noqa: E501
    tag_ms, res2 = timed(lambda: search(store, "default", tagged), 5)
    errors = TraceQuery(start_ns=start_ns, end_ns=end_ns, service="payments", error=True,
                        operation="SELECT", limit=20)  # fmt: skip
    error_ms, res3 = timed(lambda: search(store, "default", errors), 5)
    stats = store.table.stats()
    store.close()
    return {
        "stored_spans": n,
        "load_seconds": round(load_s, 1),
        "bytes_on_disk": stats.bytes,
        "trace_by_id_ms": round(by_id_ms / 5, 1),
        "trace_by_id_found": found,
        "search_service_ms": round(service_ms, 1),
        "search_service_tag_duration_ms": round(tag_ms, 1),
        "search_service_operation_error_ms": round(error_ms, 1),
        "results": [len(res1), len(res2), len(res3)],
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--spans", type=int, default=2_000_000)
    parser.add_argument("--push-spans", type=int, default=400_000)
    parser.add_argument("--full", action="store_true")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    n = 10_000_000 if args.full else args.spans
    with tempfile.TemporaryDirectory() as tmp:
        results = bench_push(Path(tmp), args.push_spans)
        print(results, flush=True)
        results.update(bench_search(Path(tmp), n))
    print(results)
    if not args.no_record:
        summary = (
            f"OTLP/HTTP protobuf {results['push_spans_per_second']:,} spans/s; over "
            f"{n:,} spans: trace by id {results['trace_by_id_ms']} ms, search "
            f"{results['search_service_ms']}/{results['search_service_tag_duration_ms']}/"
            f"{results['search_service_operation_error_ms']} ms (service/tag+duration/error)"
        )
        record("traces", results, summary)


if __name__ == "__main__":
    main()
