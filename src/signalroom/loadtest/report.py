"""Reports of a load test: k6-style metric values, thresholds, a live view and a summary."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from rich.console import Console, Group
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from signalroom.loadtest.plan import Threshold
from signalroom.loadtest.runner import PERCENTILES, RunStats, Snapshot


def metric_value(stats: RunStats, threshold: Threshold) -> float:
    """The observed value a threshold is checked against, in k6's units (ms for durations)."""
    latency = stats.latency
    elapsed = stats.elapsed()
    if threshold.metric == "http_req_duration":
        if threshold.aggregate == "p":
            assert threshold.percentile is not None
            seconds = latency.percentile(threshold.percentile)
        elif threshold.aggregate == "med":
            seconds = latency.percentile(50.0)
        elif threshold.aggregate == "avg":
            seconds = latency.mean
        elif threshold.aggregate == "min":
            seconds = latency.min if latency.count else math.nan
        else:
            seconds = latency.max if latency.count else math.nan
        return seconds * 1000.0
    if threshold.metric == "http_req_failed":
        return stats.failed / stats.requests if stats.requests else 0.0
    count = stats.requests if threshold.metric == "http_reqs" else stats.dropped
    if threshold.aggregate == "count":
        return float(count)
    return count / elapsed if elapsed > 0 else 0.0


@dataclass(frozen=True)
class ThresholdResult:
    """A threshold with the value it was checked against."""

    threshold: Threshold
    observed: float

    @property
    def ok(self) -> bool:
        # NaN (no requests completed) fails, as there is nothing to vouch for.
        return not math.isnan(self.observed) and self.threshold.passes(self.observed)


def evaluate_thresholds(
    stats: RunStats, thresholds: tuple[Threshold, ...]
) -> list[ThresholdResult]:
    stats.flush()
    return [ThresholdResult(t, metric_value(stats, t)) for t in thresholds]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) or math.isinf(seconds) else round(seconds * 1000.0, 3)


def summary(stats: RunStats, results: list[ThresholdResult]) -> dict[str, Any]:
    """Everything the final report shows, as plain JSON-able data."""
    stats.flush()
    plan = stats.plan
    elapsed = stats.elapsed()
    latency = stats.latency
    pcts = latency.percentiles(PERCENTILES)
    return {
        "url": plan.url,
        "method": plan.method,
        "planned": {
            "duration_s": plan.duration,
            "start_rate": plan.start_rate,
            "peak_rate": plan.peak_rate,
            "requests": round(plan.expected_requests),
            "stages": [{"duration_s": s.duration, "target": s.target} for s in plan.stages],
            "max_in_flight": plan.max_in_flight,
        },
        "duration_s": round(elapsed, 3),
        "interrupted": stats.interrupted,
        "requests": stats.requests,
        "started": stats.started,
        "failed": stats.failed,
        "dropped": stats.dropped,
        "error_rate": stats.failed / stats.requests if stats.requests else 0.0,
        "throughput_rps": stats.requests / elapsed if elapsed > 0 else 0.0,
        "peak_rps": max((s.requests for s in stats.seconds.values()), default=0),
        "latency_ms": {
            "min": _ms(latency.min) if latency.count else None,
            "avg": _ms(latency.mean),
            **{f"p{q:g}": _ms(float(v)) for q, v in zip(PERCENTILES, pcts, strict=True)},
            "max": _ms(latency.max) if latency.count else None,
        },
        "status_codes": {str(k): v for k, v in sorted(stats.status_counts.items())},
        "errors": dict(stats.errors.most_common()),
        "thresholds": [
            {
                "metric": r.threshold.metric,
                "threshold": r.threshold.expression,
                "observed": None if math.isnan(r.observed) else r.observed,
                "ok": r.ok,
            }
            for r in results
        ],
        "passed": all(r.ok for r in results),
    }


def _fmt_ms(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} ms"


def render_progress(snap: Snapshot, url: str) -> Group:
    """The live view: progress through the plan, rates, in-flight, p95 so far and errors."""
    done = min(snap.elapsed, snap.duration)
    # A grid row keeps the bar on the title's line; a bare ProgressBar ends no line.
    head = Table.grid(padding=(0, 1))
    head.add_row(
        Text.assemble(("loadtest ", "bold"), (url, "cyan")),
        ProgressBar(total=snap.duration or 1.0, completed=done, width=30),
        f"{done:5.1f}s / {snap.duration:.0f}s",
    )
    table = Table(box=None, show_header=True, pad_edge=False)
    for column in (
        "planned rps",
        "actual rps",
        "in flight",
        "requests",
        "failed",
        "dropped",
        "p95",
    ):
        table.add_column(column, justify="right")
    p95 = "-" if math.isnan(snap.p95) else f"{snap.p95 * 1000:,.1f} ms"
    table.add_row(
        f"{snap.planned_rate:,.1f}",
        f"{snap.current_rate:,.0f}",
        str(snap.in_flight),
        f"{snap.requests:,}",
        Text(f"{snap.failed:,}", style="red" if snap.failed else ""),
        Text(f"{snap.dropped:,}", style="yellow" if snap.dropped else ""),
        p95,
    )
    parts: list[Any] = [head, table]
    if snap.errors:
        parts.append(
            Text("errors: " + ", ".join(f"{k} x{v}" for k, v in snap.errors.items()), style="red")
        )
    return Group(*parts)


def print_summary(console: Console, report: dict[str, Any]) -> None:
    """The final k6-like summary table."""
    table = Table(title=f"{report['method']} {report['url']}", title_justify="left")
    table.add_column("metric")
    table.add_column("value", justify="right")
    latency = report["latency_ms"]
    rows = [
        (
            "duration",
            f"{report['duration_s']:.1f} s" + (" (interrupted)" if report["interrupted"] else ""),
        ),
        (
            "requests",
            f"{report['requests']:,} ({report['throughput_rps']:,.1f}/s, "
            f"peak {report['peak_rps']:,}/s)",
        ),
        ("failed", f"{report['failed']:,} ({report['error_rate']:.2%})"),
        ("dropped (all slots busy)", f"{report['dropped']:,}"),
    ]
    rows += [(f"latency {name}", _fmt_ms(value)) for name, value in latency.items()]
    for name, value in rows:
        table.add_row(name, value)
    if report["status_codes"]:
        table.add_row(
            "status codes", ", ".join(f"{k}: {v:,}" for k, v in report["status_codes"].items())
        )
    for kind, count in report["errors"].items():
        table.add_row(Text(f"error: {kind}", style="red"), f"{count:,}")
    console.print(table)
    for item in report["thresholds"]:
        mark = Text("✓", style="green") if item["ok"] else Text("✗", style="bold red")
        observed = "n/a" if item["observed"] is None else f"{item['observed']:,.4g}"
        console.print(
            Text.assemble(mark, f" {item['metric']}: {item['threshold']}  (observed {observed})")
        )
    if report["thresholds"] and not report["passed"]:
        console.print(Text("some thresholds failed", style="bold red"))
