"""PromQL over HTTP: the same data and the same query mix on signalroom and Prometheus 2.42.

The issue: load the same data into Prometheus 2.42 and signalroom; run the same query mix
(instant and range; rate, increase, sum by, topk, histogram_quantile over 10,000 to 100,000
series; 1 h to 24 h ranges; 15 s to 5 m steps) in one run; report each query's median latency
ratio and peak memory.

Data (``--series`` about 10,000; ``--hours`` of samples every ``--interval`` seconds, ending a
minute before now): per (job, instance) pair 8 ``http_requests_total`` counters (code x
method; 2 % of them reset once), a classic histogram ``http_request_duration_seconds`` with 11
buckets plus ``_sum`` and ``_count``; counters start from large offsets. One extra counter
``bench_edge_total`` starts near 0 when the data starts, to check rate() at the start of a
series. Each target is scraped at its own offset with a few ms of jitter (``--aligned`` puts
every sample on the query step grid, where samples fall on range boundaries). Bodies are
encoded first, then sent through remote write to both servers by the concurrent senders of
:mod:`bench.bench_remote_write`, one time window after another so every series arrives in
time order.

Then: wait until both answer with every series and have gone idle (Prometheus cuts blocks
from its head as it ingests); run every query once on both and compare the parsed results
(same series, same timestamps, values within a relative 1e-6; a mismatch is a bug and is
reported with an example); then time each query ``--repeat`` times on both, alternating, and
report per-query median latency, the ratio signalroom/Prometheus, and the peak resident memory
of each server while loading and while querying (polled every 50 ms).

    .venv/bin/python -m bench query [--series=10000] [--hours=6] [--interval=30] [--repeat=5]
    .venv/bin/python -m bench query --series=100000 --hours=2
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.bench_remote_write import SIGNALROOM_CONFIG, Sender  # noqa: E402
from bench.record import record  # noqa: E402
from bench.reference import Process, prometheus, signalroom  # noqa: E402
from signalroom.ingest.remote_write import encode_write_request  # noqa: E402
from signalroom.tsdb.malloc import glibc_tunables  # noqa: E402

CODES = ("200", "201", "404", "500")
METHODS = ("GET", "POST")
BUCKETS = ("0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "+Inf")
SERIES_PER_GROUP = len(CODES) * len(METHODS) + len(BUCKETS) + 2
JOBS = 10
TUNED = "signalroom_malloc_tuned"
REL_TOL = 1e-6
ABS_TOL = 1e-9

Labels = dict[str, str]
Floats = npt.NDArray[np.float64]
Series = tuple[Labels, npt.NDArray[np.int64], Floats]


# -- data -----------------------------------------------------------------------------------


def generate(
    groups: int, grid_ms: npt.NDArray[np.int64], interval_s: int, aligned: bool, seed: int = 42
) -> list[Series]:
    """Every series' labels, timestamps and values, vectorised per family. Each (job, instance)
    target is scraped at its own offset into the interval with a few ms of jitter, as
    Prometheus spreads its targets (``aligned`` puts every sample on the step grid instead)."""
    rng = np.random.default_rng(seed)
    steps = len(grid_ms)
    out: list[Series] = []

    def scrape_times() -> npt.NDArray[np.int64]:
        if aligned:
            return grid_ms
        # never within the jitter of a whole second: query steps and ranges are whole seconds,
        # and a sample exactly on a range's left edge is inside in 2.x, outside in 3.x
        offset = int(rng.integers(1, interval_s - 1)) * 1000 + int(rng.integers(10, 990))
        return grid_ms - offset + rng.integers(-3, 4, steps)

    for g in range(groups):
        times = scrape_times()
        base = {"job": f"api-{g % JOBS}", "instance": f"10.0.{g // 250}.{g % 250}:8080"}
        for code in CODES:
            for method in METHODS:
                per_s = rng.lognormal(0.0, 1.5) * (0.05 if code in ("404", "500") else 1.0)
                values = np.cumsum(rng.poisson(per_s * interval_s, steps)).astype(np.float64)
                values += float(rng.integers(10_000, 1_000_000))
                if rng.random() < 0.02:  # a restart: the counter drops back to near zero
                    at = int(rng.integers(1, steps))
                    values[at:] -= values[at - 1]
                labels = {"__name__": "http_requests_total", **base, "code": code,
                          "method": method}  # fmt: skip
                out.append((labels, times, values))
        # latency histogram: per step a multinomial split of the requests over the buckets
        edges = np.array([float(b) for b in BUCKETS[:-1]])
        median_latency = rng.lognormal(math.log(0.08), 0.7)
        cdf = np.clip(
            0.5 * (1 + np.vectorize(math.erf)(np.log(edges / median_latency) / (0.9 * 2**0.5))),
            0,
            1,
        )
        probs = np.diff(np.concatenate([[0.0], cdf, [1.0]]))
        probs = np.clip(probs, 0, None)
        probs /= probs.sum()
        per_step = rng.poisson(rng.lognormal(1.0, 1.0) * interval_s, steps)
        split = rng.multinomial(per_step, probs)  # steps x buckets
        start = rng.multinomial(int(rng.integers(10_000, 1_000_000)), probs)
        cumulative = np.cumsum(np.cumsum(split, axis=0) + start, axis=1).astype(np.float64)
        for b, le in enumerate(BUCKETS):
            labels = {"__name__": "http_request_duration_seconds_bucket", **base, "le": le}
            out.append((labels, times, cumulative[:, b].copy()))
        count = cumulative[:, -1].copy()
        latency_sum = np.cumsum(per_step * median_latency * rng.uniform(0.9, 1.3, steps))
        latency_sum += float(start.sum()) * median_latency
        out.append(({"__name__": "http_request_duration_seconds_count", **base}, times, count))
        out.append(({"__name__": "http_request_duration_seconds_sum", **base}, times, latency_sum))
    # a new counter: 40 at its first sample, +60 per scrape, so rate() at the start of the data
    # extrapolates towards zero (where Prometheus 2.x and 3.x differ)
    # It starts ~2.5 min after the others: off the 5 m step grid, so a step's window holds its
    # first samples well inside the window, where the extrapolation rules differ.
    late = max(1, 150 // interval_s)
    edge = 40.0 + 60.0 * np.arange(steps - late, dtype=np.float64)
    out.append(({"__name__": "bench_edge_total", "job": "edge"}, scrape_times()[late:], edge))
    return out


def encode_windows(series: list[Series], per_request: int, window: int) -> list[list[bytes]]:
    """Bodies per time window of ``window`` samples; each series once per window."""
    per_body = max(1, per_request // window)
    steps = max(len(times) for _, times, _ in series)
    windows: list[list[bytes]] = []
    for w in range(0, steps, window):
        bodies = []
        for s in range(0, len(series), per_body):
            chunk = [
                (labels, times[w : w + window].tolist(), values[w : w + window].tolist())
                for labels, times, values in series[s : s + per_body]
            ]
            bodies.append(
                encode_write_request(
                    (labels, list(zip(ts, vs, strict=True))) for labels, ts, vs in chunk if ts
                )
            )
        windows.append(bodies)
    return windows


# -- queries --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """One query of the mix: instant when ``range_s`` is 0, else a range ending at the end."""

    name: str
    expr: str
    range_s: int = 0
    step_s: int = 0
    known_difference: str = ""
    """Why signalroom may answer otherwise on purpose (it follows Prometheus 3, not 2.42)."""

    def params(self, end_s: float) -> dict[str, str]:
        if not self.range_s:
            return {"query": self.expr, "time": f"{end_s:.3f}"}
        return {
            "query": self.expr,
            "start": f"{end_s - self.range_s:.3f}",
            "end": f"{end_s:.3f}",
            "step": str(self.step_s),
        }

    @property
    def path(self) -> str:
        return "/api/v1/query_range" if self.range_s else "/api/v1/query"


H = 3600
QUERIES = (
    Query("sum_by_job_rate", "sum by (job) (rate(http_requests_total[5m]))"),
    Query("topk_rate", "topk(10, rate(http_requests_total[5m]))"),
    Query("rate_all", "rate(http_requests_total[5m])"),
    Query("increase_1h_by_code", "sum by (code) (increase(http_requests_total[1h]))"),
    Query(
        "hq99_by_job",
        "histogram_quantile(0.99, sum by (job, le) "
        "(rate(http_request_duration_seconds_bucket[5m])))",
    ),
    Query("hq50_each", "histogram_quantile(0.5, rate(http_request_duration_seconds_bucket[5m]))"),
    Query(
        "mean_latency",
        "sum(rate(http_request_duration_seconds_sum[5m])) / "
        "sum(rate(http_request_duration_seconds_count[5m]))",
    ),
    # the two halves of mean_latency: float-valued (_sum) next to integer-valued (_count)
    Query("sum_rate_float_sum", "sum(rate(http_request_duration_seconds_sum[5m]))"),
    Query("sum_rate_int_count", "sum(rate(http_request_duration_seconds_count[5m]))"),
    Query("range1h_15s_sum_by", "sum by (job, code) (rate(http_requests_total[5m]))", H, 15),
    Query("range1h_15s_rate_job", 'rate(http_requests_total{job="api-0"}[1m])', H, 15),
    Query(
        "range6h_1m_hq95",
        "histogram_quantile(0.95, sum by (job, le) "
        "(rate(http_request_duration_seconds_bucket[5m])))",
        6 * H,
        60,
    ),
    Query(
        "range6h_5m_topk_increase",
        "topk(5, sum by (instance) (increase(http_requests_total[1h])))",
        6 * H,
        300,
    ),
    Query("range24h_5m_increase", "sum by (job) (increase(http_requests_total[1h]))", 24 * H, 300),
    Query(
        "range24h_5m_edge_rate",
        "rate(bench_edge_total[5m])",
        24 * H,
        300,
        known_difference="Prometheus 3 limits the start extrapolation to half a sample interval "
        "before taking the counter's zero point; 2.42 took the zero point first",
    ),
)


# -- comparing results ----------------------------------------------------------------------


def _value(text: str) -> float:
    return float(text)  # Prometheus spells them "NaN", "+Inf", "-Inf": float() takes all


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=REL_TOL, abs_tol=ABS_TOL)


def _points(data: dict[str, Any]) -> dict[tuple[tuple[str, str], ...], list[tuple[float, float]]]:
    kind, result = data["resultType"], data["result"]
    if kind == "scalar":
        return {(): [(float(result[0]), _value(result[1]))]}
    out = {}
    for item in result:
        key = tuple(sorted(item["metric"].items()))
        pairs = item["values"] if kind == "matrix" else [item["value"]]
        out[key] = [(float(t), _value(v)) for t, v in pairs]
    return out


def compare(reference: dict[str, Any], candidate: dict[str, Any]) -> dict[str, Any]:
    """Differences of signalroom's answer from Prometheus's; empty ``problems`` if equal."""
    problems: list[str] = []
    if reference["resultType"] != candidate["resultType"]:
        problems.append(
            f"result type {candidate['resultType']} (Prometheus {reference['resultType']})"
        )
        return {"problems": problems}
    ref, got = _points(reference), _points(candidate)
    missing, extra = ref.keys() - got.keys(), got.keys() - ref.keys()
    if missing:
        problems.append(f"{len(missing)} series missing, e.g. {dict(next(iter(missing)))}")
    if extra:
        problems.append(f"{len(extra)} series extra, e.g. {dict(next(iter(extra)))}")
    differing_series = differing_points = 0
    example = ""
    for key in ref.keys() & got.keys():
        a, b = dict(ref[key]), dict(got[key])
        bad = [t for t in a.keys() | b.keys() if t not in a or t not in b or not _same(a[t], b[t])]
        if bad:
            differing_series += 1
            differing_points += len(bad)
            if not example:
                t = min(bad)
                example = (
                    f"{dict(key)} at {t}: Prometheus {a.get(t, 'absent')}, "
                    f"signalroom {b.get(t, 'absent')} ({len(bad)} of {len(a)} points differ)"
                )
    if differing_series:
        problems.append(
            f"{differing_series} series / {differing_points} points differ, e.g. {example}"
        )
    return {
        "problems": problems,
        "series": len(ref),
        "points": sum(len(v) for v in ref.values()),
    }


# -- servers --------------------------------------------------------------------------------


class PeakMemory:
    """Polls the servers' RSS every 50 ms; ``phase`` names the bucket peaks go to."""

    def __init__(self, servers: dict[str, Process]) -> None:
        self.servers = servers
        self.phase = "load"
        self.peaks: dict[str, dict[str, int]] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            for name, server in self.servers.items():
                try:
                    rss = server.rss_bytes()
                except OSError:
                    continue
                bucket = self.peaks.setdefault(self.phase, {})
                bucket[name] = max(bucket.get(name, 0), rss)

    @contextmanager
    def running(self) -> Iterator[PeakMemory]:
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self._thread.join()


