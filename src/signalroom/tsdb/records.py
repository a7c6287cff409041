"""WAL records of the time-series store.

One record per appended batch: the tenant, the series the batch created (id and key), then the
accepted samples as three zstd-compressed columns (series id, timestamp, value bits). A
metadata record carries TYPE/HELP/UNIT as JSON. All integers little-endian.

    samples:  'S' u16 tenant_len tenant u32 n_series u32 n_samples u32 keys_len u32 packed_len
              i64[n_series] ids  u32[n_series] key lengths  keys  zstd(i64 ids, i64 ts, f64 vals)
    metadata: 'M' u16 tenant_len tenant json
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt

__all__ = ["MetadataRecord", "SamplesRecord", "decode_record", "encode_metadata", "encode_samples"]

_SAMPLES = b"S"
_METADATA = b"M"
_HEAD = struct.Struct("<IIII")


@dataclass
class SamplesRecord:
    tenant: str
    series_ids: npt.NDArray[np.int64]
    keys: list[bytes]
    sample_ids: npt.NDArray[np.int64]
    timestamps: npt.NDArray[np.int64]
    values: npt.NDArray[np.float64]


@dataclass
class MetadataRecord:
    tenant: str
    entries: list[dict[str, Any]]


def _tenant_bytes(tenant: str) -> bytes:
    raw = tenant.encode()
    return struct.pack("<H", len(raw)) + raw


def encode_samples(
    tenant: str,
    series_ids: npt.NDArray[np.int64],
    keys: list[bytes],
    sample_ids: npt.NDArray[np.int64],
    timestamps: npt.NDArray[np.int64],
    values: npt.NDArray[np.float64],
) -> bytes:
    columns = b"".join(
        (
            np.ascontiguousarray(sample_ids, dtype="<i8").tobytes(),
            np.ascontiguousarray(timestamps, dtype="<i8").tobytes(),
            np.ascontiguousarray(values, dtype="<f8").tobytes(),
        )
    )
    packed = bytes(cramjam.zstd.compress(columns, level=1))
    key_blob = b"".join(keys)
    return b"".join(
        (
            _SAMPLES,
            _tenant_bytes(tenant),
            _HEAD.pack(len(keys), len(timestamps), len(key_blob), len(packed)),
            np.ascontiguousarray(series_ids, dtype="<i8").tobytes(),
            np.fromiter(map(len, keys), dtype="<u4", count=len(keys)).tobytes(),
            key_blob,
            packed,
        )
    )


def encode_metadata(tenant: str, entries: list[dict[str, Any]]) -> bytes:
    return _METADATA + _tenant_bytes(tenant) + json.dumps(entries).encode()


def decode_record(payload: bytes) -> SamplesRecord | MetadataRecord:
    """Decode a record; raises ValueError when it is not one of ours or is damaged."""
    try:
        kind = payload[:1]
        (tlen,) = struct.unpack_from("<H", payload, 1)
        tenant = payload[3 : 3 + tlen].decode()
        pos = 3 + tlen
        if kind == _METADATA:
            return MetadataRecord(tenant, json.loads(payload[pos:]))
        if kind != _SAMPLES:
            raise ValueError(f"unknown record kind {kind!r}")
        n_series, n_samples, _keys_len, packed_len = _HEAD.unpack_from(payload, pos)
        pos += _HEAD.size
        ids = np.frombuffer(payload, "<i8", n_series, pos).astype(np.int64)
        pos += 8 * n_series
        lengths = np.frombuffer(payload, "<u4", n_series, pos)
        pos += 4 * n_series
        keys: list[bytes] = []
        for length in lengths.tolist():
            keys.append(payload[pos : pos + length])
            pos += length
        raw = bytes(cramjam.zstd.decompress(payload[pos : pos + packed_len]))
        if len(raw) != 24 * n_samples:
            raise ValueError("sample columns have the wrong size")
        sample_ids = np.frombuffer(raw, "<i8", n_samples, 0).astype(np.int64)
        timestamps = np.frombuffer(raw, "<i8", n_samples, 8 * n_samples).astype(np.int64)
        values = np.frombuffer(raw, "<f8", n_samples, 16 * n_samples).astype(np.float64)
        return SamplesRecord(tenant, ids, keys, sample_ids, timestamps, values)
    except (struct.error, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"damaged TSDB WAL record: {exc}") from exc
