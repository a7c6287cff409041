"""Events: capture throughput through PostHog's /batch (ASGI, in process, WAL fsync=batch),
end-to-end until stored; then funnels and active users over N synthetic web-shop events.

``python -m bench events`` uses N = 10,000,000 (``--events N`` to change it); ``--capture-only``
skips the analytics part (the recorded analytics results are kept), ``--runs R`` sets the
capture runs (5). Capture is also measured with the consumer paused (accepting alone), the
ceiling the request path sets. The events are
generated with NumPy straight into the segment store's bulk path (no WAL, no queue): users with
log-normal activity, sessions over 90 days (quieter weekends, a daily cycle), each browsing
($pageview, search, product_viewed) and then going some way down the shop funnel
(add_to_cart 30 %, then checkout 55 %, purchase 65 %, refund 6 %), events ~40 s apart.

Analytics are timed on the NumPy index (the service's default) and, side by side, on DuckDB
alone (the reference); medians of several runs, with the machine load written down.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from bench.record import record
from signalroom.events.analytics import Analytics, FunnelStep
from signalroom.events.config import EventsConfig
from signalroom.events.index import EventIndex
from signalroom.events.service import EventService
from signalroom.events.store import EVENT_SCHEMA, EventStore

RESULTS = Path(__file__).resolve().parent / "results" / "events.json"
STEPS = [
    "product_viewed",
    "add_to_cart",
    "checkout_started",
    "purchase_completed",
    "refund_requested",
]
BROWSE = ["$pageview", "product_viewed", "search", "$pageview", "product_viewed"]
NAMES = ["$pageview", "search", *STEPS]
DAY_NS = 86_400 * 10**9
PROPERTIES = {
    "$pageview": ['{"$current_url":"https://shop.example/"}', '{"$current_url":"/c/fruit"}'],
    "search": ['{"query":"apples"}', '{"query":"cheese"}'],
    "product_viewed": [f'{{"product_id":"p{i}","price":{5 + i % 40}.99}}' for i in range(200)],
    "add_to_cart": [f'{{"product_id":"p{i}","quantity":1}}' for i in range(200)],
    "checkout_started": ['{"cart_value":42.5}'],
    "purchase_completed": [
        f'{{"total_value":{v},"payment_method":"{m}"}}'
        for v in (12.5, 25.0, 49.9, 99.0)
        for m in ("card", "paypal", "invoice")
    ],
    "refund_requested": ['{"reason":"damaged"}'],
}


def load() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------- capture


async def capture_throughput(
    directory: Path, batches: int, per_batch: int, *, consumer: bool = True
) -> dict[str, float]:
    import httpx
    from fastapi import FastAPI

    from signalroom.web.events_api import router

    service = EventService(EventsConfig(), directory, wal_fsync="batch")
    await service.start()
    if not consumer:
        service._tasks[0].cancel()  # the consumer: drained after the timing
    app = FastAPI()
    app.include_router(router)

    class Runtime:
        events = service
        authenticator = type("A", (), {"enabled": False})()

    app.state.runtime = Runtime()
    now = datetime.now(UTC)
    bodies = []
    for b in range(batches):
        batch = [
            {
                "event": "product_viewed",
                "distinct_id": f"u{(b * per_batch + i) % 50_000}",
                "uuid": str(uuid.uuid4()),
                "timestamp": now.isoformat(),
                "properties": {"product_id": f"p{i % 500}", "price": 9.99, "$lib": "bench"},
            }
            for i in range(per_batch)
        ]
        bodies.append(json.dumps({"api_key": "k", "sent_at": now.isoformat(), "batch": batch}))
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bench") as client:
        started, cpu = time.perf_counter(), time.process_time()

        async def send(chunk: list[str]) -> None:
            for body in chunk:
                r = await client.post(
                    "/batch/", content=body, headers={"content-type": "application/json"}
                )
                assert r.status_code == 200, r.text

        await asyncio.gather(*(send(bodies[i::4]) for i in range(4)))
        accepted = time.perf_counter() - started
        await service.drain(600)
        stored = time.perf_counter() - started if consumer else float("inf")
        cpu = time.process_time() - cpu
    total = batches * per_batch
    rows = service.store.stats()["rows"] + service.store.stats()["rows_buffered"]
    await service.stop()
    assert rows == total, (rows, total)
    return {"accepted": total / accepted, "stored": total / stored, "cpu_s": cpu}


def capture(directory: Path, runs: int = 5) -> dict[str, Any]:
    """Runs with the consumer and, alternating with them, accepting alone (medians)."""
    results, alone, loads = [], [], []
    for run in range(runs):
        results.append(asyncio.run(capture_throughput(directory / f"capture{run}", 100, 1000)))
        loads.append(load())
        print("capture run", run, results[-1], "load", loads[-1], flush=True)
        only = asyncio.run(capture_throughput(directory / f"alone{run}", 100, 1000, consumer=False))
        alone.append(only["accepted"])
        print("accepting alone", run, round(only["accepted"]), "load", load(), flush=True)
    return {
        "events_per_run": 100_000,
        "batch_size": 1000,
        "runs": runs,
        "accepted_events_per_s": round(statistics.median(r["accepted"] for r in results)),
        "stored_events_per_s": round(statistics.median(r["stored"] for r in results)),
        "accepted_alone_events_per_s": round(statistics.median(alone)),
        # process CPU (every thread, the in-process client too) from the first request until
        # everything is stored: steadier than the rates on a shared machine
        "cpu_us_per_event": round(
            statistics.median(r["cpu_s"] for r in results) / 100_000 * 1e6, 2
        ),
        "load": round(statistics.median(loads), 2),
        "load_range": [min(loads), max(loads)],
    }


# ---------------------------------------------------------------------- synthetic events


def synthetic(n: int, end: int, days: int = 90, seed: int = 7) -> Iterator[pa.Table]:
    """``n`` events of the ``days`` before ``end`` (ns) in tables of about a million rows, in
    time order (see the module doc). Sessions that start just before ``end`` run past it."""
    rng = np.random.default_rng(seed)
    users = max(n // 25, 1000)
    sessions = n // 5 + 100  # ~6.3 events a session: more than enough
    weight = rng.lognormal(0, 1.2, users)
    user = rng.choice(users, sessions, p=weight / weight.sum())
    day = rng.integers(0, days, sessions)
    weekend = ((day + 3) % 7 >= 5) & (rng.random(sessions) < 0.3)
    day[weekend] = rng.integers(0, days, int(weekend.sum()))
    hour = np.clip(rng.normal(15, 4, sessions), 0, 23.99)
    start = end - days * DAY_NS + day * DAY_NS + (hour * 3600e9).astype(np.int64)
    browse = rng.geometric(1 / 6, sessions)
    depth = np.zeros(sessions, np.int64)
    alive = np.ones(sessions, bool)
    for p in (0.30, 0.55, 0.65, 0.06):
        alive &= rng.random(sessions) < p
        depth += alive
    length = browse + depth
    cut = int(np.searchsorted(np.cumsum(length), n)) + 1
    order = np.argsort(start[:cut], kind="stable")
    user, start, browse, depth = user[order], start[order], browse[order], depth[order]
    length = browse + depth
    length[-1] -= int(length.sum() - n)  # the last session ends early

    user_names = pa.array([f"u{i}" for i in range(users)])
    names = pa.array(NAMES)
    browse_codes = np.array([NAMES.index(x) for x in BROWSE])
    step_codes = np.array([NAMES.index(x) for x in STEPS])
    templates = [t for name in NAMES for t in PROPERTIES[name]]
    offsets = np.cumsum([0] + [len(PROPERTIES[name]) for name in NAMES])
    sizes = np.array([len(PROPERTIES[name]) for name in NAMES])
    written = 0
    step = 160_000  # sessions per table
    for lo in range(0, len(start), step):
        hi = min(lo + step, len(start))
        ln = length[lo:hi]
        m = int(ln.sum())
        session = np.repeat(np.arange(lo, hi), ln)
        first = np.repeat(np.cumsum(ln) - ln, ln)
        pos = np.arange(m) - first
        b = browse[session]
        code = np.where(
            pos < b,
            browse_codes[rng.integers(0, len(BROWSE), m)],
            step_codes[np.clip(pos - b + 1, 0, len(STEPS) - 1)],
        )
        # a session that goes down the funnel enters it with a product view
        code = np.where((pos == b - 1) & (depth[session] > 0), NAMES.index("product_viewed"), code)
        gaps = rng.exponential(40e9, m).astype(np.int64)
        gaps[pos == 0] = 0
        elapsed = np.cumsum(gaps)
        ts = start[session] + elapsed - elapsed[first]
        props = offsets[code] + (rng.random(m) * sizes[code]).astype(np.int64)
        ids = pa.array(np.arange(written, written + m)).cast(pa.string())
        yield pa.Table.from_arrays(
            [
                pa.array(ts, pa.timestamp("ns")),
                pa.DictionaryArray.from_arrays(pa.array(code.astype(np.int32)), names).cast(
                    pa.string()
                ),
                pc.binary_join_element_wise("e", ids, ""),
                pa.DictionaryArray.from_arrays(
                    pa.array(user[session].astype(np.int32)), user_names
                ).cast(pa.string()),
                pc.binary_join_element_wise("s", pa.array(session).cast(pa.string()), ""),
                pa.DictionaryArray.from_arrays(
                    pa.array(props.astype(np.int32)), pa.array(templates)
                ).cast(pa.string()),
                pa.nulls(m, pa.int32()),
                pa.array(ts, pa.timestamp("ns")),
            ],
            schema=EVENT_SCHEMA,
        )
        written += m


def fill(store: EventStore, n: int, end: int) -> None:
    """Write the synthetic events through the segment store's bulk path, then compact."""
    segments = store.table.store
    for table in synthetic(n, end):
        segments.append("default", table)
        segments.flush()
    segments.compact(min_files=2)


