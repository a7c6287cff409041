"""Derived views of spans: the service dependency graph and the critical path of a trace."""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa

from signalroom.traces.store import TraceStore

__all__ = ["CriticalSegment", "Dependency", "critical_path", "dependencies"]


@dataclass(frozen=True)
class Dependency:
    """``parent`` called ``child`` ``call_count`` times (Jaeger's DependencyLink)."""

    parent: str
    child: str
    call_count: int


def dependencies(store: TraceStore, tenant: str, start_ns: int, end_ns: int) -> list[Dependency]:
    """Edges between services: a span whose parent span belongs to another service is one call
    from the parent's service to its own. Messaging (producer -> consumer) counts the same."""
    sql = (
        "WITH spans AS (SELECT trace_id, span_id, parent_span_id, service FROM {source} "
        "WHERE start_time >= ? AND start_time <= ?) "
        "SELECT p.service AS parent, c.service AS child, count(*) AS calls "
        "FROM spans c JOIN spans p ON c.trace_id = p.trace_id AND c.parent_span_id = p.span_id "
        "WHERE c.service <> p.service GROUP BY 1, 2 ORDER BY 1, 2"
    )
    table = store.query(tenant, start_ns, end_ns, sql, [start_ns, end_ns])
    return [Dependency(row["parent"], row["child"], int(row["calls"])) for row in table.to_pylist()]


@dataclass(frozen=True)
class CriticalSegment:
    """A stretch ``[start_ns, end_ns)`` of the trace during which ``span_id`` is the work on
    the critical path (it is running and none of its children on the path is)."""

    span_id: str
    service: str
    name: str
    start_ns: int
    end_ns: int


@dataclass
class _Span:
    span_id: str
    service: str
    name: str
    start: int
    end: int
    children: list[_Span]


def critical_path(spans: pa.Table) -> list[CriticalSegment]:
    """The critical path of one trace, in time order, as Jaeger's UI computes it: from the
    end of the root span walk back, always descending into the child that finished last
    before the current point; the parent's own time between those children is its share.

    Children are clipped to their parent's span (async work that outlives its parent only
    counts inside it). A trace without one root uses its earliest-starting span with no
    parent in the trace."""
    rows = spans.select(["span_id", "parent_span_id", "service", "name", "start_time", "duration"])
    nodes: dict[str, _Span] = {}
    parents: dict[str, str | None] = {}
    for row in rows.to_pylist():
        nodes[row["span_id"]] = _Span(
            row["span_id"], row["service"], row["name"], row["start_time"],
            row["start_time"] + row["duration"], [],
        )  # fmt: skip
        parents[row["span_id"]] = row["parent_span_id"]
    roots = []
    for span_id, node in nodes.items():
        parent = parents[span_id]
        if parent is not None and parent in nodes and parent != span_id:
            nodes[parent].children.append(node)
        else:
            roots.append(node)
    if not roots:
        return []
    root = min(roots, key=lambda n: (n.start, -n.end))
    segments: list[CriticalSegment] = []
    _walk(root, root.start, root.end, segments, set())
    segments.reverse()
    return segments


def _walk(span: _Span, low: int, high: int, out: list[CriticalSegment], seen: set[str]) -> None:
    """Append (newest first) the segments of ``span`` clipped to ``[low, high]``."""
    if span.span_id in seen:  # a cycle in bad data
        return
    seen.add(span.span_id)
    start, cursor = max(span.start, low), min(span.end, high)
    children = sorted(span.children, key=lambda c: c.end, reverse=True)
    for child in children:
        child_start, child_end = max(child.start, start), min(child.end, cursor)
        if child_end <= child_start or child_start >= cursor:
            continue  # outside what is left of the parent, or overlapped by a later child
        if child_end < cursor:
            out.append(CriticalSegment(span.span_id, span.service, span.name, child_end, cursor))
        _walk(child, child_start, child_end, out, seen)
        cursor = child_start
        if cursor <= start:
            break
    if cursor > start:
        out.append(CriticalSegment(span.span_id, span.service, span.name, start, cursor))
