"""Sends rule alerts to external Alertmanagers through API v2, as Prometheus's notifier does.

Prometheus 3's notifier, followed here:

- ``send`` adds the external labels an alert lacks, applies the global
  ``alert_relabel_configs`` (an alert they drop goes nowhere), then hands the alerts to every
  ``alertmanagers`` entry, which applies its own ``alert_relabel_configs``;
- every discovered Alertmanager has its own queue (``queue_capacity``, 10,000 by default) and
  its own send loop, so a slow or unreachable one never holds the others up; a full queue drops
  its oldest alerts in favour of the new ones (``prometheus_notifications_dropped_total``);
- a loop posts at most ``max_batch_size`` (256) alerts per request, JSON ``postableAlerts``, to
  ``<scheme>://<address><path_prefix>/api/v2/alerts`` within the entry's ``timeout`` (10 s);
- a failed request is not retried: its alerts count as errors and as dropped. Rule evaluation
  sends every firing alert again after ``resend_delay`` (1 minute), which is the retry;
- Alertmanagers come from ``static_configs`` and ``file_sd_configs`` through ``relabel_configs``
  (``__address__``, ``__scheme__``, ``__alerts_path__``), deduplicated by URL per entry;
- on stop, queued alerts are sent out first (``drain_on_shutdown``, Prometheus 3's default),
  within a deadline.

``send`` may be called from any thread (rule groups evaluate in worker threads); the loops run
on the event loop that called ``start``.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import json
import logging
import posixpath
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

import signalroom
from signalroom.rules.manager import AlertNotifier
from signalroom.rules.metrics import WindowedSummary
from signalroom.rules.notifier_config import (
    AlertmanagerEndpointConfig,
    DeliveryConfig,
    parse_delivery_config,
)
from signalroom.scrape.discovery import ADDRESS, SCHEME, FileDiscovery, TargetGroup
from signalroom.scrape.manager import ssl_context
from signalroom.scrape.relabel import RelabelConfig, process_dict

log = logging.getLogger("signalroom.rules.notifier")

DEFAULT_QUEUE_CAPACITY = 10_000
DEFAULT_MAX_BATCH_SIZE = 256
ALERTS_PATH_LABEL = "__alerts_path__"
#: Quantile objectives of prometheus_notifications_latency_seconds.
LATENCY_QUANTILES = (0.5, 0.9, 0.99)
#: Buckets of prometheus_notifications_latency_histogram_seconds.
LATENCY_BUCKETS = (0.01, 0.1, 1.0, 10.0)
_USER_AGENT = f"signalroom/{signalroom.__version__}"


# --- alerts -------------------------------------------------------------------------------


def relabel_alerts(
    alerts: Sequence[Mapping[str, Any]],
    relabel_configs: Sequence[RelabelConfig],
    external_labels: Mapping[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Copies of ``alerts`` with the external labels they lack (absent or empty) and
    ``relabel_configs`` applied; alerts the relabelling drops are left out."""
    out: list[dict[str, Any]] = []
    for alert in alerts:
        labels = {str(k): str(v) for k, v in (alert.get("labels") or {}).items() if v != ""}
        for name, value in (external_labels or {}).items():
            if not labels.get(name) and value:
                labels[name] = value
        if relabel_configs and not process_dict(labels, relabel_configs):
            continue
        out.append({**alert, "labels": labels})
    return out


def _payload(alerts: Sequence[Mapping[str, Any]]) -> bytes:
    """The body of POST /api/v2/alerts: Alertmanager's ``postableAlerts``."""
    body = []
    for alert in alerts:
        item: dict[str, Any] = {
            "labels": alert.get("labels") or {},
            "annotations": {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()},
        }
        for key in ("startsAt", "endsAt", "generatorURL"):
            if alert.get(key):
                item[key] = alert[key]
        body.append(item)
    return json.dumps(body, separators=(",", ":")).encode()


# --- Alertmanager endpoints ---------------------------------------------------------------


def alerts_path(path_prefix: str, api_version: str = "v2") -> str:
    """``path.Join("/", prefix, "/api/<version>/alerts")``: the endpoint's path."""
    joined = "/".join(p.strip("/") for p in (path_prefix, f"api/{api_version}/alerts"))
    return posixpath.normpath("/" + joined.lstrip("/"))