def cpu_seconds(server: Process) -> float:
    with open(f"/proc/{server.process.pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / 100  # utime + stime in clock ticks


def wait_idle(server: Process, timeout_s: float = 180.0) -> float:
    """Wait until the server uses under 5 % of a core over a second (background work done)."""
    started = time.monotonic()
    while time.monotonic() - started < timeout_s:
        before = cpu_seconds(server)
        time.sleep(1.0)
        if cpu_seconds(server) - before < 0.05:
            break
    return time.monotonic() - started


def wait_loaded(server: Process, end_s: float, expected: int, timeout_s: float = 120.0) -> None:
    deadline = time.monotonic() + timeout_s
    last = ""
    while time.monotonic() < deadline:
        try:
            r = httpx.get(
                server.url + "/api/v1/query",
                params={"query": 'count({__name__=~".+"})', "time": f"{end_s:.3f}"},
                timeout=60,
            )
            result = r.json()["data"]["result"]
            last = r.text[:200]
            if result and int(float(result[0]["value"][1])) == expected:
                return
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            last = repr(exc)
        time.sleep(0.5)
    raise RuntimeError(f"{server.name} never answered with {expected} series: {last}")


def run_query(
    client: httpx.Client, server: Process, query: Query, end_s: float
) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response = client.get(server.url + query.path, params=query.params(end_s))
    elapsed = time.perf_counter() - started
    body: dict[str, Any] = response.json()
    if response.status_code != 200 or body.get("status") != "success":
        raise QueryFailed(f"HTTP {response.status_code}: {response.text[:300]}")
    return elapsed, body["data"]


class QueryFailed(Exception):
    pass


# -- main -----------------------------------------------------------------------------------


def main(argv: list[str]) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--series", type=int, default=10_000)
    parser.add_argument("--hours", type=float, default=6.0)
    parser.add_argument("--interval", type=int, default=30, help="seconds between samples")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--senders", type=int, default=4)
    parser.add_argument("--per-request", type=int, default=2_000, help="samples per request")
    parser.add_argument(
        "--aligned", action="store_true", help="every sample on the step grid (no scrape offset)"
    )
    parser.add_argument(
        "--compare-malloc",
        nargs="?",
        const=glibc_tunables(),
        default="",
        metavar="GLIBC_TUNABLES",
        help="also run a signalroom with tuned glibc malloc settings (by default those "
        "signalroom.tsdb.malloc.tune_malloc sets) and report its latency and memory",
    )
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args(argv)

    groups = max(1, round(args.series / SERIES_PER_GROUP))
    steps = int(args.hours * 3600 // args.interval)
    step_ms = args.interval * 1000
    end_ms = (int(time.time() * 1000) // step_ms) * step_ms - 60_000
    grid = end_ms - step_ms * np.arange(steps - 1, -1, -1, dtype=np.int64)
    end_s = end_ms / 1000

    started = time.perf_counter()
    series = generate(groups, grid, args.interval, args.aligned)
    windows = encode_windows(series, args.per_request, window=20)
    num_series, num_samples = len(series), sum(len(times) for _, times, _ in series)
    del series
    print(
        f"{num_series} series x {steps} samples = {num_samples:,} samples in "
        f"{sum(len(w) for w in windows)} bodies, built in {time.perf_counter() - started:.1f}s",
        flush=True,
    )

    with ExitStack() as stack:
        servers = {
            "prometheus": stack.enter_context(prometheus()),
            "signalroom": stack.enter_context(signalroom(SIGNALROOM_CONFIG)),
        }
        if args.compare_malloc:
            servers[TUNED] = stack.enter_context(
                signalroom(SIGNALROOM_CONFIG, {"GLIBC_TUNABLES": args.compare_malloc})
            )
        load: dict[str, dict[str, Any]] = {}
        with PeakMemory(servers).running() as peaks:
            for name, server in servers.items():
                with Sender(server.url, args.senders) as sender:
                    t = time.perf_counter()
                    sent = sender.send(windows)
                    seconds = time.perf_counter() - t
                load[name] = {
                    "seconds": seconds,
                    "samples_per_second": num_samples / seconds,
                    "errors": sent.errors,
                    "first_error": sent.first_error,
                }
                print(f"loaded {name}: {load[name]}", flush=True)
            del windows
            for name, server in servers.items():
                wait_loaded(server, end_s, num_series)
                load[name]["idle_wait_seconds"] = wait_idle(server)
                load[name]["rss_bytes_loaded"] = server.rss_bytes()
                load[name]["disk_bytes"] = server.disk_bytes("data")
            peaks.phase = "query"
            results = run_mix(servers, end_s, args.repeat)
        peak_memory = peaks.peaks

    ratios = [r["ratio"] for r in results.values() if r.get("ratio")]
    mismatched = {
        k: r["compare"]["problems"]
        for k, r in results.items()
        if r["compare"]["problems"] and not r["known_difference"]
    }
    known = [k for k, r in results.items() if r["compare"]["problems"] and r["known_difference"]]
    failed = {k: r["errors"] for k, r in results.items() if r["errors"]}
    geo = math.exp(statistics.mean(math.log(r) for r in ratios)) if ratios else None
    summary_results: dict[str, Any] = {
        "parameters": {
            "series": num_series,
            "samples_per_series": steps,
            "interval_s": args.interval,
            "hours": args.hours,
            "aligned": args.aligned,
            "samples": num_samples,
            "repeat": args.repeat,
            "note": "2 cores shared with other work (and with this client); medians of runs",
        },
        "load": load,
        "peak_rss_bytes": peak_memory,
        "queries": results,
        "geometric_mean_latency_ratio": geo,
        "mismatches": mismatched,
        "known_differences_seen": known,
        "failures": failed,
    }
    q = peak_memory.get("query", {})
    summary = (
        f"{num_series:,} series x {steps} samples ({args.hours:g} h at {args.interval} s), "
        f"{len(QUERIES)} queries x {args.repeat}: median latency signalroom/Prometheus 2.42 "
        f"geometric mean x{geo or float('nan'):.2f} (range x{min(ratios, default=0):.2f}.."
        f"x{max(ratios, default=0):.2f}); peak RSS querying {q.get('signalroom', 0) / 2**20:.0f}"
        f" MiB vs {q.get('prometheus', 0) / 2**20:.0f} MiB; load "
        f"{load['signalroom']['samples_per_second']:,.0f} vs "
        f"{load['prometheus']['samples_per_second']:,.0f} samples/s; "
        f"{len(mismatched)} queries disagree (+{len(known)} known 2.x/3.x difference), "
        f"{len(failed)} fail; 2 shared cores"
    )
    if args.compare_malloc:
        tuned = [r["ratio_malloc_tuned"] for r in results.values() if r.get("ratio_malloc_tuned")]
        tuned_geo = math.exp(statistics.mean(math.log(r) for r in tuned)) if tuned else None
        summary_results["geometric_mean_latency_ratio_malloc_tuned"] = tuned_geo
        summary += (
            f"; with malloc tuned ({args.compare_malloc}): x{tuned_geo or 0:.2f}, "
            f"peak RSS querying {q.get(TUNED, 0) / 2**20:.0f} MiB, loaded "
            f"{load[TUNED]['rss_bytes_loaded'] / 2**20:.0f} vs "
            f"{load['signalroom']['rss_bytes_loaded'] / 2**20:.0f} MiB"
        )
    summary += f"; load average {os.getloadavg()[0]:.1f}"
    print(summary)
    for name, r in results.items():
        print(
            f"  {name:28} prom {r['prometheus_median_s'] or 0:8.4f}s  sr "
            f"{r['signalroom_median_s'] or 0:8.4f}s  x{r['ratio'] or 0:6.2f}  "
            + (f"tuned x{r['ratio_malloc_tuned'] or 0:6.2f}  " if args.compare_malloc else "")
            + "; ".join(r["compare"]["problems"] + r["errors"])
        )
    if not args.no_record:
        record("query", summary_results, summary)
    return summary_results


def run_mix(servers: dict[str, Process], end_s: float, repeat: int) -> dict[str, Any]:
    """Check every query's answers against Prometheus, then time them (alternating)."""
    out: dict[str, Any] = {}
    with httpx.Client(timeout=300) as client:
        for query in QUERIES:
            entry: dict[str, Any] = {"expr": query.expr, "range_s": query.range_s,
                                     "step_s": query.step_s, "errors": [],
                                     "known_difference": query.known_difference}  # fmt: skip
            answers: dict[str, dict[str, Any]] = {}
            times: dict[str, list[float]] = {name: [] for name in servers}
            for n in range(repeat + 1):  # the first round is the check (and a warm-up)
                order = list(servers) if n % 2 == 0 else list(reversed(servers))
                for name in order:
                    try:
                        seconds, data = run_query(client, servers[name], query, end_s)
                    except (QueryFailed, httpx.HTTPError, ValueError) as exc:
                        if n == 0:
                            entry["errors"].append(f"{name}: {exc}")
                        continue
                    if n == 0:
                        answers[name] = data
                    else:
                        times[name].append(seconds)
                if n == 0 and len(answers) < len(servers):
                    break
            if len(answers) == len(servers):
                entry["compare"] = compare(answers["prometheus"], answers["signalroom"])
            else:
                entry["compare"] = {"problems": ["not compared: a server failed"]}
            for name in servers:
                entry[f"{name}_median_s"] = statistics.median(times[name]) if times[name] else None
                entry[f"{name}_seconds"] = times[name]
            p, s = entry["prometheus_median_s"], entry["signalroom_median_s"]
            entry["ratio"] = s / p if p and s else None
            if TUNED in servers:
                t = entry[f"{TUNED}_median_s"]
                entry["ratio_malloc_tuned"] = t / p if p and t else None
            out[query.name] = entry
            print(
                f"{query.name}: prom {p or 0:.4f}s sr {s or 0:.4f}s "
                f"{entry['compare']['problems'] or 'same'} {entry['errors'] or ''}",
                flush=True,
            )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
