"""Events: capture throughput through PostHog's /batch (ASGI, in process, WAL fsync=batch),
end-to-end until stored, a 5-step funnel and DAU over 90 days on N synthetic events.

``python -m bench events`` uses N = 2,000,000; ``--full`` uses 10,000,000."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

from bench.record import record
from signalroom.events.config import EventsConfig
from signalroom.events.service import EventService
from signalroom.events.store import EVENT_SCHEMA

STEPS = [
    "product_viewed",
    "add_to_cart",
    "checkout_started",
    "purchase_completed",
    "refund_requested",
]


async def capture_throughput(directory: Path, batches: int, per_batch: int) -> dict[str, float]:
    import httpx
    from fastapi import FastAPI

    from signalroom.web.events_api import router

    service = EventService(EventsConfig(), directory, wal_fsync="batch")
    await service.start()
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
        started = time.perf_counter()

        async def send(chunk: list[str]) -> None:
            for body in chunk:
                r = await client.post(
                    "/batch/", content=body, headers={"content-type": "application/json"}
                )
                assert r.status_code == 200, r.text

        await asyncio.gather(*(send(bodies[i::4]) for i in range(4)))
        accepted = time.perf_counter() - started
        await service.drain(600)
        stored = time.perf_counter() - started
    total = batches * per_batch
    rows = service.store.stats()["rows"] + service.store.stats()["rows_buffered"]
    await service.stop()
    assert rows == total, (rows, total)
    return {
        "events": total,
        "batch_size": per_batch,
        "accepted_events_per_s": round(total / accepted),
        "stored_events_per_s": round(total / stored),
    }


def synthetic(service: EventService, n: int, days: int = 90) -> None:
    rng = np.random.default_rng(7)
    end = int(time.time() * 1e9)
    start = end - days * 86_400 * 10**9
    users = max(n // 20, 1000)
    chunk = 1_000_000
    for offset in range(0, n, chunk):
        m = min(chunk, n - offset)
        ts = rng.integers(start, end, m)
        # step k happens with probability 0.6^k: a funnel that narrows
        step = np.minimum(rng.geometric(0.45, m) - 1, len(STEPS) - 1)
        user = rng.integers(0, users, m)
        table = pa.Table.from_arrays(
            [
                pa.array(ts, pa.timestamp("ns")),
                pa.array(np.array(STEPS)[step]),
                pa.array([f"e{offset + i}" for i in range(m)]),
                pa.array(np.char.add("u", user.astype(str))),
                pa.nulls(m, pa.string()),
                pa.array(
                    np.where(
                        step == 3,
                        '{"total_value": 25.0, "payment_method": "card"}',
                        '{"product_id": "p1"}',
                    )
                ),
                pa.nulls(m, pa.int32()),
                pa.array(ts, pa.timestamp("ns")),
            ],
            schema=EVENT_SCHEMA,
        )
        service.store.append("default", table)
        service.store.table.flush()
    service.compact()


def timed(func: Callable[[], object], repeat: int = 3) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - started)
    return best


def main() -> None:
    full = "--full" in sys.argv
    n = 10_000_000 if full else 2_000_000
    with tempfile.TemporaryDirectory() as tmp:
        capture = asyncio.run(capture_throughput(Path(tmp) / "capture", 100, 1000))
        print("capture", capture, flush=True)

        async def analytics() -> dict[str, float]:
            service = EventService(EventsConfig(), Path(tmp) / "analytics", wal_fsync="never")
            await service.start()
            started = time.perf_counter()
            await asyncio.to_thread(synthetic, service, n)
            load = time.perf_counter() - started
            a = service.analytics
            span = {"date_from": "-91d", "date_to": "now"}
            from signalroom.events.analytics import FunnelStep

            steps = [FunnelStep(s) for s in STEPS]
            result = a.funnel("default", steps, **span)
            funnel_s = timed(lambda: a.funnel("default", steps, **span))
            strict_s = timed(lambda: a.funnel("default", steps, order="strict", **span), 1)
            dau_s = timed(lambda: a.active_users("default", windows=["dau"], **span))
            await service.stop()
            return {
                "events": n,
                "load_s": round(load, 2),
                "funnel_5_step_ordered_s": round(funnel_s, 3),
                "funnel_5_step_strict_s": round(strict_s, 3),
                "dau_90_days_s": round(dau_s, 3),
                "funnel_counts": [s["count"] for s in result["steps"]],
            }

        analytic = asyncio.run(analytics())
        print("analytics", analytic, flush=True)
    results = {"capture": capture, "analytics": analytic}
    summary = (
        f"/batch {capture['accepted_events_per_s']:,} events/s accepted, "
        f"{capture['stored_events_per_s']:,}/s stored; N={n:,}: 5-step funnel "
        f"{analytic['funnel_5_step_ordered_s']}s (strict {analytic['funnel_5_step_strict_s']}s), "
        f"DAU 90d {analytic['dau_90_days_s']}s"
    )
    record("events", results, summary)
    print(summary)


if __name__ == "__main__":
    main()
