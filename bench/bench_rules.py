"""Rule evaluation: recording and alerting rules (rate / sum by) over many series.

Measures one full evaluation round of every group against the 15 s evaluation interval.
The default (100 rules over 10,000 series) takes well under a minute; `--full` runs the
goal's size, 1,000 rules over 100,000 series, which takes several minutes today.
Run: `python -m bench rules` or `.venv/bin/python -m bench.bench_rules [--full]`.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from bench.record import record
from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import Matcher, MatchType, MemoryStorage
from signalroom.rules.group import Group
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.rule import AlertingRule, RecordingRule

INTERVAL_MS = 15_000


def build_storage(n_series: int, metrics: int, points: int) -> MemoryStorage:
    storage = MemoryStorage()
    rng = np.random.default_rng(1)
    per_metric = n_series // metrics
    ts = [i * INTERVAL_MS for i in range(points)]
    for m in range(metrics):
        for s in range(per_metric):
            lbls = Labels(
                {
                    "__name__": f"http_requests_total_{m}",
                    "job": f"job{s % 10}",
                    "instance": f"i{s}",
                    "code": ("200", "500")[s % 2],
                }
            )
            values = np.cumsum(rng.integers(0, 10, points)).astype(float)
            storage.add_series(lbls, ts, values.tolist())
    return storage


def build_rules(n_rules: int, metrics: int) -> list[Group]:
    rules: list[RecordingRule | AlertingRule] = []
    for i in range(n_rules):
        metric = f"http_requests_total_{i % metrics}"
        if i % 2 == 0:
            rules.append(
                RecordingRule(f"job:{metric}:rate5m_{i}", f"sum by (job) (rate({metric}[5m]))")
            )
        else:
            rules.append(
                AlertingRule(
                    name=f"HighErrors{i}",
                    expr=f'sum by (job) (rate({metric}{{code="500"}}[5m])) > 0.1',
                    labels=Labels({"severity": "page"}),
                    annotations=Labels({"summary": "{{ $labels.job }} at {{ $value | humanize }}"}),
                    hold_ms=60_000,
                    restored=True,
                )
            )
    return [
        Group(f"g{g}", "bench.yml", INTERVAL_MS, rules[g * 50 : (g + 1) * 50])
        for g in range(len(rules) // 50)
    ]


def _matchers(expr: str) -> list[Matcher]:
    """The input selector of a bench rule (metric name and code matcher)."""
    name = expr.split("rate(", 1)[1].split("[", 1)[0]
    metric, _, rest = name.partition("{")
    out = [Matcher(MatchType.EQUAL, "__name__", metric)]
    if rest:
        out.append(Matcher(MatchType.EQUAL, "code", rest.split('"')[1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--full", action="store_true", help="1,000 rules over 100,000 series")
    parser.add_argument("--series", type=int, default=None)
    parser.add_argument("--rules", type=int, default=None)
    parser.add_argument("--metrics", type=int, default=100)
    parser.add_argument("--points", type=int, default=40)
    parser.add_argument("--no-record", dest="record", action="store_false")
    # `python -m bench rules [--full]` leaves the benchmark names in argv: ignore them.
    args, _names = parser.parse_known_args()
    if args.series is None:
        args.series = 100_000 if args.full else 10_000
    if args.rules is None:
        args.rules = 1_000 if args.full else 100
    t0 = time.perf_counter()
    storage = build_storage(args.series, args.metrics, args.points)
    load_s = time.perf_counter() - t0
    notifier = ListNotifier()
    manager = RuleManager(Engine(), lambda: storage, MemoryStorageAppender(storage), notifier)
    groups = build_rules(args.rules, args.metrics)
    manager.groups = {g.key: g for g in groups}
    rounds = []
    cpu = []
    for r in range(2):
        ts = (args.points - 1 - (1 - r)) * INTERVAL_MS
        start, start_cpu = time.perf_counter(), time.process_time()
        for group in groups:
            manager.eval_group(group, ts)
        rounds.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    failures = sum(g.metrics.evaluation_failures_total for g in groups)
    samples = sum(g.metrics.last_evaluation_samples for g in groups)
    best = min(rounds)
    series_evals = sum(
        len(list(storage.select(_matchers(rule.expr), 0, 2**62)))
        for g in groups
        for rule in g.rules
    )
    results = {
        "series": args.series,
        "rules": args.rules,
        "groups": len(groups),
        "load_seconds": round(load_s, 2),
        "round_seconds": [round(x, 3) for x in rounds],
        "best_round_seconds": round(best, 3),
        "round_cpu_seconds": [round(x, 3) for x in cpu],
        "input_series_per_round": series_evals,
        "us_per_input_series": round(1e6 * best / max(series_evals, 1), 1),
        "interval_seconds": INTERVAL_MS / 1000,
        "fraction_of_interval": round(best / (INTERVAL_MS / 1000), 3),
        "samples_written_last_round": samples,
        "alerts_sent": len(notifier.sent),
        "evaluation_failures": failures,
    }
    summary = (
        f"{args.rules} rules over {args.series} series: one round {best:.2f}s "
        f"({100 * best / (INTERVAL_MS / 1000):.0f}% of the 15s interval), "
        f"{results['us_per_input_series']} us per input series, {samples} samples written"
    )
    print(summary)
    print(results)
    if args.record:
        record("rules", results, summary)


if __name__ == "__main__":
    main()
