"""Tail-based sampling: hold a trace's spans until it is complete, then keep or drop it whole.

A trace is complete ``decision_wait`` after its first span arrived (or earlier, oldest first,
when more than ``max_pending_traces`` are waiting). The policies, in order:

1. **error**: a span with status ERROR keeps the trace (``keep_errors``);
2. **latency**: a span of a listed service/operation lasting at least its threshold;
3. **head**: the client forced the trace (``sampling.priority`` > 0, Zipkin ``debug``) or
   already sampled it by probability (tracestate ``ot=th:``/``p:``): kept, not resampled;
4. **probabilistic**: a share ``probability`` of the rest, chosen by the trace id's random
   low 56 bits, so every replica chooses the same traces;
5. **rate limit**: of those, at most ``traces_per_second`` per root service (token bucket).

Spans the client marked "not sampled" are dropped on arrival. Spans arriving after their
trace's decision follow it (decisions are remembered for a while). Everything is vectorised
per batch with Arrow; Python work is per trace, not per span.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from prometheus_client import Counter

from signalroom.traces.config import SamplingConfig
from signalroom.traces.model import STATUS_ERROR

__all__ = ["SAMPLED_SPANS", "SAMPLED_TRACES", "TailSampler"]

SAMPLED_TRACES = Counter(
    "signalroom_traces_sampling_traces_total",
    "Traces decided by the tail sampler, by decision and the policy that decided.",
    ["decision", "policy"],
)
SAMPLED_SPANS = Counter(
    "signalroom_traces_sampling_spans_total",
    "Spans kept or dropped by sampling (head-sampled-out spans included).",
    ["decision"],
)
_DECISIONS_REMEMBERED = 500_000
_LOW_BITS = 2.0**56


@dataclass
class _Pending:
    first_seen: float
    error: bool = False
    slow: bool = False
    head: bool = False
    root_service: str | None = None
    any_service: str = ""


class _Bucket:
    def __init__(self, rate: float, now: float) -> None:
        self.rate = rate
        self.tokens = rate
        self.at = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.rate, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def share_of(trace_id: str) -> float:
    """The trace's position in [0, 1) from its random low 56 bits."""
    return int(trace_id[-14:], 16) / _LOW_BITS


