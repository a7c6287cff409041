"""The log store's search path: the trigram skip index per row group, time-ordered scans that
stop reading once they have ``limit`` lines, and the volume figures of Loki's index stats."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signalroom.logs.logql.ast import LineFilter
from signalroom.logs.model import LOG_SCHEMA, format_labels, stream_id
from signalroom.logs.ngram import META_KEY, TrigramIndex, build_metadata, row_group_bitmap
from signalroom.logs.store import LogStore

pytestmark = pytest.mark.unit

BASE = 1_700_000_000 * 10**9
STREAM = format_labels({"service": "shop"})


def rows(start: int, count: int, line: str = "level=info msg=ok request={i}") -> pa.Table:
    ts = BASE + np.arange(start, start + count, dtype=np.int64) * 10**6
    lines = [line.format(i=i) for i in range(start, start + count)]
    return pa.Table.from_arrays(
        [pa.array(ts), pa.array([stream_id(STREAM)] * count, pa.int64()),
         pa.array([STREAM] * count), pa.array(lines), pa.nulls(count, pa.string()),
         pa.nulls(count, pa.string()), pa.nulls(count, pa.string())],
        schema=LOG_SCHEMA,
    )  # fmt: skip


def open_store(tmp_path: Path, row_group_rows: int = 1000) -> LogStore:
    return LogStore(
        tmp_path / "logs", wal_fsync="never", flush_rows=10**9, row_group_rows=row_group_rows
    ).open()


def test_bitmap_has_every_trigram_of_every_line() -> None:
    lines = pa.array([f"user {i} paid {i * 37} EUR via card-{i % 7}" for i in range(500)])
    bits, bitmap = row_group_bitmap(lines)
    index = TrigramIndex()
    for text in lines.to_pylist()[::13]:
        for start in range(0, len(text) - 4):
            codes = index_codes(text[start : start + 4])
            assert bitmap[(codes * np.uint32(0x9E3779B1)) >> np.uint32(32 - bits)].all()
    assert 0 < bitmap.mean() < 0.5  # sized to stay sparse
    del index


def index_codes(text: str) -> np.ndarray:  # type: ignore[type-arg]
    from signalroom.logs.ngram import _needle_codes

    codes = _needle_codes(text)
    assert codes is not None
    return codes


def test_row_groups_without_the_needle_are_skipped(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    table = rows(0, 5000)
    lines = table.column("line").to_pylist()
    lines[3210] += " needle-xyz"
    table = table.set_column(3, "line", pa.array(lines))
    store.append("default", table)
    store.table.flush()
    (path,) = store.table.snapshot("default").files
    assert META_KEY in (pq.read_metadata(path).metadata or {})
    assert pq.read_metadata(path).num_row_groups == 5
    assert store.trigrams.candidates(path, [["needle-xyz"]]) == [3]
    assert store.trigrams.candidates(path, [["needle-xyz", "zzzq"]]) == [3]  # or
    assert store.trigrams.candidates(path, [["needle-xyz"], ["zzzq"]]) == []  # and
    assert store.trigrams.candidates(path, [["ok"]]) is None  # too short to prune
    assert store.trigrams.candidates(path, [["msg=ok"]]) == [0, 1, 2, 3, 4]

    def found(text: str, op: str = "|=") -> list[str]:
        batches = store.scan(
            "default", BASE, BASE + 10**12, line_filters=[LineFilter(op, (text,))], limit=10
        )
        return [line for b in batches for line in b.column("line").to_pylist()]

    assert found("needle-xyz") == [lines[3210]]
    assert found("request=4999") == [lines[4999]]
    assert found("nothing-like-it") == []
    assert len(found("needle-xyz", "!=")) == 10
    # the metric path (unordered scan) prunes too and still counts right
    unordered = store.scan(
        "default", BASE, BASE + 10**12, line_filters=[LineFilter("|=", ("request=12",))],
        direction="none",
    )  # fmt: skip
    assert sum(b.num_rows for b in unordered) == len([x for x in lines if "request=12" in x])
    store.close()


def test_ordered_scan_reads_newest_files_first_and_stops_at_the_limit(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    for part in range(4):  # four files of 1000 lines, then buffered lines
        store.append("default", rows(part * 1000, 1000))
        store.table.flush()
    store.append("default", rows(4000, 10))
    files = store.table.snapshot("default").files
    assert len(files) == 4

    def scan(direction: str, limit: int | None) -> list[int]:
        batches = store.scan(
            "default",
            BASE,
            BASE + 10**12,
            direction=direction,
            limit=limit,  # type: ignore[arg-type]
        )
        return [t for b in batches for t in b.column("timestamp").to_pylist()]

    newest = scan("backward", 25)
    assert newest == [BASE + i * 10**6 for i in range(4009, 3984, -1)]
    oldest = scan("forward", 1500)
    assert oldest == [BASE + i * 10**6 for i in range(1500)]
    everything = scan("backward", None)
    assert everything == [BASE + i * 10**6 for i in range(4009, -1, -1)]
    # a wave is only handed out once no unread file can hold newer rows: late rows in an old
    # file still come out in order
    store.append("default", rows(3995, 3, "late {i}"))
    store.table.flush()
    merged = scan("backward", 20)
    assert merged == sorted(merged, reverse=True)
    assert merged.count(BASE + 3995 * 10**6) == 2
    store.close()


def test_volume_counts_lines_and_estimates_bytes(tmp_path: Path) -> None:
    store = open_store(tmp_path)
    table = rows(0, 3000)
    exact = sum(len(x.encode()) for x in table.column("line").to_pylist())
    sid = stream_id(STREAM)
    store.append("default", table)
    assert store.volume("default", [sid], BASE, BASE + 10**12) == (3000, exact, 1)
    store.table.flush()
    lines, size, parts = store.volume("default", [sid], BASE, BASE + 10**12)
    assert (lines, parts) == (3000, 1)
    assert abs(size - exact) < 0.05 * exact
    assert store.volume("default", [sid], BASE, BASE + 1000 * 10**6)[0] == 1000
    assert store.volume("default", [], BASE, BASE + 10**12) == (0, 0, 0)
    store.close()


def test_build_metadata_one_bitmap_per_row_group() -> None:
    table = rows(0, 2500)
    blob = build_metadata(table, 1000)[META_KEY]
    from signalroom.logs.ngram import _decode

    decoded = _decode(blob)
    assert decoded is not None
    assert len(decoded) == 3
