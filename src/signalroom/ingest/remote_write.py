"""Prometheus remote write 1.0: decode ``prometheus.WriteRequest`` bodies into sample batches.

The protobuf schema (Prometheus's ``prompb/types.proto`` and ``remote.proto`` without the
gogoproto options) is built in Python from ``descriptor_pb2`` -- no protoc step. Decoding uses
a second, wire-compatible view of the same bytes in which a series' labels and samples are
``repeated bytes``: upb (C) splits the body, each series' labels stay raw bytes (they are the
store's series key, see :mod:`signalroom.tsdb.keys`) and all samples are parsed together with
NumPy. Samples in an unusual wire layout fall back to the generated ``Sample`` class.

``handle_write`` maps a request to Prometheus's answers: 204 stored, 400 bad data (the sender
drops it), 415 unsupported encoding or protocol, 429 retryable limits, 5xx storage errors.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import cramjam
import numpy as np
import numpy.typing as npt
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import DecodeError

from signalroom.model.labels import Labels
from signalroom.storage.wal import WALError
from signalroom.tsdb.batch import METRIC_TYPES, MetricMetadata, SampleBatch
from signalroom.tsdb.errors import LimitError, TSDBError

__all__ = [
    "DecodedWriteRequest",
    "WriteRequestError",
    "decode_write_request",
    "decode_write_request_full",
    "encode_write_request",
    "handle_write",
]

logger = logging.getLogger("signalroom.ingest.remote_write")

MAX_BODY_BYTES = 64 * 2**20
# limits that may clear up (series go away): the sender may retry, so 429 rather than 400
RETRYABLE_REASONS = frozenset(
    {"max_series_total", "max_series_per_tenant", "max_series_per_metric"}
)  # decompressed; Prometheus senders stay far below
_F = descriptor_pb2.FieldDescriptorProto


class WriteRequestError(ValueError):
    """The body is not a valid remote-write request; the message says what is wrong."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


# -- schema ---------------------------------------------------------------------------------


def _field(
    message: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    kind: int,
    *,
    repeated: bool = False,
    type_name: str | None = None,
) -> None:
    f = message.field.add()
    f.name = name
    f.number = number
    f.type = kind
    f.label = _F.LABEL_REPEATED if repeated else _F.LABEL_OPTIONAL
    if type_name is not None:
        f.type_name = type_name