@dataclass(frozen=True)
class AlertmanagerTarget:
    """One Alertmanager found by discovery: its labels after ``relabel_configs``."""

    labels: Mapping[str, str]

    @property
    def url(self) -> str:
        return (
            f"{self.labels.get(SCHEME, '')}://{self.labels.get(ADDRESS, '')}"
            f"{self.labels.get(ALERTS_PATH_LABEL, '')}"
        )


class AlertmanagerDiscoveryError(ValueError):
    """A discovered Alertmanager address is not a host[:port]."""


def alertmanagers_from_group(
    group: TargetGroup, cfg: AlertmanagerEndpointConfig
) -> tuple[list[AlertmanagerTarget], list[AlertmanagerTarget]]:
    """The Alertmanagers of one target group (kept, dropped by ``relabel_configs``)."""
    kept: list[AlertmanagerTarget] = []
    dropped: list[AlertmanagerTarget] = []
    for target in group.targets:
        labels = dict(target)
        labels[SCHEME] = cfg.scheme
        labels[ALERTS_PATH_LABEL] = alerts_path(cfg.path_prefix, cfg.api_version)
        for name, value in group.labels.items():
            labels.setdefault(name, value)
        before = dict(labels)
        if not process_dict(labels, cfg.relabel_configs):
            dropped.append(AlertmanagerTarget(before))
            continue
        if "/" in labels.get(ADDRESS, ""):
            raise AlertmanagerDiscoveryError(f'"{labels.get(ADDRESS)}" is not a valid hostname')
        kept.append(AlertmanagerTarget(labels))
    return kept, dropped


def _static_groups(index: int, cfg: AlertmanagerEndpointConfig) -> list[TargetGroup]:
    return [
        TargetGroup(
            source=f"config-{index}/static/{i}",
            targets=tuple({ADDRESS: t} for t in sc.targets),
            labels=dict(sc.labels),
        )
        for i, sc in enumerate(cfg.static_configs)
    ]


# --- HTTP -----------------------------------------------------------------------------------


