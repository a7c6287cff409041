"""``signalroom simulate``: the command-line face of the simulator, with a live status table.

The lead mounts :func:`simulate` on the main typer app (``app.command("simulate")(simulate)``).
"""

from __future__ import annotations

import threading
from typing import Annotated

import typer
from rich.console import Console
from rich.live import Live
from rich.table import Table

from signalroom.simulate.clock import DEFAULT_SPEED
from signalroom.simulate.runner import DEFAULT_METRICS_PORT, RunSummary, run
from signalroom.simulate.scenarios import SCENARIOS, Incident, parse_forced


def _status(summary: RunSummary, url: str) -> Table:
    hours, rest = divmod(int(summary.sim_seconds), 3600)
    table = Table(
        title=f"signalroom simulate -> {url}   simulated {hours}h{rest // 60:02d}m   "
        f"incidents: {', '.join(sorted(summary.active)) or 'none'}",
        title_justify="left",
    )
    for column in ("protocol", "sent", "failed", "dropped", "last error"):
        table.add_column(column)
    for name, stats in summary.senders.items():
        table.add_row(
            name, str(stats.sent), str(stats.failed), str(stats.dropped), stats.last_error[:60]
        )
    counts = summary.funnel_counts
    if counts.get("product_viewed"):
        table.caption = "web-shop funnel: " + " -> ".join(f"{k} {v}" for k, v in counts.items())
    if summary.loadtests:
        last = summary.loadtests[-1]
        table.caption = (table.caption or "") + (
            f"\nlast seasonal-peak load test: {last['requests']} requests, "
            f"{last['failed']} failed (Season War Room dashboard)"
        )
    return table


def simulate(
    url: Annotated[
        str, typer.Option(help="Base URL of the signalroom server to send to.")
    ] = "http://127.0.0.1:8290",
    seed: Annotated[int, typer.Option(help="Random seed: same seed, same traffic.")] = 42,
    speed: Annotated[
        float, typer.Option(help="Simulated seconds per real second (60: an hour a minute).")
    ] = DEFAULT_SPEED,
    duration: Annotated[
        float | None, typer.Option(help="Stop after this many real seconds (default: never).")
    ] = None,
    token: Annotated[
        str | None, typer.Option(envvar="SIGNALROOM_TOKEN", help="API token with write scope.")
    ] = None,
    metrics_port: Annotated[
        int, typer.Option(help="Port of the simulator's own /metrics scrape target (0: none).")
    ] = DEFAULT_METRICS_PORT,
    incident: Annotated[
        list[str] | None,
        typer.Option(
            help="Run only these incidents, one after another from 5 simulated minutes in, "
            f"instead of the schedule. Known: {', '.join(SCENARIOS)}."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No live status display.")] = False,
) -> None:
    """Send realistic, seeded traffic of the seed companies (CRM, web shop, marketplace,
    integration layer) with scheduled incidents to a running signalroom."""
    schedule = None
    if incident:
        try:
            names = parse_forced(incident)
        except ValueError as exc:
            raise typer.BadParameter(str(exc), param_hint="--incident") from None
        hour = 3600.0
        schedule = [Incident(n, 300 + i * 2 * hour, hour) for i, n in enumerate(names)]
    console = Console(stderr=True)
    stop = threading.Event()
    with Live(console=console, refresh_per_second=2, transient=False) as live:

        def show(summary: RunSummary) -> None:
            if not quiet:
                live.update(_status(summary, url))

        try:
            summary = run(
                url,
                seed=seed,
                speed=speed,
                duration=duration,
                token=token,
                schedule=schedule,
                metrics_port=metrics_port or None,
                stop=stop,
                on_tick=show,
            )
        except KeyboardInterrupt:
            stop.set()
            return
        except OSError as exc:
            console.print(f"[red]cannot start the scrape target on port {metrics_port}: {exc}")
            raise typer.Exit(1) from None
    failed = sum(s.failed for s in summary.senders.values())
    console.print(f"done: {summary.ticks} ticks, {summary.sim_seconds / 3600:.1f} simulated hours, "
                  f"{failed} failed requests")  # fmt: skip
    if failed:
        raise typer.Exit(1)
