"""Tests of DurableTable: WAL before buffer, replay after a crash, flush/checkpoint ordering."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from signalroom.storage.table import DurableTable, decode_record, encode_record

pytestmark = pytest.mark.unit

HOUR = 3600 * 10**9
BASE = 1_700_000_000 * 10**9 // HOUR * HOUR

SPANS = pa.schema(
    [
        pa.field("timestamp", pa.int64(), nullable=False),
        pa.field("service", pa.string()),
        pa.field("name", pa.string()),
        pa.field("duration_ns", pa.int64()),
    ]
)


def spans(start: int, n: int, tag: str = "s") -> pa.Table:
    return pa.table(
        {
            "timestamp": [start + i * 10**7 for i in range(n)],
            "service": [f"svc{i % 2}" for i in range(n)],
            "name": [f"{tag}{i}" for i in range(n)],
            "duration_ns": list(range(n)),
        },
        schema=SPANS,
    )


def open_table(directory: Path, **options: Any) -> DurableTable:
    options.setdefault("sort_by", ("service",))
    options.setdefault("name", f"tbl-{directory.name}")
    return DurableTable(directory, SPANS, **options).open()


def crash(table: DurableTable) -> None:
    """Drop the table the way kill -9 would: no flush, no checkpoint. Only the WAL's file lock
    is released (a dead process releases it too) so the test can reopen the directory."""
    table.wal.close()


def names(table: pa.Table) -> list[str]:
    return sorted(table.column("name").to_pylist())


def test_record_roundtrip() -> None:
    table = spans(BASE, 3)
    tenant, decoded = decode_record(encode_record("acme.prod", table))
    assert tenant == "acme.prod" and decoded.equals(table)
    with pytest.raises(ValueError, match="version"):
        decode_record(b"\x09\x00")


def test_reopen_after_append_without_flush_replays_everything(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    lsns = [table.append("acme", spans(BASE + h * HOUR, 10, tag=f"h{h}")) for h in range(3)]
    lsns.append(table.append("globex", spans(BASE, 4, tag="g").to_batches()[0]))
    assert lsns == sorted(lsns) and len(set(lsns)) == 4
    crash(table)

    reopened = open_table(tmp_path)
    assert reopened.scan("acme").num_rows == 30
    assert names(reopened.scan("globex")) == ["g0", "g1", "g2", "g3"]
    assert reopened.buffered("acme").num_rows == 30  # replayed into the buffer, not yet in files
    assert reopened.files("acme") == []
    reopened.close()


def test_invalid_input_writes_nothing(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    before = table.wal.last_lsn
    with pytest.raises(ValueError, match="'duration_ns'"):
        table.append("acme", spans(BASE, 2).set_column(3, "duration_ns", pa.array(["a", "b"])))
    with pytest.raises(ValueError, match="invalid tenant"):
        table.append("../../etc", spans(BASE, 2))
    assert table.wal.last_lsn == before
    assert table.tenants() == []
    table.close()


def test_flush_checkpoints_and_reopen_has_no_duplicates(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    table.append("acme", spans(BASE, 10, tag="a"))
    last = table.append("acme", spans(BASE + HOUR, 10, tag="b"))
    table.flush()
    assert table.wal.checkpoint_lsn == last
    assert len(table.files("acme")) == 2
    table.append("acme", spans(BASE + 2 * HOUR, 5, tag="c"))
    crash(table)

    reopened = open_table(tmp_path)
    result = reopened.scan("acme")
    assert result.num_rows == 25
    assert len(set(result.column("name").to_pylist())) == 25
    reopened.close()
    assert open_table(tmp_path).scan("acme").num_rows == 25


def test_crash_between_flush_and_checkpoint_leaves_no_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    table = open_table(tmp_path)
    table.append("acme", spans(BASE, 20, tag="a"))
    last = table.append("acme", spans(BASE + HOUR, 20, tag="b"))

    def die(lsn: int) -> None:
        raise OSError("simulated crash before the checkpoint")

    monkeypatch.setattr(table.wal, "checkpoint", die)
    with pytest.raises(OSError, match="simulated crash"):
        table.flush()
    monkeypatch.undo()
    assert table.wal.checkpoint_lsn == 0  # the WAL still holds every record
    files = table.files("acme")
    assert len(files) == 2
    commit = json.loads(pq.read_metadata(files[0]).metadata[b"signalroom.commit"])
    assert commit["wal_covered_lsn"] == last
    crash(table)

    reopened = open_table(tmp_path)
    result = reopened.scan("acme")
    assert result.num_rows == 40
    assert len(set(result.column("name").to_pylist())) == 40
    assert reopened.buffered("acme").num_rows == 0
    assert reopened.wal.checkpoint_lsn == last  # open finished the checkpoint
    reopened.close()


def test_flush_does_not_checkpoint_past_an_in_flight_append(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Append A gets the smaller LSN but reaches the buffer after B and after a flush."""
    table = open_table(tmp_path)
    real_append = table.wal.append
    a_in_wal = threading.Event()
    release_a = threading.Event()

    def slow_append(payloads: Sequence[bytes]) -> int:
        lsn = real_append(payloads)
        if decode_record(payloads[0])[1].column("name")[0].as_py() == "a0":
            a_in_wal.set()
            release_a.wait(10)
        return lsn

    monkeypatch.setattr(table.wal, "append", slow_append)
    lsn_a: list[int] = []
    thread = threading.Thread(
        target=lambda: lsn_a.append(table.append("acme", spans(BASE, 3, "a")))
    )
    thread.start()
    assert a_in_wal.wait(10)
    lsn_b = table.append("acme", spans(BASE + 100, 3, "b"))
    table.flush()  # writes B only; A is durable in the WAL but not yet buffered
    release_a.set()
    thread.join(10)
    assert lsn_a[0] < lsn_b
    assert table.wal.checkpoint_lsn < lsn_a[0]
    crash(table)

    reopened = open_table(tmp_path)
    assert names(reopened.scan("acme")) == ["a0", "a1", "a2", "b0", "b1", "b2"]
    reopened.flush()
    assert reopened.wal.checkpoint_lsn == lsn_b
    crash(reopened)
    assert names(open_table(tmp_path).scan("acme")) == ["a0", "a1", "a2", "b0", "b1", "b2"]


