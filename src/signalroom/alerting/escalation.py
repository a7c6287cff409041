"""Escalation of alert groups: policies, acknowledgement, resolution and the timeline.

Alertmanager notifies a route's receiver and repeats; it has no idea whether anyone reacted.
signalroom adds, per aggregation group:

* **a policy** chosen when the group starts firing: the first matching ``policy_routes``
  entry, else the severity matrix row of the group's most severe alert, else
  ``default_policy``. Its levels notify their targets (receivers, or whoever an on-call
  schedule names) ``after`` the escalation started: L1 at once, L2 after 5 m, ...; ``repeat``
  runs the levels again every ``repeat_interval``.
* **acknowledgement** (who, when, comment): stops the escalation; while acknowledged, repeat
  notifications of the unchanged group are held back (new or resolved alerts still go out).
  Un-acknowledging restarts the escalation at L1.
* **resolution**, by a person, by automated recovery, or when all alerts resolved. A group
  resolved by hand stays resolved until an alert that was not firing then fires, or until all
  its alerts resolved and it fires again.
* **the timeline** of every group: triggered, each notification (route receivers and
  escalation levels: receiver, integration, outcome), acknowledgements, recovery steps,
  response-time targets missed, resolution.

The engine hooks into the notification pipeline through :meth:`EscalationEngine.stage` (an
``extra_stages`` entry, after silencing and inhibition) and :meth:`EscalationEngine.observer`
(the outcome of each integration), and runs its own clock-driven loop for the levels
(:meth:`run_due` for tests that move the clock by hand). State and timeline are written
through to the state store.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from signalroom.alerting.alerts import Alert, Clock, SystemClock
from signalroom.alerting.escalation_config import (
    EscalationExtensions,
    EscalationPolicy,
    EscalationTarget,
    RecoveryRule,
    SeverityLevel,
)
from signalroom.alerting.matchers import matches_all
from signalroom.alerting.nflog import ReceiverKey
from signalroom.alerting.notify.base import Integration
from signalroom.alerting.notify.pipeline import Backoff, FlushContext, PipelineError, RetryStage
from signalroom.alerting.oncall import OnCall, OverrideRecord, oncall_at
from signalroom.alerting.persist import Op, StateWriter, executemany, upsert
from signalroom.alerting.recovery import RecoveryRunner, recovery_context
from signalroom.alerting.runbooks import runbook_link

__all__ = [
    "EscalationEngine",
    "EscalationError",
    "EscalationStage",
    "GroupEscalation",
    "TimelineEntry",
]

log = logging.getLogger("signalroom.alerting.escalation")

FIRING, ACKNOWLEDGED, RESOLVED = "firing", "acknowledged", "resolved"
DEFAULT_RETENTION = timedelta(hours=120)
ESCALATION_TIMEOUT = timedelta(seconds=30)

IntegrationsOf = Callable[[str], Sequence[Integration]]
MutedFunc = Callable[[str, Mapping[str, str], datetime], bool]


class EscalationError(Exception):
    """An acknowledgement/resolution request that cannot be done; ``status`` is the HTTP
    status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass
class GroupEscalation:
    """Where one alert group stands."""

    tenant: str
    group_key: str
    status: str
    group_labels: dict[str, str]
    started_at: datetime
    policy: str | None = None
    severity: str | None = None
    priority: str | None = None
    level: int = 0  # index of the next level to notify
    loop: int = 0
    next_at: datetime | None = None
    respond_by: datetime | None = None
    overdue: bool = False
    acked_by: str | None = None
    acked_at: datetime | None = None
    comment: str = ""
    resolved_by: str | None = None
    resolved_at: datetime | None = None
    fingerprints: frozenset[str] = frozenset()
    recovery: str | None = None  # running | succeeded | failed
    updated_at: datetime = field(default_factory=lambda: datetime.now(UTC))

    def to_json(self) -> dict[str, Any]:
        return {
            "groupKey": self.group_key,
            "status": self.status,
            "groupLabels": self.group_labels,
            "policy": self.policy,
            "severity": self.severity,
            "priority": self.priority,
            "startedAt": _iso(self.started_at),
            "nextLevel": self.level + 1 if self.next_at is not None else None,
            "nextEscalationAt": _iso(self.next_at),
            "loop": self.loop,
            "respondBy": _iso(self.respond_by),
            "responseOverdue": self.overdue,
            "acknowledgedBy": self.acked_by,
            "acknowledgedAt": _iso(self.acked_at),
            "comment": self.comment,
            "resolvedBy": self.resolved_by,
            "resolvedAt": _iso(self.resolved_at),
            "recovery": self.recovery,
        }


