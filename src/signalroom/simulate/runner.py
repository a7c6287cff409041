"""The simulation loop: tick the companies on the compressed clock, apply the incident
schedule, and hand each tick's signals to the protocol senders."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

import httpx
from prometheus_client import CollectorRegistry, make_wsgi_app

from signalroom.loadtest.plan import ramp_plan
from signalroom.loadtest.push import ResultPusher
from signalroom.loadtest.runner import RunStats, run_plan
from signalroom.simulate.clock import DEFAULT_SPEED, SimClock, diurnal, rng_for
from signalroom.simulate.companies import Signals, Tick
from signalroom.simulate.companies.freshfoodz import FreshFoodz
from signalroom.simulate.companies.integration import IntegrationLayer
from signalroom.simulate.companies.marketplace import Marketplace
from signalroom.simulate.companies.webshop import WebShop
from signalroom.simulate.scenarios import Incident, active_scenarios, default_schedule, remaining
from signalroom.simulate.senders import (
    Sender,
    SenderStats,
    loki_payload,
    otlp_metrics_payload,
    otlp_traces_payload,
    posthog_payload,
    remote_write_payload,
    rum_payloads,
    sr_events_payload,
)

#: Port of the simulator's own scrape target (``/metrics``); the demo config scrapes it. The
#: same server answers the shop's product page (``/product/<id>``), the seasonal peak's target.
DEFAULT_METRICS_PORT = 9464
#: The seasonal peak: the load test's baseline rate on the product page and the multiplier
#: (Christmas, seed 002).
PEAK_BASELINE_RPS = 4.0
PEAK_MULTIPLIER = 5.0


@dataclass
class RunSummary:
    """What a run did: ticks, simulated time, scenarios seen and each protocol's counts."""

    ticks: int = 0
    sim_seconds: float = 0.0
    active: frozenset[str] = frozenset()
    scenarios_seen: list[str] = field(default_factory=list)
    senders: dict[str, SenderStats] = field(default_factory=dict)
    funnel_counts: dict[str, int] = field(default_factory=dict)
    metrics_url: str = ""
    loadtests: list[dict[str, Any]] = field(default_factory=list)
    """One entry per finished seasonal-peak load test: requests, failures, p95, pushed seconds."""


