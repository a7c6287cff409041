"""Alertmanager's routing tree (``dispatch/route.go``).

A :class:`RouteNode` is built from a configured :class:`~signalroom.alerting.config.Route`:
each node inherits receiver, grouping and timers from its parent unless it sets its own, and
carries its matchers sorted the way Alertmanager sorts them (so keys and IDs are the same
strings Alertmanager computes). ``match(labels)`` walks depth-first, left to right: a node whose
matchers fail matches nothing; otherwise its children are tried in order, stopping after the
first child that matched unless that child has ``continue: true``; a node none of whose
children matched is itself the match.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import timedelta

from signalroom.alerting.config import AlertmanagerConfig, Route
from signalroom.alerting.matchers import Matcher, format_matchers, go_quote

__all__ = ["RouteNode", "RouteOpts", "build_routing_tree", "format_label_set"]


@dataclass(frozen=True)
class RouteOpts:
    """The effective settings of a route after inheritance."""

    receiver: str = ""
    group_by: tuple[str, ...] = ()
    group_by_all: bool = False
    group_wait: timedelta = timedelta(seconds=30)
    group_interval: timedelta = timedelta(minutes=5)
    repeat_interval: timedelta = timedelta(hours=4)
    # Not inherited: each route lists its own (Alertmanager 0.25 behaviour).
    mute_time_intervals: tuple[str, ...] = ()
    active_time_intervals: tuple[str, ...] = ()


DEFAULT_ROUTE_OPTS = RouteOpts()


@dataclass(eq=False)
class RouteNode:
    """One node of the routing tree with its effective options."""

    opts: RouteOpts
    matchers: tuple[Matcher, ...]
    continue_: bool = False
    parent: RouteNode | None = None
    position: int | None = None  # index among the parent's children
    routes: list[RouteNode] = field(default_factory=list)

    @classmethod
    def build(
        cls, config: Route, parent: RouteNode | None = None, position: int | None = None
    ) -> RouteNode:
        base = parent.opts if parent is not None else DEFAULT_ROUTE_OPTS
        group_by, group_by_all = base.group_by, base.group_by_all
        own_group_by = config.group_by_labels
        if own_group_by is not None:
            group_by, group_by_all = tuple(own_group_by), False
        elif config.group_by_all:
            group_by_all = True
        opts = RouteOpts(
            receiver=config.receiver or base.receiver,
            group_by=group_by,
            group_by_all=group_by_all,
            group_wait=config.group_wait if config.group_wait is not None else base.group_wait,
            group_interval=(
                config.group_interval if config.group_interval is not None else base.group_interval
            ),
            repeat_interval=(
                config.repeat_interval
                if config.repeat_interval is not None
                else base.repeat_interval
            ),
            mute_time_intervals=tuple(config.mute_time_intervals),
            active_time_intervals=tuple(config.active_time_intervals),
        )
        node = cls(
            opts=opts,
            matchers=tuple(config.all_matchers()),
            continue_=config.continue_,
            parent=parent,
            position=position,
        )
        node.routes = [cls.build(child, node, i) for i, child in enumerate(config.routes)]
        return node

    # -- matching --------------------------------------------------------------------------

    def matches_self(self, labels: Mapping[str, str]) -> bool:
        return all(m.matches(labels.get(m.name, "")) for m in self.matchers)

    def match(self, labels: Mapping[str, str]) -> list[RouteNode]:
        """The routes an alert with these labels is handled by, in order (may be empty)."""
        if not self.matches_self(labels):
            return []
        found: list[RouteNode] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def receivers_for(self, labels: Mapping[str, str]) -> list[str]:
        return [r.opts.receiver for r in self.match(labels)]

    # -- identity --------------------------------------------------------------------------

    def key(self) -> str:
        """Alertmanager's route key: the matcher lists from the root, joined by ``/``."""
        own = format_matchers(self.matchers)
        return own if self.parent is None else f"{self.parent.key()}/{own}"

    def id(self) -> str:
        """Like :meth:`key` plus the node's index among its siblings, so unique in the tree."""
        return self.key() if self.position is None else f"{self.key()}/{self.position}"

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The alert labels this route groups by (all of them with ``group_by: ['...']``)."""
        if self.opts.group_by_all:
            return dict(labels)
        wanted = self.opts.group_by
        return {name: value for name, value in labels.items() if name in wanted}

    def group_key(self, labels: Mapping[str, str]) -> str:
        """The aggregation group key ``routeKey:{label="value", ...}``."""
        return f"{self.key()}:{format_label_set(self.group_labels(labels))}"

    def walk(self) -> Iterator[RouteNode]:
        """Depth-first, parents before children."""
        yield self
        for child in self.routes:
            yield from child.walk()

    def __repr__(self) -> str:
        return f"RouteNode({self.id()!r}, receiver={self.opts.receiver!r})"


def build_routing_tree(config: AlertmanagerConfig) -> RouteNode:
    return RouteNode.build(config.root_route)


def format_label_set(labels: Mapping[str, str]) -> str:
    """Prometheus' ``LabelSet.String()``: ``{a="1", b="2"}`` with Go-quoted values, sorted."""
    parts = sorted(f"{name}={go_quote(value)}" for name, value in labels.items())
    return "{" + ", ".join(parts) + "}"
