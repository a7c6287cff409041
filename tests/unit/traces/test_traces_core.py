"""Trace context helpers, tail sampling, critical path, RED metrics and the store's search."""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

import pyarrow as pa
import pytest

from signalroom.traces.config import LatencyRule, RateLimitRule, SamplingConfig
from signalroom.traces.context import (
    TraceContext,
    TraceContextError,
    format_traceparent,
    format_tracestate,
    parse_traceparent,
    parse_tracestate,
)
from signalroom.traces.graph import critical_path
from signalroom.traces.model import spans_table
from signalroom.traces.query import TraceQuery, get_trace, search
from signalroom.traces.red import SpanMetrics
from signalroom.traces.sampling import TailSampler, share_of
from signalroom.traces.store import TraceStore

pytestmark = pytest.mark.unit

MS = 10**6


def tid(n: int) -> str:
    return f"{n:032x}"


def span(
    trace: int, span_id: int, parent: int | None = None, **fields: object
) -> dict[str, object]:
    row: dict[str, object] = {
        "trace_id": tid(trace), "span_id": f"{span_id:016x}",
        "parent_span_id": None if parent is None else f"{parent:016x}",
        "service": "api", "name": "op", "start_time": 1_000 * MS, "duration": 10 * MS,
    }  # fmt: skip
    row.update(fields)
    return row


# --- context ------------------------------------------------------------------------------


def test_traceparent_round_trip_and_errors() -> None:
    header = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    context = parse_traceparent(header)
    assert context == TraceContext("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1, 0)
    assert context.sampled and format_traceparent(context) == header
    child = context.child("1111111111111111")
    assert format_traceparent(child) == "00-4bf92f3577b34da6a3ce929d0e0e4736-1111111111111111-01"
    # a future version with extra fields is accepted
    assert parse_traceparent(header.replace("00-", "cc-", 1) + "-what").flags == 1
    for bad in ("00-" + "0" * 32 + "-00f067aa0ba902b7-01", "ff-" + header[3:],
                header.upper(), header + "-x", "00-abc-def-01"):  # fmt: skip
        with pytest.raises(TraceContextError):
            parse_traceparent(bad)


def test_tracestate_parse_and_vendor_update() -> None:
    members = parse_tracestate("congo=t61rcWkgMzE, rojo=00f067aa0ba902b7,,")
    assert members == [("congo", "t61rcWkgMzE"), ("rojo", "00f067aa0ba902b7")]
    assert format_tracestate(members, update=("rojo", "1")) == "rojo=1,congo=t61rcWkgMzE"
    with pytest.raises(TraceContextError):
        parse_tracestate("a=1,a=2")
    with pytest.raises(TraceContextError):
        parse_tracestate("UPPER=1")


# --- sampling -----------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def route(sampler: TailSampler, rows: list[dict[str, object]], head: list[bool | None] | None = None,  # noqa: E501
          lsn: int = 1) -> pa.Table:  # fmt: skip
    table = spans_table(rows)
    return sampler.route("t", table, pa.array(head or [None] * len(rows), pa.bool_()), lsn)


def kept_traces(result: list[tuple[str, pa.Table]]) -> set[str]:
    return {t for _, table in result for t in table.column("trace_id").to_pylist()}


def test_tail_sampling_policies() -> None:
    clock = Clock()
    config = SamplingConfig(
        enabled=True, decision_wait=5000, probability=0.0,
        latency=[LatencyRule(service="api", operation="slow", threshold=500)],
    )  # fmt: skip
    sampler = TailSampler(config, clock)
    route(sampler, [span(1, 1), span(1, 2, 1, status_code=2)], lsn=1)  # error
    route(sampler, [span(2, 3, name="slow", duration=600 * MS)], lsn=2)  # slow
    route(sampler, [span(3, 4, name="slow", duration=100 * MS)], lsn=3)  # fast: dropped
    route(sampler, [span(4, 5)], head=[True], lsn=4)  # head-sampled by the client
    route(sampler, [span(5, 6)], head=[False], lsn=5)  # client said "not sampled"
    assert sampler.pending_traces == 4
    assert sampler.decide() == []  # nothing complete yet
    assert sampler.safe_lsn() == 0
    clock.now += 6
    result = sampler.decide()
    assert kept_traces(result) == {tid(1), tid(2), tid(4)}
    assert sum(t.num_rows for _, t in result) == 4  # both spans of the error trace
    assert sampler.pending_traces == 0 and sampler.safe_lsn() == 5
    # a late span follows its trace's decision
    assert route(sampler, [span(1, 9, 1)], lsn=6).num_rows == 1
    assert route(sampler, [span(3, 9, 4)], lsn=7).num_rows == 0
    assert sampler.pending_spans == 0


def test_probabilistic_share_is_by_trace_id_and_rate_limited() -> None:
    clock = Clock()
    config = SamplingConfig(enabled=True, decision_wait=1000, probability=0.5)
    sampler = TailSampler(config, clock)
    ids = [int.from_bytes(hashlib.sha256(str(i).encode()).digest()[:16]) for i in range(2000)]
    route(sampler, [span(t, i + 1) for i, t in enumerate(ids)])
    clock.now += 2
    kept = kept_traces(sampler.decide())
    expected = {tid(t) for t in ids if share_of(tid(t)) < 0.5}
    assert kept == expected and 800 < len(kept) < 1200

    limited = TailSampler(
        SamplingConfig(enabled=True, decision_wait=1000, probability=1.0,
                       rate_limits=[RateLimitRule(service="api", traces_per_second=10)]),
        clock,
    )  # fmt: skip
    route(limited, [span(i, i) for i in range(1, 101)])
    clock.now += 2
    assert len(kept_traces(limited.decide())) == 10


