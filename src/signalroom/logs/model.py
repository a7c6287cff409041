"""The stored shape of a log line and of stream label sets.

One row per line: ``timestamp`` (int64 ns), ``stream_id`` (a 63-bit hash of the canonical
label string; the sort key that keeps a stream's lines together in Parquet), ``stream`` (the
canonical label string ``{a="1", b="2"}``, as Loki prints it), ``line``, and structured
metadata: ``trace_id``, ``span_id`` and ``metadata`` (other key/values, a sorted JSON object).
The tenant is the storage partition, not a column.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "LOG_SCHEMA",
    "format_labels",
    "parse_labels",
    "stream_id",
    "stream_ids",
]

LOG_SCHEMA = pa.schema(
    [
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("stream_id", pa.int64(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("line", pa.string(), nullable=False),
        pa.field("trace_id", pa.string()),
        pa.field("span_id", pa.string()),
        pa.field("metadata", pa.string()),
    ]
)


def _quote(value: str) -> str:
    return json.dumps(value, ensure_ascii=False)


def format_labels(labels: Mapping[str, str]) -> str:
    """The canonical label string: sorted names, Go-quoted values, ``, `` between pairs."""
    return "{" + ", ".join(f"{k}={_quote(labels[k])}" for k in sorted(labels)) + "}"


def parse_labels(text: str) -> dict[str, str]:
    """Parse ``{a="1", b="2"}`` (Loki's push protobuf label string). Raises ValueError."""
    from signalroom.logs.logql.parser import parse_selector_labels

    return parse_selector_labels(text)


def stream_id(stream: str) -> int:
    """63-bit id of a canonical label string (non-negative, so it sorts like its hash)."""
    digest = hashlib.blake2b(stream.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 1


def stream_ids(streams: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """Ids for a column of stream strings, hashing each distinct stream once."""
    array = streams if isinstance(streams, pa.Array | pa.ChunkedArray) else pa.array(streams)
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    encoded = pc.dictionary_encode(array)
    ids = np.array([stream_id(s) for s in encoded.dictionary.to_pylist()], dtype=np.int64)
    if len(ids) == 0:
        return pa.array([], pa.int64())
    return pa.array(ids[encoded.indices.to_numpy(zero_copy_only=False)], pa.int64())
