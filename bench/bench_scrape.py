"""Scrape throughput: exposition parsing and a 1,000-target scrape round.

1. Parse a node_exporter-like text exposition of 1,000 and 10,000 series with signalroom's
   parser (cold: every label set parsed; warm: series keys already known, as a running scrape
   loop sees them) and with ``prometheus_client.parser.text_string_to_metric_families`` in the
   same run; median of 5, samples/s and the ratio.
2. One scrape round of 1,000 targets x 1,000 series: a separate process serves the exposition
   over HTTP on loopback (a minimal asyncio server), and every target's loop runs one
   ``scrape_once`` (fetch, parse, label merge, staleness, synthetic series, append to a
   counting appender). Prometheus spreads 1,000 targets over the 15 s interval; a round that
   takes less than 15 s keeps up. Reported per round: seconds, samples/s.

    .venv/bin/python bench/bench_scrape.py [--targets 1000] [--series 1000] [--runs 5]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import socket
import statistics
import time
from typing import Any

import numpy as np
from prometheus_client.parser import text_string_to_metric_families

from bench.record import record
from signalroom.config import GlobalConfig
from signalroom.model.labels import Labels
from signalroom.scrape.appender import MetricMetadata
from signalroom.scrape.config import parse_scrape_configs
from signalroom.scrape.discovery import build_targets, static_groups
from signalroom.scrape.manager import ScrapeLoop, build_http_client
from signalroom.scrape.parser import parse_text


def node_exporter_like(series: int) -> str:
    """An exposition shaped like node_exporter's: families of 10-100 labelled series."""
    lines: list[str] = []
    rng = np.random.default_rng(42)
    family = 0
    count = 0
    while count < series:
        size = min(int(rng.integers(10, 100)), series - count)
        name = f"node_metric_family_{family}_seconds_total"
        lines.append(f"# HELP {name} Seconds the CPUs spent in each mode ({family}).")
        lines.append(f"# TYPE {name} counter")
        for i in range(size):
            value = float(rng.random() * 10 ** int(rng.integers(0, 9)))
            lines.append(
                f'{name}{{cpu="{i % 64}",mode="mode{i // 64}",device="sda{i % 8}"}} {value:.17g}'
            )
        count += size
        family += 1
    return "\n".join(lines) + "\n"


def median_time(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_parse(series: int, runs: int) -> dict[str, Any]:
    text = node_exporter_like(series)
    known = set(parse_text(text).series)
    cold = median_time(lambda: parse_text(text), runs)
    warm = median_time(lambda: parse_text(text, known=known), runs)
    reference = median_time(lambda: list(text_string_to_metric_families(text)), runs)
    return {
        "series": series,
        "signalroom_cold_samples_per_s": round(series / cold),
        "signalroom_warm_samples_per_s": round(series / warm),
        "prometheus_client_samples_per_s": round(series / reference),
        "speedup_cold": round(reference / cold, 2),
        "speedup_warm": round(reference / warm, 2),
    }


# --- the scrape round ----------------------------------------------------------------------


def serve(port: int, body: bytes, ready: Any) -> None:
    """A minimal keep-alive HTTP/1.1 server answering every GET with ``body``."""
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n"
        b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n"
    )

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                if not request:
                    break
                writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def main() -> None:
        server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=2048)
        ready.set()
        async with server:
            await server.serve_forever()

    asyncio.run(main())


class CountingAppender:
    def __init__(self) -> None:
        self.samples = 0

    async def append(
        self,
        tenant: str,
        series: list[Labels],
        timestamps_ms: np.ndarray,
        values: np.ndarray,
        metadata: list[MetricMetadata],
    ) -> None:
        self.samples += len(series)


async def scrape_rounds(targets: int, series: int, rounds: int, port: int) -> list[float]:
    raw = [
        {
            "job_name": "bench",
            "scrape_interval": "15s",
            "static_configs": [
                {"targets": [f"127.0.0.1:{port}"], "labels": {"shard": str(i)}}
                for i in range(targets)
            ],
        }
    ]
    (cfg,) = parse_scrape_configs(raw, GlobalConfig())
    active = build_targets(static_groups(cfg), cfg).active
    appender = CountingAppender()
    # One HTTP client per target, as the scrape manager builds them.
    loops = [
        ScrapeLoop(t, cfg, build_http_client(cfg), appender, tenant="default", seed=0)
        for t in active
    ]
    try:
        gate = asyncio.Semaphore(100)

        async def one(loop: ScrapeLoop) -> None:
            async with gate:
                await loop.scrape_once()

        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            await asyncio.gather(*(one(loop) for loop in loops))
            times.append(time.perf_counter() - start)
        errors = {loop.last_error for loop in loops if loop.last_error}
        if errors:
            raise RuntimeError(f"scrapes failed: {errors}")
    finally:
        for loop in loops:
            await loop.client.aclose()
    return times


def bench_round(targets: int, series: int, rounds: int) -> dict[str, Any]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    body = node_exporter_like(series).encode()
    ctx = multiprocessing.get_context("spawn")
    ready = ctx.Event()
    server = ctx.Process(target=serve, args=(port, body, ready), daemon=True)
    server.start()
    try:
        if not ready.wait(30):
            raise RuntimeError("exposition server did not start")
        times = asyncio.run(scrape_rounds(targets, series, rounds, port))
    finally:
        server.terminate()
        server.join(10)
    warm = statistics.median(times[1:]) if len(times) > 1 else times[0]
    return {
        "targets": targets,
        "series_per_target": series,
        "first_round_s": round(times[0], 2),
        "warm_round_s": round(warm, 2),
        "warm_samples_per_s": round(targets * series / warm),
        "interval_s": 15,
        "keeps_up": warm < 15,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--targets", type=int, default=1000)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"parse": [bench_parse(n, args.runs) for n in (1_000, 10_000)]}
    for row in results["parse"]:
        print(
            f"parse {row['series']:>6} series: cold {row['signalroom_cold_samples_per_s']:>9,}/s"
            f"  warm {row['signalroom_warm_samples_per_s']:>9,}/s  prometheus_client "
            f"{row['prometheus_client_samples_per_s']:>8,}/s  (x{row['speedup_cold']} cold, "
            f"x{row['speedup_warm']} warm)"
        )
    results["round"] = bench_round(args.targets, args.series, args.rounds)
    r = results["round"]
    print(
        f"scrape round {r['targets']} targets x {r['series_per_target']} series: first "
        f"{r['first_round_s']} s, warm {r['warm_round_s']} s "
        f"({r['warm_samples_per_s']:,} samples/s; interval 15 s)"
    )
    p10k = results["parse"][1]
    record(
        "scrape",
        results,
        f"parse 10k series: {p10k['signalroom_warm_samples_per_s']:,}/s warm, "
        f"{p10k['signalroom_cold_samples_per_s']:,}/s cold vs prometheus_client "
        f"{p10k['prometheus_client_samples_per_s']:,}/s (x{p10k['speedup_warm']}/"
        f"x{p10k['speedup_cold']}); round of {r['targets']}x{r['series_per_target']}: "
        f"{r['warm_round_s']} s warm, {r['first_round_s']} s first (interval 15 s)",
    )


if __name__ == "__main__":
    main()