def test_concurrent_appenders_and_flusher_lose_nothing(tmp_path: Path) -> None:
    table = open_table(tmp_path, wal_fsync="never")
    writers, batches, rows = 4, 25, 20
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(batches):
                start = BASE + (w * batches + b) * rows * 10**7
                table.append(f"t{w % 2}", spans(start, rows, tag=f"w{w}b{b}-"))
        except BaseException as exc:
            errors.append(exc)

    def flusher() -> None:
        try:
            while not stop.is_set():
                table.flush()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    flush_thread = threading.Thread(target=flusher)
    flush_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    stop.set()
    flush_thread.join()
    assert not errors
    total = writers * batches * rows
    live = sum(table.scan(t).num_rows for t in ("t0", "t1"))
    assert live == total
    crash(table)  # whatever is not in files must come back from the WAL, exactly once

    reopened = open_table(tmp_path)
    got = [n for t in ("t0", "t1") for n in reopened.scan(t).column("name").to_pylist()]
    assert len(got) == total
    assert len(set(got)) == total
    reopened.close()


def test_maybe_flush_by_rows_and_by_age(tmp_path: Path) -> None:
    table = open_table(tmp_path, flush_rows=25, flush_interval_s=3600)
    table.append("acme", spans(BASE, 20))
    assert not table.maybe_flush()
    table.append("acme", spans(BASE + 10**9, 10))
    assert table.maybe_flush()
    assert table.buffered("acme").num_rows == 0
    assert not table.maybe_flush()  # empty buffer
    table.flush_interval_s = 0.0
    table.append("acme", spans(BASE + 2 * 10**9, 1))
    assert table.maybe_flush()
    assert table.stats().rows == 31
    table.close()


async def test_append_async(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    first = await table.append_async("acme", spans(BASE, 5, "x"))
    second = await table.append_async("acme", spans(BASE, 5, "y"))
    assert second > first
    crash(table)
    reopened = open_table(tmp_path)
    assert reopened.scan("acme").num_rows == 10
    reopened.close()


async def test_cancelled_append_async_keeps_wal_and_buffer_in_step(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    task = asyncio.create_task(table.append_async("acme", spans(BASE, 5, "c")))
    await asyncio.sleep(0)  # the append has started
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    for _ in range(200):
        if table.buffered("acme").num_rows:
            break
        await asyncio.sleep(0.01)
    assert table.buffered("acme").num_rows == 5
    table.flush()
    assert table.wal.checkpoint_lsn == table.wal.last_lsn
    crash(table)
    reopened = open_table(tmp_path)
    assert names(reopened.scan("acme")) == ["c0", "c1", "c2", "c3", "c4"]
    reopened.close()


def test_duckdb_reads_flushed_files(tmp_path: Path) -> None:
    with open_table(tmp_path, name="duck") as table:
        for h in range(3):
            table.append("acme", spans(BASE + h * HOUR, 50, tag=f"h{h}-"))
        table.flush()
        files = [str(p) for p in table.files("acme", BASE + HOUR, BASE + 3 * HOUR)]
        con = duckdb.connect()
        rows = con.execute(
            "select service, count(*) from read_parquet(?) where name like 'h2-%' "
            "group by service order by service",
            [files],
        ).fetchall()
    assert rows == [("svc0", 25), ("svc1", 25)]


def test_duckdb_queries_files_plus_live_buffer(tmp_path: Path) -> None:
    with open_table(tmp_path) as table:
        table.append("acme", spans(BASE, 30, tag="old"))
        table.flush()
        table.append("acme", spans(BASE + 10**9, 20, tag="new"))
        snap = table.snapshot("acme", BASE, BASE + HOUR)
        assert len(snap.files) == 1 and snap.buffered.num_rows == 20
        con = duckdb.connect()
        con.register("live", snap.buffered)
        row = con.execute(
            "select count(*) from (select name from read_parquet(?) "
            "union all select name from live) where name like '%1%'",
            [[str(p) for p in snap.files]],
        ).fetchone()
    every = [f"old{i}" for i in range(30)] + [f"new{i}" for i in range(20)]
    assert row == (sum(1 for n in every if "1" in n),)


def test_close_flushes_and_reopen_is_clean(tmp_path: Path) -> None:
    table = open_table(tmp_path)
    last = table.append("acme", spans(BASE, 7))
    table.close()
    reopened = open_table(tmp_path)
    assert reopened.wal.checkpoint_lsn == last
    assert reopened.buffered("acme").num_rows == 0
    assert reopened.scan("acme").num_rows == 7
    with pytest.raises(RuntimeError, match="not open"):
        DurableTable(tmp_path / "other", SPANS).append("acme", spans(BASE, 1))
    reopened.close()
