"""The notification pipeline (Alertmanager's ``notify/notify.go``).

Every flush of an aggregation group runs the stages of its receiver:

    inhibit -> active time intervals -> mute time intervals -> silences ->
    fan out to each integration: dedup (notification log) -> retry -> log the notification

A stage takes the flush context and the alerts and returns the context and the alerts that go
on; the chain stops as soon as no alerts are left. New stages (escalation, acknowledgement,
recovery actions) slot in by composing :class:`MultiStage` differently in ``build_pipeline``.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Protocol

from signalroom.alerting.alerts import Alert
from signalroom.alerting.inhibit import Inhibitor
from signalroom.alerting.nflog import NotificationLog, NotifyEntry, ReceiverKey
from signalroom.alerting.notify.base import Integration, NotifyError
from signalroom.alerting.notify.context import FlushContext
from signalroom.alerting.notify.metrics import METRICS
from signalroom.alerting.silences import Silences
from signalroom.alerting.timeinterval import TimeInterval, any_contains

__all__ = [
    "DedupStage",
    "FanoutStage",
    "FlushContext",
    "IntegrationObserver",
    "MultiStage",
    "MuteStage",
    "ObservedStage",
    "PipelineError",
    "RetryStage",
    "SetNotifiesStage",
    "Stage",
    "TimeActiveStage",
    "TimeMuteStage",
    "build_receiver_stage",
    "needs_update",
]

log = logging.getLogger("signalroom.alerting.notify")


class PipelineError(Exception):
    """One or more integrations failed; the group keeps its alerts for the next flush."""


class Stage(Protocol):
    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]: ...


class MultiStage:
    """Stages in order; stops when a stage leaves no alerts."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        for stage in self.stages:
            if not alerts:
                return ctx, []
            ctx, alerts = await stage.exec(ctx, alerts)
        return ctx, alerts


