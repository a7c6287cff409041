"""Rule evaluation: one round of a realistic rule file against the 15 s evaluation interval.

Data (``--series``, default 10,000; ``--full`` 100,000) in signalroom's metric store, as the
server reads it: per service (``job``) and instance, ``http_requests_total`` by code, method
and handler, a classic histogram ``http_request_duration_seconds`` (bucket/sum/count) by
handler, ``process_cpu_seconds_total``, ``process_resident_memory_bytes``,
``process_memory_limit_bytes`` and ``up``; ``--points`` samples 15 s apart ending at the
evaluation time.

Rules (``--rules``, default 100; ``--full`` 1,000): one group per service with the 20 rules a
service's rule file has (the seed rule files and SLO generators look like this): request rates
by job/code/handler, error ratios over 5m/30m/1h, histogram_quantile p90/p99 by job and
handler, mean latency, increase over 1h, CPU rates, and alerts on the same expressions (error
ratio thresholds, latency, `up == 0`, memory ratio, burn rate on the recorded series, traffic
drop) with seed-style templated annotations. Rule expressions share their selectors, as real
rule files do.

One round evaluates every group at the same evaluation time (``eval_group``, as the server's
loop calls it); the first round is a warm-up (alerts become pending, parse caches fill), the
median of the following ``--rounds`` is reported with the CPU time, the machine load and the
series each round reads.

``--reference`` also loads the same data through remote write into Prometheus 2.42 (Debian)
with the same rule file (written to ``--rule-file``) and reports its summed
``prometheus_rule_group_last_duration_seconds`` next to ours.

Run: ``python -m bench rules [--full] [--reference]``.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from bench.record import record
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage, Querier
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions

INTERVAL_MS = 15_000
CODES = ("200", "404", "500", "503")
METHODS = ("GET", "POST")
HANDLERS = ("/api/orders", "/api/users", "/api/cart", "/api/search", "/healthz")
BUCKETS = ("0.01", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
RULES_PER_GROUP = 20
#: Series per (job, instance): requests, buckets, sum/count per handler, 4 process gauges.
SERIES_PER_INSTANCE = (
    len(CODES) * len(METHODS) * len(HANDLERS) + len(HANDLERS) * (len(BUCKETS) + 2) + 4
)

Column = npt.NDArray[np.float64]


@dataclass
class Dataset:
    labels: list[Labels]
    values: npt.NDArray[np.float64]  # series x points
    timestamps: npt.NDArray[np.int64]  # points


def build_dataset(n_series: int, jobs: int, points: int, end_ms: int) -> Dataset:
    """Every series' labels and values, vectorised per family (see the module docstring)."""
    rng = np.random.default_rng(1)
    instances = max(1, round(n_series / (jobs * SERIES_PER_INSTANCE)))
    steps = np.arange(points, dtype=np.int64)
    timestamps = end_ms - (points - 1 - steps) * INTERVAL_MS
    labels: list[Labels] = []
    rows: list[Column] = []

    def counter(per_s: float, n: int = 1) -> npt.NDArray[np.float64]:
        increments = rng.poisson(per_s * INTERVAL_MS / 1000, (n, points))
        start = rng.integers(1_000, 100_000, (n, 1))
        return (np.cumsum(increments, axis=1) + start).astype(np.float64)

    edges = np.array([float(b) for b in BUCKETS[:-1]])
    for j in range(jobs):
        job = f"svc{j:03d}"
        # a few services fail or are slow, so their alerts go pending
        error_share = 0.3 if j % 10 == 3 else 0.01
        median_latency = 2.0 if j % 10 == 7 else 0.08
        for i in range(instances):
            base = {"job": job, "instance": f"10.0.{j}.{i}:8080"}
            for code in CODES:
                share = error_share if code.startswith("5") else 1.0
                for method in METHODS:
                    for handler in HANDLERS:
                        labels.append(Labels({"__name__": "http_requests_total", **base,
                                              "code": code, "method": method,
                                              "handler": handler}))  # fmt: skip
                        rows.append(counter(5.0 * share)[0])
            cdf = 0.5 * (1 + np.tanh(np.log(edges / median_latency)))
            for handler in HANDLERS:
                count = counter(20.0)[0]
                for le, share in zip(BUCKETS, [*cdf, 1.0], strict=True):
                    labels.append(Labels({"__name__": "http_request_duration_seconds_bucket",
                                          **base, "handler": handler, "le": le}))  # fmt: skip
                    rows.append(np.floor(count * share))
                labels.append(Labels({"__name__": "http_request_duration_seconds_count",
                                      **base, "handler": handler}))  # fmt: skip
                rows.append(count)
                labels.append(Labels({"__name__": "http_request_duration_seconds_sum",
                                      **base, "handler": handler}))  # fmt: skip
                rows.append(count * median_latency)
            down = j % 25 == 5 and i == 0
            memory = 0.95 if j % 10 == 9 else 0.5
            for name, row in (
                ("up", np.full(points, 0.0 if down else 1.0)),
                ("process_cpu_seconds_total", np.cumsum(rng.uniform(0, 15, points))),
                ("process_resident_memory_bytes", np.full(points, memory * 2**30)),
                ("process_memory_limit_bytes", np.full(points, float(2**30))),
            ):
                labels.append(Labels({"__name__": name, **base}))
                rows.append(np.asarray(row, dtype=np.float64))
    return Dataset(labels, np.vstack(rows), timestamps)