@dataclass(frozen=True)
class TimelineEntry:
    """One event in a group's life. ``kind``: triggered, notified, escalated, acknowledged,
    unacknowledged, resolved, reopened, response_overdue, escalation_exhausted,
    recovery_started, recovery_action, recovery_verified, recovery_failed."""

    at: datetime
    kind: str
    actor: str = "signalroom"
    outcome: str = "ok"
    level: int | None = None
    target: str | None = None
    receiver: str | None = None
    integration: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)
    id: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": _iso(self.at),
            "kind": self.kind,
            "actor": self.actor,
            "outcome": self.outcome,
            "level": self.level,
            "target": self.target,
            "receiver": self.receiver,
            "integration": self.integration,
            "detail": dict(self.detail),
        }


def _iso(t: datetime | None) -> str | None:
    return t.astimezone(UTC).isoformat().replace("+00:00", "Z") if t is not None else None


def _aware(t: datetime | None) -> datetime | None:
    if t is not None and t.tzinfo is None:
        return t.replace(tzinfo=UTC)
    return t


def _fps(alerts: Sequence[Alert]) -> frozenset[str]:
    return frozenset(a.fingerprint_hex for a in alerts)


@dataclass
class _Snapshot:
    group_labels: dict[str, str]
    alerts: list[Alert]