# ---------------------------------------------------------------------- analytics


def timed(func: Callable[[], object], repeat: int) -> float:
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        runs.append(time.perf_counter() - started)
    return round(statistics.median(runs), 3)


def analytics(directory: Path, n: int) -> dict[str, Any]:
    store = EventStore(directory, wal_fsync="never")
    store.open()
    end = time.time_ns() // 3_600_000_000_000 * 3_600_000_000_000  # the hour: a fixed range
    started = time.perf_counter()
    fill(store, n, end)
    generated = time.perf_counter() - started
    print(f"generated {n:,} events in {generated:.1f}s, load {load()}", flush=True)
    index = EventIndex(store)
    fast, sql = Analytics(store, index=index), Analytics(store)
    span: dict[str, Any] = {"date_from": (end - 90 * DAY_NS) / 1e9, "date_to": end / 1e9}
    steps = [FunnelStep(s) for s in STEPS]
    out: dict[str, Any] = {"events": n, "generate_s": round(generated, 1)}
    # cold: the first funnel builds the index from the files
    out["funnel_cold_s"] = timed(lambda: fast.funnel("default", steps, **span), 1)
    out["index_rows"] = index.indexed_rows
    result = fast.funnel("default", steps, **span)
    out["funnel_counts"] = [s["count"] for s in result["steps"]]
    out["funnel_5_step_ordered_s"] = timed(lambda: fast.funnel("default", steps, **span), 5)
    out["funnel_5_step_strict_s"] = timed(
        lambda: fast.funnel("default", steps, order="strict", **span), 3
    )
    out["funnel_5_step_unordered_s"] = timed(
        lambda: fast.funnel("default", steps, order="unordered", **span), 3
    )
    out["dau_90_days_s"] = timed(lambda: fast.active_users("default", windows=["dau"], **span), 5)
    out["dau_wau_mau_90_days_s"] = timed(lambda: fast.active_users("default", **span), 3)
    out["load_index"] = load()
    print("index", out, flush=True)
    # the reference: the same queries on DuckDB alone
    reference = sql.funnel("default", steps, **span)
    assert [s["count"] for s in reference["steps"]] == out["funnel_counts"]
    out["duckdb_funnel_5_step_ordered_s"] = timed(lambda: sql.funnel("default", steps, **span), 1)
    out["duckdb_dau_90_days_s"] = timed(
        lambda: sql.active_users("default", windows=["dau"], **span), 1
    )
    dau = fast.active_users("default", windows=["dau"], **span)
    assert dau == sql.active_users("default", windows=["dau"], **span)
    out["load_duckdb"] = load()
    store.close()
    return out


