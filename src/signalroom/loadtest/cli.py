"""``signalroom loadtest``: ramp to N x a baseline request rate against a URL, k6-style.

The lead mounts :func:`loadtest` on the main typer app (``app.command("loadtest")(loadtest)``).
Exit status 1 when a threshold fails, as with k6; 2 for a bad plan or option.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import signal
from pathlib import Path
from typing import Annotated
from urllib.parse import urlsplit

import typer
from rich.console import Console
from rich.live import Live

from signalroom.loadtest.plan import (
    LoadPlan,
    PlanError,
    Threshold,
    load_plan_file,
    parse_seconds,
    parse_threshold_option,
    ramp_plan,
)
from signalroom.loadtest.push import ResultPusher
from signalroom.loadtest.report import (
    evaluate_thresholds,
    print_summary,
    render_progress,
    summary,
)
from signalroom.loadtest.runner import RunStats, run_plan


def is_loopback_url(url: str) -> bool:
    """True when the URL's host is ``localhost`` or a loopback address (no DNS lookup)."""
    host = urlsplit(url).hostname or ""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _build_plan(
    url: str | None,
    plan_file: Path | None,
    baseline_rps: float,
    multiplier: float,
    ramp: str,
    hold: str,
    ramp_down: str | None,
    warmup: str,
    thresholds: list[str],
    max_in_flight: int | None,
    timeout: str | None,
    method: str | None,
) -> LoadPlan:
    extra: tuple[Threshold, ...] = tuple(parse_threshold_option(t) for t in thresholds)
    options = {
        "max_in_flight": max_in_flight,
        "timeout": parse_seconds(timeout) if timeout is not None else None,
        "method": method.upper() if method else None,
    }
    if plan_file is not None:
        return load_plan_file(plan_file, url=url, thresholds=extra, **options)
    if not url:
        raise PlanError("give a URL (or --plan with a 'url')")
    return ramp_plan(
        url,
        baseline_rps=baseline_rps,
        multiplier=multiplier,
        ramp=parse_seconds(ramp),
        hold=parse_seconds(hold),
        ramp_down=parse_seconds(ramp_down) if ramp_down is not None else None,
        warmup=parse_seconds(warmup),
        thresholds=extra,
        **{k: v for k, v in options.items() if v is not None},
    )


async def _run(
    plan: LoadPlan, console: Console, *, live_view: bool, pusher: ResultPusher | None
) -> RunStats:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    # Ctrl-C ends the schedule; the report still covers what ran.
    with contextlib.suppress(NotImplementedError, RuntimeError):
        loop.add_signal_handler(signal.SIGINT, stop.set)
    push_task: asyncio.Task[None] | None = None
    live = Live(console=console, refresh_per_second=4, transient=False)
    with live if live_view else contextlib.nullcontext():

        def tick(stats: RunStats) -> None:
            nonlocal push_task
            if live_view:
                live.update(render_progress(stats.snapshot(), plan.url))
            # One push at a time, so a slow signalroom never piles requests up.
            if pusher is not None and (push_task is None or push_task.done()):
                push_task = asyncio.create_task(pusher.push(stats))

        try:
            stats = await run_plan(plan, on_tick=tick, stop=stop)
        finally:
            loop.remove_signal_handler(signal.SIGINT)
        if live_view:
            live.update(render_progress(stats.snapshot(), plan.url))
    if pusher is not None:
        if push_task is not None:
            await push_task
        await pusher.push(stats, final=True)
        await pusher.aclose()
    return stats


def loadtest(
    url: Annotated[str | None, typer.Argument(help="URL to send requests to.")] = None,
    baseline_rps: Annotated[
        float, typer.Option("--baseline-rps", "-b", help="Baseline request rate (requests/s).")
    ] = 10.0,
    multiplier: Annotated[
        float,
        typer.Option(
            "--multiplier", "-n", help="Peak = multiplier x baseline (seasonal peaks: 3, 4, 5)."
        ),
    ] = 3.0,
    ramp: Annotated[
        str, typer.Option(help="Ramp-up time from baseline to peak (30s, 1m).")
    ] = "30s",
    hold: Annotated[str, typer.Option(help="How long to hold the peak.")] = "30s",
    ramp_down: Annotated[
        str | None, typer.Option(help="Ramp-down time back to baseline (default: --ramp).")
    ] = None,
    warmup: Annotated[str, typer.Option(help="Time at the baseline before ramping.")] = "0s",
    plan: Annotated[
        Path | None,
        typer.Option(
            "--plan",
            help="YAML plan with k6-like stages and thresholds (replaces the ramp options).",
        ),
    ] = None,
    threshold: Annotated[
        list[str] | None,
        typer.Option(
            "--threshold",
            "-t",
            help="k6 threshold as metric:expression, e.g. 'http_req_duration:p(95)<500' or "
            "'http_req_failed:rate<0.01'. Repeatable.",
        ),
    ] = None,
    max_in_flight: Annotated[
        int | None, typer.Option(help="Most requests in flight at once (default 100).")
    ] = None,
    timeout: Annotated[str | None, typer.Option(help="Per-request timeout (default 5s).")] = None,
    method: Annotated[str | None, typer.Option(help="HTTP method (default GET).")] = None,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print the report as JSON on stdout.")
    ] = False,
    push_to: Annotated[
        str | None,
        typer.Option(
            "--push-to", help="signalroom URL to push per-second results to (remote write)."
        ),
    ] = None,
    push_token: Annotated[
        str | None, typer.Option(envvar="SIGNALROOM_TOKEN", help="API token for --push-to.")
    ] = None,
    allow_remote: Annotated[
        bool,
        typer.Option(
            help="Allow a target that is not localhost/loopback (only load what you own)."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option(help="No live progress display.")] = False,
) -> None:
    """Ramp to N x a baseline request rate against a URL and report latency percentiles,
    throughput and errors; exit 1 when a threshold fails (as k6 does)."""
    err = Console(stderr=True, highlight=False)
    try:
        load_plan = _build_plan(
            url, plan, baseline_rps, multiplier, ramp, hold, ramp_down, warmup,
            threshold or [], max_in_flight, timeout, method,
        )  # fmt: skip
    except PlanError as exc:
        err.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    if not allow_remote and not is_loopback_url(load_plan.url):
        err.print(
            f"[red]error:[/red] {load_plan.url} is not a loopback address; "
            "pass --allow-remote to load a host you own"
        )
        raise typer.Exit(2)
    pusher = None
    if push_to:
        labels = {"job": "signalroom-loadtest", "target": load_plan.url}
        pusher = ResultPusher(push_to, labels, token=push_token)
    stats = asyncio.run(_run(load_plan, err, live_view=not quiet, pusher=pusher))
    results = evaluate_thresholds(stats, load_plan.thresholds)
    report = summary(stats, results)
    if pusher is not None:
        report["push"] = {"url": pusher.url, "seconds": pusher.pushed, "failures": pusher.failures}
        if pusher.failures:
            err.print(
                f"[yellow]push to {pusher.url} failed {pusher.failures}x:[/] {pusher.last_error}"
            )
    if json_output:
        typer.echo(json.dumps(report, indent=2))
    else:
        print_summary(Console(highlight=False), report)
    if not report["passed"]:
        raise typer.Exit(1)
