"""The dispatcher and its aggregation groups (Alertmanager's ``dispatch/dispatch.go``).

Each alert is routed through the tree; every matching route puts it into the aggregation group
of that route and the alert's group labels (created on first use). A group's first flush is
``group_wait`` after it was created (at once if an inserted alert already started more than
``group_wait`` ago, while the group has never flushed); later flushes follow every
``group_interval``. A flush hands a snapshot of the group to the notification pipeline: alerts
not resolved at that moment are sent without an end time, and after a successful flush the
resolved alerts that did not change meanwhile leave the group. Empty groups are removed by a
periodic cleanup (every 30 s), as in Alertmanager.

Timing runs on an injectable :class:`~signalroom.alerting.alerts.Clock`; ``run()`` is the live
loop and ``run_due(now)`` flushes whatever is due, for tests that move the clock by hand.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from signalroom.alerting.alerts import Alert, Clock, SystemClock, fingerprint, sort_alerts
from signalroom.alerting.notify.pipeline import FlushContext
from signalroom.alerting.route import RouteNode, format_label_set

__all__ = ["AggregationGroup", "Dispatcher", "GroupView", "NotifyFunc"]

log = logging.getLogger("signalroom.alerting.dispatch")

NotifyFunc = Callable[[FlushContext, list[Alert]], Awaitable[None]]
"""Runs the receiver's pipeline; raises when the notification failed."""

MIN_FLUSH_TIMEOUT = timedelta(seconds=10)
CLEANUP_INTERVAL = timedelta(seconds=30)
_CACHE_LIMIT = 100_000  # entries per cache before it starts over


class AggregationGroup:
    """Alerts of one route with the same group labels, flushed together."""

    def __init__(self, route: RouteNode, labels: dict[str, str], now: datetime) -> None:
        self.route = route
        self.labels = labels
        self.fp = fingerprint(labels)
        self.key = f"{route.key()}:{format_label_set(labels)}"
        self.alerts: dict[int, Alert] = {}
        self.next_flush_at = now + route.opts.group_wait
        self.has_flushed = False
        self.flushing = False
        self.stopped = False

    def insert(self, alert: Alert, now: datetime) -> bool:
        """Add or replace an alert; True when this makes the group due at once."""
        self.alerts[alert.fingerprint] = alert
        if (
            not self.has_flushed
            and alert.starts_at is not None
            and alert.starts_at + self.route.opts.group_wait < now
            and self.next_flush_at > now
        ):
            self.next_flush_at = now
            return True
        return False

    def empty(self) -> bool:
        return not self.alerts

    def __repr__(self) -> str:
        return f"AggregationGroup({self.key!r}, alerts={len(self.alerts)})"


@dataclass(frozen=True)
class GroupView:
    """A group as the API shows it."""

    labels: dict[str, str]
    receiver: str
    route: RouteNode
    key: str
    alerts: list[Alert]


