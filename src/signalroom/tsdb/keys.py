"""Series keys: the canonical bytes that identify a label set inside the store.

A key is the protobuf wire encoding of the label set as the ``labels`` field of a remote-write
``TimeSeries``: per pair, sorted by name, ``0x0a len Label{0x0a len name 0x12 len value}``.
So the labels region of a series that a sender serialised sorted -- every Prometheus does --
is already its key: the hot ingest path slices it out of the request and finds a known series
with one dict lookup on raw bytes, without decoding a label. Every field is tagged and
length-prefixed, so a key is unambiguous for any UTF-8 content.

New series arrive by the thousand (the first scrape of a fleet, a cardinality bomb), so
:func:`parse_keys` splits and validates many keys at once with NumPy, in lockstep over the
label positions; only keys it cannot vouch for take the per-series Python path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from signalroom.model.labels import Labels

__all__ = [
    "ParsedKeys",
    "decode_key",
    "encode_key",
    "group_values",
    "key_labels",
    "key_metric_name",
    "labels_key",
    "parse_keys",
]

I64 = npt.NDArray[np.int64]
U8 = npt.NDArray[np.uint8]

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


# -- many keys at once ------------------------------------------------------------------------


def _byte_table(chars: str) -> npt.NDArray[np.bool_]:
    table = np.zeros(256, dtype=np.bool_)
    table[list(chars.encode("latin-1"))] = True
    return table


_LABEL_NAME = re.compile(rb"[a-zA-Z_][a-zA-Z0-9_]*\Z")
_METRIC_NAME = re.compile(rb"[a-zA-Z_:][a-zA-Z0-9_:]*\Z")
_PLAIN_ASCII = _byte_table("".join(map(chr, range(1, 128))))
_PAD = 64  # zero bytes after the data: varint and window reads may look past a key's end
_MAX_WINDOW = 32  # slices up to this long are grouped as fixed-width rows, longer in Python


def _varints(data: U8, pos: I64) -> tuple[I64, I64]:
    """Varints starting at each position: (values, byte lengths; 0 where not minimal or too
    long). Values wider than 62 bits come back negative; callers bound them anyway."""
    byte = data[pos]
    value = (byte & 0x7F).astype(np.int64)
    length = np.ones(len(pos), dtype=np.int64)
    more = np.flatnonzero(byte >= 0x80)
    j = 1
    while len(more) and j < 9:
        byte = data[pos[more] + j]
        value[more] |= (byte & 0x7F).astype(np.int64) << (7 * j)
        length[more] += 1
        done = byte < 0x80
        length[more[done & (byte == 0)]] = 0  # a trailing zero byte: not the canonical form
        more = more[~done]
        j += 1
    length[more] = 0
    return value, length


def _all_bytes_in(data: U8, starts: I64, ends: I64, table: npt.NDArray[np.bool_]) -> I64:
    """Per slice (all non-empty): True when every byte is in ``table``."""
    if not len(starts):
        return np.zeros(0, dtype=np.bool_)
    lengths = ends - starts
    offsets = np.zeros(len(lengths), dtype=np.int64)
    np.cumsum(lengths[:-1], out=offsets[1:])
    positions = np.arange(int(lengths.sum()), dtype=np.int64) + np.repeat(starts - offsets, lengths)
    bad = (~table[data[positions]]).astype(np.int32)
    out: I64 = np.add.reduceat(bad, offsets) == 0
    return out


def _group(data: U8, blob: bytes, starts: I64, ends: I64) -> tuple[list[bytes], I64]:
    """Distinct slices of ``blob``, sorted, and per slice the index of its group.

    Slices must hold no NUL byte: short ones are compared as zero-padded fixed-width rows
    (one 64-bit word, or raw bytes), so the grouping costs a few NumPy passes, not a Python
    step per slice."""
    n = len(starts)
    if not n:
        return [], np.zeros(0, dtype=np.int64)
    lengths = ends - starts
    width = int(lengths.max())
    if width > _MAX_WINDOW:
        slices = [blob[a:b] for a, b in zip(starts.tolist(), ends.tolist(), strict=True)]
        distinct = sorted(set(slices))
        where = {x: i for i, x in enumerate(distinct)}
        return distinct, np.fromiter(map(where.__getitem__, slices), np.int64, count=n)
    width = max(8, (width + 7) // 8 * 8)
    span = np.arange(width)
    window = data[starts[:, None] + span]
    window[span[None, :] >= lengths[:, None]] = 0
    words = window.view(">u8")  # big-endian words sort as the bytes do
    if bool((words == words[0]).all()):  # one value (a metric's name, a job...)
        return [blob[int(starts[0]) : int(ends[0])]], np.zeros(n, dtype=np.int64)
    if words.shape[1] == 1:
        _, first, inverse = np.unique(words[:, 0], return_index=True, return_inverse=True)
    else:
        order = np.lexsort(words.T[::-1])
        ranked = words[order]
        new = np.ones(n, dtype=np.bool_)
        new[1:] = (ranked[1:] != ranked[:-1]).any(axis=1)
        inverse = np.empty(n, dtype=np.int64)
        inverse[order] = np.cumsum(new) - 1
        first = order[new]
    distinct = [
        blob[a:b] for a, b in zip(starts[first].tolist(), ends[first].tolist(), strict=True)
    ]
    return distinct, inverse.astype(np.int64).ravel()


@dataclass
class ParsedKeys:
    """Labels of many keys, split and checked at once.

    ``ok[i]`` says key i is canonical (labels sorted by name, unique non-empty names and
    values, minimal varints) and valid (Prometheus names, one ``__name__``, ASCII without
    NUL, within the length and count limits): it may be stored as it is. Keys that are not ok
    may still be valid (unsorted, non-ASCII...): the caller checks them one by one. The label
    columns (positions in ``blob``, label order within a key) cover the ok keys only; each
    label's name is ``names[name_of]`` and each ok key's metric ``metrics[metric_of]``
    (-1 for keys that are not ok).
    """

    blob: bytes
    key_start: I64
    key_end: I64
    ok: npt.NDArray[np.bool_]
    owner: I64
    name_of: I64
    value_start: I64
    value_end: I64
    names: list[str]
    metrics: list[str]
    metric_of: I64

    def key(self, i: int) -> bytes:
        return self.blob[int(self.key_start[i]) : int(self.key_end[i])]

    @property
    def data(self) -> U8:
        return np.frombuffer(self.blob + bytes(_PAD), dtype=np.uint8)


def group_values(parsed: ParsedKeys, rows: I64) -> tuple[list[str], I64]:
    """Distinct values (str, sorted) of the labels ``rows`` of ``parsed``, and each one's
    group."""
    distinct, groups = _group(
        parsed.data, parsed.blob, parsed.value_start[rows], parsed.value_end[rows]
    )
    return [d.decode("ascii") for d in distinct], groups


def parse_keys(
    keys: Sequence[bytes],
    *,
    max_name_length: int = 0,
    max_value_length: int = 0,
    max_labels: int = 0,
) -> ParsedKeys:
    """Split and validate many keys with NumPy (see :class:`ParsedKeys`); 0 = no limit."""
    n = len(keys)
    blob = b"".join(keys)
    sizes = np.fromiter(map(len, keys), dtype=np.int64, count=n)
    ends = np.cumsum(sizes)
    starts = ends - sizes
    data = np.frombuffer(blob + bytes(_PAD), dtype=np.uint8)
    last = len(blob)  # clamp for reads of keys already known to be broken
    ok = sizes > 0
    cursor = starts.copy()
    alive = np.flatnonzero(ok)
    found: list[tuple[I64, I64, I64, I64, I64]] = []
    while len(alive):
        at, end = cursor[alive], ends[alive]
        size, size_len = _varints(data, at + 1)
        inner = at + 1 + size_len
        stop = inner + size
        good = (data[at] == 0x0A) & (size_len > 0) & (inner < stop) & (stop <= end)
        inner = np.minimum(inner, last)
        name_len, name_len_len = _varints(data, inner + 1)
        name_start = inner + 1 + name_len_len
        name_end = name_start + name_len
        good &= (data[inner] == 0x0A) & (name_len_len > 0) & (name_len > 0) & (name_end < stop)
        tag = np.minimum(name_end, last)
        value_len, value_len_len = _varints(data, tag + 1)
        value_start = tag + 1 + value_len_len
        value_end = value_start + value_len
        good &= (data[tag] == 0x12) & (value_len_len > 0) & (value_len > 0)
        good &= value_end == stop
        ok[alive[~good]] = False
        kept = alive[good]
        found.append((kept, name_start[good], name_end[good], value_start[good], value_end[good]))
        cursor[kept] = stop[good]
        alive = kept[stop[good] < end[good]]
    if len(found) > 1:
        cols = [np.concatenate([f[j] for f in found]) for j in range(5)]
        order = np.argsort(cols[0], kind="stable")  # by key, label order within
        owner, ns, ne, vs, ve = (c[order] for c in cols)
    elif found:
        owner, ns, ne, vs, ve = found[0]
    else:
        owner = ns = ne = vs = ve = np.zeros(0, dtype=np.int64)

    def drop_broken() -> tuple[I64, I64, I64, I64, I64]:
        keep = ok[owner]
        return owner[keep], ns[keep], ne[keep], vs[keep], ve[keep]

    if max_labels:
        ok &= np.bincount(owner, minlength=n) <= max_labels
    if max_name_length:
        ok[owner[ne - ns > max_name_length]] = False
    if max_value_length:
        ok[owner[ve - vs > max_value_length]] = False
    # ASCII without NUL (so a byte length is a length in characters and zero-padded rows
    # compare right); other label sets go the slow way
    body = data[:last]
    if bool(((body >= 0x80) | (body == 0)).any()):
        owner, ns, ne, vs, ve = drop_broken()
        plain = _all_bytes_in(data, ns, ne, _PLAIN_ASCII) & _all_bytes_in(
            data, vs, ve, _PLAIN_ASCII
        )
        ok[owner[~plain]] = False
    owner, ns, ne, vs, ve = drop_broken()

    # names: each distinct one checked once; sorted unique names <=> ids rising in a key
    distinct, name_of = _group(data, blob, ns, ne)
    valid = np.array([_LABEL_NAME.match(x) is not None for x in distinct], dtype=np.bool_)
    ok[owner[~valid[name_of]]] = False
    same = owner[1:] == owner[:-1]
    ok[owner[1:][same & (name_of[1:] <= name_of[:-1])]] = False
    metric_label = distinct.index(b"__name__") if b"__name__" in distinct else -1
    is_metric = name_of == metric_label
    ok &= np.bincount(owner[is_metric], minlength=n) == 1
    metric_rows = np.flatnonzero(is_metric & ok[owner])
    metrics, metric_group = _group(data, blob, vs[metric_rows], ve[metric_rows])
    valid = np.array([_METRIC_NAME.match(x) is not None for x in metrics], dtype=np.bool_)
    ok[owner[metric_rows[~valid[metric_group]]]] = False
    metric_of = np.full(n, -1, dtype=np.int64)
    metric_of[owner[metric_rows]] = metric_group
    metric_of[~ok] = -1

    keep = ok[owner]
    return ParsedKeys(
        blob,
        starts,
        ends,
        ok,
        owner[keep],
        name_of[keep],
        vs[keep],
        ve[keep],
        [x.decode("ascii") for x in distinct],
        [x.decode("ascii") for x in metrics],
        metric_of,
    )
