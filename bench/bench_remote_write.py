"""Remote-write ingest over HTTP: signalroom next to Prometheus 2.42's own receiver, same run.

The issue's targets: with 100,000 active series, samples/s at least Prometheus's (aim:
1,000,000 samples/s); resident memory per active series at 1,000,000 series at most
Prometheus's (about 3 KB).

Request bodies are encoded before any clock starts: ``--series`` series (node-exporter-like
labels) x ``--samples`` scrape rounds 15 s apart, ``--per-request`` series of one sample each
per body (Prometheus's shards send one sample per series per request in steady state). The
same bodies go to both servers from ``--senders`` concurrent HTTP clients (a thread pool of
httpx clients). Rounds are sent one after the other (a barrier between rounds), so every
series' samples arrive in time order and Prometheus accepts them all.

Per server and run, on a fresh process and data directory: samples/s over all rounds (wall),
the first round (creates every series) and the later rounds (series exist), request errors,
resident memory after ingest per series (absolute and above the idle process), and bytes in
the data directory after ingest (both: WAL, as no block is cut yet). Medians over ``--runs``;
the servers alternate which goes first. Both servers keep their default durability (signalroom
fsync=batch group commit; Prometheus's WAL without fsync per write).

    .venv/bin/python -m bench remote_write [--series=100000] [--samples=5] [--runs=3]
    .venv/bin/python -m bench remote_write --series=1000000 --samples=2 --runs=1
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.record import RESULTS_DIR, record  # noqa: E402
from bench.reference import Process, prometheus, signalroom  # noqa: E402
from signalroom.ingest.remote_write import encode_write_request  # noqa: E402

WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
    "User-Agent": "signalroom-bench",
}
SCRAPE_INTERVAL_MS = 15_000
# signalroom's own ceiling is 2,000,000 series by default; the bench must never hit a limit
SIGNALROOM_CONFIG = "limits:\n  max_series_total: 0\n"

Round = list[bytes]
Server = Callable[[], AbstractContextManager[Process]]
SERVERS: dict[str, Server] = {
    "prometheus": lambda: prometheus(),
    "signalroom": lambda: signalroom(SIGNALROOM_CONFIG),
}


def series_labels(i: int) -> dict[str, str]:
    return {
        "__name__": f"bench_metric_{i % 100}",
        "instance": f"host-{i // 1000}:9100",
        "job": "node",
        "series": str(i),
    }


def build_rounds(num_series: int, samples: int, per_request: int, t0_ms: int) -> list[Round]:
    """One list of bodies per scrape round; each series once per round, one sample each."""
    labels = [series_labels(i) for i in range(num_series)]
    rounds: list[Round] = []
    for k in range(samples):
        ts = t0_ms + k * SCRAPE_INTERVAL_MS
        bodies = [
            encode_write_request(
                (lab, [(ts, float(k * 10 + (start + j) % 7))])
                for j, lab in enumerate(labels[start : start + per_request])
            )
            for start in range(0, num_series, per_request)
        ]
        rounds.append(bodies)
    return rounds


@dataclass
class SendResult:
    """What one batch of rounds did: wall seconds per round, error count, first error text."""

    round_seconds: list[float] = field(default_factory=list)
    requests: int = 0
    errors: int = 0
    first_error: str = ""


class Sender:
    """``senders`` concurrent HTTP clients posting remote-write bodies to one server."""

    def __init__(self, url: str, senders: int) -> None:
        self.url = url + "/api/v1/write"
        self._local = threading.local()
        self._clients: list[httpx.Client] = []
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=senders)

    def _client(self) -> httpx.Client:
        client: httpx.Client | None = getattr(self._local, "client", None)
        if client is None:
            client = httpx.Client(timeout=120, headers=WRITE_HEADERS)
            self._local.client = client
            with self._lock:
                self._clients.append(client)
        return client

    def _post(self, body: bytes) -> str:
        try:
            response = self._client().post(self.url, content=body)
        except httpx.HTTPError as exc:
            return f"{type(exc).__name__}: {exc}"
        if response.status_code // 100 != 2:
            return f"HTTP {response.status_code}: {response.text.strip()[:300]}"
        return ""

    def send(self, rounds: Sequence[Round], result: SendResult | None = None) -> SendResult:
        """Send the rounds in order; every body of a round is answered before the next."""
        result = result or SendResult()
        for bodies in rounds:
            started = time.perf_counter()
            errors = [e for e in self._pool.map(self._post, bodies) if e]
            result.round_seconds.append(time.perf_counter() - started)
            result.requests += len(bodies)
            result.errors += len(errors)
            if errors and not result.first_error:
                result.first_error = errors[0]
        return result

    def close(self) -> None:
        self._pool.shutdown()
        for client in self._clients:
            client.close()

    def __enter__(self) -> Sender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def one_run(
    name: str, rounds: list[Round], num_series: int, senders: int, settle_s: float
) -> dict[str, Any]:
    samples_per_round = num_series
    with SERVERS[name]() as server:
        time.sleep(1.0)
        idle_rss = server.rss_bytes()
        with Sender(server.url, senders) as sender:
            sent = sender.send(rounds)
        rss_after = server.rss_bytes()
        time.sleep(settle_s)  # background work after the last 2xx (GC, head encoding)
        rss_settled = server.rss_bytes()
        disk = server.disk_bytes("data")
    total_s = sum(sent.round_seconds)
    later = sent.round_seconds[1:]
    return {
        "samples": samples_per_round * len(rounds),
        "seconds": total_s,
        "samples_per_second": samples_per_round * len(rounds) / total_s,
        "first_round_samples_per_second": samples_per_round / sent.round_seconds[0],
        "later_rounds_samples_per_second": (
            samples_per_round * len(later) / sum(later) if later else None
        ),
        "requests": sent.requests,
        "errors": sent.errors,
        "first_error": sent.first_error,
        "idle_rss_bytes": idle_rss,
        "rss_bytes_after_ingest": rss_after,
        "rss_bytes_settled": rss_settled,
        "rss_bytes_per_series": rss_settled / num_series,
        "rss_bytes_per_series_above_idle": (rss_settled - idle_rss) / num_series,
        "disk_bytes": disk,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float | None:
    values = [r[key] for r in runs if r[key] is not None]
    return statistics.median(values) if values else None


def _other_sizes(series: int) -> dict[str, Any]:
    """The last recorded results of other ``--series`` sizes, kept in the same JSON file."""
    path = RESULTS_DIR / "remote_write.json"
    try:
        previous = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    old = previous.get("results", {})
    sizes: dict[str, Any] = dict(old.pop("other_sizes", {}))
    old_series = old.get("parameters", {}).get("series")
    if old_series is not None:
        sizes[str(old_series)] = {**old, "recorded_at": previous.get("recorded_at")}
    sizes.pop(str(series), None)
    return sizes


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=100_000)
    parser.add_argument("--samples", type=int, default=5, help="scrape rounds per series")
    parser.add_argument("--per-request", type=int, default=2_000, help="samples per request")
    parser.add_argument("--senders", type=int, default=4, help="concurrent HTTP senders")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=5.0, help="seconds before memory")
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    # end a minute before now: both servers take it as fresh data
    t0 = int(time.time() * 1000) - (args.samples * SCRAPE_INTERVAL_MS) - 60_000
    started = time.perf_counter()
    rounds = build_rounds(args.series, args.samples, args.per_request, t0)
    body_bytes = sum(len(b) for r in rounds for b in r)
    print(
        f"encoded {sum(len(r) for r in rounds)} bodies ({body_bytes / 1e6:.1f} MB snappy) "
        f"in {time.perf_counter() - started:.1f}s",
        flush=True,
    )

    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SERVERS}
    for n in range(args.runs):
        order = list(SERVERS) if n % 2 == 0 else list(reversed(SERVERS))
        for name in order:
            run = one_run(name, rounds, args.series, args.senders, args.settle)
            runs[name].append(run)
            print(
                f"run {n + 1} {name}: {run['samples_per_second']:,.0f} samples/s "
                f"(first round {run['first_round_samples_per_second']:,.0f}, later "
                f"{run['later_rounds_samples_per_second'] or 0:,.0f}), errors {run['errors']} "
                f"{run['first_error']}, {run['rss_bytes_per_series']:,.0f} B/series RSS "
                f"({run['rss_bytes_per_series_above_idle']:,.0f} above idle), "
                f"disk {run['disk_bytes'] / 1e6:.1f} MB",
                flush=True,
            )

    keys = [
        "samples_per_second",
        "first_round_samples_per_second",
        "later_rounds_samples_per_second",
        "rss_bytes_per_series",
        "rss_bytes_per_series_above_idle",
        "disk_bytes",
    ]
    medians = {name: {k: median_of(rs, k) for k in keys} for name, rs in runs.items()}
    ratios = {}
    for k in keys:
        s, p = medians["signalroom"][k], medians["prometheus"][k]
        ratios[k] = s / p if s is not None and p else None
    errors = {name: sum(r["errors"] for r in rs) for name, rs in runs.items()}
    results: dict[str, Any] = {
        "parameters": {
            "series": args.series,
            "samples_per_series": args.samples,
            "samples_per_request": args.per_request,
            "senders": args.senders,
            "runs": args.runs,
            "body_bytes": body_bytes,
            "note": "2 cores shared with other work (and with this client); medians of runs",
        },
        "median": medians,
        "ratio_signalroom_over_prometheus": ratios,
        "errors": errors,
        "runs": runs,
    }
    sm, pm = medians["signalroom"], medians["prometheus"]
    summary = (
        f"{args.series:,} series x {args.samples} samples over HTTP, {args.per_request} "
        f"samples/request, {args.senders} senders: signalroom {sm['samples_per_second']:,.0f} "
        f"samples/s vs Prometheus 2.42 {pm['samples_per_second']:,.0f} "
        f"(x{ratios['samples_per_second']:.2f}; once series exist "
        f"{sm['later_rounds_samples_per_second'] or 0:,.0f} vs "
        f"{pm['later_rounds_samples_per_second'] or 0:,.0f}); RSS/series "
        f"{sm['rss_bytes_per_series']:,.0f} B vs {pm['rss_bytes_per_series']:,.0f} B "
        f"(x{ratios['rss_bytes_per_series']:.2f}); errors {errors['signalroom']}/"
        f"{errors['prometheus']}; medians of {args.runs}, 2 shared cores"
    )
    print(summary)
    if not args.no_record:
        results["other_sizes"] = _other_sizes(args.series)
        record("remote_write", results, summary)
    return results


if __name__ == "__main__":
    main(sys.argv[1:])
