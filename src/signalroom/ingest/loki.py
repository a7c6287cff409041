"""Loki push payloads (``POST /loki/api/v1/push``): JSON and snappy-compressed protobuf.

The protobuf messages are Loki's ``logproto.PushRequest``, declared here from a descriptor
built in Python (no generated code); field numbers follow Loki's ``push.proto``.
"""

from __future__ import annotations

import gzip
import json
import zlib
from typing import Any

import cramjam
import numpy as np
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, timestamp_pb2

from signalroom.logs.model import parse_labels
from signalroom.logs.pipeline import EntryBatch, IngestError

__all__ = ["PushRequest", "decode_push", "decode_push_json", "decode_push_protobuf"]


def _build_messages(package: str = "logproto", timestamp_bytes: bool = False) -> Any:
    pool = descriptor_pool.Default()
    name = f"signalroom/{package}/push.proto"
    try:
        pool.FindFileByName(name)
    except KeyError:
        file = descriptor_pb2.FileDescriptorProto(
            name=name, package=package, syntax="proto3",
            dependency=[timestamp_pb2.DESCRIPTOR.name],
        )  # fmt: skip
        label_repeated = descriptor_pb2.FieldDescriptorProto.LABEL_REPEATED
        label_optional = descriptor_pb2.FieldDescriptorProto.LABEL_OPTIONAL
        t = descriptor_pb2.FieldDescriptorProto

        def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> None:
            proto = file.message_type.add(name=name)
            for field_name, number, kind, label, type_name in fields:
                proto.field.add(
                    name=field_name, number=number, type=kind, label=label,
                    **({"type_name": type_name} if type_name else {}),
                )  # fmt: skip

        message("PushRequest", [("streams", 1, t.TYPE_MESSAGE, label_repeated,
                                 f".{package}.StreamAdapter")])  # fmt: skip
        message("StreamAdapter", [
            ("labels", 1, t.TYPE_STRING, label_optional, ""),
            ("entries", 2, t.TYPE_MESSAGE, label_repeated, f".{package}.EntryAdapter"),
            ("hash", 3, t.TYPE_UINT64, label_optional, ""),
        ])  # fmt: skip
        timestamp = (
            ("timestamp", 1, t.TYPE_BYTES, label_optional, "")
            if timestamp_bytes
            else ("timestamp", 1, t.TYPE_MESSAGE, label_optional, ".google.protobuf.Timestamp")
        )
        message("EntryAdapter", [
            timestamp,
            ("line", 2, t.TYPE_STRING, label_optional, ""),
            ("structuredMetadata", 3, t.TYPE_MESSAGE, label_repeated,
             f".{package}.LabelPairAdapter"),
        ])  # fmt: skip
        message("LabelPairAdapter", [
            ("name", 1, t.TYPE_STRING, label_optional, ""),
            ("value", 2, t.TYPE_STRING, label_optional, ""),
        ])  # fmt: skip
        pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(f"{package}.PushRequest"))


PushRequest = _build_messages()
"""``logproto.PushRequest`` (streams → entries with timestamp, line, structured metadata)."""

# The same wire format read with each entry's timestamp left as its serialized bytes: a
# Python object per entry fewer, and the times decoded for the whole request at once.
_FlatPushRequest = _build_messages("signalroom_logproto_flat", timestamp_bytes=True)


