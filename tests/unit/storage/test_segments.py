"""Tests of the columnar segment store: partitioning, sorting, scans, compaction, retention."""

from __future__ import annotations

import os
import shutil
import threading
from pathlib import Path
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from prometheus_client import REGISTRY

from signalroom.storage.segments import SegmentStore

pytestmark = pytest.mark.unit

HOUR = 3600 * 10**9
BASE = 1_700_000_000 * 10**9 // HOUR * HOUR  # 2023-11-14 22:00 UTC, an hour boundary

LOGS = pa.schema(
    [
        pa.field("timestamp", pa.timestamp("ns", "UTC"), nullable=False),
        pa.field("service", pa.string()),
        pa.field("level", pa.string()),
        pa.field("message", pa.string()),
    ]
)


def logs(times: list[int], services: list[str] | None = None, tag: str = "") -> pa.Table:
    n = len(times)
    services = services or [f"svc{i % 3}" for i in range(n)]
    return pa.table(
        {
            "timestamp": pa.array(times, pa.timestamp("ns", "UTC")),
            "service": services,
            "level": ["info"] * n,
            "message": [f"{tag}m{i}" for i in range(n)],
        },
        schema=LOGS,
    )


def make_store(root: Path, **options: Any) -> SegmentStore:
    options.setdefault("sort_by", ("service",))
    options.setdefault("name", f"test-{root.name}")
    return SegmentStore(root, LOGS, **options)


def key_rows(table: pa.Table) -> list[tuple[Any, ...]]:
    """Rows as sorted tuples, so two tables can be compared as multisets."""
    cols = [table.column(n).to_pylist() for n in table.column_names]
    return sorted(zip(*cols, strict=True))


def times_ns(table: pa.Table) -> list[int]:
    values: list[int] = table.column("timestamp").cast(pa.int64()).to_pylist()
    return values


def spread(hours: int, per_hour: int) -> list[int]:
    """Timestamps spread over ``hours`` hours starting at BASE, in reverse order."""
    step = HOUR // per_hour
    return [BASE + h * HOUR + i * step for h in range(hours) for i in range(per_hour)][::-1]