class _Store:
    """Persistence of escalation states, timeline entries and overrides. States, timeline
    entries and their gc are writes for the engine's ``StateWriter`` (ordered, batched);
    overrides are rare and written at once."""

    def __init__(self, engine: sa.Engine | None) -> None:
        self.engine = engine
        self._memory_timeline: dict[tuple[str, str], list[TimelineEntry]] = {}
        self._next_id = 1
        self._unsaved_states: dict[tuple[str, str], dict[str, Any]] = {}
        self._unsaved_timeline: list[dict[str, Any]] = []

    def load_states(self) -> list[GroupEscalation]:
        if self.engine is None:
            return []
        from signalroom.storage.schema import alerting_escalations as t

        out = []
        with self.engine.connect() as conn:
            for row in conn.execute(sa.select(t)).mappings():
                out.append(
                    GroupEscalation(
                        tenant=row["tenant"],
                        group_key=row["group_key"],
                        status=row["status"],
                        group_labels=dict(row["group_labels"]),
                        started_at=_aware(row["started_at"]) or datetime.now(UTC),
                        policy=row["policy"],
                        severity=row["severity"],
                        priority=row["priority"],
                        level=row["level"],
                        loop=row["loop"],
                        next_at=_aware(row["next_at"]),
                        respond_by=_aware(row["respond_by"]),
                        overdue=row["overdue"],
                        acked_by=row["acked_by"],
                        acked_at=_aware(row["acked_at"]),
                        comment=row["comment"],
                        resolved_by=row["resolved_by"],
                        resolved_at=_aware(row["resolved_at"]),
                        fingerprints=frozenset(row["fingerprints"]),
                        recovery=row["recovery"],
                        updated_at=_aware(row["updated_at"]) or datetime.now(UTC),
                    )
                )
        return out

    def save_later(self, s: GroupEscalation, writer: StateWriter) -> None:
        """Queue ``s`` as it is now (values taken at once); the states queued meanwhile are
        written as one upsert."""
        if self.engine is None:
            return
        self._unsaved_states[(s.tenant, s.group_key)] = {
            "tenant": s.tenant,
            "group_key": s.group_key,
            "status": s.status,
            "policy": s.policy,
            "severity": s.severity,
            "priority": s.priority,
            "group_labels": dict(s.group_labels),
            "started_at": s.started_at,
            "level": s.level,
            "loop": s.loop,
            "next_at": s.next_at,
            "respond_by": s.respond_by,
            "overdue": s.overdue,
            "acked_by": s.acked_by,
            "acked_at": s.acked_at,
            "comment": s.comment,
            "resolved_by": s.resolved_by,
            "resolved_at": s.resolved_at,
            "fingerprints": sorted(s.fingerprints),
            "recovery": s.recovery,
            "updated_at": s.updated_at,
        }
        writer.submit_coalesced(("escalation-states",), self._take_states)

    def _take_states(self) -> Op | None:
        from signalroom.storage.schema import alerting_escalations as t

        rows, self._unsaved_states = list(self._unsaved_states.values()), {}
        if not rows or self.engine is None:
            return None
        return executemany(self.engine, "escalation-states-upsert", upsert(self.engine, t), rows)

    def append_memory(self, tenant: str, group_key: str, entry: TimelineEntry) -> TimelineEntry:
        """Without a database: keep the entry in memory, numbered."""
        entry = replace(entry, id=self._next_id)
        self._next_id += 1
        self._memory_timeline.setdefault((tenant, group_key), []).append(entry)
        return entry

    def append_later(
        self, tenant: str, group_key: str, entry: TimelineEntry, writer: StateWriter
    ) -> None:
        """Queue a timeline entry; the entries queued meanwhile are one insert, in order."""
        self._unsaved_timeline.append(
            {
                "tenant": tenant,
                "group_key": group_key,
                "at": entry.at,
                "kind": entry.kind,
                "actor": entry.actor,
                "level": entry.level,
                "target": entry.target,
                "receiver": entry.receiver,
                "integration": entry.integration,
                "outcome": entry.outcome,
                "detail": dict(entry.detail),
            }
        )
        writer.submit_coalesced(("escalation-timeline",), self._take_timeline)

    def _take_timeline(self) -> Op | None:
        from signalroom.storage.schema import alerting_timeline as t

        rows, self._unsaved_timeline = self._unsaved_timeline, []
        if not rows:
            return None
        assert self.engine is not None
        return executemany(self.engine, "escalation-timeline-insert", t.insert(), rows)

    def timeline(self, tenant: str, group_key: str, limit: int) -> list[TimelineEntry]:
        if self.engine is None:
            return list(self._memory_timeline.get((tenant, group_key), []))[-limit:]
        from signalroom.storage.schema import alerting_timeline as t

        query = (
            sa.select(t)
            .where((t.c.tenant == tenant) & (t.c.group_key == group_key))
            .order_by(t.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            rows = list(conn.execute(query).mappings())
        return [
            TimelineEntry(
                at=_aware(r["at"]) or datetime.now(UTC),
                kind=r["kind"],
                actor=r["actor"],
                outcome=r["outcome"],
                level=r["level"],
                target=r["target"],
                receiver=r["receiver"],
                integration=r["integration"],
                detail=r["detail"],
                id=r["id"],
            )
            for r in reversed(rows)
        ]

    def gc_write(self, before: datetime, resolved_keys: Sequence[tuple[str, str]]) -> Op | None:
        """Forget old timeline entries and the given resolved groups (None: nothing stored)."""
        if self.engine is None:
            for pair in resolved_keys:
                self._memory_timeline.pop(pair, None)
            return None
        from signalroom.storage.schema import alerting_escalations as e
        from signalroom.storage.schema import alerting_timeline as t

        keys = list(resolved_keys)

        def write(conn: sa.Connection) -> None:
            conn.execute(t.delete().where(t.c.at < before))
            for tenant, key in keys:
                # Only while still resolved: a group that fired again since keeps its row
                # (its newer state may be written in an earlier batch than this delete).
                conn.execute(
                    e.delete().where(
                        (e.c.tenant == tenant)
                        & (e.c.group_key == key)
                        & (e.c.status == RESOLVED)
                        & (e.c.resolved_at < before)
                    )
                )

        return write

    # -- overrides ---------------------------------------------------------------------------

    def load_overrides(self) -> list[tuple[str, OverrideRecord]]:
        if self.engine is None:
            return []
        from signalroom.storage.schema import oncall_overrides as t

        with self.engine.connect() as conn:
            return [
                (
                    r["tenant"],
                    OverrideRecord(
                        r["id"],
                        r["schedule"],
                        r["user_name"],
                        _aware(r["starts_at"]) or datetime.now(UTC),
                        _aware(r["ends_at"]) or datetime.now(UTC),
                        r["created_by"],
                        _aware(r["created_at"]),
                    ),
                )
                for r in conn.execute(sa.select(t)).mappings()
            ]

    def save_override(self, tenant: str, o: OverrideRecord) -> None:
        if self.engine is None:
            return
        from signalroom.storage.schema import oncall_overrides as t

        with self.engine.begin() as conn:
            conn.execute(
                t.insert().values(
                    tenant=tenant,
                    id=o.id,
                    schedule=o.schedule,
                    user_name=o.user,
                    starts_at=o.start,
                    ends_at=o.end,
                    created_by=o.created_by,
                    created_at=o.created_at,
                )
            )

    def delete_override(self, tenant: str, override_id: str) -> None:
        if self.engine is None:
            return
        from signalroom.storage.schema import oncall_overrides as t

        with self.engine.begin() as conn:
            conn.execute(t.delete().where((t.c.tenant == tenant) & (t.c.id == override_id)))


class EscalationStage:
    """The pipeline stage of one tenant: starts/ends escalations, holds back repeats of
    acknowledged groups."""

    def __init__(self, engine: EscalationEngine, tenant: str) -> None:
        self.engine = engine
        self.tenant = tenant

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        return ctx, await self.engine.on_flush(self.tenant, ctx, alerts)


class EscalationEngine:
    """Escalation state of every tenant's groups; see the module docstring.

    ``integrations_of(receiver)`` gives the integrations to deliver escalation levels with
    (the Alertmanager's own), ``muted(tenant, labels, now)`` says whether silences or
    inhibition mute an alert now, ``recovery`` runs recovery rules.
    """

    def __init__(
        self,
        config: EscalationExtensions,
        *,
        integrations_of: IntegrationsOf,
        engine: sa.Engine | None = None,
        clock: Clock | None = None,
        muted: MutedFunc | None = None,
        recovery: RecoveryRunner | None = None,
        base_url: str = "http://127.0.0.1:8290",
        backoff: Backoff | None = None,
        retention: timedelta = DEFAULT_RETENTION,
        delivery_timeout: timedelta = ESCALATION_TIMEOUT,
        writer: StateWriter | None = None,
    ) -> None:
        self.config = config
        self.integrations_of = integrations_of
        self.clock = clock or SystemClock()
        self.muted = muted
        self.recovery = recovery
        self.base_url = base_url.rstrip("/")
        self.backoff = backoff
        self.retention = retention
        self.delivery_timeout = delivery_timeout
        self._store = _Store(engine)
        # Shared with the alert manager's other writes, so one thread commits them all.
        self._writer = writer if writer is not None else StateWriter(engine)
        self._states: dict[tuple[str, str], GroupEscalation] = {}
        self._snapshots: dict[tuple[str, str], _Snapshot] = {}
        self._overrides: dict[str, list[OverrideRecord]] = {}
        self._lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._recoveries: set[asyncio.Task[None]] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    async def load(self) -> None:
        states = await asyncio.to_thread(self._store.load_states)
        self._states = {(s.tenant, s.group_key): s for s in states}
        self._overrides = {}
        for tenant, o in await asyncio.to_thread(self._store.load_overrides):
            self._overrides.setdefault(tenant, []).append(o)
        for s in self._states.values():
            if s.recovery == "running":
                # The process stopped mid-recovery: treat it as failed so people get paged.
                s.recovery = "failed"
                if s.status == FIRING and s.next_at is None and self._policy(s) is not None:
                    s.next_at = self.clock.now()

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="alerting-escalation")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        for task in list(self._recoveries):
            task.cancel()
        if self._recoveries:
            await asyncio.wait(set(self._recoveries))
        await self._writer.drain()

    async def settle(self) -> None:
        """Wait until every running recovery finished (tests, orderly shutdown)."""
        while self._recoveries:
            await asyncio.wait(set(self._recoveries))

    def set_config(self, config: EscalationExtensions) -> None:
        """A reloaded configuration; running escalations continue with their policy's new
        levels (a level index beyond the new policy ends the escalation)."""
        self.config = config
        self._wake.set()

    async def _run(self) -> None:
        while True:
            try:
                await self.run_due()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("escalation tick failed")
            self._wake.clear()
            delay = self.config.escalation.tick.total_seconds()
            upcoming = [s.next_at for s in self._states.values() if s.next_at is not None]
            if upcoming:
                delay = min(delay, (min(upcoming) - self.clock.now()).total_seconds())
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    # -- policy selection --------------------------------------------------------------------

    def select_policy(
        self, alerts: Sequence[Alert]
    ) -> tuple[EscalationPolicy | None, str | None, SeverityLevel | None]:
        """The policy, severity value and severity-matrix row for a group's firing alerts."""
        esc = self.config.escalation
        severity: str | None = None
        row: SeverityLevel | None = None
        values = [a.labels[esc.severity_label] for a in alerts if esc.severity_label in a.labels]
        if values:
            severity = min(values, key=self.config.severity_rank)
            row = esc.severity_matrix.get(severity)
        for route in esc.policy_routes:
            if any(matches_all(route.matchers, a.labels) for a in alerts):
                return self.config.policy(route.policy), severity, row
        if row is not None and row.policy is not None:
            return self.config.policy(row.policy), severity, row
        return self.config.policy(esc.default_policy), severity, row

    def _policy(self, s: GroupEscalation) -> EscalationPolicy | None:
        return self.config.policy(s.policy) if s.policy else None

    # -- the pipeline hook -------------------------------------------------------------------

    def stage(self, tenant: str) -> EscalationStage:
        return EscalationStage(self, tenant)

    def observer(self, tenant: str) -> Callable[..., Any]:
        """Records each route notification in the timeline (``build_receiver_stage``'s
        ``observer``)."""

        async def observe(
            ctx: FlushContext, key: ReceiverKey, alerts: list[Alert], error: str | None
        ) -> None:
            entry = TimelineEntry(
                at=ctx.now,
                kind="notified",
                outcome="failed" if error else "sent",
                receiver=key.group_name,
                integration=f"{key.integration}[{key.idx}]",
                detail={
                    "firing": len(ctx.firing),
                    "resolved": len(ctx.resolved),
                    **({"error": error} if error else {}),
                },
            )
            await self._record(tenant, ctx.group_key, entry)

        return observe

    async def on_flush(self, tenant: str, ctx: FlushContext, alerts: list[Alert]) -> list[Alert]:
        """Called with each flush's alerts that survived inhibition and silences; returns
        the alerts to notify (none for a repeat of an acknowledged group)."""
        now = ctx.now
        firing = [a for a in alerts if not a.resolved_at(now)]
        key = (tenant, ctx.group_key)
        async with self._lock:
            self._snapshots[key] = _Snapshot(dict(ctx.group_labels), firing)
            state = self._states.get(key)
            if firing:
                current = _fps(firing)
                if state is None or (
                    state.status == RESOLVED and not current <= state.fingerprints
                ):
                    await self._trigger(
                        tenant,
                        ctx.group_key,
                        ctx.group_labels,
                        firing,
                        now,
                        reopened=state is not None,
                    )
                elif (
                    state.status == ACKNOWLEDGED
                    and self.config.escalation.ack_suppresses_repeats
                    and len(firing) == len(alerts)  # nothing resolved: a plain repeat
                    and current <= state.fingerprints
                ):
                    return []
            elif state is not None:
                if state.status != RESOLVED:
                    await self._resolve(state, now, "alertmanager", "all alerts resolved")
                elif state.fingerprints:
                    state.fingerprints = frozenset()
                    await self._save(state, now)
        return alerts

    async def _trigger(
        self,
        tenant: str,
        group_key: str,
        group_labels: Mapping[str, str],
        firing: list[Alert],
        now: datetime,
        *,
        reopened: bool,
    ) -> None:
        policy, severity, row = self.select_policy(firing)
        state = GroupEscalation(
            tenant=tenant,
            group_key=group_key,
            status=FIRING,
            group_labels=dict(group_labels),
            started_at=now,
            policy=policy.name if policy else None,
            severity=severity,
            priority=row.priority if row else None,
            next_at=now + policy.levels[0].after if policy else None,
            respond_by=now + row.response_time if row and row.response_time else None,
        )
        self._states[(tenant, group_key)] = state
        rule = self.recovery.match(firing) if self.recovery is not None else None
        if rule is not None:
            state.recovery = "running"
            if rule.hold_escalation:
                state.next_at = None
        await self._save(state, now)
        await self._record(
            tenant,
            group_key,
            TimelineEntry(
                at=now,
                kind="reopened" if reopened else "triggered",
                detail={
                    "policy": state.policy,
                    "severity": severity,
                    "priority": state.priority,
                    "respondBy": _iso(state.respond_by),
                    "alerts": len(firing),
                },
            ),
        )
        if rule is not None:
            task = asyncio.create_task(self._recover(state, rule, firing))
            self._recoveries.add(task)
            task.add_done_callback(self._recoveries.discard)
        self._wake.set()

    # -- escalation levels -------------------------------------------------------------------

    async def run_due(self, now: datetime | None = None) -> int:
        """Notify every level that is due at ``now``; returns how many levels went out."""
        now = now or self.clock.now()
        sent = 0
        async with self._lock:
            for state in list(self._states.values()):
                if state.status != FIRING:
                    continue
                if state.respond_by is not None and not state.overdue and now >= state.respond_by:
                    state.overdue = True
                    await self._save(state, now)
                    await self._record(
                        state.tenant,
                        state.group_key,
                        TimelineEntry(
                            at=now,
                            kind="response_overdue",
                            outcome="missed",
                            detail={
                                "respondBy": _iso(state.respond_by),
                                "severity": state.severity,
                            },
                        ),
                    )
                while state.status == FIRING and state.next_at is not None and state.next_at <= now:
                    if not await self._notify_level(state, now):
                        break
                    sent += 1
        return sent

    async def _notify_level(self, state: GroupEscalation, now: datetime) -> bool:
        policy = self._policy(state)
        if policy is None or state.level >= len(policy.levels):
            state.next_at = None
            await self._save(state, now)
            return False
        snapshot = self._snapshots.get((state.tenant, state.group_key))
        if snapshot is None:
            return False  # after a restart: wait for the group's next flush
        alerts = [
            a
            for a in snapshot.alerts
            if self.muted is None or not self.muted(state.tenant, a.labels, now)
        ]
        if not alerts:
            return False  # silenced or inhibited meanwhile: hold the level
        level = policy.levels[state.level]
        number = state.level + 1
        for target in level.targets:
            await self._notify_target(state, policy, number, target, alerts, snapshot, now)
        state.level += 1
        loop_start = state.started_at + (policy.repeat_interval or timedelta(0)) * state.loop
        if state.level < len(policy.levels):
            state.next_at = loop_start + policy.levels[state.level].after
        elif state.loop < policy.repeat and policy.repeat_interval is not None:
            state.loop += 1
            state.level = 0
            state.next_at = (
                state.started_at + policy.repeat_interval * state.loop + (policy.levels[0].after)
            )
        else:
            state.next_at = None
            await self._record(
                state.tenant,
                state.group_key,
                TimelineEntry(
                    at=now,
                    kind="escalation_exhausted",
                    outcome="unacknowledged",
                    detail={"policy": policy.name, "loops": state.loop + 1},
                ),
            )
        await self._save(state, now)
        return True

    async def _notify_target(
        self,
        state: GroupEscalation,
        policy: EscalationPolicy,
        number: int,
        target: EscalationTarget,
        alerts: list[Alert],
        snapshot: _Snapshot,
        now: datetime,
    ) -> None:
        receivers: list[tuple[str, str | None]] = []  # (receiver, on-call user)
        if target.receiver is not None:
            receivers.append((target.receiver, None))
        elif target.schedule is not None:
            who = self.oncall(target.schedule, now, state.tenant)
            if who is None or who.user is None:
                await self._record(
                    state.tenant,
                    state.group_key,
                    TimelineEntry(
                        at=now,
                        kind="escalated",
                        outcome="nobody on call",
                        level=number,
                        target=target.describe(),
                    ),
                )
                return
            receiver = self._receiver_for(target.schedule, who.user)
            if receiver is None:
                await self._record(
                    state.tenant,
                    state.group_key,
                    TimelineEntry(
                        at=now,
                        kind="escalated",
                        outcome="no receiver",
                        level=number,
                        target=target.describe(),
                        detail={"user": who.user},
                    ),
                )
                return
            receivers.append((receiver, who.user))
        for receiver, user in receivers:
            copies = []
            for a in alerts:
                c = a.copy()
                c._fp = a._fp
                c.ends_at = None
                c.annotations["escalation_policy"] = policy.name
                c.annotations["escalation_level"] = f"L{number}"
                if user is not None:
                    c.annotations["oncall_user"] = user
                    c.annotations["oncall_schedule"] = target.schedule or ""
                link = runbook_link(a.labels, a.annotations, self._runbook_base())
                if link:
                    c.annotations["runbook_url"] = link
                copies.append(c)
            results = await self._deliver(state, receiver, snapshot, copies, now)
            if not results:
                await self._record(
                    state.tenant,
                    state.group_key,
                    TimelineEntry(
                        at=now,
                        kind="escalated",
                        outcome="no integrations",
                        level=number,
                        target=target.describe(),
                        receiver=receiver,
                        detail={"user": user} if user else {},
                    ),
                )
            for integration, error in results:
                detail: dict[str, Any] = {"alerts": len(copies)}
                if user:
                    detail["user"] = user
                if error:
                    detail["error"] = error
                await self._record(
                    state.tenant,
                    state.group_key,
                    TimelineEntry(
                        at=now,
                        kind="escalated",
                        outcome="failed" if error else "sent",
                        level=number,
                        target=target.describe(),
                        receiver=receiver,
                        integration=integration,
                        detail=detail,
                    ),
                )

    def _receiver_for(self, schedule: str, user: str) -> str | None:
        person = self.config.oncall.users.get(user)
        if person is not None:
            return person.receiver
        sched = self.config.schedule(schedule)
        return sched.receiver if sched is not None else None

    def _runbook_base(self) -> str:
        return self.config.escalation.runbooks.base_url or self.base_url

    async def _deliver(
        self,
        state: GroupEscalation,
        receiver: str,
        snapshot: _Snapshot,
        alerts: list[Alert],
        now: datetime,
    ) -> list[tuple[str, str | None]]:
        integrations = list(self.integrations_of(receiver))
        loop = asyncio.get_running_loop()

        async def one(integ: Integration) -> tuple[str, str | None]:
            ctx = FlushContext(
                now=now,
                group_key=state.group_key,
                group_labels=dict(snapshot.group_labels),
                receiver=receiver,
                repeat_interval=timedelta(0),
                tenant=state.tenant,
                deadline=loop.time() + self.delivery_timeout.total_seconds(),
                firing=[a.fingerprint for a in alerts],
            )
            try:
                await RetryStage(integ, self.backoff).exec(ctx, alerts)
            except PipelineError as exc:
                return f"{integ.name}[{integ.idx}]", str(exc)
            except Exception as exc:
                return f"{integ.name}[{integ.idx}]", f"{type(exc).__name__}: {exc}"
            return f"{integ.name}[{integ.idx}]", None

        return list(await asyncio.gather(*(one(i) for i in integrations)))

    # -- recovery ----------------------------------------------------------------------------

    async def _recover(
        self, state: GroupEscalation, rule: RecoveryRule, alerts: list[Alert]
    ) -> None:
        assert self.recovery is not None
        tenant, key = state.tenant, state.group_key
        action = (
            {"command": rule.command.argv}
            if rule.command
            else {"webhook": rule.webhook.url if rule.webhook else None}
        )
        await self._record(
            tenant,
            key,
            TimelineEntry(
                at=self.clock.now(),
                kind="recovery_started",
                actor=f"recovery:{rule.name}",
                detail={"rule": rule.name, **action},
            ),
        )
        ok = False
        reason = ""
        try:
            context = recovery_context(tenant, key, state.group_labels, alerts)
            result = await self.recovery.run_action(rule, context)
            await self._record(
                tenant,
                key,
                TimelineEntry(
                    at=self.clock.now(),
                    kind="recovery_action",
                    actor=f"recovery:{rule.name}",
                    outcome=result.outcome,
                    detail=result.detail(),
                ),
            )
            if not result.ok:
                reason = f"action {result.outcome}"
            elif rule.verify is None:
                ok = True
            else:
                verified = await self.recovery.verify_until(rule.verify)
                ok = verified.ok
                await self._record(
                    tenant,
                    key,
                    TimelineEntry(
                        at=self.clock.now(),
                        kind="recovery_verified",
                        actor=f"recovery:{rule.name}",
                        outcome="recovered" if ok else "not recovered",
                        detail={
                            "expr": rule.verify.expr,
                            "attempts": verified.attempts,
                            "errors": verified.errors,
                        },
                    ),
                )
                if not ok:
                    reason = f"{rule.verify.expr!r} did not hold within {rule.verify.within}"
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("recovery crashed", extra={"group_key": key, "rule": rule.name})
            reason = f"{type(exc).__name__}: {exc}"
        now = self.clock.now()
        async with self._lock:
            current = self._states.get((tenant, key))
            if current is not state:
                return  # the group was resolved and re-triggered meanwhile
            if ok:
                state.recovery = "succeeded"
                if state.status != RESOLVED:
                    await self._resolve(state, now, f"recovery:{rule.name}", "recovered")
                else:
                    await self._save(state, now)
                return
            state.recovery = "failed"
            await self._record(
                tenant,
                key,
                TimelineEntry(
                    at=now,
                    kind="recovery_failed",
                    actor=f"recovery:{rule.name}",
                    outcome="escalating" if state.status == FIRING else state.status,
                    detail={"reason": reason},
                ),
            )
            policy = self._policy(state)
            if state.status == FIRING and policy is not None and rule.hold_escalation:
                # People are paged from L1 now, as if the escalation started at the failure.
                state.started_at = now
                state.level = 0
                state.loop = 0
                state.next_at = now + policy.levels[0].after
            await self._save(state, now)
        self._wake.set()

    # -- acknowledgement and resolution ------------------------------------------------------

    def state(self, tenant: str, group_key: str) -> GroupEscalation | None:
        return self._states.get((tenant, group_key))

    def states(self, tenant: str) -> list[GroupEscalation]:
        return [s for (t, _), s in self._states.items() if t == tenant]

    def _require(self, tenant: str, group_key: str) -> GroupEscalation:
        state = self._states.get((tenant, group_key))
        if state is None:
            raise EscalationError(404, f"no alert group {group_key!r} has fired")
        return state

    async def acknowledge(
        self, tenant: str, group_key: str, by: str, comment: str = ""
    ) -> GroupEscalation:
        """Stop the escalation of a firing group; records who and when."""
        now = self.clock.now()
        async with self._lock:
            state = self._require(tenant, group_key)
            if state.status == RESOLVED:
                raise EscalationError(409, "the alert group is resolved")
            if state.status == ACKNOWLEDGED:
                return state
            snapshot = self._snapshots.get((tenant, group_key))
            state.status = ACKNOWLEDGED
            state.acked_by, state.acked_at, state.comment = by, now, comment
            state.next_at = None
            state.fingerprints = _fps(snapshot.alerts) if snapshot else state.fingerprints
            await self._save(state, now)
            await self._record(
                tenant,
                group_key,
                TimelineEntry(at=now, kind="acknowledged", actor=by, detail={"comment": comment}),
            )
            return state

    async def unacknowledge(self, tenant: str, group_key: str, by: str) -> GroupEscalation:
        """Back to firing; the escalation starts again at L1."""
        now = self.clock.now()
        async with self._lock:
            state = self._require(tenant, group_key)
            if state.status != ACKNOWLEDGED:
                raise EscalationError(409, f"the alert group is {state.status}, not acknowledged")
            policy = self._policy(state)
            state.status = FIRING
            state.acked_by = state.acked_at = None
            state.comment = ""
            state.started_at, state.level, state.loop = now, 0, 0
            state.next_at = now + policy.levels[0].after if policy else None
            state.fingerprints = frozenset()
            await self._save(state, now)
            await self._record(
                tenant, group_key, TimelineEntry(at=now, kind="unacknowledged", actor=by)
            )
        self._wake.set()
        return state

    async def resolve(
        self, tenant: str, group_key: str, by: str, comment: str = ""
    ) -> GroupEscalation:
        """End the group's escalation by hand (the alerts themselves keep their state)."""
        now = self.clock.now()
        async with self._lock:
            state = self._require(tenant, group_key)
            if state.status == RESOLVED:
                return state
            await self._resolve(state, now, by, comment)
            return state

    async def _resolve(self, state: GroupEscalation, now: datetime, by: str, comment: str) -> None:
        snapshot = self._snapshots.get((state.tenant, state.group_key))
        state.status = RESOLVED
        state.resolved_by, state.resolved_at = by, now
        state.next_at = None
        state.fingerprints = (
            _fps(snapshot.alerts) if snapshot and by != "alertmanager" else (frozenset())
        )
        await self._save(state, now)
        await self._record(
            state.tenant,
            state.group_key,
            TimelineEntry(at=now, kind="resolved", actor=by, detail={"comment": comment}),
        )

    # -- timeline, on-call -------------------------------------------------------------------

    async def timeline(self, tenant: str, group_key: str, limit: int = 1000) -> list[TimelineEntry]:
        await self._writer.drain()
        return await asyncio.to_thread(self._store.timeline, tenant, group_key, limit)

    def overrides(self, tenant: str = "default") -> list[OverrideRecord]:
        return list(self._overrides.get(tenant, []))

    def oncall(self, schedule: str, at: datetime, tenant: str = "default") -> OnCall | None:
        sched = self.config.schedule(schedule)
        if sched is None:
            return None
        return oncall_at(sched, at, self._overrides.get(tenant, []))

    async def add_override(
        self, tenant: str, schedule: str, user: str, start: datetime, end: datetime, by: str
    ) -> OverrideRecord:
        if self.config.schedule(schedule) is None:
            raise EscalationError(404, f"no schedule {schedule!r}")
        if start.tzinfo is None or end.tzinfo is None:
            raise EscalationError(400, "start and end need a UTC offset or Z")
        if end <= start:
            raise EscalationError(400, "end must be after start")
        if not user.strip():
            raise EscalationError(400, "user must not be empty")
        record = OverrideRecord(
            uuid.uuid4().hex,
            schedule,
            user,
            start.astimezone(UTC),
            end.astimezone(UTC),
            by,
            self.clock.now(),
        )
        await asyncio.to_thread(self._store.save_override, tenant, record)
        self._overrides.setdefault(tenant, []).append(record)
        return record

    async def delete_override(self, tenant: str, override_id: str) -> None:
        kept = [o for o in self._overrides.get(tenant, []) if o.id != override_id]
        if len(kept) == len(self._overrides.get(tenant, [])):
            raise EscalationError(404, f"no override {override_id!r}")
        await asyncio.to_thread(self._store.delete_override, tenant, override_id)
        self._overrides[tenant] = kept

    # -- persistence -------------------------------------------------------------------------

    # States and timeline entries are queued on the writer, not awaited: a burst of new groups
    # (each triggering under the one lock) then costs one commit, not two per group. They are
    # durable a commit later; stop() drains the writer.

    async def _save(self, state: GroupEscalation, now: datetime) -> None:
        state.updated_at = now
        self._store.save_later(state, self._writer)

    async def _record(self, tenant: str, group_key: str, entry: TimelineEntry) -> None:
        if self._store.engine is None:
            self._store.append_memory(tenant, group_key, entry)
        else:
            self._store.append_later(tenant, group_key, entry, self._writer)

    async def gc(self, now: datetime) -> None:
        """Forget timeline entries and resolved groups older than the retention."""
        before = now - self.retention
        async with self._lock:
            old = [
                k
                for k, s in self._states.items()
                if s.status == RESOLVED and s.resolved_at is not None and s.resolved_at < before
            ]
            for k in old:
                self._states.pop(k, None)
                self._snapshots.pop(k, None)
            write = self._store.gc_write(before, old)
            if write is not None:
                self._writer.submit(write)
            for tenant, records in self._overrides.items():
                self._overrides[tenant] = [o for o in records if o.end >= before]