class FanoutStage:
    """Stages run concurrently, each on its own copy of the context; fails if any fails."""

    def __init__(self, stages: Sequence[Stage]) -> None:
        self.stages = list(stages)

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        if len(self.stages) == 1:
            # The usual receiver with one integration: awaited in line, without the task
            # gather would wrap it in.
            try:
                await self.stages[0].exec(replace(ctx), list(alerts))
            except (asyncio.CancelledError, PipelineError):
                raise
            except Exception as exc:
                raise PipelineError(str(exc)) from exc
            return ctx, alerts
        results = await asyncio.gather(
            *(s.exec(replace(ctx), list(alerts)) for s in self.stages), return_exceptions=True
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        for err in errors:
            if isinstance(err, asyncio.CancelledError):
                raise err
        if errors:
            raise PipelineError("; ".join(str(e) for e in errors))
        return ctx, alerts


class MuteStage:
    """Drops the alerts a muter (inhibitor or silences) mutes; ``idle()`` says the muter
    has nothing that could mute (no rules, no silences), which skips the per-alert check."""

    def __init__(
        self,
        mutes: Callable[[Mapping[str, str], datetime], bool],
        idle: Callable[[], bool] | None = None,
    ) -> None:
        self.mutes = mutes
        self.idle = idle

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        if self.idle is not None and self.idle():
            return ctx, alerts
        return ctx, [a for a in alerts if not self.mutes(a.labels, ctx.now)]


def inhibit_stage(inhibitor: Inhibitor) -> MuteStage:
    return MuteStage(inhibitor.mutes, lambda: not inhibitor.rules)


def silence_stage(silences: Silences) -> MuteStage:
    return MuteStage(lambda labels, now: bool(silences.mutes(labels, now)), silences.empty)


class TimeMuteStage:
    """Drops every alert while the route's mute time intervals contain ``now``."""

    def __init__(self, intervals: Mapping[str, list[TimeInterval]]) -> None:
        self.intervals = intervals

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        for name in ctx.mute_time_intervals:
            if any_contains(self.intervals.get(name, []), ctx.now):
                return ctx, []
        return ctx, alerts


class TimeActiveStage:
    """Drops every alert while ``now`` is outside all the route's active time intervals."""

    def __init__(self, intervals: Mapping[str, list[TimeInterval]]) -> None:
        self.intervals = intervals

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        if not ctx.active_time_intervals:
            return ctx, alerts
        for name in ctx.active_time_intervals:
            if any_contains(self.intervals.get(name, []), ctx.now):
                return ctx, alerts
        return ctx, []


def needs_update(
    entry: NotifyEntry | None,
    firing: set[int],
    resolved: set[int],
    repeat_interval: timedelta,
    now: datetime,
    send_resolved: bool,
) -> bool:
    """``DedupStage.needsUpdate``: should this group be sent to this integration now?"""
    if entry is None:
        return len(firing) > 0
    if not entry.is_firing_subset(firing):
        return True
    if not firing:
        # Everything resolved: notify only if the receiver saw something firing.
        return len(entry.firing) > 0
    if send_resolved and not entry.is_resolved_subset(resolved):
        return True
    return entry.timestamp < now - repeat_interval


class DedupStage:
    """Passes the alerts on only when the notification log says the receiver needs them."""

    def __init__(self, nflog: NotificationLog, receiver: ReceiverKey, send_resolved: bool) -> None:
        self.nflog = nflog
        self.receiver = receiver
        self.send_resolved = send_resolved

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        firing: list[int] = []
        resolved: list[int] = []
        for a in alerts:
            (resolved if a.resolved_at(ctx.now) else firing).append(a.fingerprint)
        ctx.firing, ctx.resolved = firing, resolved
        entry = self.nflog.query(ctx.group_key, self.receiver)
        if needs_update(
            entry, set(firing), set(resolved), ctx.repeat_interval, ctx.now, self.send_resolved
        ):
            return ctx, alerts
        return ctx, []


@dataclass
class Backoff:
    """Exponential backoff as ``cenkalti/backoff`` defaults: 0.5 s x1.5, +-50 %, max 60 s."""

    initial: float = 0.5
    multiplier: float = 1.5
    randomization: float = 0.5
    max_interval: float = 60.0

    def delays(self) -> Callable[[], float]:
        current = self.initial

        def next_delay() -> float:
            nonlocal current
            delta = self.randomization * current
            value = current - delta + random.random() * (2 * delta)
            current = min(current * self.multiplier, self.max_interval)
            return value

        return next_delay


class RetryStage:
    """Sends through one integration, retrying retryable failures until the flush deadline."""

    def __init__(self, integration: Integration, backoff: Backoff | None = None) -> None:
        self.integration = integration
        self.backoff = backoff or Backoff()
        # The labelled children, looked up once rather than on every attempt.
        self._latency = METRICS.latency.labels(integration.name)
        self._sent = METRICS.notifications.labels(integration.name)

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        integ = self.integration
        if integ.send_resolved:
            sent = alerts
        else:
            # Only resolved alerts: nothing to send, but log them so dedup sees them next time.
            if not ctx.firing:
                return ctx, alerts
            sent = [a for a in alerts if not a.resolved_at(ctx.now)]
        next_delay = self.backoff.delays()
        loop = asyncio.get_running_loop()
        attempt = 0
        last: NotifyError | None = None
        while True:
            attempt += 1
            timeout = integ.timeout
            if ctx.deadline is not None:
                remaining = ctx.deadline - loop.time()
                if remaining <= 0:
                    raise PipelineError(
                        f"{ctx.receiver}/{integ.name}[{integ.idx}]: notify retry canceled after "
                        f"{attempt - 1} attempts: {last or 'deadline exceeded'}"
                    )
                timeout = remaining if timeout is None else min(timeout, remaining)
            started = time.perf_counter()
            try:
                async with asyncio.timeout(timeout):
                    await integ.notify(ctx, sent)
                err = None
            except TimeoutError:
                err = NotifyError(
                    "context deadline exceeded", retry=True, reason="contextDeadlineExceeded"
                )
            except NotifyError as exc:
                err = exc
            except Exception as exc:  # a bug or an unexpected client error: retry
                err = NotifyError(f"{type(exc).__name__}: {exc}", retry=True, reason="other")
            self._latency.observe(time.perf_counter() - started)
            self._sent.inc()
            if err is None:
                return ctx, alerts
            METRICS.failed.labels(integ.name, err.reason).inc()
            if not err.retry:
                raise PipelineError(
                    f"{ctx.receiver}/{integ.name}[{integ.idx}]: notify retry canceled due to "
                    f"unrecoverable error after {attempt} attempts: {err}"
                )
            if last is None or str(last) != str(err):
                log.warning(
                    "notify attempt failed",
                    extra={"integration": integ.name, "attempt": attempt, "error": str(err)},
                )
            last = err
            delay = next_delay()
            if ctx.deadline is not None:
                delay = min(delay, max(0.0, ctx.deadline - loop.time()))
            await asyncio.sleep(delay)


IntegrationObserver = Callable[
    [FlushContext, ReceiverKey, list[Alert], str | None], Awaitable[None]
]
"""Told the outcome of each integration that had something to send: the error, or None."""


class ObservedStage:
    """Runs one integration's stages and tells an observer what happened; an integration
    the dedup stage skipped is not reported."""

    def __init__(self, inner: Stage, key: ReceiverKey, observer: IntegrationObserver) -> None:
        self.inner = inner
        self.key = key
        self.observer = observer

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        try:
            ctx, sent = await self.inner.exec(ctx, alerts)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await self._tell(ctx, alerts, str(exc))
            raise
        if sent:
            await self._tell(ctx, sent, None)
        return ctx, sent

    async def _tell(self, ctx: FlushContext, alerts: list[Alert], error: str | None) -> None:
        try:
            await self.observer(ctx, self.key, alerts, error)
        except Exception:  # an observer must not fail a notification
            log.exception("integration observer failed", extra={"receiver": str(self.key)})


class SetNotifiesStage:
    """Records a successful notification in the notification log."""

    def __init__(self, nflog: NotificationLog, receiver: ReceiverKey) -> None:
        self.nflog = nflog
        self.receiver = receiver

    async def exec(
        self, ctx: FlushContext, alerts: list[Alert]
    ) -> tuple[FlushContext, list[Alert]]:
        await self.nflog.record(self.receiver, ctx.group_key, ctx.firing, ctx.resolved, ctx.now)
        return ctx, alerts


def build_receiver_stage(
    receiver: str,
    integrations: Sequence[Integration],
    *,
    inhibitor: Inhibitor,
    silences: Silences,
    nflog: NotificationLog,
    intervals: Mapping[str, list[TimeInterval]],
    backoff: Backoff | None = None,
    extra_stages: Sequence[Stage] = (),
    observer: IntegrationObserver | None = None,
) -> MultiStage:
    """Alertmanager's per-receiver stage; ``extra_stages`` run after silencing (escalation,
    acknowledgement, runbook links); ``observer`` hears each integration's outcome."""
    per_integration: list[Stage] = []
    for integ in integrations:
        key = ReceiverKey(receiver, integ.name, integ.idx)
        chain: Stage = MultiStage(
            [
                DedupStage(nflog, key, integ.send_resolved),
                RetryStage(integ, backoff),
                SetNotifiesStage(nflog, key),
            ]
        )
        per_integration.append(chain if observer is None else ObservedStage(chain, key, observer))
    return MultiStage(
        [
            inhibit_stage(inhibitor),
            TimeActiveStage(intervals),
            TimeMuteStage(intervals),
            silence_stage(silences),
            *extra_stages,
            FanoutStage(per_integration),
        ]
    )
