"""The load generator: an open-model arrival-rate runner on asyncio + httpx.

Requests start on the plan's schedule whether or not earlier ones have finished (an open
model, like k6's arrival-rate executors), up to ``max_in_flight`` at once; an arrival that
finds every slot taken is dropped and counted, as k6 counts ``dropped_iterations``.
Latencies go into log-bucketed histograms (HDR-like, about 1 % relative precision) so
percentiles so far cost the same at any request count.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import numpy as np
import numpy.typing as npt

from signalroom.loadtest.plan import LoadPlan

PERCENTILES = (50.0, 90.0, 95.0, 99.0)


class LatencyHistogram:
    """Latency counts in logarithmic buckets, like an HDR histogram.

    Bucket i holds values in ``[lowest * g**i, lowest * g**(i+1))`` with ``g = 1 + precision``,
    so a percentile read back is within ``precision / 2`` of a recorded value (relative).
    Count, sum, min and max are kept exactly.
    """

    def __init__(
        self, *, lowest: float = 1e-6, highest: float = 3600.0, precision: float = 0.01
    ) -> None:
        if not 0 < lowest < highest or precision <= 0:
            raise ValueError("need 0 < lowest < highest and precision > 0")
        self.lowest = lowest
        self._log_growth = math.log1p(precision)
        self._size = math.ceil(math.log(highest / lowest) / self._log_growth) + 1
        self.counts = np.zeros(self._size, dtype=np.int64)
        self.count = 0
        self.total = 0.0
        self.min = math.inf
        self.max = -math.inf

    def record(self, values: npt.ArrayLike) -> None:
        """Add latencies in seconds (any array-like); values outside the range are clamped."""
        arr = np.asarray(values, dtype=np.float64).ravel()
        if arr.size == 0:
            return
        clamped = np.maximum(arr, self.lowest)
        index = np.floor(np.log(clamped / self.lowest) / self._log_growth).astype(np.int64)
        np.clip(index, 0, self._size - 1, out=index)
        self.counts += np.bincount(index, minlength=self._size)
        self.count += int(arr.size)
        self.total += float(arr.sum())
        self.min = min(self.min, float(arr.min()))
        self.max = max(self.max, float(arr.max()))

    def merge(self, other: LatencyHistogram) -> None:
        if other.counts.shape != self.counts.shape or other.lowest != self.lowest:
            raise ValueError("histograms have different bucket layouts")
        self.counts += other.counts
        self.count += other.count
        self.total += other.total
        self.min = min(self.min, other.min)
        self.max = max(self.max, other.max)

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count else math.nan

    def percentiles(self, qs: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Nearest-rank percentiles (``qs`` in 0..100) in seconds; NaN when empty."""
        q = np.atleast_1d(np.asarray(qs, dtype=np.float64))
        if self.count == 0:
            return np.full(q.shape, math.nan)
        rank = np.clip(np.ceil(q / 100.0 * self.count), 1, self.count)
        cumulative = np.cumsum(self.counts)
        index = np.searchsorted(cumulative, rank, side="left")
        # The geometric middle of the bucket, but never outside what was seen.
        middle = self.lowest * np.exp((index + 0.5) * self._log_growth)
        return np.asarray(np.clip(middle, self.min, self.max))

    def percentile(self, q: float) -> float:
        return float(self.percentiles([q])[0])


def _second_histogram() -> LatencyHistogram:
    # Coarser buckets per second keep a long run's timeline small.
    return LatencyHistogram(precision=0.05)


@dataclass
class SecondStats:
    """What completed during one second of the run (by completion time)."""

    second: int
    started: int = 0
    requests: int = 0
    failed: int = 0
    dropped: int = 0
    latency: LatencyHistogram = field(default_factory=_second_histogram)


@dataclass
class Snapshot:
    """The run so far, for a live display."""

    elapsed: float
    duration: float
    planned_rate: float
    current_rate: float
    in_flight: int
    started: int
    requests: int
    failed: int
    dropped: int
    p95: float
    errors: dict[str, int]


def error_kind(status: int | None, exc: BaseException | None) -> str | None:
    """How a request failed (k6 counts statuses outside 200..399 as failed), or None."""
    if exc is not None:
        if isinstance(exc, httpx.TimeoutException | TimeoutError):
            return "timeout"
        if isinstance(exc, httpx.ConnectError):
            return "connection refused or reset"
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError | httpx.WriteError):
            return "connection error"
        return type(exc).__name__
    if status is not None and not 200 <= status < 400:
        return f"HTTP {status}"
    return None


