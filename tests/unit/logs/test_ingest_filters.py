"""The cheap pre-filters on the ingest path: trace/span id extraction and error candidates."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from signalroom.logs.config import LogsConfig
from signalroom.logs.errors import ErrorGroups
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.logs.pipeline import EntryBatch, Pipeline

pytestmark = pytest.mark.unit

TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN = "00f067aa0ba902b7"


def _process(lines: list[str], trace_ids: list[str | None] | None = None) -> pa.Table:
    n = len(lines)
    batch = EntryBatch(
        [{"service": "shop"}],
        np.zeros(n, np.int64),
        np.arange(n, dtype=np.int64),
        lines,
        trace_ids=trace_ids,
    )
    return Pipeline(LogsConfig()).process("default", batch, "test").table


def test_trace_and_span_ids_from_json_and_logfmt_lines() -> None:
    table = _process(
        [
            json.dumps({"msg": "paid", "trace_id": TRACE, "span_id": SPAN}),
            f"level=info traceId={TRACE.upper()} spanID={SPAN.upper()} msg=ok",
            f'{{"TraceID" : "{TRACE}"}}',
            "trace_id=not-hex span_id=zz",  # the key without an id: nothing
            "GET /health 200",
        ]
    )
    assert table.column("trace_id").to_pylist() == [TRACE, TRACE, TRACE, None, None]
    assert table.column("span_id").to_pylist() == [SPAN, SPAN, None, None, None]


def test_given_trace_ids_win_over_extracted_ones() -> None:
    table = _process([f"trace_id={TRACE}", f"trace_id={TRACE}"], trace_ids=["ABC123", None])
    assert table.column("trace_id").to_pylist() == ["abc123", TRACE]


def _rows(lines: list[str]) -> pa.Table:
    stream = format_labels({"service": "shop"})
    n = len(lines)
    return pa.table(
        {
            "timestamp": list(range(n)),
            "stream_id": [stream_id(stream)] * n,
            "stream": [stream] * n,
            "line": lines,
            "trace_id": [None] * n,
            "span_id": [None] * n,
            "metadata": [None] * n,
        },
        schema=LOG_SCHEMA,
    )


def test_error_level_lines_without_an_exception_make_no_group() -> None:
    groups = ErrorGroups()
    lines = [json.dumps({"level": "error", "msg": "declined", "order": i}) for i in range(50)]
    assert groups.observe("default", _rows(lines)) == []


def test_json_lines_with_exception_keys_are_grouped() -> None:
    groups = ErrorGroups()
    fresh = groups.observe(
        "default",
        _rows(
            [
                json.dumps({"level": "error", "exception.type": "KeyError", "msg": "x"}),
                json.dumps({"level": "error", "error": {"kind": "Timeout", "message": "db"}}),
                json.dumps({"level": "error", "msg": "no exception here"}),
            ]
        ),
    )
    assert sorted(group.type for group in fresh) == ["KeyError", "Timeout"]
