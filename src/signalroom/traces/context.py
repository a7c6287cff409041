"""W3C Trace Context helpers: parse and format ``traceparent`` and ``tracestate`` headers.

For Python services that call signalroom or propagate context by hand::

    ctx = parse_traceparent(request.headers["traceparent"])
    outgoing = format_traceparent(ctx.child(new_span_id()))
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, replace

__all__ = [
    "TraceContext",
    "TraceContextError",
    "format_traceparent",
    "format_tracestate",
    "new_span_id",
    "new_trace_id",
    "parse_traceparent",
    "parse_tracestate",
]

_TRACEPARENT = re.compile(r"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?")
_KEY = re.compile(
    r"[a-z0-9][a-z0-9_\-*/]{0,255}|[a-z0-9][a-z0-9_\-*/]{0,240}@[a-z][a-z0-9_\-*/]{0,13}"
)
_VALUE = re.compile(r"[\x20-\x2b\x2d-\x3c\x3e-\x7e]{0,255}[\x21-\x2b\x2d-\x3c\x3e-\x7e]")
_MAX_MEMBERS = 32


class TraceContextError(ValueError):
    """A header that is not valid W3C Trace Context."""


@dataclass(frozen=True)
class TraceContext:
    """The parts of a ``traceparent``: 32-hex trace id, 16-hex span id, flags byte."""

    trace_id: str
    span_id: str
    flags: int = 1
    version: int = 0

    @property
    def sampled(self) -> bool:
        return bool(self.flags & 1)

    def child(self, span_id: str | None = None) -> TraceContext:
        """The context to send downstream from a new span of this trace."""
        return replace(self, span_id=span_id or new_span_id(), version=0)


def new_trace_id() -> str:
    while True:
        value = secrets.token_hex(16)
        if value != "0" * 32:
            return value


def new_span_id() -> str:
    while True:
        value = secrets.token_hex(8)
        if value != "0" * 16:
            return value


def parse_traceparent(header: str) -> TraceContext:
    """Parse ``00-<trace-id>-<span-id>-<flags>``; raises TraceContextError saying what is wrong.

    Versions above 00 are accepted with extra fields ignored, as the specification asks."""
    text = header.strip()
    match = _TRACEPARENT.fullmatch(text)
    if match is None:
        raise TraceContextError(
            f"invalid traceparent {header!r}: expected 00-<32 hex trace id>-<16 hex span id>-"
            "<2 hex flags> in lower case"
        )
    version, trace_id, span_id, flags, rest = match.groups()
    if version == "ff":
        raise TraceContextError("invalid traceparent: version ff is forbidden")
    if version == "00" and rest:
        raise TraceContextError("invalid traceparent: version 00 has exactly four fields")
    if trace_id == "0" * 32:
        raise TraceContextError("invalid traceparent: the trace id is all zeros")
    if span_id == "0" * 16:
        raise TraceContextError("invalid traceparent: the parent (span) id is all zeros")
    return TraceContext(trace_id, span_id, int(flags, 16), int(version, 16))


def format_traceparent(context: TraceContext) -> str:
    return f"00-{context.trace_id}-{context.span_id}-{context.flags & 0xFF:02x}"


def parse_tracestate(header: str) -> list[tuple[str, str]]:
    """Parse ``key=value`` members in order; invalid members raise TraceContextError.

    Empty members (``a=1,,b=2``) are skipped, as the specification allows."""
    members: list[tuple[str, str]] = []
    seen: set[str] = set()
    for raw in header.split(","):
        member = raw.strip(" \t")
        if not member:
            continue
        key, sep, value = member.partition("=")
        if not sep or not _KEY.fullmatch(key) or not _VALUE.fullmatch(value):
            raise TraceContextError(f"invalid tracestate member {member!r}")
        if key in seen:
            raise TraceContextError(f"tracestate key {key!r} appears more than once")
        seen.add(key)
        members.append((key, value))
    if len(members) > _MAX_MEMBERS:
        raise TraceContextError(f"tracestate has {len(members)} members; at most 32 are allowed")
    return members


def format_tracestate(
    members: list[tuple[str, str]], *, update: tuple[str, str] | None = None
) -> str:
    """Format members; ``update`` moves (or adds) one key to the front as a vendor must."""
    items = list(members)
    if update is not None:
        items = [update] + [(k, v) for k, v in items if k != update[0]]
    return ",".join(f"{k}={v}" for k, v in items[:_MAX_MEMBERS])