class Dispatcher:
    """Routes alerts into aggregation groups and flushes the groups on time."""

    def __init__(
        self,
        route: RouteNode,
        notify: NotifyFunc,
        *,
        clock: Clock | None = None,
        cleanup_interval: timedelta = CLEANUP_INTERVAL,
    ) -> None:
        self.route = route
        self.notify = notify
        self.clock = clock or SystemClock()
        self.cleanup_interval = cleanup_interval
        self.groups: dict[RouteNode, dict[int, AggregationGroup]] = {}
        self._heap: list[tuple[datetime, int, AggregationGroup]] = []
        self._seq = itertools.count()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._flushes: set[asyncio.Task[None]] = set()
        self._last_cleanup: datetime | None = None
        # Routing depends only on the labels the tree's matchers name, grouping only on the
        # group_by labels: both are cached by those values, so a burst of alerts that differ
        # elsewhere (instance, ...) is matched and fingerprinted once.
        self._matched_names = tuple(
            sorted({m.name for node in route.walk() for m in node.matchers})
        )
        self._routes_by_values: dict[tuple[str | None, ...], list[RouteNode]] = {}
        self._group_names: dict[RouteNode, tuple[str, ...]] = {
            node: tuple(sorted(node.opts.group_by)) for node in route.walk()
        }
        self._group_by_values: dict[
            tuple[RouteNode, tuple[str | None, ...]], tuple[dict[str, str], int]
        ] = {}

    # -- alerts in -------------------------------------------------------------------------

    def process(self, alert: Alert, now: datetime | None = None) -> None:
        """Put an alert into the groups of every route it matches; ``now``: when it arrived
        (a new group's group_wait starts then)."""
        if now is None:
            now = self.clock.now()
        for route in self._routes(alert.labels):
            labels, fp = self._group_of(route, alert.labels)
            groups = self.groups.setdefault(route, {})
            ag = groups.get(fp)
            if ag is None:
                ag = AggregationGroup(route, dict(labels), now)
                groups[fp] = ag
                ag.insert(alert, now)
                self._schedule(ag)
            elif ag.insert(alert, now):
                self._schedule(ag)

    def _routes(self, labels: dict[str, str]) -> list[RouteNode]:
        key = tuple(map(labels.get, self._matched_names))
        routes = self._routes_by_values.get(key)
        if routes is None:
            if len(self._routes_by_values) >= _CACHE_LIMIT:
                self._routes_by_values.clear()
            routes = self._routes_by_values[key] = self.route.match(labels)
        return routes

    def _group_of(self, route: RouteNode, labels: dict[str, str]) -> tuple[dict[str, str], int]:
        if route.opts.group_by_all:
            group = route.group_labels(labels)
            return group, fingerprint(group)
        key = (route, tuple(map(labels.get, self._group_names[route])))
        found = self._group_by_values.get(key)
        if found is None:
            if len(self._group_by_values) >= _CACHE_LIMIT:
                self._group_by_values.clear()
            group = route.group_labels(labels)
            found = self._group_by_values[key] = (group, fingerprint(group))
        return found

    def _schedule(self, ag: AggregationGroup) -> None:
        heapq.heappush(self._heap, (ag.next_flush_at, next(self._seq), ag))
        self._wake.set()

    # -- flushing --------------------------------------------------------------------------

    def _pop_due(self, now: datetime) -> list[AggregationGroup]:
        due: list[AggregationGroup] = []
        seen: set[int] = set()
        while self._heap and self._heap[0][0] <= now:
            at, _, ag = heapq.heappop(self._heap)
            if ag.stopped or at != ag.next_flush_at or id(ag) in seen:
                continue  # superseded entry
            if ag.flushing:
                continue  # rescheduled when the running flush ends
            seen.add(id(ag))
            due.append(ag)
        return due

    async def flush(self, ag: AggregationGroup, now: datetime) -> bool:
        """One flush of a group at ``now``; returns whether the pipeline succeeded."""
        opts = ag.route.opts
        ag.next_flush_at = now + opts.group_interval
        ag.has_flushed = True
        self._schedule(ag)
        if ag.empty():
            return True
        snapshot: list[Alert] = []
        for alert in ag.alerts.values():
            # Alerts must not resolve while the pipeline runs: unresolved ones go without an
            # end. The label and annotation dicts are shared (nothing changes them in place;
            # stages that add annotations copy the alert first).
            snapshot.append(
                Alert(
                    alert.labels,
                    alert.annotations,
                    alert.starts_at,
                    alert.ends_at if alert.resolved_at(now) else None,
                    alert.generator_url,
                    alert.updated_at,
                    alert.timeout,
                    alert._fp,
                )
            )
        snapshot = sort_alerts(snapshot)
        loop = asyncio.get_running_loop()
        timeout = max(opts.group_interval, MIN_FLUSH_TIMEOUT).total_seconds()
        ctx = FlushContext(
            now=now,
            group_key=ag.key,
            group_labels=dict(ag.labels),
            receiver=opts.receiver,
            repeat_interval=opts.repeat_interval,
            mute_time_intervals=opts.mute_time_intervals,
            active_time_intervals=opts.active_time_intervals,
            deadline=loop.time() + timeout,
        )
        ag.flushing = True
        try:
            async with asyncio.timeout(timeout + 1):
                await self.notify(ctx, snapshot)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.error(
                "notify for alert group failed",
                extra={"group_key": ag.key, "receiver": opts.receiver, "error": str(exc)},
            )
            return False
        finally:
            ag.flushing = False
            if not ag.stopped:
                self._schedule(ag)  # an entry popped while flushing was dropped
        for sent in snapshot:
            current = ag.alerts.get(sent.fingerprint)
            if (
                current is not None
                and sent.resolved_at(now)
                and current.updated_at == sent.updated_at
            ):
                del ag.alerts[sent.fingerprint]
        return True

    async def run_due(self, now: datetime | None = None) -> int:
        """Flush every group due at ``now`` one after another; returns how many flushed."""
        now = now or self.clock.now()
        due = self._pop_due(now)
        for ag in due:
            await self.flush(ag, now)
        return len(due)

    def cleanup(self) -> int:
        """Remove empty groups (Alertmanager does this every 30 s)."""
        removed = 0
        for groups in self.groups.values():
            for fp in [fp for fp, ag in groups.items() if ag.empty() and not ag.flushing]:
                groups[fp].stopped = True
                del groups[fp]
                removed += 1
        return removed

    # -- live loop -------------------------------------------------------------------------

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self.run(), name="alerting-dispatcher")

    async def run(self) -> None:
        while True:
            now = self.clock.now()
            if self._last_cleanup is None:
                self._last_cleanup = now
            elif now - self._last_cleanup >= self.cleanup_interval:
                self._last_cleanup = now
                self.cleanup()
            for ag in self._pop_due(now):
                task = asyncio.create_task(self._flush_task(ag, now))
                self._flushes.add(task)
                task.add_done_callback(self._flushes.discard)
                # One turn of the loop per group: its flush runs up to its request before the
                # next group's starts, so a burst of groups notifies one after another rather
                # than all at the end (the last one is as late either way).
                await asyncio.sleep(0)
            self._wake.clear()
            delay = self.cleanup_interval.total_seconds()
            if self._heap:
                delay = min(delay, (self._heap[0][0] - self.clock.now()).total_seconds())
            if delay > 0:
                # asyncio.timeout rather than wait_for: 3.11's wait_for can swallow a cancel
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await self._wake.wait()

    async def _flush_task(self, ag: AggregationGroup, now: datetime) -> None:
        try:
            await self.flush(ag, now)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("flush crashed", extra={"group_key": ag.key})

    async def stop(self, grace: float = 5.0) -> None:
        """Stop the loop; running flushes get ``grace`` seconds to finish, then are cancelled."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._flushes:
            _, pending = await asyncio.wait(set(self._flushes), timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        for groups in self.groups.values():
            for ag in groups.values():
                ag.stopped = True

    # -- views -----------------------------------------------------------------------------

    def group_views(self) -> list[GroupView]:
        out = []
        for route, groups in self.groups.items():
            for ag in groups.values():
                out.append(
                    GroupView(
                        labels=dict(ag.labels),
                        receiver=route.opts.receiver,
                        route=route,
                        key=ag.key,
                        alerts=list(ag.alerts.values()),
                    )
                )
        return out

    def group_count(self) -> int:
        return sum(len(g) for g in self.groups.values())