def _timestamps_ns(stamps: list[bytes]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Unix nanoseconds of serialized ``google.protobuf.Timestamp`` messages (field 1 seconds,
    field 2 nanos, both varints), decoded as one array; anything else takes the slow path."""
    n = len(stamps)
    lengths = np.fromiter(map(len, stamps), np.int64, n)
    data = np.frombuffer(b"".join(stamps), np.uint8)
    seconds = np.zeros(n, np.int64)
    nanos = np.zeros(n, np.int64)
    if len(data):
        ends = np.flatnonzero(data < 0x80)  # the last byte of each varint
        starts = np.concatenate(([0], ends[:-1] + 1))
        sizes = ends - starts + 1
        offsets = np.concatenate(([0], np.cumsum(lengths)))
        tags = data[starts[0::2]] if len(ends) % 2 == 0 else None
        pair_entry = np.searchsorted(offsets, starts[0::2], side="right") - 1
        if (
            tags is None
            or data[-1] >= 0x80
            or sizes.max() > 10
            or not np.isin(tags, (0x08, 0x10)).all()
            or (sizes[0::2] != 1).any()
            or (ends[1::2] >= offsets[pair_entry + 1]).any()
        ):
            return _timestamps_slow(stamps)
        shift = ((np.arange(len(data)) - np.repeat(starts, sizes)) * 7).astype(np.uint64)
        words = (data & np.uint8(0x7F)).astype(np.uint64) << shift
        values = np.add.reduceat(words, starts)[1::2].view(np.int64)  # two's complement
        is_seconds = tags == 0x08
        seconds[pair_entry[is_seconds]] = values[is_seconds]
        nanos[pair_entry[~is_seconds]] = values[~is_seconds]
    out: np.ndarray[Any, np.dtype[np.int64]] = seconds * 1_000_000_000 + nanos
    return out


def _timestamps_slow(stamps: list[bytes]) -> np.ndarray[Any, np.dtype[np.int64]]:
    out = []
    for data in stamps:
        try:
            stamp = timestamp_pb2.Timestamp.FromString(data)
        except Exception as exc:
            raise IngestError(f"invalid entry timestamp: {exc}") from None
        out.append(stamp.seconds * 1_000_000_000 + stamp.nanos)
    return np.asarray(out, np.int64)


def _decompress(body: bytes, encoding: str) -> bytes:
    encoding = encoding.lower().strip()
    try:
        if encoding == "gzip":
            return gzip.decompress(body)
        if encoding == "deflate":
            return zlib.decompress(body)
        if encoding == "snappy":
            return bytes(cramjam.snappy.decompress_raw(body))
    except Exception as exc:
        raise IngestError(f"cannot decompress the {encoding} body: {exc}") from None
    if encoding not in ("", "identity"):
        raise IngestError(f"unsupported Content-Encoding {encoding!r}")
    return body


def decode_push(body: bytes, content_type: str, content_encoding: str = "") -> EntryBatch:
    """Decode a push body by its content type (protobuf unless it says JSON, as Loki does)."""
    kind = content_type.split(";")[0].strip().lower()
    if kind == "application/json":
        return decode_push_json(_decompress(body, content_encoding))
    if content_encoding and content_encoding.lower() not in ("", "identity", "snappy"):
        body = _decompress(body, content_encoding)
    return decode_push_protobuf(body)


def _metadata_json(pairs: Any, where: str) -> str | None:
    if not pairs:
        return None
    if isinstance(pairs, dict):
        items = {str(k): str(v) for k, v in pairs.items()}
    else:
        items = {p.name: p.value for p in pairs}
    return json.dumps(items, sort_keys=True, separators=(",", ":")) if items else None


_TRACE_KEYS = ("trace_id", "traceId", "traceID", "trace.id")
_SPAN_KEYS = ("span_id", "spanId", "spanID", "span.id")


def _batch(
    streams: list[dict[str, str]],
    index: Any,
    stamps: Any,
    lines: list[str],
    metadata: list[str | None],
    any_metadata: bool,
) -> EntryBatch:
    """An entry batch; trace and span ids given as structured metadata (how Loki clients
    attach them) become the entries' ids, so logs link to traces."""
    if not any_metadata:
        return EntryBatch(streams, index, stamps, lines)
    parsed = [json.loads(m) if m else {} for m in metadata]
    trace_ids = [next((d[k] for k in _TRACE_KEYS if k in d), None) for d in parsed]
    span_ids = [next((d[k] for k in _SPAN_KEYS if k in d), None) for d in parsed]
    return EntryBatch(
        streams,
        index,
        stamps,
        lines,
        trace_ids=trace_ids if any(trace_ids) else None,
        span_ids=span_ids if any(span_ids) else None,
        metadata=metadata,
    )


def decode_push_protobuf(body: bytes) -> EntryBatch:
    """Snappy block-compressed ``logproto.PushRequest`` (what Promtail, Alloy, Fluent Bit's
    Loki output and the Loki Go client send)."""
    try:
        raw = bytes(cramjam.snappy.decompress_raw(body))
    except Exception:
        raise IngestError(
            "body is not snappy block-compressed protobuf; send Content-Type: application/json "
            "for JSON pushes"
        ) from None
    request = _FlatPushRequest()
    try:
        request.ParseFromString(raw)
    except Exception as exc:
        raise IngestError(f"invalid logproto.PushRequest protobuf: {exc}") from None
    streams: list[dict[str, str]] = []
    counts: list[int] = []
    stamps: list[bytes] = []
    lines: list[str] = []
    metadata: list[str | None] = []
    any_metadata = False
    for i, stream in enumerate(request.streams):
        try:
            labels = parse_labels(stream.labels)
        except ValueError as exc:
            raise IngestError(f"streams[{i}].labels {stream.labels!r}: {exc}") from None
        entries = stream.entries
        streams.append(labels)
        counts.append(len(entries))
        # One pass: each visit of an entry builds a Python wrapper around it.
        rows = [(e.timestamp, e.line, e.structuredMetadata) for e in entries]
        if not rows:
            continue
        stream_stamps, stream_lines, pairs = zip(*rows, strict=True)
        stamps.extend(stream_stamps)
        lines.extend(stream_lines)
        if any(pairs):
            any_metadata = True
            metadata.extend(_metadata_json(p, "") if p else None for p in pairs)
        else:
            metadata.extend([None] * len(rows))
    index = np.repeat(np.arange(len(streams), dtype=np.int64), counts)
    return _batch(streams, index, _timestamps_ns(stamps), lines, metadata, any_metadata)


def decode_push_json(body: bytes) -> EntryBatch:
    """``{"streams": [{"stream": {...}, "values": [["<ns>", "<line>", {meta}?], ...]}]}``."""
    try:
        payload = json.loads(body)
    except ValueError as exc:
        raise IngestError(f"invalid JSON body: {exc}") from None
    if not isinstance(payload, dict) or not isinstance(payload.get("streams"), list):
        raise IngestError('expected a JSON object with a "streams" array')
    streams: list[dict[str, str]] = []
    counts: list[int] = []
    stamp_texts: list[Any] = []
    lines: list[str] = []
    metadata: list[str | None] = []
    any_metadata = False
    for i, stream in enumerate(payload["streams"]):
        if not isinstance(stream, dict):
            raise IngestError(f"streams[{i}]: expected an object")
        labels = stream.get("stream", stream.get("labels"))
        if isinstance(labels, str):
            try:
                labels = parse_labels(labels)
            except ValueError as exc:
                raise IngestError(f"streams[{i}].labels: {exc}") from None
        if not isinstance(labels, dict):
            raise IngestError(f"streams[{i}].stream: expected an object of labels")
        for name, value in labels.items():
            if not isinstance(value, str):
                raise IngestError(f"streams[{i}].stream.{name}: label values must be strings")
        values = stream.get("values")
        if not isinstance(values, list):
            raise IngestError(f'streams[{i}].values: expected an array of ["<ns>", "<line>"]')
        for j, value in enumerate(values):
            if (
                not isinstance(value, list)
                or len(value) not in (2, 3)
                or not isinstance(value[1], str)
            ):
                raise IngestError(
                    f'streams[{i}].values[{j}]: expected ["<unix ns>", "<line>"] or '
                    '["<unix ns>", "<line>", {structured metadata}]'
                )
            if len(value) == 3:
                if not isinstance(value[2], dict):
                    raise IngestError(
                        f"streams[{i}].values[{j}][2]: structured metadata must be an object"
                    )
                any_metadata = True
                metadata.append(_metadata_json(value[2], ""))
            else:
                metadata.append(None)
        streams.append(labels)
        counts.append(len(values))
        stamp_texts.extend(v[0] for v in values)
        lines.extend(v[1] for v in values)
    try:
        stamps = np.asarray(stamp_texts, dtype=object).astype(np.int64)
    except (ValueError, TypeError, OverflowError):
        stamps = None
    if stamps is None or (len(stamps) and int(stamps.min()) < 0):
        position = 0
        for i, count in enumerate(counts):
            for j in range(count):
                text = stamp_texts[position]
                position += 1
                if not (isinstance(text, str) and text.isdigit()):
                    raise IngestError(
                        f"streams[{i}].values[{j}][0]: timestamp {text!r} is not a string of "
                        "unix nanoseconds"
                    )
        raise IngestError("invalid timestamp")  # pragma: no cover - caught above
    index = np.repeat(np.arange(len(streams), dtype=np.int64), counts)
    return _batch(streams, index, stamps, lines, metadata, any_metadata)