class RunStats:
    """Counts and latencies of a running load test, updated as requests finish."""

    def __init__(self, plan: LoadPlan) -> None:
        self.plan = plan
        self.started_at = time.monotonic()
        self.wall_start = time.time()
        self.latency = LatencyHistogram()
        self.status_counts: Counter[int] = Counter()
        self.errors: Counter[str] = Counter()
        self.seconds: dict[int, SecondStats] = {}
        self.started = 0
        self.requests = 0
        self.failed = 0
        self.dropped = 0
        self.in_flight = 0
        self.interrupted = False
        self.finished_at: float | None = None
        # Latencies wait here and go into the histograms in vectorised batches.
        self._pending: dict[int, list[float]] = {}

    def elapsed(self) -> float:
        end = self.finished_at if self.finished_at is not None else time.monotonic()
        return end - self.started_at

    def _second(self, n: int) -> SecondStats:
        stats = self.seconds.get(n)
        if stats is None:
            stats = self.seconds[n] = SecondStats(n)
        return stats

    def on_start(self) -> None:
        self.started += 1
        self.in_flight += 1
        self._second(int(self.elapsed())).started += 1

    def on_drop(self) -> None:
        self.dropped += 1
        self._second(int(self.elapsed())).dropped += 1

    def on_done(self, latency: float, status: int | None, exc: BaseException | None) -> None:
        self.in_flight -= 1
        self.requests += 1
        second = self._second(int(self.elapsed()))
        second.requests += 1
        if status is not None:
            self.status_counts[status] += 1
        kind = error_kind(status, exc)
        if kind is not None:
            self.failed += 1
            second.failed += 1
            self.errors[kind] += 1
        self._pending.setdefault(second.second, []).append(latency)

    def flush(self) -> None:
        """Move pending latencies into the histograms."""
        pending, self._pending = self._pending, {}
        for second, values in pending.items():
            arr = np.asarray(values, dtype=np.float64)
            self.latency.record(arr)
            self.seconds[second].latency.record(arr)

    def current_rate(self) -> float:
        """Completions per second over the last whole second."""
        last = int(self.elapsed()) - 1
        stats = self.seconds.get(last)
        return float(stats.requests) if stats is not None else 0.0

    def snapshot(self) -> Snapshot:
        self.flush()
        elapsed = self.elapsed()
        return Snapshot(
            elapsed=elapsed,
            duration=self.plan.duration,
            planned_rate=self.plan.rate_at(elapsed),
            current_rate=self.current_rate(),
            in_flight=self.in_flight,
            started=self.started,
            requests=self.requests,
            failed=self.failed,
            dropped=self.dropped,
            p95=self.latency.percentile(95.0),
            errors=dict(self.errors.most_common(4)),
        )

    def timeline(self) -> list[SecondStats]:
        self.flush()
        return [self.seconds[n] for n in sorted(self.seconds)]


TickCallback = Callable[[RunStats], Awaitable[None] | None]


async def _one_request(client: httpx.AsyncClient, plan: LoadPlan, stats: RunStats) -> None:
    stats.on_start()
    began = time.perf_counter()
    status: int | None = None
    failure: BaseException | None = None
    try:
        # httpx times each phase (pool, connect, read) apart; the plan's timeout is for all.
        async with asyncio.timeout(plan.timeout):
            response = await client.request(plan.method, plan.url, headers=dict(plan.headers))
        status = response.status_code
    except httpx.HTTPError as exc:
        failure = exc
    except (TimeoutError, OSError) as exc:
        failure = exc
    finally:
        # A cancelled request (run interrupted) is still released, and counted as such.
        latency = time.perf_counter() - began
        if failure is None and status is None:
            failure = asyncio.CancelledError()
        stats.on_done(latency, status, failure)


async def run_plan(
    plan: LoadPlan,
    *,
    on_tick: TickCallback | None = None,
    tick: float = 0.25,
    stop: asyncio.Event | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> RunStats:
    """Send the plan's requests on schedule and return the statistics.

    ``on_tick`` runs every ``tick`` seconds (for progress and pushing). Setting ``stop``
    ends the schedule early; requests still in flight then get up to the plan's timeout.
    """
    offsets = plan.arrival_offsets()
    stats = RunStats(plan)
    limits = httpx.Limits(
        max_connections=plan.max_in_flight, max_keepalive_connections=plan.max_in_flight
    )
    timeout = httpx.Timeout(plan.timeout, pool=plan.timeout)
    tasks: set[asyncio.Task[None]] = set()
    loop = asyncio.get_running_loop()
    async with httpx.AsyncClient(limits=limits, timeout=timeout, transport=transport) as client:
        stats.started_at = time.monotonic()
        stats.wall_start = time.time()
        start = loop.time()
        next_tick = 0.0
        sent = 0
        try:
            while sent < len(offsets):
                if stop is not None and stop.is_set():
                    stats.interrupted = True
                    break
                now = loop.time() - start
                due = int(np.searchsorted(offsets, now, side="right"))
                for _ in range(sent, due):
                    if stats.in_flight >= plan.max_in_flight:
                        stats.on_drop()
                        continue
                    task = asyncio.create_task(_one_request(client, plan, stats))
                    tasks.add(task)
                    task.add_done_callback(tasks.discard)
                sent = max(sent, due)
                if now >= next_tick:
                    await _call(on_tick, stats)
                    next_tick = now + tick
                if sent < len(offsets):
                    wake = min(float(offsets[sent]), next_tick)
                    await asyncio.sleep(max(0.0, wake - (loop.time() - start)))
            # Drain: in-flight requests get the timeout (and a little) to finish.
            deadline = loop.time() + plan.timeout + 1.0
            while tasks and loop.time() < deadline:
                await asyncio.wait(set(tasks), timeout=min(tick, deadline - loop.time()))
                await _call(on_tick, stats)
        except asyncio.CancelledError:
            stats.interrupted = True
            raise
        finally:
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.gather(*tasks, return_exceptions=True)
            stats.finished_at = time.monotonic()
            stats.flush()
    return stats


async def _call(callback: TickCallback | None, stats: RunStats) -> None:
    if callback is None:
        return
    result = callback(stats)
    if result is not None:
        await result