def test_roundtrip_partitions_and_pruning(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    a = logs(spread(3, 10), tag="a")
    b = logs(spread(2, 5), tag="b")
    store.append("acme", a)
    store.append("globex", b.to_batches()[0])

    written = store.flush()

    assert len(written) == 3 + 2  # one file per (tenant, hour)
    assert all(p.suffix == ".parquet" and p.exists() for p in written)
    rel = sorted(str(p.parent.relative_to(tmp_path)) for p in store.files("acme"))
    assert rel == [
        "tenant=acme/2023-11-14/22",
        "tenant=acme/2023-11-14/23",
        "tenant=acme/2023-11-15/00",
    ]
    assert store.buffered("acme").num_rows == 0
    assert key_rows(store.scan("acme")) == key_rows(a)
    assert key_rows(store.scan("globex")) == key_rows(b)

    # Only the second hour: one file, and exactly that hour's rows.
    files = store.files("acme", BASE + HOUR, BASE + 2 * HOUR)
    assert len(files) == 1 and files[0].parent.name == "23"
    second = store.scan("acme", BASE + HOUR, BASE + 2 * HOUR)
    assert second.num_rows == 10
    assert all(BASE + HOUR <= t < BASE + 2 * HOUR for t in times_ns(second))
    # A range inside one hour is filtered row by row; end is exclusive.
    narrow = store.scan("acme", BASE + HOUR, BASE + HOUR + HOUR // 10 * 3, columns=["message"])
    assert narrow.column_names == ["message"]
    assert narrow.num_rows == 3


def test_scan_merges_files_and_buffer(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.append("acme", logs([BASE + 1, BASE + 2], tag="old"))
    store.flush()
    store.append("acme", logs([BASE + 3, BASE + HOUR + 4], tag="new"))

    assert store.scan("acme").num_rows == 4
    assert store.buffered("acme").num_rows == 2
    assert times_ns(store.scan("acme", start_ns=BASE + 2, end_ns=BASE + 4)) == [BASE + 2, BASE + 3]
    assert store.scan("nobody").num_rows == 0
    assert store.scan("nobody").schema.names == LOGS.names
    assert store.tenants() == ["acme"]


def test_files_are_sorted_by_sort_key_then_time(tmp_path: Path) -> None:
    store = make_store(tmp_path, sort_by=("service", "level"))
    times = spread(2, 50)
    services = [f"svc{(i * 7) % 5}" for i in range(len(times))]
    store.append("acme", logs(times, services))
    store.append("acme", logs([t + 1 for t in times], services[::-1]))
    for path in store.flush():
        table = pq.read_table(path)
        keys = list(
            zip(
                table["service"].to_pylist(),
                table["level"].to_pylist(),
                times_ns(table),
                strict=True,
            )
        )
        assert keys == sorted(keys)
        assert len(keys) == 200 // 2


def test_schema_mismatch_names_the_column(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    good = logs([BASE])
    wrong_type = good.set_column(2, "level", pa.array([3], pa.int64()))
    with pytest.raises(ValueError, match=r"'level'.*int64"):
        store.append("acme", wrong_type)
    with pytest.raises(ValueError, match="missing column 'message'"):
        store.append("acme", good.drop_columns(["message"]))
    with pytest.raises(ValueError, match="unexpected column 'extra'"):
        store.append("acme", good.append_column("extra", pa.array([1])))
    null_time = good.set_column(0, "timestamp", pa.array([None], pa.timestamp("ns", "UTC")))
    with pytest.raises(ValueError, match=r"'timestamp'.*null"):
        store.append("acme", null_time)
    before_1970 = good.set_column(0, "timestamp", pa.array([-5], pa.timestamp("ns", "UTC")))
    with pytest.raises(ValueError, match=r"'timestamp'.*before 1970"):
        store.append("acme", before_1970)
    assert store.buffered("acme").num_rows == 0
    # Column order does not matter.
    store.append("acme", good.select(["message", "level", "service", "timestamp"]))
    assert store.buffered("acme").schema.names == LOGS.names


@pytest.mark.parametrize("tenant", ["", "../etc", "a/b", "x" * 129, "tenant with space", "é"])
def test_bad_tenant_rejected(tmp_path: Path, tenant: str) -> None:
    store = make_store(tmp_path)
    with pytest.raises(ValueError, match="invalid tenant"):
        store.append(tenant, logs([BASE]))
    with pytest.raises(ValueError, match="invalid tenant"):
        store.scan(tenant)
    assert store.tenants() == []


def test_int64_time_and_day_partitions(tmp_path: Path) -> None:
    schema = pa.schema([("ts", pa.int64()), ("value", pa.float64())])
    store = SegmentStore(tmp_path, schema, time_column="ts", partition="day", name="day-test")
    day = 24 * HOUR
    table = pa.table({"ts": [BASE, BASE + day, BASE + 1], "value": [1.0, 2.0, 3.0]}, schema=schema)
    store.append("t1", table)
    written = store.flush()
    assert sorted(p.parent.name for p in written) == ["2023-11-14", "2023-11-15"]
    assert store.scan("t1", BASE, BASE + 2)["value"].to_pylist() == [1.0, 3.0]
    reopened = SegmentStore(tmp_path, schema, time_column="ts", partition="day", name="day-test")
    assert reopened.scan("t1").num_rows == 3
    with pytest.raises(ValueError, match="time column"):
        SegmentStore(tmp_path / "x", pa.schema([("ts", pa.float64())]), time_column="ts")


def test_reopen_sees_files_and_committed_state(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    store.append("acme", logs(spread(2, 4)))
    store.flush(state={"wal_covered_lsn": 7})
    reopened = make_store(tmp_path)
    assert reopened.scan("acme").num_rows == 8
    assert reopened.committed_state() == {"wal_covered_lsn": 7}
    assert reopened.stats().files == 2
    # New files never reuse an id.
    reopened.append("acme", logs([BASE + 5]))
    (new_file,) = reopened.flush()
    assert new_file not in store.files("acme")
    assert len(reopened.files("acme")) == 3


def flush_hour_in_pieces(store: SegmentStore, tenant: str, pieces: int, per_piece: int) -> pa.Table:
    """Make ``pieces`` small files in the first hour; return every row written."""
    tables = []
    for p in range(pieces):
        times = [BASE + (p * per_piece + i) * 10**6 for i in range(per_piece)]
        table = logs(times, [f"svc{(i + p) % 4}" for i in range(per_piece)], tag=f"p{p}")
        store.append(tenant, table)
        store.flush()
        tables.append(table)
    return pa.concat_tables(tables)


def test_compaction_merges_and_keeps_every_row_once(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    rows = flush_hour_in_pieces(store, "acme", pieces=5, per_piece=20)
    store.append("acme", logs([BASE + 2 * HOUR]))  # a later, still open partition
    store.flush()
    assert len(store.files("acme")) == 6

    # The first hour has not ended yet at this "now": nothing to do.
    assert store.compact(now_ns=BASE + HOUR // 2, min_files=4).files_merged == 0
    result = store.compact(now_ns=BASE + 2 * HOUR + 1, min_files=4)

    assert result.partitions == 1 and result.files_merged == 5 and result.files_written == 1
    assert result.rows == 100
    hour_files = store.files("acme", BASE, BASE + HOUR)
    assert len(hour_files) == 1
    merged = pq.read_table(hour_files[0])
    keys = list(zip(merged["service"].to_pylist(), times_ns(merged), strict=True))
    assert keys == sorted(keys)
    assert key_rows(store.scan("acme", BASE, BASE + HOUR)) == key_rows(rows)
    assert key_rows(make_store(tmp_path).scan("acme", BASE, BASE + HOUR)) == key_rows(rows)
    # Below min_files nothing happens.
    assert store.compact(now_ns=BASE + 3 * HOUR, min_files=4).files_merged == 0
    assert not list(tmp_path.rglob("*.tmp"))
    assert not list((tmp_path / "_txn").iterdir())


def test_compaction_groups_by_target_size(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    flush_hour_in_pieces(store, "acme", pieces=6, per_piece=10)
    size = max(p.stat().st_size for p in store.files("acme"))
    result = store.compact(now_ns=BASE + HOUR, min_files=2, target_bytes=size * 3)
    assert result.files_merged == 6 and result.files_written == 2
    assert store.scan("acme").num_rows == 60


def test_interrupted_compaction_never_loses_or_duplicates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path)
    rows = flush_hour_in_pieces(store, "acme", pieces=4, per_piece=25)
    old_files = set(store.files("acme"))

    # Crash after the merged file is in place but before the old ones are deleted.
    def crash(self: Path, missing_ok: bool = False) -> None:
        if self in old_files:
            raise OSError("simulated crash")
        os.unlink(self)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.compact(now_ns=BASE + HOUR, min_files=2)
    monkeypatch.undo()
    on_disk = sorted(tmp_path.glob("tenant=acme/*/*/part-*.parquet"))
    assert len(on_disk) == 5  # the merged file and the four old ones, side by side

    reopened = make_store(tmp_path)  # recovery completes the transaction
    assert key_rows(reopened.scan("acme")) == key_rows(rows)
    assert len(reopened.files("acme")) == 1
    assert reopened.compact(now_ns=BASE + HOUR, min_files=1).files_merged == 0
    assert key_rows(reopened.scan("acme")) == key_rows(rows)


def test_recovery_keeps_old_files_if_the_new_one_vanished(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path)
    rows = flush_hour_in_pieces(store, "acme", pieces=3, per_piece=10)
    old_files = set(store.files("acme"))

    def crash(self: Path, missing_ok: bool = False) -> None:
        if self in old_files:
            raise OSError("simulated crash")
        os.unlink(self)

    monkeypatch.setattr(Path, "unlink", crash)
    with pytest.raises(OSError, match="simulated crash"):
        store.compact(now_ns=BASE + HOUR, min_files=2)
    monkeypatch.undo()
    (merged,) = set(tmp_path.glob("tenant=acme/*/*/part-*.parquet")) - old_files
    merged.unlink()  # an operator "cleans up"

    reopened = make_store(tmp_path)
    assert key_rows(reopened.scan("acme")) == key_rows(rows)
    assert len(list((tmp_path / "_txn").glob("*.failed"))) == 1


def test_crash_before_commit_leaves_old_files(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    rows = flush_hour_in_pieces(store, "acme", pieces=2, per_piece=10)
    # A merged file written but never committed: only the .tmp exists.
    (first, *_) = store.files("acme")
    shutil.copy(first, first.with_name("part-000000009999.parquet.tmp"))
    reopened = make_store(tmp_path)
    assert not list(tmp_path.rglob("*.tmp"))
    assert key_rows(reopened.scan("acme")) == key_rows(rows)


def test_flush_failure_keeps_rows_buffered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = make_store(tmp_path)
    table = logs(spread(2, 5))
    store.append("acme", table)

    def failing_write(*args: Any, **kwargs: Any) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("signalroom.storage.segments.pq.write_table", failing_write)
    with pytest.raises(OSError, match="disk full"):
        store.flush()
    monkeypatch.undo()
    assert store.buffered("acme").num_rows == 10
    assert not list(tmp_path.rglob("*.parquet*"))
    store.flush()
    assert key_rows(store.scan("acme")) == key_rows(table)


def test_crash_after_flush_commit_is_completed_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = make_store(tmp_path)
    table = logs(spread(3, 4))
    store.append("acme", table)
    real_replace = os.replace
    calls = 0

    def crash_midway(src: Any, dst: Any) -> None:
        nonlocal calls
        if str(dst).endswith(".parquet"):
            calls += 1
            if calls == 2:
                raise OSError("simulated crash")
        real_replace(src, dst)

    monkeypatch.setattr("signalroom.storage.segments.os.replace", crash_midway)
    with pytest.raises(OSError, match="simulated crash"):
        store.flush(state={"wal_covered_lsn": 3})
    monkeypatch.undo()
    # Committed but half renamed: reopening finishes it, every row exactly once.
    reopened = make_store(tmp_path)
    assert key_rows(reopened.scan("acme")) == key_rows(table)
    assert reopened.committed_state() == {"wal_covered_lsn": 3}
    assert len(reopened.files("acme")) == 3


def hourly_store(root: Path, tenants: tuple[str, ...] = ("acme",), hours: int = 6) -> SegmentStore:
    store = make_store(root)
    for tenant in tenants:
        store.append(tenant, logs(spread(hours, 20), tag=tenant))
    store.flush()
    return store


def test_retention_by_age_deletes_only_expired_partitions(tmp_path: Path) -> None:
    store = hourly_store(tmp_path)
    now = BASE + 6 * HOUR
    # Cutoff at BASE + 2.5h: hours 0 and 1 end before it; hour 2 holds newer rows.
    result = store.apply_retention(max_age_s=3.5 * 3600, max_bytes=None, now_ns=now)
    assert result.partitions_deleted == 2
    assert result.rows_deleted == 40
    left = times_ns(store.scan("acme"))
    assert min(left) == BASE + 2 * HOUR
    assert len(left) == 80
    assert not (tmp_path / "tenant=acme/2023-11-14/22").exists()
    assert make_store(tmp_path).scan("acme").num_rows == 80
    # Nothing more expired.
    assert (
        store.apply_retention(max_age_s=3.5 * 3600, max_bytes=None, now_ns=now).files_deleted == 0
    )


def test_retention_by_size_deletes_oldest_first(tmp_path: Path) -> None:
    store = hourly_store(tmp_path, tenants=("acme", "globex"), hours=3)
    sizes = {p: p.stat().st_size for t in ("acme", "globex") for p in store.files(t)}
    total = sum(sizes.values())
    assert store.stats().bytes == total
    oldest = [p for p in sizes if p.parent.name == "22"]
    assert len(oldest) == 2  # the first hour of both tenants
    budget = total - max(sizes[p] for p in oldest) - 1  # one oldest partition is not enough
    now = BASE + 3 * HOUR

    result = store.apply_retention(max_age_s=None, max_bytes=budget, now_ns=now)

    assert result.partitions_deleted == 2
    assert result.bytes_deleted == sum(sizes[p] for p in oldest)
    for tenant in ("acme", "globex"):
        assert min(times_ns(store.scan(tenant))) == BASE + HOUR
    assert store.stats().bytes <= budget
    # The partition still being written is never deleted by the size pass.
    store.append("acme", logs([now + 1]))
    store.flush()
    store.apply_retention(max_age_s=None, max_bytes=0, now_ns=now + 2)
    assert times_ns(store.scan("acme")) == [now + 1]


def test_concurrent_appends_and_flushes_lose_nothing(tmp_path: Path) -> None:
    store = make_store(tmp_path)
    writers, batches, per_batch = 4, 30, 50
    done = threading.Event()
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        try:
            for b in range(batches):
                base = BASE + (w * batches + b) * per_batch * 10**6
                store.append("acme", logs([base + i * 10**6 for i in range(per_batch)], tag=f"{w}"))
        except BaseException as exc:
            errors.append(exc)

    def flusher() -> None:
        while not done.is_set():
            store.flush()
            n = store.scan("acme").num_rows  # never more rows than were appended
            if n > writers * batches * per_batch:
                errors.append(AssertionError(f"scan saw {n} rows"))

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(writers)]
    flush_thread = threading.Thread(target=flusher)
    flush_thread.start()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done.set()
    flush_thread.join()
    store.flush()
    assert not errors
    result = store.scan("acme")
    assert result.num_rows == writers * batches * per_batch
    assert len(set(times_ns(result))) == result.num_rows


def test_duckdb_reads_the_files(tmp_path: Path) -> None:
    store = hourly_store(tmp_path, hours=3)
    files = [str(p) for p in store.files("acme")]
    con = duckdb.connect()
    count = con.execute("select count(*) from read_parquet(?)", [files]).fetchone()
    assert count == (60,)
    hits = con.execute(
        "select count(*) from read_parquet(?) where message like '%m1%' and service = 'svc1'",
        [files],
    ).fetchone()
    expected = store.scan("acme").to_pylist()
    assert hits == (sum(1 for r in expected if "m1" in r["message"] and r["service"] == "svc1"),)


def test_stats_and_metrics(tmp_path: Path) -> None:
    store = make_store(tmp_path, name="metrics-test")
    store.append("acme", logs(spread(2, 5)))
    store.append("globex", logs([BASE]))
    store.flush()
    store.append("acme", logs([BASE + 1]))
    stats = store.stats()
    assert (stats.files, stats.partitions, stats.rows, stats.rows_buffered) == (3, 3, 11, 1)
    assert stats.tenants["acme"].files == 2 and stats.tenants["globex"].rows == 1
    labels = {"store": "metrics-test"}
    assert REGISTRY.get_sample_value("signalroom_segment_files", labels) == 3
    assert REGISTRY.get_sample_value("signalroom_segment_bytes", labels) == stats.bytes
    assert REGISTRY.get_sample_value("signalroom_segment_rows_flushed_total", labels) == 11


def test_dictionary_columns_option(tmp_path: Path) -> None:
    store = make_store(tmp_path, dictionary_columns=("service", "level"))
    store.append("acme", logs(spread(1, 50)))
    (path,) = store.flush()
    row_group = pq.read_metadata(path).row_group(0)
    encodings = {
        row_group.column(i).path_in_schema: row_group.column(i).encodings
        for i in range(row_group.num_columns)
    }
    assert "RLE_DICTIONARY" in encodings["service"]
    assert "RLE_DICTIONARY" not in encodings["message"]
    with pytest.raises(ValueError, match="dictionary column 'nope'"):
        make_store(tmp_path / "x", dictionary_columns=("nope",))


@pytest.mark.parametrize(("svc_nulls", "code_nulls"), [(False, False), (True, False), (True, True)])
def test_sort_with_nulls_and_numeric_keys(
    tmp_path: Path, svc_nulls: bool, code_nulls: bool
) -> None:
    schema = pa.schema([("ts", pa.int64()), ("svc", pa.string()), ("code", pa.int32())])
    store = SegmentStore(tmp_path, schema, time_column="ts", sort_by=("svc", "code"), name="nulls")
    n = 300
    services = [None if svc_nulls and i % 7 == 0 else f"s{(i * 5) % 4}" for i in range(n)]
    codes = [None if code_nulls and i % 11 == 0 else (i * 13) % 5 for i in range(n)]
    times = [BASE + (i * 7919) % n for i in range(n)]
    for half in (slice(0, n // 2), slice(n // 2, n)):  # two chunks with different dictionaries
        store.append(
            "acme",
            pa.table(
                {"ts": times[half], "svc": services[half], "code": codes[half]}, schema=schema
            ),
        )
    (path,) = store.flush()
    table = pq.read_table(path)

    def last_if_null(v: Any) -> tuple[bool, Any]:
        return (v is None, v if v is not None else 0)

    keys = [
        (last_if_null(s), last_if_null(c), t)
        for s, c, t in zip(
            table["svc"].to_pylist(),
            table["code"].to_pylist(),
            table["ts"].to_pylist(),
            strict=True,
        )
    ]
    assert keys == sorted(keys)
    assert table.num_rows == n
