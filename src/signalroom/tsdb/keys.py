"""Series keys: the canonical bytes that identify a label set inside the store.

A key is the protobuf wire encoding of the label set as the ``labels`` field of a remote-write
``TimeSeries``: per pair, sorted by name, ``0x0a len Label{0x0a len name 0x12 len value}``.
So the labels region of a series that a sender serialised sorted -- every Prometheus does --
is already its key: the hot ingest path slices it out of the request and finds a known series
with one dict lookup on raw bytes, without decoding a label. Every field is tagged and
length-prefixed, so a key is unambiguous for any UTF-8 content.
"""

from __future__ import annotations

from collections.abc import Iterable

from signalroom.model.labels import Labels

__all__ = ["decode_key", "encode_key", "key_labels", "key_metric_name", "labels_key"]

_VARINTS = [bytes((n,)) if n < 0x80 else bytes((n & 0x7F | 0x80, n >> 7)) for n in range(1 << 14)]


def _varint(n: int) -> bytes:
    if n < 1 << 14:
        return _VARINTS[n]
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_pair(name: bytes, value: bytes) -> bytes:
    """One ``Label`` message as a field 1 entry (an empty value is omitted, as protobuf does)."""
    inner = b"\x0a" + _varint(len(name)) + name
    if value:
        inner += b"\x12" + _varint(len(value)) + value
    return b"\x0a" + _varint(len(inner)) + inner


def encode_key(pairs: Iterable[tuple[str, str]]) -> bytes:
    """Key of label pairs that are already sorted by name with unique, non-empty names."""
    return b"".join([encode_pair(n.encode(), v.encode()) for n, v in pairs])


def labels_key(labels: Labels) -> bytes:
    return encode_key(labels.items())


def _read_varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def decode_pairs_bytes(data: bytes) -> list[tuple[bytes, bytes]]:
    """Raw (name, value) byte pairs of a labels region, in wire order.

    Raises ValueError on malformed bytes or a field a Label does not have. A Label without a
    name field gives an empty name (reported as invalid by validation).
    """
    pairs: list[tuple[bytes, bytes]] = []
    pos, end = 0, len(data)
    while pos < end:
        if data[pos] != 0x0A:
            raise ValueError(f"unexpected field tag 0x{data[pos]:02x} in labels")
        size, pos = _read_varint(data, pos + 1)
        stop = pos + size
        if stop > end:
            raise ValueError("label runs past the end of the series")
        name = value = b""
        while pos < stop:
            tag = data[pos]
            length, pos = _read_varint(data, pos + 1)
            if tag not in (0x0A, 0x12) or pos + length > stop:
                raise ValueError(f"malformed label field (tag 0x{tag:02x})")
            if tag == 0x0A:
                name = data[pos : pos + length]
            else:
                value = data[pos : pos + length]
            pos += length
        pairs.append((name, value))
    return pairs


def decode_key(key: bytes) -> tuple[tuple[str, str], ...]:
    """Label pairs of a canonical key (sorted, as stored)."""
    return tuple((n.decode(), v.decode()) for n, v in decode_pairs_bytes(key))


def key_labels(key: bytes) -> Labels:
    return Labels(decode_key(key))


def key_metric_name(key: bytes) -> str:
    for name, value in decode_pairs_bytes(key):
        if name == b"__name__":
            return value.decode()
    return ""