def _secret(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").strip()


def request_headers(cfg: AlertmanagerEndpointConfig) -> dict[str, str]:
    """Headers of one POST to an Alertmanager; secret files are read now, as Prometheus
    re-reads them per request."""
    headers = {"User-Agent": _USER_AGENT, "Content-Type": "application/json"}
    for name, spec in (cfg.http_headers or {}).items():
        if isinstance(spec, Mapping):
            values = [str(v) for v in spec.get("values") or []]
            values += [str(v) for v in spec.get("secrets") or []]
            values += [_secret(str(f)) for f in spec.get("files") or []]
            if values:
                headers[name] = ", ".join(values)
    if cfg.authorization is not None:
        credentials = cfg.authorization.credentials or ""
        if cfg.authorization.credentials_file:
            credentials = _secret(cfg.authorization.credentials_file)
        headers["Authorization"] = f"{cfg.authorization.type} {credentials}"
    elif cfg.bearer_token or cfg.bearer_token_file:
        token = cfg.bearer_token or _secret(cfg.bearer_token_file or "")
        headers["Authorization"] = f"Bearer {token}"
    elif cfg.basic_auth is not None:
        user = cfg.basic_auth.username
        if cfg.basic_auth.username_file:
            user = _secret(cfg.basic_auth.username_file)
        password = cfg.basic_auth.password or ""
        if cfg.basic_auth.password_file:
            password = _secret(cfg.basic_auth.password_file)
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    return headers


def _http_client(cfg: AlertmanagerEndpointConfig) -> httpx.AsyncClient:
    # relabel_configs may turn an address to https, so the TLS settings always apply.
    return httpx.AsyncClient(
        verify=ssl_context(cfg.tls_config),
        follow_redirects=cfg.follow_redirects,
        proxy=cfg.proxy_url or None,
        trust_env=cfg.proxy_from_environment,
        timeout=cfg.timeout / 1000,
    )


# --- one Alertmanager -----------------------------------------------------------------------


class _SendLoop:
    """The queue and sender of one Alertmanager URL."""

    def __init__(
        self,
        url: str,
        owner: _AlertmanagerSet,
        loop: asyncio.AbstractEventLoop,
        capacity: int,
        max_batch: int,
    ) -> None:
        self.url = url
        self.owner = owner
        self.loop = loop
        self.capacity = capacity
        self.max_batch = max_batch
        self.queue: collections.deque[dict[str, Any]] = collections.deque()
        self.lock = threading.Lock()
        self.wake = asyncio.Event()
        self.stopping = False
        self.in_flight = 0
        self.sent = 0
        self.errors = 0
        self.dropped = 0
        self.latency = WindowedSummary(LATENCY_QUANTILES)
        self.buckets = [0] * len(LATENCY_BUCKETS)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = self.loop.create_task(self._run(), name=f"notifier {self.url}")

    def add(self, alerts: list[dict[str, Any]]) -> None:
        with self.lock:
            if self.stopping:
                return
            if len(alerts) > self.capacity:
                extra = len(alerts) - self.capacity
                log.warning(
                    "alert batch larger than queue capacity, dropping alerts",
                    extra={"alertmanager": self.url, "count": extra},
                )
                self.dropped += extra
                alerts = alerts[extra:]
            overflow = len(self.queue) + len(alerts) - self.capacity
            if overflow > 0:
                log.warning(
                    "alert notification queue full, dropping alerts",
                    extra={"alertmanager": self.url, "count": overflow},
                )
                self.dropped += overflow
                for _ in range(overflow):
                    self.queue.popleft()
            self.queue.extend(alerts)
        with contextlib.suppress(RuntimeError):  # the loop is closed: stopped already
            self.loop.call_soon_threadsafe(self.wake.set)

    def queue_length(self) -> int:
        with self.lock:
            return len(self.queue)

    def _next_batch(self) -> list[dict[str, Any]]:
        with self.lock:
            n = min(self.max_batch, len(self.queue))
            batch = [self.queue.popleft() for _ in range(n)]
            self.in_flight = len(batch)
            return batch

    async def _run(self) -> None:
        while not self.stopping:
            await self.wake.wait()
            self.wake.clear()
            while not self.stopping:
                batch = self._next_batch()
                if not batch:
                    break
                await self.send_batch(batch)

    async def send_batch(self, batch: list[dict[str, Any]]) -> bool:
        """POST one batch; counts it as sent, or as errors and dropped. No retry."""
        begin = time.perf_counter()
        cfg = self.owner.cfg
        try:
            response = await self.owner.client.post(
                self.url, content=_payload(batch), headers=request_headers(cfg)
            )
            if response.status_code // 100 != 2:
                raise httpx.HTTPStatusError(
                    f"bad response status {response.status_code} {response.reason_phrase}",
                    request=response.request,
                    response=response,
                )
        except (httpx.HTTPError, OSError) as exc:
            log.error(
                "error sending alerts",
                extra={"alertmanager": self.url, "count": len(batch), "err": str(exc) or repr(exc)},
            )
            with self.lock:
                self.errors += len(batch)
                self.dropped += len(batch)
                self.in_flight = 0
            return False
        seconds = time.perf_counter() - begin
        self.latency.observe(seconds)
        with self.lock:
            for i, bound in enumerate(LATENCY_BUCKETS):
                if seconds <= bound:
                    self.buckets[i] += 1
            self.sent += len(batch)
            self.in_flight = 0
        return True

    async def stop(self, drain: bool, deadline: float) -> None:
        """Stop taking alerts; send what is queued until ``deadline`` when ``drain``."""
        with self.lock:
            self.stopping = True
        self.wake.set()
        if self.task is not None:
            # The loop leaves once the batch in flight is done (within the entry's timeout);
            # past the deadline it is cut.
            done, _ = await asyncio.wait({self.task}, timeout=max(0.0, deadline - time.monotonic()))
            if not done:
                self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        while drain and time.monotonic() < deadline:
            batch = self._next_batch()
            if not batch:
                break
            await self.send_batch(batch)
        with self.lock:
            left = len(self.queue)
            self.queue.clear()
            self.dropped += left
        if left:
            log.warning(
                "alert notification queue not drained on shutdown, dropping alerts",
                extra={"alertmanager": self.url, "count": left},
            )


class _AlertmanagerSet:
    """One ``alertmanagers`` entry: its HTTP client, discovery and send loops."""

    def __init__(self, index: int, cfg: AlertmanagerEndpointConfig) -> None:
        self.index = index
        self.cfg = cfg
        self.client = _http_client(cfg)
        self.files = [FileDiscovery(sd) for sd in cfg.file_sd_configs]
        self.loops: dict[str, _SendLoop] = {}
        self.active: list[AlertmanagerTarget] = []
        self.dropped: list[AlertmanagerTarget] = []

    def groups(self) -> list[TargetGroup]:
        out = _static_groups(self.index, self.cfg)
        for discovery in self.files:
            out.extend(discovery.groups())
        return out

    def refresh_files(self, force: bool = False) -> bool:
        changed = False
        for discovery in self.files:
            changed |= discovery.refresh(force=force)
        return changed

    def targets(self) -> tuple[list[AlertmanagerTarget], list[AlertmanagerTarget]]:
        active: list[AlertmanagerTarget] = []
        dropped: list[AlertmanagerTarget] = []
        seen: set[str] = set()
        for group in self.groups():
            try:
                kept, lost = alertmanagers_from_group(group, self.cfg)
            except AlertmanagerDiscoveryError as exc:
                log.error("creating discovered Alertmanagers failed", extra={"err": str(exc)})
                continue
            dropped.extend(lost)
            for target in kept:
                if target.url not in seen:
                    seen.add(target.url)
                    active.append(target)
        return active, dropped


# --- metrics --------------------------------------------------------------------------------


class _NotifierCollector(Collector):
    """Prometheus's notifier metrics, ``alertmanager`` = the endpoint URL."""

    def __init__(self, notifier: Notifier) -> None:
        self.notifier = notifier

    def collect(self) -> Iterator[Metric]:
        by_am = ["alertmanager"]
        loops = self.notifier._all_loops()
        sent = CounterMetricFamily(
            "prometheus_notifications_sent", "Total number of alerts sent.", labels=by_am
        )
        errors = CounterMetricFamily(
            "prometheus_notifications_errors",
            "Total number of sent alerts affected by errors.",
            labels=by_am,
        )
        dropped = CounterMetricFamily(
            "prometheus_notifications_dropped",
            "Total number of alerts dropped due to errors when sending to Alertmanager.",
            labels=by_am,
        )
        queue = GaugeMetricFamily(
            "prometheus_notifications_queue_length",
            "The number of alert notifications in the queue.",
            labels=by_am,
        )
        histogram = HistogramMetricFamily(
            "prometheus_notifications_latency_histogram_seconds",
            "Latency histogram for sending alert notifications.",
            labels=by_am,
        )
        summary = Metric(
            "prometheus_notifications_latency_seconds",
            "Latency quantiles for sending alert notifications.",
            "summary",
        )
        for lp in loops:
            with lp.lock:
                counts = (lp.sent, lp.errors, lp.dropped, len(lp.queue), list(lp.buckets))
            sent.add_metric([lp.url], counts[0])
            errors.add_metric([lp.url], counts[1])
            dropped.add_metric([lp.url], counts[2])
            queue.add_metric([lp.url], counts[3])
            quantiles, total, count = lp.latency.snapshot()
            for q, value in quantiles:
                summary.add_sample(
                    summary.name, {"alertmanager": lp.url, "quantile": str(q)}, value
                )
            summary.add_sample(summary.name + "_sum", {"alertmanager": lp.url}, total)
            summary.add_sample(summary.name + "_count", {"alertmanager": lp.url}, float(count))
            buckets = [(str(b), float(c)) for b, c in zip(LATENCY_BUCKETS, counts[4], strict=True)]
            buckets.append(("+Inf", float(count)))
            histogram.add_metric([lp.url], buckets, total)
        yield from (sent, errors, dropped, queue)
        yield GaugeMetricFamily(
            "prometheus_notifications_queue_capacity",
            "The capacity of the alert notifications queue.",
            value=self.notifier.queue_capacity,
        )
        yield GaugeMetricFamily(
            "prometheus_notifications_alertmanagers_discovered",
            "The number of alertmanagers discovered and active.",
            value=len(self.notifier.alertmanagers()),
        )
        yield summary
        yield histogram


# --- the notifier ---------------------------------------------------------------------------


class Notifier:
    """Delivers rule alerts to the Alertmanagers of ``alerting.alertmanagers``.

    ``send`` is an ``AlertNotifier``: thread-safe, never blocks on the network. Call
    ``await start()`` on the event loop first and ``await stop()`` at the end.
    """

    def __init__(
        self,
        config: DeliveryConfig | None = None,
        *,
        external_labels: Mapping[str, str] | None = None,
        queue_capacity: int = DEFAULT_QUEUE_CAPACITY,
        max_batch_size: int = DEFAULT_MAX_BATCH_SIZE,
        drain_on_shutdown: bool = True,
        discovery_interval_s: float = 5.0,
    ) -> None:
        if queue_capacity <= 0 or max_batch_size <= 0:
            raise ValueError("queue_capacity and max_batch_size must be positive")
        self.config = config or DeliveryConfig()
        self.external_labels = dict(external_labels or {})
        self.queue_capacity = queue_capacity
        self.max_batch_size = max_batch_size
        self.drain_on_shutdown = drain_on_shutdown
        self.discovery_interval_s = discovery_interval_s
        self._lock = threading.Lock()
        self._sets: dict[str, _AlertmanagerSet] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._discovery_task: asyncio.Task[None] | None = None
        self._stopped = False
        self._background: set[asyncio.Task[None]] = set()

    @classmethod
    def from_section(
        cls,
        section: Mapping[str, Any] | None,
        *,
        base_dir: Path | None = None,
        **kwargs: Any,
    ) -> Notifier:
        """A notifier for the delivery keys of an ``alerting:`` section."""
        return cls(parse_delivery_config(section, base_dir=base_dir), **kwargs)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopped = False
        await self.apply_config(self.config)
        with self._lock:
            sets = list(self._sets.values())
        for ams in sets:
            ams.refresh_files(force=True)
            self._sync(ams)
        self._discovery_task = self._loop.create_task(
            self._watch_discovery(), name="notifier discovery"
        )

    async def apply_config(
        self, config: DeliveryConfig, external_labels: Mapping[str, str] | None = None
    ) -> None:
        """Take a new configuration; entries whose configuration did not change keep their
        Alertmanagers, queues and counters (Prometheus's ApplyConfig)."""
        old = dict(self._sets)
        unused = list(old.values())  # configs are not hashable: compare them
        new: dict[str, _AlertmanagerSet] = {}
        for i, cfg in enumerate(config.alertmanagers):
            previous = next((s for s in unused if s.cfg == cfg), None)
            if previous is not None:
                unused.remove(previous)
                previous.index = i
                new[f"config-{i}"] = previous
            else:
                new[f"config-{i}"] = _AlertmanagerSet(i, cfg)
        with self._lock:
            self.config = config
            if external_labels is not None:
                self.external_labels = dict(external_labels)
            self._sets = new
        retired = [s for s in old.values() if s not in new.values()]
        # A reload waits for the retired Alertmanagers' queues no longer than one request.
        await self._retire(retired, max((s.cfg.timeout for s in retired), default=0) / 1000)
        if self._loop is not None:
            for ams in new.values():
                if ams not in old.values():
                    ams.refresh_files(force=True)
                    self._sync(ams)

    async def stop(self, timeout_s: float = 30.0) -> None:
        """Stop sending; queued alerts are sent first when ``drain_on_shutdown`` (within
        ``timeout_s``), and counted as dropped otherwise."""
        self._stopped = True
        if self._discovery_task is not None:
            self._discovery_task.cancel()
            await asyncio.gather(self._discovery_task, return_exceptions=True)
            self._discovery_task = None
        with self._lock:
            sets = list(self._sets.values())
        await self._retire(sets, timeout_s)
        await asyncio.gather(*self._background, return_exceptions=True)

    async def _retire(self, sets: Sequence[_AlertmanagerSet], timeout_s: float = 30.0) -> None:
        deadline = time.monotonic() + timeout_s
        loops = [lp for ams in sets for lp in list(ams.loops.values())]
        await asyncio.gather(*(lp.stop(self.drain_on_shutdown, deadline) for lp in loops))
        for ams in sets:
            await ams.client.aclose()

    async def _watch_discovery(self) -> None:
        while True:
            await asyncio.sleep(self.discovery_interval_s)
            with self._lock:
                sets = list(self._sets.values())
            for ams in sets:
                if not ams.files:
                    continue
                if await asyncio.to_thread(ams.refresh_files, False):
                    self._sync(ams)

    def _sync(self, ams: _AlertmanagerSet) -> None:
        """Start loops for new Alertmanagers of ``ams`` and stop those that went away."""
        assert self._loop is not None
        active, dropped = ams.targets()
        urls = {t.url for t in active}
        with self._lock:
            for target in active:
                if target.url not in ams.loops:
                    lp = _SendLoop(
                        target.url, ams, self._loop, self.queue_capacity, self.max_batch_size
                    )
                    lp.start()
                    ams.loops[target.url] = lp
            gone = [lp for url, lp in ams.loops.items() if url not in urls]
            for lp in gone:
                del ams.loops[lp.url]
            ams.active, ams.dropped = active, dropped
        for lp in gone:
            deadline = time.monotonic() + ams.cfg.timeout / 1000
            task = self._loop.create_task(lp.stop(self.drain_on_shutdown, deadline))
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    # --- sending --------------------------------------------------------------------------

    def send(self, alerts: list[dict[str, Any]]) -> None:
        """Queue ``alerts`` (API v2 ``postableAlert`` dicts) for every Alertmanager."""
        if self._stopped or not alerts:
            return
        with self._lock:
            sets = list(self._sets.values())
            relabel, external = self.config.alert_relabel_configs, self.external_labels
        alerts = relabel_alerts(alerts, relabel, external)
        if not alerts:
            return
        for ams in sets:
            out = alerts
            if ams.cfg.alert_relabel_configs:
                out = relabel_alerts(alerts, ams.cfg.alert_relabel_configs)
                if not out:
                    continue
            with self._lock:
                loops = list(ams.loops.values())
            for lp in loops:
                lp.add(list(out))

    def relabel(self, alerts: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``alerts`` with the external labels and global ``alert_relabel_configs`` applied."""
        with self._lock:
            relabel, external = self.config.alert_relabel_configs, self.external_labels
        return relabel_alerts(alerts, relabel, external)

    async def flush(self, timeout_s: float = 30.0) -> bool:
        """Wait until every queue is empty and no request is in flight (tests, shutdown)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all(lp.queue_length() == 0 and lp.in_flight == 0 for lp in self._all_loops()):
                return True
            await asyncio.sleep(0.01)
        return False

    # --- status ---------------------------------------------------------------------------

    def _all_loops(self) -> list[_SendLoop]:
        with self._lock:
            return [lp for ams in self._sets.values() for lp in ams.loops.values()]

    def alertmanagers(self) -> list[str]:
        """URLs of the active Alertmanagers (/api/v1/alertmanagers ``activeAlertmanagers``)."""
        with self._lock:
            return [t.url for ams in self._sets.values() for t in ams.active]

    def dropped_alertmanagers(self) -> list[str]:
        """URLs of the Alertmanagers that ``relabel_configs`` dropped."""
        with self._lock:
            return [t.url for ams in self._sets.values() for t in ams.dropped]

    def collector(self) -> Collector:
        """The ``prometheus_notifications_*`` metrics, to register with a registry."""
        return _NotifierCollector(self)


class GlobalRelabelNotifier:
    """Hands alerts to ``inner`` with the notifier's external labels and global
    ``alert_relabel_configs`` applied, so signalroom's own alert manager sees what an external
    Alertmanager sees."""

    def __init__(self, inner: AlertNotifier, notifier: Notifier) -> None:
        self.inner = inner
        self.notifier = notifier

    def send(self, alerts: list[dict[str, Any]]) -> None:
        alerts = self.notifier.relabel(alerts)
        if alerts:
            self.inner.send(alerts)


class FanoutNotifier:
    """Sends every alert batch to each of ``notifiers`` in turn; one that fails is logged and
    does not keep the batch from the others."""

    def __init__(self, notifiers: Sequence[AlertNotifier]) -> None:
        self.notifiers = list(notifiers)

    def send(self, alerts: list[dict[str, Any]]) -> None:
        for notifier in self.notifiers:
            try:
                notifier.send(alerts)
            except Exception:
                log.exception("sending alerts failed", extra={"notifier": type(notifier).__name__})


def build_alert_notifier(
    section: Mapping[str, Any] | None,
    *,
    local: AlertNotifier | None = None,
    external_labels: Mapping[str, str] | None = None,
    base_dir: Path | None = None,
    **options: Any,
) -> tuple[FanoutNotifier, Notifier]:
    """The rule manager's notifier for an ``alerting:`` section: signalroom's own alert
    manager (``local``, relabelled as the external ones) plus every Alertmanager of
    ``alertmanagers``. Returns (what RuleManager gets, the Notifier to start, stop, reload
    and collect metrics from). Raises ``DeliveryConfigError``."""
    notifier = Notifier.from_section(
        section, base_dir=base_dir, external_labels=external_labels, **options
    )
    # The external queue first: it never blocks, while the local manager may take a while.
    targets: list[AlertNotifier] = [notifier]
    if local is not None:
        targets.append(GlobalRelabelNotifier(local, notifier))
    return FanoutNotifier(targets), notifier


__all__ = [
    "DEFAULT_MAX_BATCH_SIZE",
    "DEFAULT_QUEUE_CAPACITY",
    "AlertmanagerTarget",
    "FanoutNotifier",
    "GlobalRelabelNotifier",
    "Notifier",
    "alertmanagers_from_group",
    "alerts_path",
    "build_alert_notifier",
    "relabel_alerts",
    "request_headers",
]