def _option(name: str, default: int) -> int:
    return int(sys.argv[sys.argv.index(name) + 1]) if name in sys.argv else default


def main() -> None:
    n = _option("--events", 10_000_000)
    runs = _option("--runs", 5)
    with tempfile.TemporaryDirectory() as tmp:
        captured = capture(Path(tmp), runs)
        print("capture", captured, flush=True)
        capture_line = (
            f"/batch {captured['accepted_events_per_s']:,} events/s accepted, "
            f"{captured['stored_events_per_s']:,}/s stored with the consumer running "
            f"(accepting alone {captured['accepted_alone_events_per_s']:,}/s; "
            f"{captured['cpu_us_per_event']} µs CPU/event; median of "
            f"{runs}, load {captured['load']}, {captured['load_range'][0]}-"
            f"{captured['load_range'][1]})"
        )
        if "--capture-only" in sys.argv:
            previous = RESULTS.read_text() if RESULTS.exists() else "{}"
            recorded = json.loads(previous)
            analytic = recorded.get("results", {}).get("analytics", {})
            if analytic:  # kept from the last full run, marked as such
                analytic["recorded_at"] = analytic.get("recorded_at", recorded["recorded_at"])
            record("events", {"capture": captured, "analytics": analytic}, capture_line)
            print(capture_line)
            return
        analytic = analytics(Path(tmp) / "analytics", n)
        print("analytics", analytic, flush=True)
    results = {"capture": captured, "analytics": analytic}
    summary = (
        f"{capture_line}; "
        f"N={n:,}: 5-step funnel {analytic['funnel_5_step_ordered_s']}s "
        f"(strict {analytic['funnel_5_step_strict_s']}s, "
        f"cold {analytic['funnel_cold_s']}s; "
        f"DuckDB {analytic['duckdb_funnel_5_step_ordered_s']}s), "
        f"DAU 90d {analytic['dau_90_days_s']}s (DuckDB {analytic['duckdb_dau_90_days_s']}s), "
        f"load {analytic['load_index']}"
    )
    record("events", results, summary)
    print(summary)


if __name__ == "__main__":
    main()