def _build_pool() -> descriptor_pool.DescriptorPool:
    pool = descriptor_pool.DescriptorPool()

    fd = descriptor_pb2.FileDescriptorProto()
    fd.name = "signalroom/prompb.proto"
    fd.package = "prometheus"
    fd.syntax = "proto3"
    meta = fd.message_type.add()
    meta.name = "MetricMetadata"
    enum = meta.enum_type.add()
    enum.name = "MetricType"
    for number, name in enumerate(METRIC_TYPES):
        value = enum.value.add()
        value.name = name.upper()
        value.number = number
    _field(meta, "type", 1, _F.TYPE_ENUM, type_name=".prometheus.MetricMetadata.MetricType")
    _field(meta, "metric_family_name", 2, _F.TYPE_STRING)
    _field(meta, "help", 4, _F.TYPE_STRING)
    _field(meta, "unit", 5, _F.TYPE_STRING)
    sample = fd.message_type.add()
    sample.name = "Sample"
    _field(sample, "value", 1, _F.TYPE_DOUBLE)
    _field(sample, "timestamp", 2, _F.TYPE_INT64)
    label = fd.message_type.add()
    label.name = "Label"
    _field(label, "name", 1, _F.TYPE_STRING)
    _field(label, "value", 2, _F.TYPE_STRING)
    exemplar = fd.message_type.add()
    exemplar.name = "Exemplar"
    _field(exemplar, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(exemplar, "value", 2, _F.TYPE_DOUBLE)
    _field(exemplar, "timestamp", 3, _F.TYPE_INT64)
    series = fd.message_type.add()
    series.name = "TimeSeries"
    _field(series, "labels", 1, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Label")
    _field(series, "samples", 2, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Sample")
    _field(series, "exemplars", 3, _F.TYPE_MESSAGE, repeated=True, type_name=".prometheus.Exemplar")
    _field(series, "histograms", 4, _F.TYPE_BYTES, repeated=True)  # not decoded: unsupported
    request = fd.message_type.add()
    request.name = "WriteRequest"
    _field(
        request,
        "timeseries",
        1,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".prometheus.TimeSeries",
    )
    _field(
        request,
        "metadata",
        3,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".prometheus.MetricMetadata",
    )
    pool.Add(fd)

    # The same wire format with each series left as raw bytes (scanned with NumPy).
    raw = descriptor_pb2.FileDescriptorProto()
    raw.name = "signalroom/prompb_raw.proto"
    raw.package = "signalroom.rawprompb"
    raw.syntax = "proto3"
    raw.dependency.append(fd.name)
    raw_request = raw.message_type.add()
    raw_request.name = "WriteRequest"
    _field(raw_request, "timeseries", 1, _F.TYPE_BYTES, repeated=True)
    _field(
        raw_request,
        "metadata",
        3,
        _F.TYPE_MESSAGE,
        repeated=True,
        type_name=".prometheus.MetricMetadata",
    )
    pool.Add(raw)
    return pool


_POOL = _build_pool()


def _message_class(name: str) -> Any:
    return message_factory.GetMessageClass(_POOL.FindMessageTypeByName(name))


WriteRequest = _message_class("prometheus.WriteRequest")
TimeSeries = _message_class("prometheus.TimeSeries")
Sample = _message_class("prometheus.Sample")
Label = _message_class("prometheus.Label")
MetricMetadataProto = _message_class("prometheus.MetricMetadata")
_RawWriteRequest = _message_class("signalroom.rawprompb.WriteRequest")


# -- decoding -------------------------------------------------------------------------------


@dataclass
class DecodedWriteRequest:
    """A decoded request: the samples, the metadata, and what was not taken."""

    batch: SampleBatch
    metadata: list[MetricMetadata]
    histogram_series: list[int] = field(default_factory=list)  # series with native histograms
    exemplars: int = 0


def _decompress(body: bytes, content_encoding: str | None) -> bytes:
    encoding = (content_encoding or "snappy").strip().lower()
    if encoding != "snappy":
        raise WriteRequestError(
            f"unsupported Content-Encoding {content_encoding!r}: remote write bodies must be "
            "snappy block-compressed",
            status=415,
        )
    if not body:
        raise WriteRequestError("empty body: expected a snappy-compressed WriteRequest")
    try:
        size = cramjam.snappy.decompress_raw_len(body)
    except Exception as exc:
        raise WriteRequestError(f"snappy decompression failed: {exc}") from exc
    if size > MAX_BODY_BYTES:
        raise WriteRequestError(
            f"decompressed body would be {size} bytes, more than the limit {MAX_BODY_BYTES}"
        )
    try:
        return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise WriteRequestError(
            f"snappy decompression failed (not snappy block format?): {exc}"
        ) from exc


def _varints(
    data: npt.NDArray[np.uint8], pos: npt.NDArray[np.int64]
) -> tuple[npt.NDArray[np.uint64], npt.NDArray[np.int64]]:
    """Varints starting at each position: (values, byte lengths; 0 where malformed).

    Byte by byte, and only for the varints that continue: most are one byte long."""
    byte = data[pos]
    value = (byte & 0x7F).astype(np.uint64)
    length = np.ones(len(pos), dtype=np.int64)
    more = np.flatnonzero(byte >= 0x80)
    j = 1
    while len(more) and j < 10:
        byte = data[pos[more] + j]
        value[more] |= (byte & 0x7F).astype(np.uint64) << np.uint64(7 * j)
        length[more] += 1
        more = more[byte >= 0x80]
        j += 1
    length[more] = 0  # no last byte within 10 bytes
    return value, length


@dataclass
class _Fields:
    """Fields of many messages: owner message, field number, payload start and length."""

    owner: npt.NDArray[np.int64]
    number: npt.NDArray[np.int64]
    wire: npt.NDArray[np.int64]
    start: npt.NDArray[np.int64]
    length: npt.NDArray[np.int64]


def _scan(
    data: npt.NDArray[np.uint8], starts: npt.NDArray[np.int64], ends: npt.NDArray[np.int64]
) -> _Fields:
    """Split each message data[starts[i]:ends[i]] into its fields, all messages in lockstep
    (one NumPy pass per field position), in wire order within a message."""
    owners, numbers, wires, pstarts, plens = [], [], [], [], []
    cursor = starts.copy()
    alive = np.flatnonzero(cursor < ends)
    while len(alive):
        at = cursor[alive]
        key, klen = _varints(data, at)
        wire = (key & np.uint64(7)).astype(np.int64)
        number = (key >> np.uint64(3)).astype(np.int64)
        pos = at + klen
        size, slen = _varints(data, pos)
        sized = wire == 2
        payload = np.where(sized, pos + slen, pos)
        length = np.select(
            [sized, wire == 0, wire == 1, wire == 5],
            [size.astype(np.int64), slen, np.full_like(pos, 8), np.full_like(pos, 4)],
            default=-1,
        )
        nxt = payload + length
        bad = (klen == 0) | (length < 0) | (sized & (slen == 0)) | (nxt > ends[alive])
        bad |= (wire == 0) & (slen == 0)
        if bad.any():
            which = int(alive[np.argmax(bad)])
            raise WriteRequestError(
                f"malformed protobuf in timeseries #{which}: a field runs past its end or "
                "has an unknown wire type"
            )
        owners.append(alive)
        numbers.append(number)
        wires.append(wire)
        pstarts.append(payload)
        plens.append(length)
        cursor[alive] = nxt
        alive = alive[nxt < ends[alive]]
    if not owners:
        z = np.zeros(0, np.int64)
        return _Fields(z, z, z, z, z)
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")  # by message, wire order within
    return _Fields(
        owner[order],
        np.concatenate(numbers)[order],
        np.concatenate(wires)[order],
        np.concatenate(pstarts)[order],
        np.concatenate(plens)[order],
    )


def _parse_samples(
    blob: bytes,
    data: npt.NDArray[np.uint8],
    starts: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
) -> tuple[npt.NDArray[np.int64], npt.NDArray[np.float64]]:
    """Timestamps and values of ``Sample`` messages at the given places, vectorised."""
    n = len(lengths)
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.float64)
    first = data[starts]
    has_value = (first == 0x09) & (lengths >= 9)
    # layout A: value then timestamp; B: timestamp only (value 0); C: value only (timestamp 0)
    layout_a = has_value & (lengths >= 11) & (data[starts + 9] == 0x10)
    layout_c = has_value & (lengths == 9)
    layout_b = (first == 0x10) & (lengths >= 2)
    vstart = np.where(layout_a, starts + 10, starts + 1)
    stamps_u, vlen = _varints(data, vstart)
    want = np.where(layout_a, lengths - 10, lengths - 1)
    varint_ok = (layout_a | layout_b) & (vlen == want)
    stamps = np.where(varint_ok, stamps_u.view(np.int64), 0)
    raw_values = data[starts[:, None] + 1 + np.arange(8)[None, :]].copy().view("<f8").reshape(n)
    values = np.where(has_value & (layout_a | layout_c), raw_values, 0.0)
    good = (lengths == 0) | layout_c | varint_ok
    for i in np.flatnonzero(~good).tolist():  # unusual layout: let protobuf parse it
        start = int(starts[i])
        try:
            sample = Sample.FromString(blob[start : start + int(lengths[i])])
        except DecodeError as exc:
            raise WriteRequestError(f"malformed sample #{i}: {exc}") from exc
        values[i] = sample.value
        stamps[i] = sample.timestamp
    return stamps.astype(np.int64), values.astype(np.float64)


def decode_write_request_full(body: bytes, content_encoding: str | None) -> DecodedWriteRequest:
    """Decode a remote-write 1.0 body (snappy + protobuf); raises WriteRequestError."""
    raw = _decompress(body, content_encoding)
    try:
        request = _RawWriteRequest.FromString(raw)
    except DecodeError as exc:
        raise WriteRequestError(
            f"body is not a valid prometheus.WriteRequest protobuf: {exc}"
        ) from exc
    series_bytes = list(request.timeseries)
    n = len(series_bytes)
    blob = b"".join(series_bytes)
    sizes = np.fromiter(map(len, series_bytes), dtype=np.int64, count=n)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    data = np.concatenate([np.frombuffer(blob, np.uint8), np.zeros(32, np.uint8)])
    fields = _scan(data, starts, ends)
    if np.any((fields.number <= 4) & (fields.wire != 2)):
        which = int(fields.owner[np.argmax((fields.number <= 4) & (fields.wire != 2))])
        raise WriteRequestError(f"malformed protobuf in timeseries #{which}: wrong wire type")
    is_label = fields.number == 1
    # each series' labels region (normally one contiguous run of label fields) is its key
    label_owner = fields.owner[is_label]
    label_end = fields.start[is_label] + fields.length[is_label]
    key_start = np.full(n, 0, np.int64)
    key_end = np.full(n, 0, np.int64)
    if len(label_owner):
        firsts = np.flatnonzero(np.concatenate(([True], label_owner[1:] != label_owner[:-1])))
        lasts = np.append(firsts[1:], len(label_owner)) - 1
        owners = label_owner[firsts]
        # the tag byte and length varint before the first label's payload
        header = 1 + _varint_size(fields.length[is_label][firsts])
        key_start[owners] = fields.start[is_label][firsts] - header
        key_end[owners] = label_end[lasts]
        spans = np.zeros(n, np.int64)
        spans[owners] = key_end[owners] - key_start[owners]
        expected = np.zeros(n, np.int64)
        np.add.at(
            expected,
            label_owner,
            fields.length[is_label] + 1 + _varint_size(fields.length[is_label]),
        )
        scattered = np.flatnonzero(spans != expected)  # labels not contiguous: join them
    else:
        scattered = np.zeros(0, np.int64)
    keys = [blob[a:b] for a, b in zip(key_start.tolist(), key_end.tolist(), strict=True)]
    for i in scattered.tolist():
        mine = np.flatnonzero(label_owner == i)
        keys[i] = b"".join(
            blob[int(a) - int(h) : int(e)]
            for a, h, e in zip(
                fields.start[is_label][mine],
                1 + _varint_size(fields.length[is_label][mine]),
                label_end[mine],
                strict=True,
            )
        )
    is_sample = fields.number == 2
    stamps, values = _parse_samples(blob, data, fields.start[is_sample], fields.length[is_sample])
    index = fields.owner[is_sample].astype(np.int32)
    histogram_series = np.unique(fields.owner[fields.number == 4]).tolist()
    exemplars = int(np.count_nonzero(fields.number == 3))
    batch = SampleBatch(index, stamps, values, keys=keys)
    metadata = []
    for entry in request.metadata:
        name = entry.metric_family_name
        if not name:
            raise WriteRequestError("metadata entry without metric_family_name")
        kind = METRIC_TYPES[entry.type] if 0 <= entry.type < len(METRIC_TYPES) else "unknown"
        metadata.append(MetricMetadata(name, kind, entry.help, entry.unit))
    return DecodedWriteRequest(batch, metadata, histogram_series, exemplars)


def _varint_size(n: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    size = np.ones(len(n), dtype=np.int64)
    for bits in (7, 14, 21, 28, 35, 42, 49, 56, 63):
        size += n >= (1 << bits)
    return size


def decode_write_request(
    body: bytes, content_encoding: str | None
) -> tuple[SampleBatch, list[MetricMetadata]]:
    """Decode a remote-write 1.0 body into a sample batch and the metric metadata.

    Label sets stay wire-encoded (``batch.keys``); the store validates those it has not
    seen (invalid metric or label names, empty or duplicate names, missing labels) and
    rejects just those series.
    """
    decoded = decode_write_request_full(body, content_encoding)
    return decoded.batch, decoded.metadata


# -- encoding -------------------------------------------------------------------------------

SeriesInput = tuple[Labels | Mapping[str, str], Sequence[tuple[int, float]]]


def encode_write_request(
    series: Iterable[SeriesInput],
    metadata: Iterable[MetricMetadata] = (),
    *,
    compress: bool = True,
) -> bytes:
    """Build a remote-write body: labels sorted by name as Prometheus sends them."""
    request = WriteRequest()
    for labels, points in series:
        items = labels.items() if isinstance(labels, Labels) else sorted(labels.items())
        ts = request.timeseries.add()
        for name, value in items:
            label = ts.labels.add()
            label.name = name
            label.value = value
        for timestamp, number in points:
            sample = ts.samples.add()
            sample.timestamp = int(timestamp)
            sample.value = float(number)
    for entry in metadata:
        md = request.metadata.add()
        md.type = METRIC_TYPES.index(entry.type) if entry.type in METRIC_TYPES else 0
        md.metric_family_name = entry.metric
        md.help = entry.help
        md.unit = entry.unit
    payload: bytes = request.SerializeToString()
    return bytes(cramjam.snappy.compress_raw(payload)) if compress else payload


# -- HTTP mapping ---------------------------------------------------------------------------


def _header(headers: Mapping[str, str], name: str) -> str | None:
    for key, value in headers.items():
        if key.lower() == name:
            return value
    return None


def handle_write(
    tsdb: Any, tenant: str, body: bytes, headers: Mapping[str, str]
) -> tuple[int, str]:
    """Store one remote-write request; returns (HTTP status, message) as Prometheus answers.

    204 stored; 400 invalid body or some samples rejected (the valid ones are stored, as in
    Prometheus, and the sender must not retry); 415 unsupported encoding or remote write 2.0;
    429 a series limit was reached (retry later); 500/503 the store failed (retry).
    """
    content_type = _header(headers, "content-type") or ""
    if "io.prometheus.write.v2.request" in content_type.lower():
        return 415, "remote write 2.0 (io.prometheus.write.v2.Request) is not supported; send 1.0"
    try:
        decoded = decode_write_request_full(body, _header(headers, "content-encoding"))
    except WriteRequestError as exc:
        return exc.status, str(exc)
    try:
        result = tsdb.append(tenant, decoded.batch)
        if decoded.metadata:
            tsdb.add_metadata(tenant, decoded.metadata)
    except LimitError as exc:
        return (429 if exc.retryable else 400), f"{exc} (limit {exc.limit})"
    except (WALError, OSError) as exc:
        logger.error("remote write: storage failed: %s", exc)
        return 500, f"storage error: {exc}"
    except TSDBError as exc:
        return 503, f"storage unavailable: {exc}"
    problems: list[str] = []
    if decoded.histogram_series:
        problems.append(
            f"native histograms are not supported: {len(decoded.histogram_series)} series "
            "carried histogram samples that were not stored"
        )
    if not result.ok:
        retryable = set(result.rejected) <= RETRYABLE_REASONS
        message = result.summary()
        if retryable and not problems:
            return 429, message
        problems.insert(0, message)
    if problems:
        return 400, "; ".join(problems)
    return 204, ""
