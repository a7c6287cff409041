"""Push a running load test's per-second results to signalroom by Prometheus remote write,
so dashboards show the peak while it happens."""

from __future__ import annotations

import math

import httpx

from signalroom.ingest.remote_write import SeriesInput, encode_write_request
from signalroom.loadtest.runner import RunStats

_HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def write_url(base: str) -> str:
    """``http://host:port`` becomes its remote-write endpoint; a full endpoint is kept."""
    base = base.rstrip("/")
    return base if base.endswith("/api/v1/write") else base + "/api/v1/write"


def second_series(stats: RunStats, seconds: range, labels: dict[str, str]) -> list[SeriesInput]:
    """One sample per finished second and metric, stamped at the end of that second."""
    requests: list[tuple[int, float]] = []
    failed: list[tuple[int, float]] = []
    dropped: list[tuple[int, float]] = []
    planned: list[tuple[int, float]] = []
    quantiles: dict[str, list[tuple[int, float]]] = {"0.5": [], "0.95": [], "0.99": []}
    stats.flush()
    for n in seconds:
        ts = int((stats.wall_start + n + 1) * 1000)
        second = stats.seconds.get(n)
        requests.append((ts, float(second.requests if second else 0)))
        failed.append((ts, float(second.failed if second else 0)))
        dropped.append((ts, float(second.dropped if second else 0)))
        planned.append((ts, stats.plan.rate_at(n + 0.5)))
        if second is not None and second.latency.count:
            values = second.latency.percentiles([50.0, 95.0, 99.0])
            for q, v in zip(quantiles, values, strict=True):
                if not math.isnan(v):
                    quantiles[q].append((ts, float(v)))
    out: list[SeriesInput] = [
        ({"__name__": "signalroom_loadtest_requests_per_second", **labels}, requests),
        ({"__name__": "signalroom_loadtest_failed_per_second", **labels}, failed),
        ({"__name__": "signalroom_loadtest_dropped_per_second", **labels}, dropped),
        ({"__name__": "signalroom_loadtest_planned_rate", **labels}, planned),
    ]
    out += [
        ({"__name__": "signalroom_loadtest_latency_seconds", "quantile": q, **labels}, points)
        for q, points in quantiles.items()
        if points
    ]
    return out


class ResultPusher:
    """Pushes each newly finished second once; failures are counted, never fatal."""

    def __init__(self, url: str, labels: dict[str, str], *, token: str | None = None) -> None:
        self.url = write_url(url)
        self.labels = labels
        self.headers = dict(_HEADERS)
        if token:
            self.headers["Authorization"] = f"Bearer {token}"
        self.next_second = 0
        self.pushed = 0
        self.failures = 0
        self.last_error = ""
        self._client = httpx.AsyncClient(timeout=5.0)

    async def push(self, stats: RunStats, *, final: bool = False) -> None:
        """Send the seconds finished since the last push (on ``final``, the partial one too)."""
        elapsed = stats.elapsed()
        upto = math.ceil(elapsed) if final else int(elapsed)
        if upto <= self.next_second:
            return
        seconds = range(self.next_second, upto)
        body = encode_write_request(second_series(stats, seconds, self.labels))
        try:
            response = await self._client.post(self.url, content=body, headers=self.headers)
        except httpx.HTTPError as exc:
            self.failures += 1
            self.last_error = f"{type(exc).__name__}: {exc}"
            return
        if response.status_code >= 300:
            self.failures += 1
            self.last_error = f"HTTP {response.status_code}: {response.text[:200]}"
            return
        self.pushed += len(seconds)
        self.next_second = upto

    async def aclose(self) -> None:
        await self._client.aclose()
