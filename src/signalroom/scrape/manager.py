"""The scrape manager: one asyncio loop per target, as Prometheus's scrape manager runs them.

Each loop fetches its target every interval (first at an offset derived from the target's
hash, so targets spread over the interval), parses the exposition, merges target labels
(``honor_labels``), applies ``metric_relabel_configs`` and the limits, and hands one columnar
batch per scrape to the ``Appender``: the samples, staleness markers for series that went away,
and the synthetic ``up``, ``scrape_duration_seconds``, ``scrape_samples_scraped``,
``scrape_samples_post_metric_relabeling`` and ``scrape_series_added`` series.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import ssl
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from prometheus_client import Counter, Gauge, Histogram

import signalroom
from signalroom.config import GlobalConfig
from signalroom.model.labels import METRIC_NAME, Labels
from signalroom.scrape.appender import STALE_NAN, Appender, MetricMetadata
from signalroom.scrape.config import ScrapeConfig, TLSConfig, parse_scrape_configs
from signalroom.scrape.discovery import (
    FileDiscovery,
    Target,
    TargetGroup,
    build_targets,
    offset_seed,
    static_groups,
)
from signalroom.scrape.parser import (
    NO_TIMESTAMP,
    ParsedScrape,
    ParseError,
    UnsupportedContentType,
    parse,
)
from signalroom.scrape.relabel import process_dict

log = logging.getLogger("signalroom.scrape")

# --- self-metrics (named after Prometheus's prometheus_target_* ones) -------------------
SCRAPES_EXCEEDED_SAMPLE_LIMIT = Counter(
    "signalroom_scrape_target_scrapes_exceeded_sample_limit_total",
    "Scrapes that hit the sample limit and were rejected.",
)
SCRAPES_EXCEEDED_LABEL_LIMITS = Counter(
    "signalroom_scrape_target_scrapes_exceeded_label_limits_total",
    "Scrapes that hit a label limit and were rejected.",
)
SCRAPES_EXCEEDED_BODY_SIZE_LIMIT = Counter(
    "signalroom_scrape_target_scrapes_exceeded_body_size_limit_total",
    "Scrapes whose body was larger than body_size_limit.",
)
SCRAPES_DUPLICATE_TIMESTAMP = Counter(
    "signalroom_scrape_target_scrapes_sample_duplicate_timestamp_total",
    "Samples dropped because their series appeared twice in one scrape.",
)
TARGET_LIMIT_EXCEEDED = Counter(
    "signalroom_scrape_target_scrape_pool_exceeded_target_limit_total",
    "Target syncs of a job that found more targets than target_limit.",
)
SCRAPE_POOL_RELOADS = Counter(
    "signalroom_scrape_target_scrape_pool_reloads_total", "Reloads of scrape pools."
)
SCRAPES_TOTAL = Counter("signalroom_scrape_scrapes_total", "Scrapes by outcome.", ["job", "result"])
ACTIVE_TARGETS = Gauge("signalroom_scrape_targets", "Active scrape targets per job.", ["job"])
SCRAPE_DURATION = Histogram(
    "signalroom_scrape_duration_seconds",
    "Time to fetch, parse and append one scrape.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

ClientFactory = Callable[[ScrapeConfig], httpx.AsyncClient]
_DROPPED = Labels({"__dropped__": "1"})  # cache marker: relabeling dropped this series


class ScrapeFailure(Exception):
    """A scrape failed; the message is what /api/v1/targets shows as lastError."""


class _LimitBreach:
    __slots__ = ("message",)

    def __init__(self, message: str) -> None:
        self.message = message


def build_http_client(cfg: ScrapeConfig) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` with the job's TLS, proxy and redirect settings."""
    return httpx.AsyncClient(
        verify=_ssl_context(cfg),
        follow_redirects=cfg.follow_redirects,
        proxy=cfg.proxy_url or None,
        trust_env=cfg.proxy_from_environment,
        # One client per target: httpcore's pool scans every connection per request, which
        # grows quadratic when a thousand targets share one pool.
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=1),
    )