def load_tsdb(data: Dataset, directory: Path, per_batch: int = 5_000) -> TSDB:
    """Every point of `per_batch` series per append: one label look-up per series."""
    db = TSDB(directory, options=TSDBOptions(max_series_total=0, wal_fsync="never"))
    db.open(background=False)
    points = len(data.timestamps)
    for start in range(0, len(data.labels), per_batch):
        series = data.labels[start : start + per_batch]
        n = len(series)
        db.append(
            "default",
            SampleBatch(
                np.repeat(np.arange(n, dtype=np.int32), points),
                np.tile(data.timestamps, n),
                data.values[start : start + n].ravel(),
                series=series,
            ),
        )
    return db


def load_memory(data: Dataset) -> MemoryStorage:
    storage = MemoryStorage()
    ts = data.timestamps.tolist()
    for lbls, row in zip(data.labels, data.values, strict=True):
        storage.add_series(lbls, ts, row.tolist())
    return storage


def group_yaml(job: str) -> str:
    """The rule group of one service: 12 recording rules and 8 alerts."""
    sel = f'job="{job}"'
    req = f"http_requests_total{{{sel}}}"
    err = f'http_requests_total{{{sel},code=~"5.."}}'
    bucket = f"http_request_duration_seconds_bucket{{{sel}}}"

    def ratio(window: str) -> str:
        return f"sum by (job) (rate({err}[{window}])) / sum by (job) (rate({req}[{window}]))"

    records = [
        ("job:http_requests:rate5m", f"sum by (job) (rate({req}[5m]))"),
        ("job_code:http_requests:rate5m", f"sum by (job, code) (rate({req}[5m]))"),
        ("job_handler:http_requests:rate5m", f"sum by (job, handler) (rate({req}[5m]))"),
        ("job:http_errors:ratio_rate5m", ratio("5m")),
        ("job:http_errors:ratio_rate30m", ratio("30m")),
        ("job:http_errors:ratio_rate1h", ratio("1h")),
        ("job:http_request_duration_seconds:p99",
         f"histogram_quantile(0.99, sum by (job, le) (rate({bucket}[5m])))"),
        ("job:http_request_duration_seconds:p90",
         f"histogram_quantile(0.9, sum by (job, le) (rate({bucket}[5m])))"),
        ("job_handler:http_request_duration_seconds:p99",
         f"histogram_quantile(0.99, sum by (job, handler, le) (rate({bucket}[5m])))"),
        ("job:http_request_duration_seconds:mean5m",
         f"sum by (job) (rate(http_request_duration_seconds_sum{{{sel}}}[5m]))"
         f" / sum by (job) (rate(http_request_duration_seconds_count{{{sel}}}[5m]))"),
        ("job:http_requests:increase1h", f"sum by (job) (increase({req}[1h]))"),
        ("instance:process_cpu:rate5m", f"rate(process_cpu_seconds_total{{{sel}}}[5m])"),
    ]  # fmt: skip
    alerts = [
        ("HighErrorRate", f"({ratio('5m')}) > 0.05", "5m", "warning",
         "Error rate: {{ $value | humanizePercentage }} on {{ $labels.job }}"),
        ("HighErrorRateCritical", f"({ratio('5m')}) > 0.2", "5m", "critical",
         "Error rate: {{ $value | humanizePercentage }} on {{ $labels.job }}"),
        ("HighLatency",
         f"histogram_quantile(0.99, sum by (job, le) (rate({bucket}[5m]))) > 1", "10m",
         "warning", "p99 latency {{ $value | humanizeDuration }} on {{ $labels.job }}"),
        ("InstanceDown", f"up{{{sel}}} == 0", "1m", "critical",
         "{{ $labels.instance }} of {{ $labels.job }} is down"),
        ("HighMemoryUsage",
         f"(process_resident_memory_bytes{{{sel}}} / process_memory_limit_bytes{{{sel}}}) > 0.9",
         "5m", "warning", "{{ $labels.instance }} uses {{ $value | humanizePercentage }}"),
        ("ErrorBudgetBurn",
         f"job:http_errors:ratio_rate5m{{{sel}}} > (14.4 * 0.001)"
         f" and job:http_errors:ratio_rate1h{{{sel}}} > (14.4 * 0.001)", "2m", "critical",
         "{{ $labels.job }} burns its error budget"),
        ("HighCPU", f"rate(process_cpu_seconds_total{{{sel}}}[5m]) > 0.8", "15m", "warning",
         "{{ $labels.instance }} CPU at {{ $value | humanize }}"),
        ("TrafficDrop", f"sum(increase({req}[10m])) < 1", "10m", "warning",
         "No traffic on " + job),
    ]  # fmt: skip
    lines = [f"- name: {job}", "  interval: 15s", "  rules:"]
    for name, expr in records:
        lines += [f"  - record: {name}", f"    expr: '{expr}'"]
    for name, expr, hold, severity, summary in alerts:
        lines += [f"  - alert: {name}", f"    expr: '{expr}'", f"    for: {hold}",
                  "    labels:", f"      severity: {severity}",
                  "    annotations:", f"      summary: \"{summary}\""]  # fmt: skip
    return "\n".join(lines) + "\n"