class Simulation:
    """The four companies, their scrape registry and the senders for one server."""

    def __init__(
        self,
        url: str,
        *,
        seed: int,
        speed: float,
        token: str | None = None,
        schedule: Sequence[Incident] | None = None,
        cycle: float | None = None,
    ) -> None:
        self.clock = SimClock(speed)
        self.registry = CollectorRegistry()
        self.webshop = WebShop(rng_for(seed, "webshop"), self.registry)
        self.companies: list[Any] = [
            FreshFoodz(rng_for(seed, "freshfoodz")),
            self.webshop,
            Marketplace(rng_for(seed, "marketplace")),
            IntegrationLayer(
                rng_for(seed, "integration"), self.webshop.requests, self.webshop.latency
            ),
        ]
        self.schedule = list(default_schedule() if schedule is None else schedule)
        self.cycle = cycle
        headers = {"User-Agent": "signalroom-simulate"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.client = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=10)
        self.api_key = token or "demo"
        self.url = url
        self.token = token
        self.shop_url: str | None = None
        self.peaks: list[threading.Thread] = []
        self.peak_stop = threading.Event()
        self.senders = {
            name: Sender(name, self.client)
            for name in (
                "remote_write", "otlp_metrics", "otlp_traces", "loki", "posthog", "events", "rum"
            )
        }  # fmt: skip
        self._metrics_app = make_wsgi_app(self.registry)
        self._latency_rng = random.Random(seed)
        self.start_ns = time.time_ns()
        self.last_real = self.clock.real_elapsed()
        self.summary = RunSummary(senders={k: s.stats for k, s in self.senders.items()})

    def step(self) -> Tick:
        """Advance every company by the real time since the last step and ship the signals."""
        real = self.clock.real_elapsed()
        sim_now = self.clock.sim_now()
        sim_seconds = self.clock.sim_elapsed()
        active = active_scenarios(self.schedule, sim_seconds, cycle=self.cycle)
        tick = Tick(
            now_ns=time.time_ns(),
            sim_time=sim_now,
            real_seconds=max(real - self.last_real, 1e-3),
            load=diurnal(sim_now),
            active=active,
        )
        self.last_real = real
        if "seasonal_peak" in active and "seasonal_peak" not in self.summary.active:
            left = remaining(self.schedule, "seasonal_peak", sim_seconds, cycle=self.cycle)
            self.start_peak(left / self.clock.speed)
        signals = Signals()
        for company in self.companies:
            signals.extend(company.tick(tick))
        self._ship(signals, tick.now_ns)
        summary = self.summary
        summary.ticks += 1
        summary.sim_seconds = sim_seconds
        summary.active = active
        summary.scenarios_seen += sorted(active - set(summary.scenarios_seen))
        summary.funnel_counts = dict(self.webshop.funnel_counts)
        return tick

    def _ship(self, s: Signals, now_ns: int) -> None:
        if s.remote_write:
            self.senders["remote_write"].submit(
                remote_write_payload(s.remote_write, now_ns // 10**6)
            )
        if s.otlp_metrics:
            self.senders["otlp_metrics"].submit(
                otlp_metrics_payload(s.otlp_metrics, self.start_ns, now_ns)
            )
        if s.spans:
            self.senders["otlp_traces"].submit(otlp_traces_payload(s.spans))
        if s.logs:
            self.senders["loki"].submit(loki_payload(s.logs))
        if s.posthog_events:
            self.senders["posthog"].submit(posthog_payload(s.posthog_events, self.api_key))
        if s.sr_events:
            self.senders["events"].submit(sr_events_payload(s.sr_events))
        for payload in rum_payloads(s.rum):
            self.senders["rum"].submit(payload)

    # ------------------------------------------------------------------ the shop and its peak

    def shop_app(
        self, environ: dict[str, Any], start_response: Callable[..., Any]
    ) -> Iterable[bytes]:
        """The scrape target's WSGI app: ``/metrics``, and the shop's product page, which
        counts into the web shop's golden signals like the simulated traffic does."""
        if not environ.get("PATH_INFO", "").startswith("/product/"):
            metrics: Iterable[bytes] = self._metrics_app(environ, start_response)
            return metrics
        seconds = self._latency_rng.lognormvariate(-3.5, 0.3)  # ~30 ms
        time.sleep(seconds)
        self.webshop.requests.labels("frontend", "GET", "/product/:id", "200").inc()
        self.webshop.latency.labels("frontend", "/product/:id").observe(seconds)
        start_response("200 OK", [("Content-Type", "text/html; charset=utf-8")])
        return [b"<!doctype html><title>SIMONE shop</title><h1>Spargel, 1 kg</h1>"]

    def start_peak(self, seconds: float) -> None:
        """Run ``signalroom loadtest``'s ramp against the product page for ``seconds`` (real),
        pushing its per-second results to signalroom, on a thread of its own."""
        if self.shop_url is None or seconds < 4:
            return
        plan = ramp_plan(
            f"{self.shop_url}/product/42", baseline_rps=PEAK_BASELINE_RPS,
            multiplier=PEAK_MULTIPLIER, ramp=seconds / 4, hold=seconds / 2, ramp_down=seconds / 4,
        )  # fmt: skip
        labels = {"test": "seasonal-peak", "season": "christmas", "target": "webshop"}

        async def main() -> None:
            pusher = ResultPusher(self.url, labels, token=self.token)
            pushing: asyncio.Task[None] | None = None
            stop = asyncio.Event()

            def tick(stats: RunStats) -> None:
                nonlocal pushing
                if self.peak_stop.is_set():
                    stop.set()
                if pushing is None or pushing.done():
                    pushing = asyncio.create_task(pusher.push(stats))

            stats = await run_plan(plan, on_tick=tick, stop=stop)
            if pushing is not None:
                await pushing
            await pusher.push(stats, final=True)
            await pusher.aclose()
            latency = stats.latency.percentiles([95.0])[0] if stats.latency.count else None
            self.summary.loadtests.append(
                {"requests": stats.requests, "failed": stats.failed,
                 "p95_seconds": latency, "pushed_seconds": pusher.pushed,
                 "push_failures": pusher.failures}
            )  # fmt: skip

        thread = threading.Thread(target=asyncio.run, args=(main(),), name="sim-peak", daemon=True)
        self.peaks.append(thread)
        thread.start()

    def close(self) -> None:
        self.peak_stop.set()
        for thread in self.peaks:
            thread.join(15)
        for sender in self.senders.values():
            sender.close()
        self.client.close()


def run(
    url: str,
    *,
    seed: int = 42,
    speed: float = DEFAULT_SPEED,
    duration: float | None = None,
    token: str | None = None,
    schedule: Sequence[Incident] | None = None,
    cycle: float | None = None,
    metrics_port: int | None = DEFAULT_METRICS_PORT,
    metrics_host: str = "127.0.0.1",
    tick_seconds: float = 1.0,
    stop: threading.Event | None = None,
    on_tick: Callable[[RunSummary], None] | None = None,
) -> RunSummary:
    """Simulate the seed companies against the signalroom at ``url``.

    ``speed`` is simulated seconds per real second; ``duration`` real seconds (``None``: until
    ``stop`` is set or the process is interrupted). ``schedule`` replaces the default incident
    schedule (simulated seconds); ``cycle`` repeats it every so many simulated seconds (``None``
    with a custom schedule: once; the default schedule repeats every 10 simulated hours).
    ``metrics_port`` serves the scrape target (``None``: none). Returns the run's summary."""
    if schedule is None and cycle is None:
        from signalroom.simulate.scenarios import CYCLE_SECONDS

        cycle = CYCLE_SECONDS
    sim = Simulation(url, seed=seed, speed=speed, token=token, schedule=schedule, cycle=cycle)
    server = None
    if metrics_port is not None:
        server = make_server(
            metrics_host, metrics_port, sim.shop_app, _ThreadingServer, handler_class=_Quiet
        )
        threading.Thread(target=server.serve_forever, name="sim-target", daemon=True).start()
        sim.shop_url = f"http://{metrics_host}:{server.server_port}"
        sim.summary.metrics_url = f"{sim.shop_url}/metrics"
    stop = stop or threading.Event()
    try:
        deadline = None if duration is None else time.monotonic() + duration
        while not stop.is_set():
            started = time.monotonic()
            sim.step()
            if on_tick is not None:
                on_tick(sim.summary)
            if deadline is not None and started >= deadline:
                break
            stop.wait(max(0.0, tick_seconds - (time.monotonic() - started)))
    finally:
        sim.close()
        if server is not None:
            server.shutdown()
            server.server_close()
    return sim.summary


class _ThreadingServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _Quiet(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass
