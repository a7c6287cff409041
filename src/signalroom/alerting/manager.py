"""The running Alertmanager of signalroom: what the app builds from the ``alerting:`` section.

::

    am = AlertManager.from_section(config.alerting, state=state_store,
                                   external_url="http://host:8290")
    await am.start()                 # loads alerts, silences and the notification log
    errors = await am.receive(alerts, tenant="default")
    await am.apply_config(new_cfg)   # on reload: new routes/receivers, state kept
    await am.stop()

Each tenant has its own alerts, silences, notification log, inhibitor and dispatcher; the
configuration (routes, receivers, inhibit rules, time intervals) is shared.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
import yaml

from signalroom.alerting.alerts import (
    Alert,
    AlertStore,
    AlertValidationError,
    Clock,
    SystemClock,
    receive_defaults,
)
from signalroom.alerting.config import AlertmanagerConfig, parse_alertmanager_config
from signalroom.alerting.dispatch import Dispatcher, GroupView
from signalroom.alerting.escalation import ACKNOWLEDGED, EscalationEngine
from signalroom.alerting.escalation_config import EscalationExtensions, parse_extensions
from signalroom.alerting.inhibit import Inhibitor
from signalroom.alerting.nflog import NotificationLog, ReceiverKey
from signalroom.alerting.notify import Integration, build_integrations
from signalroom.alerting.notify.metrics import METRICS, register_state_source
from signalroom.alerting.notify.pipeline import (
    Backoff,
    FlushContext,
    IntegrationObserver,
    MultiStage,
    build_receiver_stage,
)
from signalroom.alerting.persist import StateWriter
from signalroom.alerting.recovery import RecoveryRunner, VerifyFunc
from signalroom.alerting.route import RouteNode, build_routing_tree
from signalroom.alerting.runbooks import RunbookLibrary, RunbookStage
from signalroom.alerting.silences import Silences
from signalroom.storage.state import StateStore

__all__ = ["AlertManager", "AlertStatus", "TenantAlerting", "config_from_section"]

log = logging.getLogger("signalroom.alerting")

# Keys of signalroom's ``alerting:`` section that extend Alertmanager's file (later features).
EXTENSION_KEYS = frozenset(
    {"escalation", "escalation_policies", "schedules", "oncall"}
    # prometheus.yml delivery keys, read by signalroom.rules.notifier_config.
    | {"alertmanagers", "alert_relabel_configs"}
)

DEFAULT_SECTION: dict[str, Any] = {
    "route": {"receiver": "null"},
    "receivers": [{"name": "null"}],
}

VERSION_INFO = {
    "version": "0.25.0",
    "revision": "signalroom",
    "branch": "main",
    "buildUser": "signalroom",
    "buildDate": "",
    "goVersion": "python",
}


def config_from_section(section: Mapping[str, Any] | None) -> AlertmanagerConfig:
    """The Alertmanager configuration in signalroom's ``alerting:`` section (a default one with
    a single receiver without integrations when the section is empty)."""
    data = {k: v for k, v in (section or {}).items() if k not in EXTENSION_KEYS}
    if not data:
        data = DEFAULT_SECTION
    return parse_alertmanager_config(yaml.safe_dump(data))


@dataclass(frozen=True)
class AlertStatus:
    state: str  # active | suppressed | unprocessed
    silenced_by: list[str]
    inhibited_by: list[str]


class EscalationGate:
    """The escalation stage, run beside delivery whenever it cannot hold the notification
    back.

    Escalation bookkeeping (triggering a group, its timeline) runs under the engine's one
    lock, which its level deliveries hold too; awaited in line, a route notification would
    wait for escalation pages of other groups. Only a repeat of an acknowledged group can be
    held back, so only then does delivery wait; otherwise the work runs as background work of
    the flush, which the observer and the flush itself await (the timeline keeps its order).
    """

    def __init__(self, engine: EscalationEngine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant
        self.inner = engine.stage(tenant)

    def _may_hold_back(self, group_key: str) -> bool:
        state = self.engine.state(self.tenant, group_key)
        return (
            state is not None
            and state.status == ACKNOWLEDGED
            and self.engine.config.escalation.ack_suppresses_repeats
        )

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        if self._may_hold_back(ctx.group_key):
            return await self.inner.exec(ctx, alerts)
        ctx.background.append(asyncio.create_task(self._after_send(ctx, list(alerts))))
        return ctx, alerts

    async def _after_send(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        # One turn of the loop first: the flush's request is written in the task turn after
        # this one was made, so a burst of group flushes puts every request on the wire
        # before any escalation bookkeeping runs.
        await asyncio.sleep(0)
        return await self.inner.exec(ctx, alerts)


def _settled(observer: IntegrationObserver) -> IntegrationObserver:
    """An observer that first waits for the flush's background escalation work."""

    async def observe(
        ctx: FlushContext, key: ReceiverKey, alerts: list[Alert], error: str | None
    ) -> None:
        await ctx.settle()
        await observer(ctx, key, alerts, error)

    return observe