def _ssl_context(cfg: ScrapeConfig) -> ssl.SSLContext:
    return ssl_context(cfg.tls_config)


@functools.lru_cache(maxsize=64)
def ssl_context(tls: TLSConfig) -> ssl.SSLContext:
    """The SSL context of a Prometheus ``tls_config`` (scrapes and Alertmanager clients)."""
    # Loading the CA store costs tens of ms: one context per TLS config, shared by clients.
    ctx = ssl.create_default_context(cafile=tls.ca_file or None, cadata=tls.ca or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    versions = {
        "TLS10": ssl.TLSVersion.TLSv1,
        "TLS11": ssl.TLSVersion.TLSv1_1,
        "TLS12": ssl.TLSVersion.TLSv1_2,
        "TLS13": ssl.TLSVersion.TLSv1_3,
    }
    if tls.min_version:
        ctx.minimum_version = versions[tls.min_version]
    if tls.max_version:
        ctx.maximum_version = versions[tls.max_version]
    if tls.cert_file and tls.key_file:
        ctx.load_cert_chain(tls.cert_file, tls.key_file)
    elif tls.cert or tls.key:
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            cert = Path(tmp) / "cert.pem"
            key = Path(tmp) / "key.pem"
            cert.write_text(tls.cert or Path(tls.cert_file or "").read_text())
            key.write_text(tls.key or Path(tls.key_file or "").read_text())
            ctx.load_cert_chain(str(cert), str(key))
    return ctx


def _read_secret(path: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ScrapeFailure(f"unable to read secret file {path}: {exc.strerror}") from None


def request_headers(cfg: ScrapeConfig, timeout_s: float) -> dict[str, str]:
    """Headers of a scrape request, as Prometheus sends them (credentials read now)."""
    headers = {
        "Accept": cfg.accept_header,
        "Accept-Encoding": "gzip" if cfg.enable_compression else "identity",
        "User-Agent": f"signalroom/{signalroom.__version__}",
        "X-Prometheus-Scrape-Timeout-Seconds": f"{timeout_s:g}",
    }
    if cfg.authorization is not None:
        credentials = cfg.authorization.credentials or ""
        if cfg.authorization.credentials_file:
            credentials = _read_secret(cfg.authorization.credentials_file)
        headers["Authorization"] = f"{cfg.authorization.type} {credentials}"
    elif cfg.bearer_token or cfg.bearer_token_file:
        token = cfg.bearer_token or _read_secret(cfg.bearer_token_file or "")
        headers["Authorization"] = f"Bearer {token}"
    elif cfg.basic_auth is not None:
        user = cfg.basic_auth.username
        if cfg.basic_auth.username_file:
            user = _read_secret(cfg.basic_auth.username_file)
        password = cfg.basic_auth.password or ""
        if cfg.basic_auth.password_file:
            password = _read_secret(cfg.basic_auth.password_file)
        headers["Authorization"] = httpx.BasicAuth(user, password)._auth_header
    for name, spec in (cfg.http_headers or {}).items():
        if isinstance(spec, Mapping) and spec.get("values"):
            headers[name] = ", ".join(str(v) for v in spec["values"])
    return headers


# --- one target -------------------------------------------------------------------------


@dataclass(frozen=True)
class TargetStatus:
    """What /api/v1/targets shows about one target."""

    scrape_pool: str
    scrape_url: str
    labels: dict[str, str]
    discovered_labels: dict[str, str]
    health: str
    last_error: str
    last_scrape: float | None
    last_scrape_duration: float
    scrape_interval_ms: int
    scrape_timeout_ms: int

    def to_api(self) -> dict[str, Any]:
        """The Prometheus HTTP API's ``activeTargets`` entry."""
        last = (
            datetime.fromtimestamp(self.last_scrape, UTC).isoformat().replace("+00:00", "Z")
            if self.last_scrape is not None
            else "0001-01-01T00:00:00Z"
        )
        from signalroom.units import format_duration_ms

        return {
            "discoveredLabels": self.discovered_labels,
            "labels": self.labels,
            "scrapePool": self.scrape_pool,
            "scrapeUrl": self.scrape_url,
            "globalUrl": self.scrape_url,
            "lastError": self.last_error,
            "lastScrape": last,
            "lastScrapeDuration": self.last_scrape_duration,
            "health": self.health,
            "scrapeInterval": format_duration_ms(self.scrape_interval_ms),
            "scrapeTimeout": format_duration_ms(self.scrape_timeout_ms),
        }


class ScrapeLoop:
    """Scrapes one target every interval and appends what it finds."""

    def __init__(
        self,
        target: Target,
        cfg: ScrapeConfig,
        client: httpx.AsyncClient,
        appender: Appender,
        *,
        tenant: str,
        seed: int,
    ) -> None:
        self.target = target
        self.cfg = cfg
        self.client = client
        self.appender = appender
        self.tenant = tenant
        self.seed = seed
        self.health = "unknown"
        self.last_error = ""
        self.last_scrape: float | None = None
        self.last_duration = 0.0
        self.forced_error: str | None = None
        # series of the previous scrape (for staleness), and the label cache by series key
        self.previous: dict[Labels, None] = {}
        self.cache: dict[str, Labels | _LimitBreach] = {}
        self._target_labels = target.public_labels
        self._task: asyncio.Task[None] | None = None
        self._last_scrape_ms: int | None = None
        self.owns_client = False

    # --- lifecycle --------------------------------------------------------------------
    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"scrape {self.target.url}")

    async def stop(self, *, staleness: bool) -> None:
        """Stop the loop; with ``staleness`` mark every series stale as Prometheus does when
        a target goes away: at the next scrape time, after waiting two intervals in case the
        target comes back under a new loop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.owns_client:
            await self.client.aclose()
        if staleness and self._last_scrape_ms is not None:
            interval = self.target.interval_ms / 1000
            await asyncio.sleep(interval)
            stale_ms = int(time.time() * 1000)
            await asyncio.sleep(interval * 1.1)
            await self._append_end_of_run(stale_ms)

    def inherit(self, other: ScrapeLoop) -> None:
        """Continue from another loop of the same target (a reload), keeping staleness state."""
        self.previous = other.previous
        self._last_scrape_ms = other._last_scrape_ms
        self.health, self.last_error = other.health, other.last_error
        self.last_scrape, self.last_duration = other.last_scrape, other.last_duration
        if other.cfg.honor_labels == self.cfg.honor_labels and (
            other.cfg.metric_relabel_configs == self.cfg.metric_relabel_configs
        ):
            self.cache = other.cache

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.target.interval_ms / 1000
        next_at = loop.time() + self.target.offset_s(interval, self.seed)
        while True:
            await asyncio.sleep(max(0.0, next_at - loop.time()))
            try:
                await self.scrape_once()
            except asyncio.CancelledError:
                raise
            except Exception:  # never let one bad scrape end the loop
                log.exception("scrape loop error", extra={"target": self.target.url})
            next_at += interval
            now = loop.time()
            if next_at <= now:  # fell behind: skip the missed ticks, keep the phase
                next_at += ((now - next_at) // interval + 1) * interval

    def status(self) -> TargetStatus:
        return TargetStatus(
            scrape_pool=self.cfg.job_name,
            scrape_url=self.target.url,
            labels=self.target.public_labels.to_dict(),
            discovered_labels=self.target.discovered_labels.to_dict(),
            health=self.health,
            last_error=self.last_error,
            last_scrape=self.last_scrape,
            last_scrape_duration=self.last_duration,
            scrape_interval_ms=self.target.interval_ms,
            scrape_timeout_ms=self.target.timeout_ms,
        )

    # --- one scrape -------------------------------------------------------------------
    async def fetch(self) -> tuple[bytes, str]:
        timeout = self.target.timeout_ms / 1000
        headers = request_headers(self.cfg, timeout)
        try:
            response = await self.client.get(self.target.url, headers=headers, timeout=timeout)
        except httpx.TimeoutException:
            raise ScrapeFailure(f'Get "{self.target.url}": context deadline exceeded') from None
        except httpx.HTTPError as exc:
            raise ScrapeFailure(f'Get "{self.target.url}": {exc}') from None
        if response.status_code != 200:
            raise ScrapeFailure(
                f"server returned HTTP status {response.status_code} {response.reason_phrase}"
            )
        body = response.content
        if self.cfg.body_size_limit and len(body) > self.cfg.body_size_limit:
            SCRAPES_EXCEEDED_BODY_SIZE_LIMIT.inc()
            raise ScrapeFailure(
                f"body size limit exceeded: {len(body)} bytes > {self.cfg.body_size_limit}"
            )
        return body, response.headers.get("content-type", "")

    async def scrape_once(self) -> None:
        """Fetch, parse and append one scrape (including the synthetic series)."""
        started = time.time()
        ts_ms = int(started * 1000)
        parsed: ParsedScrape | None = None
        error = self.forced_error
        body = b""
        content_type = ""
        if error is None:
            try:
                body, content_type = await self.fetch()
            except ScrapeFailure as exc:
                error = str(exc)
        scraped = 0
        post_relabel = 0
        added = 0
        series: list[Labels] = []
        values = np.empty(0, np.float64)
        stamps = np.empty(0, np.int64)
        metadata: list[MetricMetadata] = []
        current: dict[Labels, None] = {}
        if error is None:
            try:
                parsed = parse(
                    body,
                    content_type,
                    known=self.cache,
                    fallback=_fallback_format(self.cfg.fallback_scrape_protocol),
                )
                scraped = len(parsed)
                series, values, stamps, metadata, current, post_relabel = self._process(
                    parsed, ts_ms
                )
            except (ParseError, UnsupportedContentType, ScrapeFailure) as exc:
                error = str(exc)
        if error is not None:
            current = {}
            series, values, stamps, metadata = [], np.empty(0), np.empty(0, np.int64), []
        added = sum(1 for s in current if s not in self.previous) if current else 0
        stale = [s for s in self.previous if s not in current]
        self.previous = current
        duration = time.time() - started
        synthetic = self._synthetic(
            up=0.0 if error else 1.0,
            duration=duration,
            scraped=scraped,
            post=post_relabel,
            added=added,
        )
        all_series = [*series, *stale, *(s for s, _ in synthetic)]
        all_values = np.concatenate(
            [
                values,
                np.full(len(stale), STALE_NAN, np.float64),
                np.array([v for _, v in synthetic], np.float64),
            ]
        )
        all_stamps = np.concatenate([stamps, np.full(len(stale) + len(synthetic), ts_ms, np.int64)])
        await self.appender.append(self.tenant, all_series, all_stamps, all_values, metadata)
        self._last_scrape_ms = ts_ms
        self.health = "down" if error else "up"
        self.last_error = error or ""
        self.last_scrape = started
        self.last_duration = duration
        SCRAPES_TOTAL.labels(self.cfg.job_name, "error" if error else "success").inc()
        SCRAPE_DURATION.observe(time.time() - started)

    def _process(
        self, parsed: ParsedScrape, ts_ms: int
    ) -> tuple[list[Labels], np.ndarray, np.ndarray, list[MetricMetadata], dict[Labels, None], int]:
        """Label merging, metric relabeling, limits, duplicates, timestamps."""
        cache = self.cache
        keys = parsed.series
        finals: list[Labels | _LimitBreach | None] = [cache.get(k) for k in keys]
        if None in finals:
            for i, key in enumerate(keys):
                if finals[i] is None:
                    result = self._final_labels(parsed.labels_of(key))
                    cache[key] = result
                    finals[i] = result
        breaches = [f for f in finals if isinstance(f, _LimitBreach)]
        if breaches:
            SCRAPES_EXCEEDED_LABEL_LIMITS.inc()
            raise ScrapeFailure(breaches[0].message)
        kept = [i for i, f in enumerate(finals) if f is not _DROPPED]
        if self.cfg.sample_limit and len(kept) > self.cfg.sample_limit:
            SCRAPES_EXCEEDED_SAMPLE_LIMIT.inc()
            raise ScrapeFailure("sample limit exceeded")
        if len(kept) == len(finals):
            series: list[Labels] = finals  # type: ignore[assignment]
            values, stamps = parsed.values, parsed.timestamps_ms
        else:
            index = np.array(kept, dtype=np.int64)
            series = [finals[i] for i in kept]  # type: ignore[misc]
            values, stamps = parsed.values[index], parsed.timestamps_ms[index]
        unique = dict.fromkeys(series)
        if len(unique) != len(series):
            first: dict[Labels, int] = {}
            for i, s in enumerate(series):
                first.setdefault(s, i)
            keep_idx = np.array(sorted(first.values()), dtype=np.int64)
            SCRAPES_DUPLICATE_TIMESTAMP.inc(len(series) - len(keep_idx))
            series = [series[i] for i in keep_idx]
            values, stamps = values[keep_idx], stamps[keep_idx]
        explicit = stamps != NO_TIMESTAMP
        if self.cfg.honor_timestamps:
            stamps = np.where(explicit, stamps, np.int64(ts_ms))
        else:
            stamps = np.full(len(series), ts_ms, np.int64)
        if (
            self.cfg.honor_timestamps
            and not self.cfg.track_timestamps_staleness
            and (explicit.any())
        ):
            current = dict.fromkeys(
                s for s, e in zip(series, explicit.tolist(), strict=True) if not e
            )
        else:
            current = unique if len(unique) == len(series) else dict.fromkeys(series)
        return series, values, stamps, list(parsed.metadata.values()), current, len(kept)

    def _final_labels(self, exposed: Labels) -> Labels | _LimitBreach:
        """Merge target labels into an exposed label set, relabel, check the label limits."""
        target = self._target_labels
        work = exposed.to_dict()
        if self.cfg.honor_labels:
            for name, value in target:
                if name not in work:
                    work[name] = value
        else:
            conflicts = [(n, work[n]) for n, _ in target if work.get(n)]
            for name, value in target:
                work[name] = value
            for name, value in sorted(conflicts, key=lambda c: len(c[0])):
                new = name
                while True:
                    new = "exported_" + new
                    if not work.get(new):
                        work[new] = value
                        break
        if self.cfg.metric_relabel_configs and not process_dict(
            work, self.cfg.metric_relabel_configs
        ):
            return _DROPPED
        labels = Labels(work)
        if not labels.name:
            return _DROPPED
        return self._check_limits(labels)

    def _check_limits(self, labels: Labels) -> Labels | _LimitBreach:
        cfg = self.cfg
        metric = labels.name[:50]
        if cfg.label_limit and len(labels) > cfg.label_limit:
            return _LimitBreach(
                f"label_limit exceeded (metric: {metric}, number of labels: {len(labels)}, "
                f"limit: {cfg.label_limit})"
            )
        if cfg.label_name_length_limit or cfg.label_value_length_limit:
            for name, value in labels:
                if cfg.label_name_length_limit and len(name) > cfg.label_name_length_limit:
                    return _LimitBreach(
                        f"label_name_length_limit exceeded (metric: {metric}, label name: "
                        f"{name[:50]}, length: {len(name)}, limit: "
                        f"{cfg.label_name_length_limit})"
                    )
                if cfg.label_value_length_limit and len(value) > cfg.label_value_length_limit:
                    return _LimitBreach(
                        f"label_value_length_limit exceeded (metric: {metric}, label name: "
                        f"{name[:50]}, value: {value[:50]!r}, length: {len(value)}, limit: "
                        f"{cfg.label_value_length_limit})"
                    )
        return labels

    def _synthetic(
        self, *, up: float, duration: float, scraped: int, post: int, added: int
    ) -> list[tuple[Labels, float]]:
        base = self._target_labels.to_dict()

        def named(name: str) -> Labels:
            return Labels({**base, METRIC_NAME: name})

        return [
            (named("up"), up),
            (named("scrape_duration_seconds"), duration),
            (named("scrape_samples_scraped"), float(scraped)),
            (named("scrape_samples_post_metric_relabeling"), float(post)),
            (named("scrape_series_added"), float(added)),
        ]

    async def _append_end_of_run(self, stale_ms: int) -> None:
        stale = list(self.previous)
        stale.extend(s for s, _ in self._synthetic(up=0, duration=0, scraped=0, post=0, added=0))
        self.previous = {}
        await self.appender.append(
            self.tenant,
            stale,
            np.full(len(stale), stale_ms, np.int64),
            np.full(len(stale), STALE_NAN, np.float64),
            [],
        )


def _fallback_format(protocol: str | None) -> Any:
    if protocol is None:
        return None
    return "openmetrics" if protocol.startswith("OpenMetrics") else "prometheus"


# --- one job ----------------------------------------------------------------------------


class ScrapePool:
    """The targets of one job: discovery, target relabeling, and their loops."""

    def __init__(self, cfg: ScrapeConfig, manager: ScrapeManager) -> None:
        self.cfg = cfg
        self.manager = manager
        self.loops: dict[int, ScrapeLoop] = {}
        self.dropped: list[Labels] = []
        self.discovery_errors: list[str] = []
        self.file_sds = [FileDiscovery(sd) for sd in cfg.file_sd_configs]
        self._watch: asyncio.Task[None] | None = None
        self._stopping: set[asyncio.Task[None]] = set()

    def groups(self) -> list[TargetGroup]:
        groups = static_groups(self.cfg)
        for sd in self.file_sds:
            groups.extend(sd.groups())
        return groups

    async def start(self, inherit: Mapping[int, ScrapeLoop] | None = None) -> None:
        for sd in self.file_sds:
            sd.refresh(force=True)
        await self.sync(inherit or {})
        if self.file_sds:
            self._watch = asyncio.create_task(
                self._watch_files(), name="file_sd " + self.cfg.job_name
            )

    async def _watch_files(self) -> None:
        while True:
            await asyncio.sleep(self.manager.file_sd_poll_interval)
            changed = False
            for sd in self.file_sds:
                changed |= sd.refresh()
            if changed:
                await self.sync({})

    async def sync(self, inherit: Mapping[int, ScrapeLoop]) -> None:
        """Start loops for new targets, stop (with staleness) those that went away."""
        result = build_targets(self.groups(), self.cfg)
        self.dropped = result.dropped[: self.cfg.keep_dropped_targets or None]
        self.discovery_errors = result.errors
        for message in result.errors:
            log.warning("target dropped: %s", message, extra={"job": self.cfg.job_name})
        wanted = {t.identity(): t for t in result.active}
        for ident in [i for i in self.loops if i not in wanted]:
            self._stop_later(self.loops.pop(ident), staleness=True)
        for ident, target in wanted.items():
            if ident in self.loops:
                continue
            client = self.manager.client_factory(self.cfg)
            loop = ScrapeLoop(
                target,
                self.cfg,
                client,
                self.manager.appender,
                tenant=self.manager.tenant,
                seed=self.manager.seed,
            )
            loop.owns_client = True
            if ident in inherit:
                loop.inherit(inherit[ident])
            self.loops[ident] = loop
            loop.start()
        limit = self.cfg.target_limit
        forced = None
        if limit and len(self.loops) > limit:
            TARGET_LIMIT_EXCEEDED.inc()
            forced = f"target_limit exceeded (number of targets: {len(self.loops)}, limit: {limit})"
        for loop in self.loops.values():
            loop.forced_error = forced
        ACTIVE_TARGETS.labels(self.cfg.job_name).set(len(self.loops))

    def _stop_later(self, loop: ScrapeLoop, *, staleness: bool) -> None:
        task = asyncio.create_task(loop.stop(staleness=staleness))
        self._stopping.add(task)
        task.add_done_callback(self._stopping.discard)

    async def stop(self, *, staleness: bool, keep_loops: bool = False) -> dict[int, ScrapeLoop]:
        """Stop discovery and every loop; returns the loops (for a reload to inherit)."""
        if self._watch is not None:
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch
        loops = dict(self.loops)
        for loop in loops.values():
            if staleness:
                self._stop_later(loop, staleness=True)
            else:
                await loop.stop(staleness=False)
        if not keep_loops:
            self.loops.clear()
        ACTIVE_TARGETS.labels(self.cfg.job_name).set(0)
        return loops

    async def drain(self) -> None:
        """Wait for loops being stopped with staleness to finish writing their markers."""
        if self._stopping:
            await asyncio.gather(*self._stopping, return_exceptions=True)

    async def cancel_pending(self) -> None:
        for task in list(self._stopping):
            task.cancel()
        await self.drain()


class ScrapeManager:
    """Runs the scrape pools of every job; reloads keep unchanged targets' loops running."""

    def __init__(
        self,
        appender: Appender,
        global_cfg: GlobalConfig,
        *,
        http_client: ClientFactory | None = None,
        tenant: str = "default",
        file_sd_poll_interval: float = 1.0,
        base_dir: Path | None = None,
        seed: int | None = None,
    ) -> None:
        self.appender = appender
        self.global_cfg = global_cfg
        self.client_factory: ClientFactory = http_client or build_http_client
        self.tenant = tenant
        self.file_sd_poll_interval = file_sd_poll_interval
        self.base_dir = base_dir
        self.seed = offset_seed(global_cfg.external_labels) if seed is None else seed
        self.pools: dict[str, ScrapePool] = {}
        self._configs: list[ScrapeConfig] = []
        self._running = False
        self._retired: list[ScrapePool] = []
        self._lock = asyncio.Lock()

    async def apply_config(
        self, scrape_configs: Sequence[ScrapeConfig | Mapping[str, Any]]
    ) -> None:
        """Switch to new scrape configs (validating raw dicts first; raises on errors).

        Jobs whose config is unchanged keep running untouched; a changed job restarts its
        loops but carries over each continuing target's state, so staleness stays right.
        """
        configs = [c for c in scrape_configs if isinstance(c, ScrapeConfig)]
        raw = [c for c in scrape_configs if not isinstance(c, ScrapeConfig)]
        if raw:
            configs = parse_scrape_configs(raw, self.global_cfg, base_dir=self.base_dir)
        async with self._lock:
            SCRAPE_POOL_RELOADS.inc()
            self._configs = list(configs)
            if self._running:
                await self._sync_pools()

    async def _sync_pools(self) -> None:
        wanted = {c.job_name: c for c in self._configs}
        for job in [j for j in self.pools if j not in wanted]:
            pool = self.pools.pop(job)
            await pool.stop(staleness=True)
            self._retired.append(pool)
        for job, cfg in wanted.items():
            old = self.pools.get(job)
            if old is not None and old.cfg == cfg:
                continue
            inherit: dict[int, ScrapeLoop] = {}
            if old is not None:
                inherit = await old.stop(staleness=False, keep_loops=False)
                self._retired.append(old)
            pool = ScrapePool(cfg, self)
            self.pools[job] = pool
            await pool.start(inherit)

    async def start(self) -> None:
        """Start scraping with the configs applied so far."""
        async with self._lock:
            self._running = True
            await self._sync_pools()

    async def stop(self) -> None:
        """Stop every loop. No staleness markers: a restart continues where this left off."""
        async with self._lock:
            self._running = False
            for pool in list(self.pools.values()):
                await pool.stop(staleness=False)
                await pool.cancel_pending()
            for pool in self._retired:
                await pool.cancel_pending()
            self.pools.clear()
            self._retired.clear()

    async def drain(self) -> None:
        """Wait until targets that went away have written their staleness markers."""
        for pool in [*self.pools.values(), *self._retired]:
            await pool.drain()

    def targets(self) -> list[TargetStatus]:
        """The active targets of every job, for /api/v1/targets."""
        return [loop.status() for pool in self.pools.values() for loop in pool.loops.values()]

    def dropped_targets(self) -> list[dict[str, str]]:
        """Discovered label sets that target relabeling dropped (up to keep_dropped_targets)."""
        return [lbls.to_dict() for pool in self.pools.values() for lbls in pool.dropped]