def rule_file(n_rules: int, jobs: int) -> str:
    groups = max(1, n_rules // RULES_PER_GROUP)
    return "groups:\n" + "".join(group_yaml(f"svc{g % jobs:03d}") for g in range(groups))


def run_reference(data: Dataset, rules_text: str, rounds: int = 3) -> dict[str, Any]:
    """Prometheus 2.42 evaluating the same rule file on the same data (shifted to end a minute
    from now, so its evaluations at wall-clock time see it as we do): its CPU time per round
    and prometheus_rule_group_last_duration_seconds (max and sum over groups: it evaluates
    every group concurrently, so the slowest group is about a round's wall time)."""
    import httpx

    from bench.bench_remote_write import Sender
    from bench.reference import prometheus
    from signalroom.ingest.remote_write import encode_write_request

    shift = int(time.time() * 1000) + 60_000 - int(data.timestamps[-1])
    ts = (data.timestamps + shift).tolist()
    bodies = [
        encode_write_request(
            (lbls, list(zip(ts, row.tolist(), strict=True)))
            for lbls, row in zip(data.labels[s : s + 500], data.values[s : s + 500], strict=True)
        )
        for s in range(0, len(data.labels), 500)
    ]
    directory = Path(tempfile.mkdtemp(prefix="bench-rules-reference-"))
    (directory / "rules.yml").write_text(rules_text)
    config = f"global:\n  evaluation_interval: 15s\nrule_files:\n  - {directory / 'rules.yml'}\n"
    try:
        with prometheus(config=config) as server, Sender(server.url, 2) as sender:
            sent = sender.send([bodies])
            if sent.errors:
                raise RuntimeError(f"remote write to Prometheus failed: {sent.first_error}")

            def metrics() -> dict[str, float]:
                text = httpx.get(server.url + "/metrics", timeout=30).text
                sums: dict[str, float] = {}
                for line in text.splitlines():
                    if line.startswith("prometheus_rule_"):
                        name = line.split("{", 1)[0].split(" ", 1)[0]
                        value = float(line.rsplit(" ", 1)[1])
                        sums[name] = sums.get(name, 0.0) + value
                        sums[name + ":max"] = max(sums.get(name + ":max", 0.0), value)
                return sums

            def cpu() -> float:
                with open(f"/proc/{server.process.pid}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
                return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

            # Two evaluations of every group to warm up, then `rounds` more, measured.
            time.sleep(2 * INTERVAL_MS / 1000)
            before, cpu_before = metrics(), cpu()
            time.sleep(rounds * INTERVAL_MS / 1000)
            after, cpu_after = metrics(), cpu()
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    iterations = after.get("prometheus_rule_group_iterations_total", 0.0) - before.get(
        "prometheus_rule_group_iterations_total", 0.0
    )
    groups = rules_text.count("\n- name: ")
    per_round = (cpu_after - cpu_before) / max(iterations / max(groups, 1), 1)
    return {
        # Groups run concurrently: the slowest group is the round's wall time.
        "prometheus_round_seconds": round(
            after.get("prometheus_rule_group_last_duration_seconds:max", 0.0), 3
        ),
        "prometheus_group_seconds_sum": round(
            after.get("prometheus_rule_group_last_duration_seconds", 0.0), 3
        ),
        "prometheus_round_cpu_seconds": round(per_round, 3),
        "prometheus_samples_last_round": int(
            after.get("prometheus_rule_group_last_evaluation_samples", 0.0)
        ),
        "prometheus_evaluation_failures": int(
            after.get("prometheus_rule_evaluation_failures_total", 0.0)
        ),
        "prometheus_iterations_missed": int(
            after.get("prometheus_rule_group_iterations_missed_total", 0.0)
        ),
    }


def machine_load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def run_rounds(
    manager: RuleManager, eval_ms: int, rounds: int
) -> tuple[list[float], list[float], int]:
    walls: list[float] = []
    cpus: list[float] = []
    for r in range(rounds + 1):
        ts = eval_ms - (rounds - r) * INTERVAL_MS
        started, started_cpu = time.perf_counter(), time.process_time()
        for group in manager.groups.values():
            manager.eval_group(group, ts)
        if r:  # the first round warms up
            walls.append(time.perf_counter() - started)
            cpus.append(time.process_time() - started_cpu)
    samples = sum(g.metrics.last_evaluation_samples for g in manager.groups.values())
    return walls, cpus, samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="1,000 rules over 100,000 series")
    parser.add_argument("--series", type=int, default=None)
    parser.add_argument("--rules", type=int, default=None)
    parser.add_argument("--jobs", type=int, default=None, help="services (default rules/20)")
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--store", choices=("tsdb", "memory"), default="tsdb")
    parser.add_argument("--rule-file", type=Path, default=None, help="also write the rules")
    parser.add_argument("--reference", action="store_true", help="also run Prometheus 2.42")
    parser.add_argument("--no-record", dest="record", action="store_false")
    # `python -m bench rules [--full]` leaves the benchmark names in argv: ignore them.
    args, _names = parser.parse_known_args()
    if args.series is None:
        args.series = 100_000 if args.full else 10_000
    if args.rules is None:
        args.rules = 1_000 if args.full else 100
    jobs = args.jobs or max(1, args.rules // RULES_PER_GROUP)
    eval_ms = (int(time.time() * 1000) // INTERVAL_MS - 2) * INTERVAL_MS
    load_before = machine_load()

    t0 = time.perf_counter()
    data = build_dataset(args.series, jobs, args.points + args.rounds, eval_ms)
    tmp = Path(tempfile.mkdtemp(prefix="bench-rules-"))
    db: TSDB | None = None
    try:
        querier: Querier
        if args.store == "tsdb":
            db = load_tsdb(data, tmp / "metrics")
            querier = db.querier("default", -(2**62), 2**62)
            from signalroom.app import TSDBRuleAppender

            appender: Any = TSDBRuleAppender(db)
        else:
            querier = load_memory(data)
            appender = MemoryStorageAppender(querier)
        load_s = time.perf_counter() - t0
        rules_text = rule_file(args.rules, jobs)
        path = args.rule_file or tmp / "bench.rules.yml"
        path.write_text(rules_text)
        notifier = ListNotifier()
        manager = RuleManager(Engine(), lambda: querier, appender, notifier)
        manager.groups = manager.load_groups([str(path)])
        n_rules = sum(len(g.rules) for g in manager.groups.values())
        walls, cpus, samples = run_rounds(manager, eval_ms, args.rounds)
        failures = sum(g.metrics.evaluation_failures_total for g in manager.groups.values())
        errors = {r.last_error for g in manager.groups.values() for r in g.rules if r.last_error}
        reference: dict[str, Any] = {}
        if args.reference:
            reference = run_reference(data, rules_text)
    finally:
        if db is not None:
            db.close()
        shutil.rmtree(tmp, ignore_errors=True)
    best = statistics.median(walls)
    results: dict[str, Any] = {
        "store": args.store,
        "series": len(data.labels),
        "rules": n_rules,
        "groups": len(manager.groups),
        "points": args.points,
        "load_seconds": round(load_s, 2),
        "round_seconds": [round(x, 3) for x in walls],
        "median_round_seconds": round(best, 3),
        "round_cpu_seconds": [round(x, 3) for x in cpus],
        "median_round_cpu_seconds": round(statistics.median(cpus), 3),
        "interval_seconds": INTERVAL_MS / 1000,
        "fraction_of_interval": round(best / (INTERVAL_MS / 1000), 3),
        "samples_written_last_round": samples,
        "alerts_sent": len(notifier.sent),
        "evaluation_failures": failures,
        "errors": sorted(errors)[:5],
        "loadavg_before": load_before,
        "loadavg_after": machine_load(),
        **reference,
    }
    summary = (
        f"{n_rules} rules ({len(manager.groups)} groups) over {len(data.labels)} series "
        f"({args.store}): one round {best:.2f}s wall, {statistics.median(cpus):.2f}s CPU "
        f"({100 * best / (INTERVAL_MS / 1000):.0f}% of the 15s interval), {samples} samples "
        f"written, load {load_before[0]}"
    )
    if reference:
        ratio = statistics.median(cpus) / max(reference["prometheus_round_cpu_seconds"], 1e-9)
        results["cpu_ratio_to_prometheus"] = round(ratio, 2)
        summary += (
            f"; Prometheus 2.42 on the same data and rules: "
            f"{reference['prometheus_round_cpu_seconds']:.2f}s CPU per round (ratio "
            f"{ratio:.2f}), slowest group {reference['prometheus_round_seconds']:.1f}s wall, "
            f"{reference['prometheus_iterations_missed']} missed iterations"
        )
    print(summary)
    print(results)
    if args.record:
        record("rules", results, summary)


if __name__ == "__main__":
    main()