@dataclass
class TenantAlerting:
    """One tenant's state and machinery."""

    tenant: str
    store: AlertStore
    silences: Silences
    nflog: NotificationLog
    inhibitor: Inhibitor
    dispatcher: Dispatcher | None = None
    stages: dict[str, MultiStage] = field(default_factory=dict)
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class AlertManager:
    """Alertmanager semantics on signalroom's state store; see the module docstring."""

    def __init__(
        self,
        config: AlertmanagerConfig,
        *,
        state: StateStore | None = None,
        external_url: str = "http://127.0.0.1:8290",
        clock: Clock | None = None,
        backoff: Backoff | None = None,
        cleanup_interval: timedelta = timedelta(seconds=30),
        alert_gc_interval: timedelta = timedelta(minutes=30),
        maintenance_interval: timedelta = timedelta(minutes=15),
        retention: timedelta = timedelta(hours=120),
        extensions: EscalationExtensions | None = None,
        verify: VerifyFunc | None = None,
    ) -> None:
        """``extensions``: escalation, on-call, recovery and runbook settings (the extension
        keys of the section); ``verify(expr)`` checks recovery conditions (PromQL)."""
        self.config = config
        self.state = state
        self.external_url = external_url.rstrip("/")
        self.clock = clock or SystemClock()
        self.backoff = backoff
        self.cleanup_interval = cleanup_interval
        self.alert_gc_interval = alert_gc_interval
        self.maintenance_interval = maintenance_interval
        self.retention = retention
        self.started_at = self.clock.now()
        self.route: RouteNode = build_routing_tree(config)
        self.integrations: dict[str, list[Integration]] = {}
        self._tenants: dict[str, TenantAlerting] = {}
        self._maintenance: asyncio.Task[None] | None = None
        self._running = False
        self._config_lock = asyncio.Lock()
        # Every write of alerts, the notification log, escalation states and the timeline
        # goes through one writer: one thread, few transactions, no SQLite lock contention.
        self.writer = StateWriter(self.engine)
        self._build_integrations()
        self.extensions = extensions or EscalationExtensions()
        self.verify = verify
        self.escalation = EscalationEngine(
            self.extensions,
            integrations_of=lambda receiver: self.integrations.get(receiver, []),
            engine=self.engine,
            clock=self.clock,
            muted=self._muted,
            recovery=self._recovery_runner(),
            base_url=self.external_url,
            backoff=backoff,
            retention=retention,
            writer=self.writer,
        )
        self.runbooks = RunbookLibrary(self.extensions.escalation.runbooks.dirs)
        register_state_source(self)

    @classmethod
    def from_section(
        cls, section: Mapping[str, Any] | None, *, base_dir: Any = None, **kwargs: Any
    ) -> AlertManager:
        """``base_dir``: where relative runbook directories are (the config file's dir)."""
        config = config_from_section(section)
        extensions = parse_extensions(
            section, [r.name for r in config.receivers], base_dir=base_dir
        )
        return cls(config, extensions=extensions, **kwargs)

    def _recovery_runner(self) -> RecoveryRunner | None:
        settings = self.extensions.escalation.recovery
        if not settings.rules:
            return None
        return RecoveryRunner(settings, self.verify, clock=self.clock)

    def _muted(self, tenant: str, labels: Mapping[str, str], now: datetime) -> bool:
        t = self._tenants.get(tenant)
        return t is not None and bool(
            t.silences.mutes(labels, now) or t.inhibitor.mutes(labels, now)
        )

    def _runbook_base(self) -> str:
        return self.extensions.escalation.runbooks.base_url or self.external_url

    @property
    def engine(self) -> sa.Engine | None:
        return self.state.engine if self.state is not None else None

    @property
    def resolve_timeout(self) -> timedelta:
        return self.config.global_config.resolve_timeout

    # -- lifecycle -------------------------------------------------------------------------

    async def start(self) -> None:
        """Load persisted state of every tenant and start dispatching."""
        self._running = True
        await self.escalation.load()
        for tenant in await asyncio.to_thread(self._persisted_tenants):
            await self._load_tenant(tenant)
        self.escalation.start()
        self._maintenance = asyncio.create_task(self._maintain(), name="alerting-maintenance")

    async def stop(self) -> None:
        self._running = False
        await self.escalation.stop()
        if self._maintenance is not None:
            self._maintenance.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._maintenance
            self._maintenance = None
        for t in self._tenants.values():
            if t.dispatcher is not None:
                await t.dispatcher.stop()
                t.dispatcher = None
        await self.writer.drain()
        await self._close_integrations(self.integrations)

    async def apply_config(
        self, config: AlertmanagerConfig, extensions: EscalationExtensions | None = None
    ) -> None:
        """Switch to a new configuration; alerts, silences and the log are kept, groups are
        rebuilt (as Alertmanager does on reload). ``extensions`` (when given) replace the
        escalation settings; running escalations keep their state."""
        async with self._config_lock:
            old = self.integrations
            self.config = config
            if extensions is not None:
                self.extensions = extensions
                self.escalation.set_config(extensions)
                self.escalation.recovery = self._recovery_runner()
                self.runbooks = RunbookLibrary(extensions.escalation.runbooks.dirs)
            self.route = build_routing_tree(config)
            self._build_integrations()
            for t in self._tenants.values():
                async with t.lock:
                    if t.dispatcher is not None:
                        await t.dispatcher.stop()
                    t.inhibitor = Inhibitor(config.inhibit_rules)
                    self._wire(t)
            await self._close_integrations(old)

    def _build_integrations(self) -> None:
        self.integrations = {
            r.name: build_integrations(r, self.external_url) for r in self.config.receivers
        }

    @staticmethod
    async def _close_integrations(integrations: Mapping[str, list[Integration]]) -> None:
        for items in integrations.values():
            for integ in items:
                with contextlib.suppress(Exception):
                    await integ.close()

    def _persisted_tenants(self) -> list[str]:
        if self.engine is None:
            return ["default"]
        from signalroom.storage.schema import alerting_alerts, alerting_nflog, alerting_silences

        found: set[str] = {"default"}
        with self.engine.connect() as conn:
            for table in (alerting_alerts, alerting_silences, alerting_nflog):
                found.update(conn.execute(sa.select(table.c.tenant).distinct()).scalars())
        return sorted(found)

    async def _load_tenant(self, tenant: str) -> TenantAlerting:
        t = TenantAlerting(
            tenant=tenant,
            store=AlertStore(tenant, self.engine, self.writer),
            silences=Silences(tenant, self.engine, retention=self.retention),
            nflog=NotificationLog(
                tenant, self.engine, retention=self.retention, writer=self.writer
            ),
            inhibitor=Inhibitor(self.config.inhibit_rules),
        )
        await asyncio.to_thread(t.store.load)
        await asyncio.to_thread(t.silences.load)
        await asyncio.to_thread(t.nflog.load)
        self._tenants[tenant] = t
        self._wire(t)
        return t

    def _wire(self, t: TenantAlerting) -> None:
        """Build the tenant's pipeline and dispatcher, and feed it every alert held."""
        intervals = self.config.time_interval_map()
        t.stages = {
            name: build_receiver_stage(
                name,
                integrations,
                inhibitor=t.inhibitor,
                silences=t.silences,
                nflog=t.nflog,
                intervals=intervals,
                backoff=self.backoff,
                extra_stages=[
                    EscalationGate(self.escalation, t.tenant),
                    RunbookStage(self._runbook_base()),
                ],
                observer=_settled(self.escalation.observer(t.tenant)),
            )
            for name, integrations in self.integrations.items()
        }

        async def notify(ctx: FlushContext, alerts: list[Alert]) -> None:
            stage = t.stages.get(ctx.receiver)
            if stage is None:
                raise RuntimeError(f"unknown receiver {ctx.receiver!r}")
            ctx.tenant = t.tenant
            try:
                await stage.exec(ctx, alerts)
            finally:
                await ctx.settle()

        t.store._listeners.clear()
        t.dispatcher = Dispatcher(
            self.route, notify, clock=self.clock, cleanup_interval=self.cleanup_interval
        )
        # The dispatcher is fed by receive(), with the time the alerts arrived.
        t.store.subscribe(t.inhibitor.observe)
        for alert in t.store.all():
            t.inhibitor.observe(alert)
            t.dispatcher.process(alert)
        if self._running:
            t.dispatcher.start()

    async def tenant(self, tenant: str = "default") -> TenantAlerting:
        t = self._tenants.get(tenant)
        if t is None:
            t = await self._load_tenant(tenant)
        return t

    async def _maintain(self) -> None:
        last_alert_gc = time.monotonic()
        tick = min(self.maintenance_interval, self.alert_gc_interval).total_seconds()
        while True:
            await asyncio.sleep(tick)
            now = self.clock.now()
            for t in list(self._tenants.values()):
                try:
                    t.silences.gc(now)
                    await asyncio.to_thread(t.nflog.gc, now)
                    await self.escalation.gc(now)
                    if time.monotonic() - last_alert_gc >= self.alert_gc_interval.total_seconds():
                        gone = t.store.gc_later(now)
                        t.inhibitor.forget(gone)
                except Exception:
                    log.exception("alerting maintenance failed", extra={"tenant": t.tenant})
            if time.monotonic() - last_alert_gc >= self.alert_gc_interval.total_seconds():
                last_alert_gc = time.monotonic()

    # -- alerts ----------------------------------------------------------------------------

    async def receive(
        self, alerts: Iterable[Alert], tenant: str = "default", *, now: datetime | None = None
    ) -> list[str]:
        """Accept alerts as ``POST /api/v2/alerts`` does; returns validation errors (the valid
        alerts are stored and dispatched even when some are invalid). ``now``: when they
        arrived (the API takes the time before it parses the body, as Alertmanager does)."""
        if now is None:
            now = self.clock.now()
        valid: list[Alert] = []
        errors: list[str] = []
        firing = resolved = 0
        resolve_timeout = self.resolve_timeout
        for alert in alerts:
            receive_defaults(alert, now, resolve_timeout)
            if alert.ends_at is not None and alert.ends_at > now:
                firing += 1
            else:
                resolved += 1
            try:
                alert.validate()
            except AlertValidationError as exc:
                errors.append(str(exc))
                continue
            valid.append(alert)
        # Counted per POST rather than per alert: the metric's labels lookup is not free.
        if firing:
            METRICS.received.labels("firing").inc(firing)
        if resolved:
            METRICS.received.labels("resolved").inc(resolved)
        if errors:
            METRICS.invalid.inc(len(errors))
        if valid:
            t = await self.tenant(tenant)
            # Merged, applied and dispatched in one step of the event loop (no await), so
            # nothing interleaves; persisted behind (see AlertStore). Groups count their
            # group_wait from when the alerts arrived, not from when this batch got here.
            merged = t.store.merge_batch(valid, now)
            t.store.apply(merged)
            t.store.persist_later(merged)
            if t.dispatcher is not None:
                for alert in merged:
                    t.dispatcher.process(alert, now)
        return errors

    def status_of(self, t: TenantAlerting, alert: Alert, now: datetime) -> AlertStatus:
        silenced = t.silences.mutes(alert.labels, now)
        inhibited = t.inhibitor.inhibited_by(alert.labels, now)
        state = "suppressed" if silenced or inhibited else "active"
        return AlertStatus(state, silenced, inhibited)

    def receivers_for(self, labels: Mapping[str, str]) -> list[str]:
        return [r.opts.receiver for r in self.route.match(labels)]

    async def groups(self, tenant: str = "default") -> list[GroupView]:
        t = await self.tenant(tenant)
        return t.dispatcher.group_views() if t.dispatcher is not None else []

    async def silences(self, tenant: str = "default") -> Silences:
        return (await self.tenant(tenant)).silences

    def receiver_names(self) -> list[str]:
        return [r.name for r in self.config.receivers]

    def status(self) -> dict[str, Any]:
        """``GET /api/v2/status``."""
        from signalroom.alerting.alerts import format_api_time

        return {
            "cluster": {"status": "disabled", "peers": []},
            "versionInfo": dict(VERSION_INFO),
            "config": {"original": redacted_config_yaml(self.config)},
            "uptime": format_api_time(self.started_at),
        }

    def metric_states(self) -> tuple[dict[str, int], dict[str, int]]:
        now = self.clock.now()
        alerts = {"active": 0, "suppressed": 0, "unprocessed": 0}
        silences = {"active": 0, "pending": 0, "expired": 0}
        for t in list(self._tenants.values()):
            for a in t.store.all():
                if a.resolved_at(now):
                    continue
                alerts[self.status_of(t, a, now).state] += 1
            for k, v in t.silences.count_by_state(now).items():
                silences[k] += v
        return alerts, silences


_SECRET_KEYS = (
    "password",
    "secret",
    "routing_key",
    "service_key",
    "api_key",
    "credentials",
    "api_url",
    "webhook_url",
)


def redacted_config_yaml(config: AlertmanagerConfig) -> str:
    data = config.model_dump(mode="json", by_alias=True, exclude_none=True)

    def scrub(node: Any) -> Any:
        if isinstance(node, dict):
            return {
                k: (
                    "<secret>"
                    if any(s in k for s in _SECRET_KEYS)
                    and isinstance(v, str)
                    and v
                    and not k.endswith("_file")
                    else scrub(v)
                )
                for k, v in node.items()
            }
        if isinstance(node, list):
            return [scrub(v) for v in node]
        return node

    return yaml.safe_dump(scrub(data), sort_keys=False)
