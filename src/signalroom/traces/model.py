"""The stored shape of a span.

One row per span. Ids are lower-case hex (``trace_id`` 32 characters, ``span_id`` 16), which is
what every query API prints and what the log store's ``trace_id`` column holds, so a trace and
its logs join on equal strings. ``attributes`` and ``resource`` are JSON objects with typed
values (so Jaeger tags keep their types); ``events`` and ``links`` are JSON arrays or null.
Files are sorted by ``(trace_id, start_time)`` in small row groups, so a trace's spans share
one row group per file and the trace-id index (``index.py``) reads just those.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "KIND_NAMES",
    "SPAN_SCHEMA",
    "STATUS_ERROR",
    "STATUS_NAMES",
    "STATUS_OK",
    "STATUS_UNSET",
    "SpanBatch",
    "SpanColumns",
    "SpanIngestError",
    "dumps",
    "group_rows",
    "normalise_trace_id",
]

SPAN_SCHEMA = pa.schema(
    [
        pa.field("trace_id", pa.string(), nullable=False),
        pa.field("span_id", pa.string(), nullable=False),
        pa.field("parent_span_id", pa.string()),
        pa.field("service", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("kind", pa.int8(), nullable=False),
        pa.field("start_time", pa.int64(), nullable=False),
        pa.field("duration", pa.int64(), nullable=False),
        pa.field("status_code", pa.int8(), nullable=False),
        pa.field("status_message", pa.string()),
        pa.field("flags", pa.int32(), nullable=False),
        pa.field("trace_state", pa.string()),
        pa.field("scope", pa.string()),
        pa.field("attributes", pa.string(), nullable=False),
        pa.field("resource", pa.string(), nullable=False),
        pa.field("events", pa.string()),
        pa.field("links", pa.string()),
    ]
)

# OTLP Span.SpanKind numbers
KIND_NAMES = ("unspecified", "internal", "server", "client", "producer", "consumer")
KIND_BY_NAME = {name: number for number, name in enumerate(KIND_NAMES)}
STATUS_UNSET, STATUS_OK, STATUS_ERROR = 0, 1, 2
STATUS_NAMES = ("STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR")
_JSON_COLUMNS = ("attributes", "resource", "events", "links")
_HEX = frozenset("0123456789abcdef")


class SpanIngestError(ValueError):
    """A payload a receiver cannot take; the message names the field at fault (answers 400)."""


def dumps(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def normalise_trace_id(text: str) -> str:
    """A trace id as stored: lower-case hex, 64-bit ids left-padded to 32 characters.
    Raises ValueError for anything else."""
    value = text.strip().lower()
    if not value or len(value) > 32 or not set(value) <= _HEX:
        raise ValueError(f"invalid trace id {text!r}: expected 16 or 32 hex digits")
    value = value.rjust(32, "0")
    if value == "0" * 32:
        raise ValueError("invalid trace id: all zeros")
    return value


@dataclass
class SpanColumns:
    """Spans gathered column by column by a receiver, turned into one Arrow table at the end.

    ``head_keep`` is per span: True when the client forced or probability-sampled the trace
    (the tail sampler then skips its probabilistic share), False when the client said "not
    sampled", None when it said nothing."""

    trace_id: list[str] = field(default_factory=list)
    span_id: list[str] = field(default_factory=list)
    parent_span_id: list[str | None] = field(default_factory=list)
    service: list[str] = field(default_factory=list)
    name: list[str] = field(default_factory=list)
    kind: list[int] = field(default_factory=list)
    start_time: list[int] = field(default_factory=list)
    duration: list[int] = field(default_factory=list)
    status_code: list[int] = field(default_factory=list)
    status_message: list[str | None] = field(default_factory=list)
    flags: list[int] = field(default_factory=list)
    trace_state: list[str | None] = field(default_factory=list)
    scope: list[str | None] = field(default_factory=list)
    attributes: list[str] = field(default_factory=list)
    resource: list[str] = field(default_factory=list)
    events: list[str | None] = field(default_factory=list)
    links: list[str | None] = field(default_factory=list)
    head_keep: list[bool | None] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.trace_id)

    def to_table(self) -> pa.Table:
        arrays = [pa.array(getattr(self, f.name), f.type) for f in SPAN_SCHEMA]
        return pa.Table.from_arrays(arrays, schema=SPAN_SCHEMA)

    def head_decisions(self) -> pa.Array:
        return pa.array(self.head_keep, pa.bool_())


@dataclass(frozen=True)
class SpanBatch:
    """Spans a receiver built column-wise: the ``table`` (SPAN_SCHEMA) and the per-span head
    sampling decision (``head``: bool or null, as :attr:`SpanColumns.head_keep`)."""

    table: pa.Table
    head: pa.Array

    def __len__(self) -> int:
        return int(self.table.num_rows)


def group_rows(
    table: pa.Table, names: Sequence[str]
) -> tuple[list[tuple[Any, ...]], np.ndarray[Any, np.dtype[np.intp]]]:
    """The distinct value combinations of ``names`` (non-null columns) and, per row, the index
    of its combination. Columns become integer codes combined into one key, so NumPy does the
    grouping (an Arrow group-by costs milliseconds of setup per call)."""
    codes = np.zeros(table.num_rows, np.int64)
    values: list[list[Any]] = []
    for name in names:
        column = table.column(name).combine_chunks()
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
            encoded = pc.dictionary_encode(column)
            index = encoded.indices.to_numpy().astype(np.int64)
            distinct = encoded.dictionary.to_pylist()
        else:
            distinct_array, inverse = np.unique(column.to_numpy(), return_inverse=True)
            index, distinct = inverse.astype(np.int64), distinct_array.tolist()
        codes = codes * max(len(distinct), 1) + index
        values.append(distinct)
    unique, inverse = np.unique(codes, return_inverse=True)
    # Undo the mixed-radix code into one index per column.
    parts: list[list[Any]] = []
    rest = unique
    for distinct in reversed(values):
        radix = max(len(distinct), 1)
        parts.append([distinct[i] for i in (rest % radix).tolist()])
        rest = rest // radix
    keys = list(zip(*reversed(parts), strict=True)) if parts else []
    return keys, inverse.astype(np.intp)


def spans_table(rows: Sequence[Mapping[str, Any]]) -> pa.Table:
    """A span table from dicts (tests, small inputs); missing optional fields are null/empty."""
    defaults: dict[str, Any] = {
        "parent_span_id": None, "kind": 0, "status_code": 0, "status_message": None,
        "flags": 0, "trace_state": None, "scope": None, "attributes": "{}", "resource": "{}",
        "events": None, "links": None,
    }  # fmt: skip
    columns: dict[str, list[Any]] = {f.name: [] for f in SPAN_SCHEMA}
    for row in rows:
        for name in columns:
            value = row.get(name, defaults.get(name))
            if isinstance(value, dict | list) and name in _JSON_COLUMNS:
                value = dumps(value)
            columns[name].append(value)
    return pa.Table.from_pydict(columns, schema=SPAN_SCHEMA)
