"""Line templates: a log line split into its template and its variables (the idea of CLP).

Random ids, numbers and the line's own timestamp are most of a log line's entropy and most of
what a substring search of an id has to read, so segment files do not store ``line``. They store

* ``tpl``: the line with each variable replaced by one placeholder byte naming its slot;
* ``n0``..``n5``: the line's first whole-word integers (``1234``, not ``007``, ``12ms`` or
  numbers past 18 digits) as int64, one column per position, so a field stays in one column;
* ``h0``, ``h1``: its first whole-word lowercase hex ids of 16+ characters (request and trace
  ids), in columns of their own, where zstd codes each digit in about four bits;
* nothing for the first ``YYYY-MM-DDTHH:MM:SS.mmmZ`` that is the row's own timestamp;
* ``raw``: the line itself, only for the rare line that holds a placeholder byte.

A *word* is a maximal run of ``[0-9A-Za-z_]`` and bytes >= 0x80, so every word of a line is
wholly in the template, wholly one variable, or inside the elided timestamp. That makes most
substring filters exact on the encoded columns (:func:`contains_sql`): a needle made of word
characters lies inside one word, so it is in the template or in one variable column; a needle
none of whose parts can belong to a variable is in the template. Other needles are checked on
the reconstructed line, after a template prefilter. Encoding is NumPy over the whole byte
buffer of a batch; decoding is one DuckDB expression (:func:`line_sql`), used by queries and by
:func:`decode` alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

__all__ = [
    "CODEC_KEY",
    "HEX_COLUMNS",
    "NUMBER_COLUMNS",
    "Branch",
    "LineCodec",
    "contains_sql",
    "decode",
    "encode",
    "encoded_schema",
    "is_encoded",
    "line_sql",
    "needle_branches",
]

CODEC_KEY = b"signalroom.logs.codec"
LINE_BYTES_KEY = b"signalroom.logs.line_bytes"
VERSION = b"1"

NUMBER_SLOTS = 6
HEX_SLOTS = 2
_NUM_BYTES = tuple(range(1, 1 + NUMBER_SLOTS))  # \x01..\x06
_HEX_BYTES = (0x0E, 0x0F)
_TS_BYTE = 0x10
_RESERVED = np.zeros(256, np.bool_)
_RESERVED[[*_NUM_BYTES, *_HEX_BYTES, _TS_BYTE]] = True
_MIN_HEX = 16
_MAX_DIGITS = 18  # always fits int64
_TS_WIDTH = 24  # 2023-11-14T22:13:20.007Z
_TS_WORDS = 6
_TS_LIMIT_NS = 253402300800 * 10**9  # year 10000: later years have more digits
_CHUNK_ROWS = 65_536  # encoded this many lines at a time (bounded temporaries)

_WORD = np.zeros(256, np.bool_)
for _c in b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_":
    _WORD[_c] = True
_WORD[0x80:] = True
_DIGIT = np.zeros(256, np.bool_)
_DIGIT[ord("0") : ord("9") + 1] = True
_LOWER_HEX = _DIGIT.copy()
_LOWER_HEX[ord("a") : ord("f") + 1] = True
_POW10 = 10 ** np.arange(_MAX_DIGITS, dtype=np.int64)
# One lookup per byte gives all that encoding asks of it.
_C_WORD, _C_NOT_DIGIT, _C_NOT_HEX, _C_RESERVED = 1, 2, 4, 8
_CLASS = (
    _WORD * _C_WORD
    + (_WORD & ~_DIGIT) * _C_NOT_DIGIT
    + (_WORD & ~_LOWER_HEX) * _C_NOT_HEX
    + _RESERVED * _C_RESERVED
).astype(np.uint8)

_PASSTHROUGH = ["timestamp", "stream_id", "stream", "trace_id", "span_id", "metadata"]
NUMBER_COLUMNS = [f"n{k}" for k in range(NUMBER_SLOTS)]
HEX_COLUMNS = [f"h{k}" for k in range(HEX_SLOTS)]
_TS_FORMAT = "%Y-%m-%dT%H:%M:%S.%gZ"  # DuckDB's; pyarrow renders the same from timestamp[ms]


def encoded_schema(schema: pa.Schema) -> pa.Schema:
    """The columns of an encoded segment file for a table of ``schema`` (LOG_SCHEMA)."""
    fields = [schema.field(name) for name in _PASSTHROUGH]
    fields += [pa.field("tpl", pa.string()), pa.field("raw", pa.string())]
    fields += [pa.field(name, pa.int64()) for name in NUMBER_COLUMNS]
    fields += [pa.field(name, pa.string()) for name in HEX_COLUMNS]
    return pa.schema(fields)


def is_encoded(metadata: Mapping[bytes, bytes] | None) -> bool:
    return bool(metadata) and (metadata or {}).get(CODEC_KEY) == VERSION


def _gather(data: np.ndarray[Any, Any], starts: np.ndarray[Any, Any], lengths: Any) -> Any:
    """The bytes of ``data[starts[i] : starts[i] + lengths[i]]`` for every i, concatenated."""
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.uint8)
    firsts = np.cumsum(lengths) - lengths
    index = np.arange(total, dtype=np.int64) - np.repeat(firsts - starts, lengths)
    return data[index]


def _string_array(data: np.ndarray[Any, Any], lengths: np.ndarray[Any, Any], valid: Any) -> Any:
    offsets = np.zeros(len(lengths) + 1, np.int32)
    np.cumsum(lengths, out=offsets[1:])
    validity = pa.array(valid, pa.bool_()).buffers()[1] if not valid.all() else None
    return pa.StringArray.from_buffers(
        len(lengths), pa.py_buffer(offsets), pa.py_buffer(data.tobytes()), validity
    )


def _rendered_times(timestamps: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` of each time (ns), as rows of 24 bytes; each distinct
    second is formatted once."""
    clipped = np.clip(timestamps, 0, _TS_LIMIT_NS - 1)
    seconds, inverse = np.unique(clipped // 10**9, return_inverse=True)
    stamps = pa.array(seconds, pa.timestamp("s"))
    texts = pc.strftime(stamps, "%Y-%m-%dT%H:%M:%S")
    heads = np.frombuffer(texts.buffers()[2], np.uint8)[: len(seconds) * 19].reshape(-1, 19)
    millis = (clipped // 10**6 % 1000).astype(np.int64)
    out = np.empty((len(timestamps), _TS_WIDTH), np.uint8)
    out[:, :19] = heads[inverse.reshape(-1)]
    out[:, 19] = ord(".")
    out[:, 20] = ord("0") + millis // 100
    out[:, 21] = ord("0") + millis // 10 % 10
    out[:, 22] = ord("0") + millis % 10
    out[:, 23] = ord("Z")
    return out


def _encode_chunk(lines: pa.StringArray, timestamps: np.ndarray[Any, Any]) -> list[pa.Array]:
    n = len(lines)
    offsets = np.frombuffer(lines.buffers()[1], np.int32, n + 1, lines.offset).astype(np.int64)
    data_buffer = lines.buffers()[2]
    whole = np.frombuffer(data_buffer, np.uint8) if data_buffer is not None else np.zeros(0)
    data = whole[offsets[0] : offsets[-1]].astype(np.uint8, copy=True)
    offsets -= offsets[0]
    size = len(data)
    lengths = np.diff(offsets)
    heads = offsets[:-1][lengths > 0]  # first byte of each non-empty line
    classes = _CLASS[data]

    is_raw = np.zeros(n, np.bool_)
    if size:
        flags = np.bitwise_or.reduceat(classes, heads)
        is_raw[lengths > 0] = (flags & _C_RESERVED) != 0
    if lines.null_count:
        is_raw |= ~np.asarray(lines.is_valid())

    # Words: maximal runs of word bytes, never across a line boundary.
    word = (classes & _C_WORD).view(np.bool_)
    before = np.empty(size, np.bool_)
    before[1:] = word[:-1]
    before[heads] = False
    after = np.empty(size, np.bool_)
    after[:-1] = word[1:]
    after[offsets[1:][lengths > 0] - 1] = False
    starts = np.flatnonzero(word > before)
    ends = np.flatnonzero(word > after) + 1
    run_length = ends - starts
    run_counts = np.bincount(np.searchsorted(starts, offsets[:-1]), minlength=len(starts) + 1)
    run_line = np.cumsum(run_counts[:-1]) - 1  # runs are in byte order: lines ascend
    run_flags = np.bitwise_or.reduceat(classes, starts) if len(starts) else classes[:0]
    all_digits = (run_flags & _C_NOT_DIGIT) == 0
    all_hex = (run_flags & _C_NOT_HEX) == 0

    # The row's own timestamp: the first 4-digit word followed by '-' in the line, when the
    # 24 bytes there are the row's time and no word byte follows them.
    dash = np.zeros(len(starts), np.bool_)
    inside = ends < size
    dash[inside] = data[ends[inside]] == ord("-")
    candidates = np.flatnonzero((run_length == 4) & all_digits & dash & ~is_raw[run_line])
    ts_starts = ts_lines = ts_runs = np.zeros(0, np.int64)
    if len(candidates):
        cand_lines, first = np.unique(run_line[candidates], return_index=True)
        cand_starts = starts[candidates[first]]
        fits = cand_starts + _TS_WIDTH <= offsets[cand_lines + 1]
        fits &= timestamps[cand_lines] < _TS_LIMIT_NS
        cand_lines, cand_starts = cand_lines[fits], cand_starts[fits]
        if len(cand_lines):
            window = data[cand_starts[:, None] + np.arange(_TS_WIDTH)]
            same = (window == _rendered_times(timestamps[cand_lines])).all(axis=1)
            follow = cand_starts + _TS_WIDTH
            bounded = follow < offsets[cand_lines + 1]
            same[bounded] &= ~word[follow[bounded]]
            ts_starts, ts_lines = cand_starts[same], cand_lines[same]
            ts_runs = candidates[first][fits][same]
    in_ts = np.zeros(len(starts) + _TS_WORDS, np.bool_)
    if len(ts_starts):  # the timestamp is 6 words: 2023 11 14T22 13 20 007Z
        in_ts[(ts_runs[:, None] + np.arange(_TS_WORDS)).reshape(-1)] = True
    in_ts = in_ts[: len(starts)]

    usable = ~is_raw[run_line] & ~in_ts
    first_byte = data[starts]
    number = (
        usable
        & all_digits
        & (run_length <= _MAX_DIGITS)
        & ((first_byte != ord("0")) | (run_length == 1))
    )
    hex_id = usable & ~number & all_hex & (run_length >= _MIN_HEX)

    columns: list[pa.Array] = []
    number_runs, number_rank = _slots(number, run_line, NUMBER_SLOTS)
    run_len = run_length[number_runs]
    values_digits = _gather(data, starts[number_runs], run_len).astype(np.int64) - ord("0")
    firsts = np.cumsum(run_len) - run_len
    position = np.arange(len(values_digits)) - np.repeat(firsts, run_len)
    exponent = np.repeat(run_len, run_len) - 1 - position
    terms = values_digits * _POW10[exponent]
    values = np.add.reduceat(terms, firsts) if len(firsts) else terms
    slots = np.zeros((NUMBER_SLOTS, n), np.int64)
    absent = np.ones((NUMBER_SLOTS, n), np.bool_)
    slots[number_rank, run_line[number_runs]] = values
    absent[number_rank, run_line[number_runs]] = False
    for k in range(NUMBER_SLOTS):
        columns.append(pa.array(slots[k], pa.int64(), mask=absent[k]))

    hex_runs, hex_rank = _slots(hex_id, run_line, HEX_SLOTS)
    for k in range(HEX_SLOTS):
        runs = hex_runs[hex_rank == k]
        slot_lengths = np.zeros(n, np.int64)
        slot_lengths[run_line[runs]] = run_length[runs]
        present = np.zeros(n, np.bool_)
        present[run_line[runs]] = True
        hex_bytes = _gather(data, starts[runs], run_length[runs])
        columns.append(_string_array(hex_bytes, slot_lengths, present))

    # The template: each variable's bytes dropped but its first, which becomes its mark.
    var_starts = np.concatenate([ts_starts, starts[number_runs], starts[hex_runs]])
    var_ends = np.concatenate([ts_starts + _TS_WIDTH, ends[number_runs], ends[hex_runs]])
    data[var_starts] = np.concatenate(
        [
            np.full(len(ts_starts), _TS_BYTE, np.uint8),
            np.asarray(_NUM_BYTES, np.uint8)[number_rank],
            np.asarray(_HEX_BYTES, np.uint8)[hex_rank],
        ]
    )
    order = np.argsort(var_starts, kind="stable")
    edges = np.empty(2 * len(order) + 2, np.int64)  # kept, dropped, kept, ... spans
    edges[0], edges[-1] = 0, size
    edges[1:-1:2] = var_starts[order] + 1
    edges[2:-1:2] = var_ends[order]
    pattern = np.zeros(len(edges) - 1, np.bool_)
    pattern[::2] = True
    kept = np.repeat(pattern, np.diff(edges))
    var_lines = np.concatenate([ts_lines, run_line[number_runs], run_line[hex_runs]])
    dropped = np.bincount(var_lines, weights=var_ends - var_starts - 1, minlength=n)
    tpl = _string_array(data[kept], lengths - dropped.astype(np.int64), ~is_raw)
    raw = pc.if_else(pa.array(is_raw), lines, pa.scalar(None, pa.string()))
    return [tpl, raw, *columns]


def _slots(chosen: np.ndarray[Any, Any], run_line: Any, limit: int) -> tuple[Any, Any]:
    """The runs of ``chosen`` that are among the first ``limit`` of their line, and their
    rank there (runs are in byte order, so lines are sorted)."""
    runs = np.flatnonzero(chosen)
    lines_of_runs = run_line[runs]
    new_line = np.ones(len(runs), np.bool_)
    new_line[1:] = lines_of_runs[1:] != lines_of_runs[:-1]
    group_starts = np.flatnonzero(new_line)
    sizes = np.diff(np.append(group_starts, len(runs)))
    rank = np.arange(len(runs)) - np.repeat(group_starts, sizes)
    keep = rank < limit
    return runs[keep], rank[keep]


def encode(table: pa.Table) -> pa.Table:
    """A LOG_SCHEMA table as the columns of an encoded segment file (same row order)."""
    schema = encoded_schema(table.schema)
    lines = table.column("line")
    timestamps = table.column("timestamp").to_numpy()
    chunks: list[list[pa.Array]] = []
    for start in range(0, table.num_rows, _CHUNK_ROWS):
        part = lines.slice(start, _CHUNK_ROWS).combine_chunks()
        chunks.append(_encode_chunk(part, timestamps[start : start + _CHUNK_ROWS]))
    names = ["tpl", "raw", *NUMBER_COLUMNS, *HEX_COLUMNS]
    encoded = {
        name: pa.chunked_array([c[i] for c in chunks], schema.field(name).type)
        for i, name in enumerate(names)
    }
    arrays = [
        table.column(name) if name in _PASSTHROUGH else encoded[name] for name in schema.names
    ]
    line_bytes = int(pc.sum(pc.binary_length(lines)).as_py() or 0)
    metadata = {CODEC_KEY: VERSION, LINE_BYTES_KEY: str(line_bytes).encode()}
    return pa.Table.from_arrays(arrays, schema=schema.with_metadata(metadata))


# ---------------------------------------------------------------------------- SQL


def _chr(byte: int) -> str:
    return f"chr({byte})"


def timestamp_sql(prefix: str = "") -> str:
    return f"strftime(make_timestamp({prefix}timestamp // 1000), '{_TS_FORMAT}')"


def line_sql(prefix: str = "") -> str:
    """DuckDB expression rebuilding ``line`` from an encoded file's columns (``prefix`` is a
    table alias with its dot, or empty)."""
    expression = f"{prefix}tpl"
    for k, byte in enumerate(_NUM_BYTES):
        expression = (
            f"replace({expression}, {_chr(byte)}, coalesce(CAST({prefix}n{k} AS VARCHAR), ''))"
        )
    for k, byte in enumerate(_HEX_BYTES):
        expression = f"replace({expression}, {_chr(byte)}, coalesce({prefix}h{k}, ''))"
    # The template alone says whether the timestamp mark is there (variables are digits and
    # hex letters): testing the expanded text would build it twice per row.
    expression = (
        f"CASE WHEN contains({prefix}tpl, {_chr(_TS_BYTE)}) "
        f"THEN replace({expression}, {_chr(_TS_BYTE)}, {timestamp_sql(prefix)}) "
        f"ELSE {expression} END"
    )
    return f"coalesce({prefix}raw, {expression})"


_WORD_CHARS = frozenset("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_")
_DIGITS = frozenset("0123456789")
_HEX_CHARS = frozenset("0123456789abcdef")
_TS_WORD_CHARS = frozenset("0123456789TZ")
_TS_SEPARATORS = frozenset("-:.")


def _is_word(char: str) -> bool:
    return char in _WORD_CHARS or ord(char) >= 0x80


def _safe_mask(needle: str) -> list[bool]:
    """For each character of ``needle``: True when, wherever the needle occurs in a line, that
    character is a template byte (not part of a variable or of the elided timestamp)."""
    safe = [False] * len(needle)
    position = 0
    while position < len(needle):
        char = needle[position]
        if not _is_word(char):
            safe[position] = char not in _TS_SEPARATORS and ord(char) >= 0x20
            position += 1
            continue
        end = position
        while end < len(needle) and _is_word(needle[end]):
            end += 1
        chars = set(needle[position:end])
        template_word = not chars <= _HEX_CHARS and not chars <= _TS_WORD_CHARS
        for index in range(position, end):
            safe[index] = template_word
        position = end
    return safe


@dataclass(frozen=True)
class Branch:
    """Rows whose line contains a needle one way (in the template, in one variable column,
    ...): ``condition`` (DuckDB, ``?`` for ``params``) over the encoded columns, and ``prune``,
    a substring that every such row's template (or raw line) holds, for the trigram index."""

    condition: str
    params: tuple[Any, ...]
    prune: str | None


def needle_branches(needle: str, line: str) -> list[Branch]:
    """Branches whose union is exactly the rows whose line contains ``needle``: rows of
    unencoded sources carry their line in ``raw``; ``line`` is the expression rebuilding a
    line, for the needles only the whole line can answer (after a template prefilter)."""
    if needle == "":
        return [Branch("TRUE", (), None)]
    # The raw branch goes last: its rows (older files, the buffer) match no other branch, so
    # what keeps branches apart (NOT the earlier ones) costs nothing there.
    branches: list[Branch] = []
    raw = Branch("contains(raw, ?)", (needle,), needle)
    if any(_RESERVED[b] for b in needle.encode()):
        return [raw]  # a line holding a placeholder byte is stored raw
    chars = set(needle)
    if all(_is_word(c) for c in needle):
        # Inside one word, so in one variable, in the template or in the timestamp. The
        # variable columns first: each filter of a branch that reads a column for every row
        # slows it down, and the later ones' NOT filters are evaluated on few rows.
        if chars <= _HEX_CHARS:
            branches += [Branch(f"contains(h{k}, ?)", (needle,), None) for k in range(HEX_SLOTS)]
        if chars <= _DIGITS:
            branches += [
                Branch(f"contains(CAST(n{k} AS VARCHAR), ?)", (needle,), None)
                for k in range(NUMBER_SLOTS)
            ]
        if chars <= _TS_WORD_CHARS:
            condition = f"contains(tpl, {_chr(_TS_BYTE)}) AND contains({timestamp_sql()}, ?)"
            branches.append(Branch(condition, (needle,), None))
        return [*branches, Branch("contains(tpl, ?)", (needle,), needle), raw]
    safe = _safe_mask(needle)
    if all(safe):
        return [Branch("contains(tpl, ?)", (needle,), needle), raw]
    edged = _edge_branch(needle)
    if edged is not None:
        return [edged, raw]
    prefilter = _longest_run(needle, safe)
    if prefilter:
        condition = f"contains(tpl, ?) AND contains({line}, ?)"
        return [Branch(condition, (prefilter, needle), prefilter), raw]
    return [Branch(f"tpl IS NOT NULL AND contains({line}, ?)", (needle,), None), raw]


_MAX_EDGE_OPTIONS = 24


def _edge_branch(needle: str) -> Branch | None:
    """``key=12`` or ``id=7f3a``: a middle of template bytes with a word at either end that
    may be the start (end) of a variable. Exact: each placeholder byte occurs at most once in
    a template, so ``P + mark`` in the template and the variable starting with the word are
    the same occurrence."""
    words = [i for i, c in enumerate(needle) if not _is_word(c)]
    first, last = words[0], words[-1]
    middle = needle[first : last + 1]
    if not all(_safe_mask(middle)):
        return None
    lead, trail = needle[:first], needle[last + 1 :]
    leads = _edge_options(lead, "ends_with")
    trails = _edge_options(trail, "starts_with")
    if leads is None or trails is None or len(leads) * len(trails) > _MAX_EDGE_OPTIONS:
        return None
    options: list[str] = []
    params: list[Any] = [middle]
    for lead_text, lead_test, lead_params in leads:
        for trail_text, trail_test, trail_params in trails:
            tests = ["contains(tpl, ?)", *filter(None, [lead_test, trail_test])]
            options.append("(" + " AND ".join(tests) + ")")
            params += [lead_text + middle + trail_text, *lead_params, *trail_params]
    # The template test alone, first: DuckDB runs it in the scan and reads the variables only
    # for the rows that pass it.
    condition = f"contains(tpl, ?) AND ({' OR '.join(options)})"
    return Branch(condition, tuple(params), middle)


def _edge_options(word: str, test: str) -> list[tuple[str, str | None, list[Any]]] | None:
    """Where an edge word of a needle may be in a line: ``(text in the template, test on a
    variable, its params)`` for the template itself and each variable it may start/end."""
    options: list[tuple[str, str | None, list[Any]]] = [(word, None, [])]
    if not word:
        return options
    chars = set(word)
    if chars <= _DIGITS:
        for k, byte in enumerate(_NUM_BYTES):
            options.append((chr(byte), f"{test}(CAST(n{k} AS VARCHAR), ?)", [word]))
    if chars <= _HEX_CHARS:
        for k, byte in enumerate(_HEX_BYTES):
            options.append((chr(byte), f"{test}(h{k}, ?)", [word]))
    if chars <= _TS_WORD_CHARS:
        options.append((chr(_TS_BYTE), f"{test}({timestamp_sql()}, ?)", [word]))
    return options


def contains_sql(needle: str, params: list[Any], line: str) -> str:
    """One DuckDB condition, true exactly for the rows whose line contains ``needle``
    (the union of :func:`needle_branches`); appends its parameters to ``params``."""
    parts = []
    for branch in needle_branches(needle, line):
        parts.append(f"coalesce(({branch.condition}), FALSE)")
        params.extend(branch.params)
    return "(" + " OR ".join(parts) + ")"


def _longest_run(needle: str, safe: list[bool]) -> str:
    best = (0, 0)
    start = 0
    for index, ok in enumerate([*safe, False]):
        if not ok:
            if index - start > best[1] - best[0]:
                best = (start, index)
            start = index + 1
    return needle[best[0] : best[1]]


class LineCodec:
    """The segment-file codec of the log store (:class:`~signalroom.storage.segments.FileCodec`).

    Templates repeat: dictionary-encoded. Numbers are split by byte position
    (BYTE_STREAM_SPLIT), so zstd sees their all-zero high bytes together. Hex ids are stored
    without their length prefixes between them (DELTA_LENGTH_BYTE_ARRAY), so zstd codes a
    run of pure hex digits at four bits each; at level 1, because higher levels find chance
    matches in random digits that make the column larger and decompress three times slower
    (a hex id search reads all of it)."""

    write_options: Mapping[str, Any] = {
        "compression_level": {
            # 7 writes about as fast as 3 here and stores ~4% less
            **{name: 7 for name in [*_PASSTHROUGH, "tpl", "raw", *NUMBER_COLUMNS]},
            **{name: 1 for name in HEX_COLUMNS},
        },
        "use_dictionary": ["stream_id", "stream", "trace_id", "span_id", "metadata", "tpl"],
        "column_encoding": {
            "timestamp": "DELTA_BINARY_PACKED",
            **{name: "BYTE_STREAM_SPLIT" for name in NUMBER_COLUMNS},
            **{name: "DELTA_LENGTH_BYTE_ARRAY" for name in HEX_COLUMNS},
        },
    }

    def encode(self, table: pa.Table) -> pa.Table:
        return encode(table)

    def decode(self, table: pa.Table, schema: pa.Schema) -> pa.Table:
        return decode(table, schema)


def decode(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """An encoded file's table back in ``schema`` (LOG_SCHEMA); other tables as they are."""
    if "tpl" not in table.column_names:
        return table.select(schema.names)
    connection = duckdb.connect()
    try:
        connection.register("encoded", table)
        columns = ", ".join(line_sql() + " AS line" if n == "line" else n for n in schema.names)
        rebuilt = connection.sql(f"SELECT {columns} FROM encoded").to_arrow_table()
    finally:
        connection.close()
    return pa.Table.from_arrays(
        [rebuilt.column(n).cast(schema.field(n).type) for n in schema.names], schema=schema
    )