def test_pending_overflow_decides_oldest_first() -> None:
    clock = Clock()
    sampler = TailSampler(SamplingConfig(enabled=True, max_pending_traces=2), clock)
    for i in range(1, 5):
        route(sampler, [span(i, i)], lsn=i)
        clock.now += 0.001
    assert kept_traces(sampler.decide()) == {tid(1), tid(2)}
    assert sampler.safe_lsn() == 2


# --- critical path --------------------------------------------------------------------------


def test_critical_path_follows_last_finishing_children() -> None:
    # root 0-100; a 10-40; b 20-90 (overlaps a, finishes last); c (child of b) 30-60
    rows = [
        span(1, 1, start_time=0, duration=100, service="root"),
        span(1, 2, 1, start_time=10, duration=30, service="a"),
        span(1, 3, 1, start_time=20, duration=70, service="b"),
        span(1, 4, 3, start_time=30, duration=30, service="c"),
    ]
    segments = [(s.service, s.start_ns, s.end_ns) for s in critical_path(spans_table(rows))]
    assert segments == [("root", 0, 10), ("a", 10, 20), ("b", 20, 30), ("c", 30, 60),
                        ("b", 60, 90), ("root", 90, 100)]  # fmt: skip
    assert critical_path(spans_table([])) == []


# --- RED metrics ------------------------------------------------------------------------------


def test_red_metrics_series() -> None:
    red = SpanMetrics([0.01, 0.1])
    red.observe("t", spans_table([span(1, 1, duration=5 * MS, kind=2),
                                  span(1, 2, duration=50 * MS, kind=2),
                                  span(1, 3, duration=500 * MS, kind=2, status_code=2)]))  # fmt: skip  # noqa: E501
    values = {
        (labels.get("__name__"), labels.get("status_code"), labels.get("le") or None): value
        for labels, value in red.series("t")
    }
    ok, err = "STATUS_CODE_UNSET", "STATUS_CODE_ERROR"
    assert values[("traces_spanmetrics_calls_total", ok, None)] == 2
    assert values[("traces_spanmetrics_calls_total", err, None)] == 1
    assert values[("traces_spanmetrics_latency_bucket", ok, "0.01")] == 1
    assert values[("traces_spanmetrics_latency_bucket", ok, "0.1")] == 2
    assert values[("traces_spanmetrics_latency_bucket", err, "0.1")] == 0
    assert values[("traces_spanmetrics_latency_bucket", err, "+Inf")] == 1
    assert values[("traces_spanmetrics_latency_sum", ok, None)] == pytest.approx(0.055)
    labels = next(lbl for lbl, _ in red.series("t"))
    assert labels.get("span_kind") == "SPAN_KIND_SERVER" and labels.get("service") == "api"


# --- store and search -------------------------------------------------------------------------


def test_search_over_files_and_buffer(tmp_path: Path) -> None:
    now = time.time_ns()
    store = TraceStore(tmp_path, wal_fsync="never").open()
    store.append("t", spans_table([
        span(1, 1, service="web", name="GET /", start_time=now - 50 * MS, duration=900 * MS),
        span(1, 2, 1, service="db", name="query", start_time=now - 40 * MS,
             attributes={"db.system": "postgres", "rows": 3}),
    ]))  # fmt: skip
    store.table.flush()  # now in Parquet
    store.append("t", spans_table([
        span(2, 3, service="web", name="GET /", start_time=now - 30 * MS, status_code=2),
        span(1, 2, 1, service="db", name="query", start_time=now - 40 * MS),  # a duplicate
    ]))  # fmt: skip
    window = {"start_ns": now - 3600 * 10**9, "end_ns": now}

    def ids(**query: object) -> list[str]:
        found = search(store, "t", TraceQuery(**window, **query))  # type: ignore[arg-type]
        return [t.column("trace_id")[0].as_py() for t in found]

    assert ids(service="web") == [tid(2), tid(1)]  # newest first
    assert ids(service="web", error=True) == [tid(2)]
    assert ids(service="web", min_duration_ns=500 * MS) == [tid(1)]
    assert ids(service="web", max_duration_ns=500 * MS) == [tid(2)]
    assert ids(service="db", tags={"db.system": "postgres"}) == [tid(1)]
    assert ids(service="db", tags={"rows": "3"}) == [tid(1)]
    assert ids(service="db", tags={"rows": "4"}) == []
    assert ids(service="web", limit=1) == [tid(2)]
    trace = get_trace(store, "t", tid(1))
    assert trace is not None and trace.num_rows == 2  # the duplicate span appears once
    assert get_trace(store, "other", tid(1)) is None
    assert store.services("t") == ["db", "web"]
    assert store.operations("t", "web") == [("GET /", 0)]
    store.close()
    reopened = TraceStore(tmp_path, wal_fsync="never").open()  # catalog rebuilt from files
    assert reopened.services("t") == ["db", "web"]
    reopened.close()