class TailSampler:
    """Pending spans by trace, the policies, and the record of recent decisions.

    ``route`` takes a batch with the WAL position it was logged at and returns the rows to
    store now (late spans of kept traces); ``decide`` returns kept spans of complete traces.
    ``safe_lsn`` is the WAL position below which no pending span remains."""

    def __init__(self, config: SamplingConfig, clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._clock = clock
        self._pending: OrderedDict[tuple[str, str], _Pending] = OrderedDict()
        self._batches: list[tuple[str, int, pa.Table]] = []
        self._decided: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self._buckets: dict[str, _Bucket] = {}
        self._last_lsn = 0
        self._lock = threading.Lock()

    def apply_config(self, config: SamplingConfig) -> None:
        with self._lock:
            self.config = config
            self._buckets.clear()

    @property
    def pending_traces(self) -> int:
        return len(self._pending)

    @property
    def pending_spans(self) -> int:
        return sum(t.num_rows for _, _, t in self._batches)

    def safe_lsn(self) -> int:
        with self._lock:
            if not self._batches:
                return self._last_lsn
            return min(lsn for _, lsn, _ in self._batches) - 1

    # ------------------------------------------------------------------ arrival

    def _slow_mask(self, table: pa.Table) -> pa.Array | pa.ChunkedArray:
        mask: pa.Array | pa.ChunkedArray = pa.array(np.zeros(table.num_rows, bool))
        for rule in self.config.latency:
            hit = pc.greater_equal(table.column("duration"), rule.threshold * 1_000_000)
            if rule.service is not None:
                hit = pc.and_(hit, pc.equal(table.column("service"), rule.service))
            if rule.operation is not None:
                hit = pc.and_(hit, pc.equal(table.column("name"), rule.operation))
            mask = pc.or_(mask, hit)
        return mask

    def route(self, tenant: str, spans: pa.Table, head: pa.Array, lsn: int) -> pa.Table:
        """Take a batch; return the rows to store at once (spans of traces kept already)."""
        with self._lock:
            self._last_lsn = max(self._last_lsn, lsn)
        if self.config.respect_head_sampling and head.null_count < len(head):
            unsampled = pc.fill_null(pc.equal(head, False), False)
            dropped = pc.sum(unsampled).as_py() or 0
            if dropped:
                SAMPLED_SPANS.labels("dropped").inc(dropped)
                keep = pc.invert(unsampled)
                spans, head = spans.filter(keep), head.filter(keep)
        if spans.num_rows == 0:
            return spans
        info = pa.table(
            {
                "trace_id": spans.column("trace_id"),
                "error": pc.equal(spans.column("status_code"), STATUS_ERROR),
                "slow": self._slow_mask(spans),
                "head": pc.fill_null(head, False),
                "service": spans.column("service"),
            }
        )
        per_trace = (
            info.group_by("trace_id")
            .aggregate([("error", "any"), ("slow", "any"), ("head", "any"), ("service", "min")])
            .to_pydict()
        )
        roots = (
            info.filter(pc.is_null(spans.column("parent_span_id")))
            .select(["trace_id", "service"])
            .to_pydict()
        )
        root_of = dict(zip(roots["trace_id"], roots["service"], strict=True))
        now = self._clock()
        late_kept: list[str] = []
        late_dropped: list[str] = []
        with self._lock:
            for trace_id, error, slow, forced, service in zip(
                per_trace["trace_id"], per_trace["error_any"], per_trace["slow_any"],
                per_trace["head_any"], per_trace["service_min"], strict=True,
            ):  # fmt: skip
                key = (tenant, trace_id)
                decision = self._decided.get(key)
                if decision is not None:
                    (late_kept if decision else late_dropped).append(trace_id)
                    continue
                pending = self._pending.get(key)
                if pending is None:
                    pending = self._pending[key] = _Pending(now, any_service=service)
                pending.error |= bool(error)
                pending.slow |= bool(slow)
                pending.head |= bool(forced)
                root = root_of.get(trace_id)
                if root is not None:
                    pending.root_service = root
            if late_kept or late_dropped:
                ids = spans.column("trace_id")
                kept_mask = pc.is_in(ids, pa.array(late_kept, pa.string()))
                decided_mask = pc.or_(kept_mask, pc.is_in(ids, pa.array(late_dropped, pa.string())))
                now_rows = spans.filter(kept_mask)
                rest = spans.filter(pc.invert(decided_mask))
                SAMPLED_SPANS.labels("kept").inc(now_rows.num_rows)
                SAMPLED_SPANS.labels("dropped").inc(
                    spans.num_rows - now_rows.num_rows - rest.num_rows
                )
            else:
                now_rows, rest = spans.schema.empty_table(), spans
            if rest.num_rows:
                self._batches.append((tenant, lsn, rest))
        return now_rows

    # ------------------------------------------------------------------ decisions

    def _policy(self, tenant: str, trace_id: str, pending: _Pending, now: float) -> str | None:
        """The policy that keeps the trace, or None to drop it ("rate_limited" counts as
        dropped by the caller)."""
        config = self.config
        if config.keep_errors and pending.error:
            return "error"
        if pending.slow:
            return "latency"
        if pending.head and config.respect_head_sampling:
            return "head"
        if share_of(trace_id) >= config.probability:
            return None
        if config.rate_limits:
            service = pending.root_service or pending.any_service
            rule = next((r for r in config.rate_limits if r.service == service), None)
            if rule is None:
                rule = next((r for r in config.rate_limits if r.service == "*"), None)
            if rule is not None:
                bucket_key = (
                    f"{tenant}\x00{rule.service}\x00{service if rule.service == '*' else ''}"
                )
                bucket = self._buckets.get(bucket_key)
                if bucket is None:
                    bucket = self._buckets[bucket_key] = _Bucket(rule.traces_per_second, now)
                if not bucket.take(now):
                    return "rate_limited"
        return "probabilistic"

    def decide(self, *, flush_all: bool = False) -> list[tuple[str, pa.Table]]:
        """Decide every complete trace; return the kept spans per tenant."""
        now = self._clock()
        deadline = now - self.config.decision_wait / 1000
        kept: dict[str, list[str]] = {}
        decided: dict[str, list[str]] = {}
        with self._lock:
            overflow = len(self._pending) - self.config.max_pending_traces
            while self._pending:
                key, pending = next(iter(self._pending.items()))
                if not flush_all and overflow <= 0 and pending.first_seen > deadline:
                    break
                overflow -= 1
                del self._pending[key]
                tenant, trace_id = key
                policy = self._policy(tenant, trace_id, pending, now)
                keep = policy not in (None, "rate_limited")
                SAMPLED_TRACES.labels(
                    "kept" if keep else "dropped", policy or "probabilistic"
                ).inc()
                decided.setdefault(tenant, []).append(trace_id)
                if keep:
                    kept.setdefault(tenant, []).append(trace_id)
                self._decided[key] = keep
            while len(self._decided) > _DECISIONS_REMEMBERED:
                self._decided.popitem(last=False)
            if not decided:
                return []
            out: dict[str, list[pa.Table]] = {}
            remaining = []
            arrays = {t: (pa.array(ids, pa.string()), pa.array(kept.get(t, []), pa.string()))
                      for t, ids in decided.items()}  # fmt: skip
            for tenant, lsn, table in self._batches:
                if tenant not in arrays:
                    remaining.append((tenant, lsn, table))
                    continue
                done_ids, kept_ids = arrays[tenant]
                ids = table.column("trace_id")
                done = pc.is_in(ids, done_ids)
                if len(kept_ids):
                    keep_rows = table.filter(pc.is_in(ids, kept_ids))
                    if keep_rows.num_rows:
                        out.setdefault(tenant, []).append(keep_rows)
                rest = table.filter(pc.invert(done))
                if rest.num_rows:
                    remaining.append((tenant, lsn, rest))
            before = sum(t.num_rows for _, _, t in self._batches)
            self._batches = remaining
            after = sum(t.num_rows for _, _, t in remaining)
        result = [(tenant, pa.concat_tables(tables)) for tenant, tables in out.items()]
        kept_rows = sum(t.num_rows for _, t in result)
        SAMPLED_SPANS.labels("kept").inc(kept_rows)
        SAMPLED_SPANS.labels("dropped").inc(before - after - kept_rows)
        return result
