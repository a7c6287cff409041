"""Write-ahead log: roundtrip, LSNs, rollover, checkpoints, damaged files, concurrency."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import REGISTRY

from signalroom.storage.wal import (
    RECORD_HEADER_SIZE,
    SEGMENT_HEADER_SIZE,
    WAL,
    FsyncPolicy,
    WALError,
)

pytestmark = pytest.mark.unit

LOGGER = "signalroom.storage.wal"


def payload(i: int, size: int = 24) -> bytes:
    return f"record-{i:06d}-".encode().ljust(size, b"x")


def replayed(wal: WAL, after: int = 0) -> list[tuple[int, bytes]]:
    return list(wal.replay(after))


def segment_files(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def metric(name: str, wal: str) -> float:
    return REGISTRY.get_sample_value(name, {"wal": wal}) or 0.0


@pytest.fixture
def wal_dir(tmp_path: Path) -> Path:
    return tmp_path / "wal"


# -- basics ---------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
def test_roundtrip_returns_last_lsn_of_each_batch(wal_dir: Path, policy: FsyncPolicy) -> None:
    with WAL(wal_dir, fsync=policy) as wal:
        assert wal.last_lsn == 0
        assert wal.append([b"a"]) == 1
        assert wal.append([b"b", b"", b"c" * 1000]) == 4
        assert wal.append([]) == 4  # empty batch writes nothing
        assert replayed(wal) == [(1, b"a"), (2, b"b"), (3, b""), (4, b"c" * 1000)]
        assert replayed(wal, after=2) == [(3, b""), (4, b"c" * 1000)]
    with WAL(wal_dir, fsync=policy) as wal:
        assert [lsn for lsn, _ in replayed(wal)] == [1, 2, 3, 4]


def test_lsns_increase_across_reopen(wal_dir: Path) -> None:
    seen = []
    for round_ in range(4):
        with WAL(wal_dir) as wal:
            for i in range(5):
                seen.append(wal.append([payload(round_ * 10 + i)]))
    assert seen == list(range(1, 21))
    with WAL(wal_dir) as wal:
        assert [lsn for lsn, _ in replayed(wal)] == seen


def test_closed_or_unopened_wal_refuses_work(wal_dir: Path) -> None:
    wal = WAL(wal_dir)
    with pytest.raises(WALError, match="not open"):
        wal.append([b"x"])
    wal.open()
    assert wal.open() is wal  # idempotent
    wal.append([b"x"])
    wal.close()
    wal.close()
    with pytest.raises(WALError):
        wal.append([b"y"])
    with pytest.raises(WALError):
        wal.replay()


def test_second_wal_on_same_directory_is_refused(wal_dir: Path) -> None:
    with WAL(wal_dir), pytest.raises(WALError, match="in use"):
        WAL(wal_dir).open()
    with WAL(wal_dir) as again:  # the lock goes with close()
        assert again.last_lsn == 0


def test_rejects_bad_arguments(wal_dir: Path) -> None:
    with pytest.raises(ValueError):
        WAL(wal_dir, fsync="sometimes")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        WAL(wal_dir, segment_bytes=10)


def test_metrics_count_records_bytes_and_segments(wal_dir: Path) -> None:
    name = "test-metrics"
    records_before = metric("signalroom_wal_records_written_total", name)
    bytes_before = metric("signalroom_wal_bytes_written_total", name)
    appends_before = metric("signalroom_wal_append_duration_seconds_count", name)
    with WAL(wal_dir, name=name, segment_bytes=512, fsync="always") as wal:
        for i in range(20):
            wal.append([payload(i), payload(i + 100)])
        assert metric("signalroom_wal_records_written_total", name) - records_before == 40
        assert metric("signalroom_wal_bytes_written_total", name) - bytes_before == 40 * (
            RECORD_HEADER_SIZE + 24
        )
        assert metric("signalroom_wal_append_duration_seconds_count", name) - appends_before == 20
        assert metric("signalroom_wal_fsync_duration_seconds_count", name) >= 20
        assert metric("signalroom_wal_segments", name) == len(segment_files(wal_dir)) > 1


# -- segments, rollover, checkpoints --------------------------------------------------------


def test_rollover_names_segments_by_first_lsn(wal_dir: Path) -> None:
    record = RECORD_HEADER_SIZE + 24
    segment_bytes = SEGMENT_HEADER_SIZE + 4 * record  # four records per segment
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        for i in range(1, 11):
            wal.append([payload(i)])
        files = segment_files(wal_dir)
        assert [int(f.stem) for f in files] == [1, 5, 9]
        assert [f.stat().st_size for f in files] == [segment_bytes, segment_bytes, 32 + 2 * record]
        assert [p for _, p in replayed(wal)] == [payload(i) for i in range(1, 11)]


def test_batch_bigger_than_a_segment_gets_its_own_segment(wal_dir: Path) -> None:
    with WAL(wal_dir, segment_bytes=256) as wal:
        wal.append([b"small"])
        wal.append([b"x" * 1000, b"y" * 1000])  # one call's records stay together
        wal.append([b"after"])
        assert [int(f.stem) for f in segment_files(wal_dir)] == [1, 2, 4]
        assert [lsn for lsn, _ in replayed(wal)] == [1, 2, 3, 4]


def test_checkpoint_deletes_only_fully_covered_segments(wal_dir: Path) -> None:
    segment_bytes = SEGMENT_HEADER_SIZE + 4 * (RECORD_HEADER_SIZE + 24)
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        for i in range(1, 15):
            wal.append([payload(i)])
        assert [int(f.stem) for f in segment_files(wal_dir)] == [1, 5, 9, 13]
        wal.checkpoint(7)  # covers segment 1..4, half of 5..8
        assert [int(f.stem) for f in segment_files(wal_dir)] == [5, 9, 13]
        assert wal.checkpoint_lsn == 7
        assert [lsn for lsn, _ in replayed(wal)] == list(range(8, 15))
        wal.checkpoint(3)  # lower: ignored
        assert wal.checkpoint_lsn == 7
        with pytest.raises(ValueError):
            wal.checkpoint(15)
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        assert wal.checkpoint_lsn == 7
        assert [lsn for lsn, _ in replayed(wal)] == list(range(8, 15))
        assert [lsn for lsn, _ in replayed(wal, after=10)] == list(range(11, 15))
        wal.checkpoint(14)  # everything: only the active segment stays
        assert [int(f.stem) for f in segment_files(wal_dir)] == [13]
        assert replayed(wal) == []
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        assert wal.last_lsn == 14
        assert wal.append([b"next"]) == 15
        assert replayed(wal) == [(15, b"next")]


def test_lsns_survive_when_checkpoint_covers_everything_and_tail_is_lost(wal_dir: Path) -> None:
    with WAL(wal_dir) as wal:
        wal.append([b"a", b"b", b"c"])
        wal.checkpoint(3)
    (active,) = segment_files(wal_dir)
    os.truncate(active, SEGMENT_HEADER_SIZE)  # records gone, checkpoint remains
    with WAL(wal_dir) as wal:
        assert wal.append([b"d"]) == 4


# -- torn and corrupt files -----------------------------------------------------------------


def test_torn_tail_at_every_byte_of_the_last_record(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    original = tmp_path / "original"
    with WAL(original) as wal:
        for i in range(1, 6):
            wal.append([payload(i)])
        (segment,) = segment_files(original)
        last_record_start = segment.stat().st_size
        wal.append([payload(6, size=40)])
        last_record_end = segment.stat().st_size
    assert last_record_end - last_record_start == RECORD_HEADER_SIZE + 40
    expected = [(i, payload(i)) for i in range(1, 6)]
    caplog.set_level(logging.WARNING, LOGGER)
    for cut in range(last_record_start, last_record_end):
        copy = tmp_path / f"cut-{cut}"
        shutil.copytree(original, copy)
        os.truncate(copy / segment.name, cut)
        caplog.clear()
        with WAL(copy) as wal:
            assert replayed(wal) == expected, cut
            repairs = wal.repairs
            assert wal.append([b"new"]) == 6
        if cut == last_record_start:
            assert repairs == []
        else:
            (repair,) = repairs
            assert (repair.offset, repair.bytes_dropped) == (
                last_record_start,
                cut - last_record_start,
            )
            warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
            assert any(
                segment.name in r.getMessage() and str(last_record_start) in r.getMessage()
                for r in warnings
            )
        with WAL(copy) as wal:
            assert replayed(wal) == [*expected, (6, b"new")]
        shutil.rmtree(copy)


def test_crc_mismatch_in_last_record_is_truncated(wal_dir: Path) -> None:
    name = "test-tail-crc"
    before = metric("signalroom_wal_corruptions_total", name)
    with WAL(wal_dir, name=name) as wal:
        wal.append([payload(1), payload(2), payload(3)])
    (segment,) = segment_files(wal_dir)
    data = bytearray(segment.read_bytes())
    data[-3] ^= 0xFF
    segment.write_bytes(data)
    with WAL(wal_dir, name=name) as wal:
        assert replayed(wal) == [(1, payload(1)), (2, payload(2))]
        assert wal.repairs[0].reason == "record CRC mismatch"
    assert metric("signalroom_wal_corruptions_total", name) - before == 1
    assert segment.stat().st_size == len(data) - RECORD_HEADER_SIZE - 24


def test_flipped_byte_in_a_middle_segment(wal_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    name = "test-middle"
    record = RECORD_HEADER_SIZE + 24
    segment_bytes = SEGMENT_HEADER_SIZE + 5 * record
    with WAL(wal_dir, name=name, segment_bytes=segment_bytes) as wal:
        for i in range(1, 16):
            wal.append([payload(i)])
    _, middle, _ = segment_files(wal_dir)
    assert int(middle.stem) == 6
    bad_offset = SEGMENT_HEADER_SIZE + 2 * record  # third record of the middle segment: LSN 8
    data = bytearray(middle.read_bytes())
    data[bad_offset + RECORD_HEADER_SIZE + 5] ^= 0x01
    middle.write_bytes(data)

    before = metric("signalroom_wal_corruptions_total", name)
    caplog.set_level(logging.WARNING, LOGGER)
    with WAL(wal_dir, name=name, segment_bytes=segment_bytes) as wal:
        got = replayed(wal)
        assert [lsn for lsn, _ in got] == [1, 2, 3, 4, 5, 6, 7, 11, 12, 13, 14, 15]
        assert all(p == payload(lsn) for lsn, p in got)
        assert wal.append([b"more"]) == 16
        (repair,) = wal.repairs
        assert (repair.path, repair.offset) == (middle, bad_offset)
        assert repair.bytes_dropped == 3 * record
    assert metric("signalroom_wal_corruptions_total", name) - before == 1
    assert middle.stat().st_size == bad_offset
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert any(middle.name in m and str(bad_offset) in m for m in errors)
    assert any("gap" in m and "8..10" in m for m in errors)
    with WAL(wal_dir, name=name, segment_bytes=segment_bytes) as wal:  # stays repaired
        assert wal.repairs == []
        assert [lsn for lsn, _ in replayed(wal)][-2:] == [15, 16]


def test_zero_length_segment_is_moved_aside(wal_dir: Path) -> None:
    with WAL(wal_dir) as wal:
        wal.append([b"a", b"b"])
    empty = wal_dir / f"{3:020d}.seg"
    empty.touch()  # a crash right after creating the next segment, say
    with WAL(wal_dir) as wal:
        assert replayed(wal) == [(1, b"a"), (2, b"b")]
        assert wal.repairs[0].moved_to == wal_dir / (empty.name + ".corrupt")
        assert wal.append([b"c"]) == 3
    assert (wal_dir / (empty.name + ".corrupt")).exists()
    with WAL(wal_dir) as wal:
        assert [lsn for lsn, _ in replayed(wal)] == [1, 2, 3]


def test_garbage_header_is_moved_aside_and_later_segments_kept(
    wal_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    segment_bytes = SEGMENT_HEADER_SIZE + 3 * (RECORD_HEADER_SIZE + 24)
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        for i in range(1, 10):
            wal.append([payload(i)])
    _, middle, _ = segment_files(wal_dir)
    data = bytearray(middle.read_bytes())
    data[:SEGMENT_HEADER_SIZE] = os.urandom(SEGMENT_HEADER_SIZE)
    middle.write_bytes(data)
    caplog.set_level(logging.WARNING, LOGGER)
    with WAL(wal_dir, segment_bytes=segment_bytes) as wal:
        assert [lsn for lsn, _ in replayed(wal)] == [1, 2, 3, 7, 8, 9]
        assert wal.append([b"x"]) == 10
    assert not middle.exists()
    assert (wal_dir / (middle.name + ".corrupt")).read_bytes() == bytes(data)
    assert any(middle.name in r.getMessage() for r in caplog.records)


def test_garbage_in_every_file_never_raises(wal_dir: Path) -> None:
    with WAL(wal_dir, segment_bytes=256) as wal:
        for i in range(30):
            wal.append([payload(i)])
        wal.checkpoint(10)
    for path in wal_dir.iterdir():
        if path.name != "LOCK":
            path.write_bytes(os.urandom(100))
    damaged = segment_files(wal_dir)
    with WAL(wal_dir, segment_bytes=256) as wal:
        assert replayed(wal) == []
        assert len(wal.repairs) == len(damaged) + 1  # and the checkpoint file
        assert wal.checkpoint_lsn == 0  # corrupt checkpoint: replay from the start
        # LSNs handed out before the newest damaged segment are not handed out again.
        assert wal.append([b"fresh"]) >= int(damaged[-1].stem)


def test_corrupt_checkpoint_replays_from_the_start(wal_dir: Path) -> None:
    with WAL(wal_dir) as wal:
        wal.append([b"a", b"b", b"c"])
        wal.checkpoint(2)
    (wal_dir / "checkpoint").write_bytes(b"nonsense")
    with WAL(wal_dir) as wal:
        assert wal.checkpoint_lsn == 0
        assert [lsn for lsn, _ in replayed(wal)] == [1, 2, 3]
        assert wal.repairs[0].reason == "corrupt checkpoint file"


# -- concurrency ----------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["always", "batch", "never"])
async def test_threads_and_tasks_appending_concurrently(wal_dir: Path, policy: FsyncPolicy) -> None:
    wal = WAL(wal_dir, fsync=policy, segment_bytes=4096, batch_interval=0.001).open()
    acked: dict[int, bytes] = {}
    acked_lock = threading.Lock()
    errors: list[BaseException] = []

    def remember(last: int, batch: list[bytes]) -> None:
        with acked_lock:
            for offset, item in enumerate(batch):
                lsn = last - len(batch) + 1 + offset
                assert lsn not in acked
                acked[lsn] = item

    def thread_writer(t: int) -> None:
        try:
            for i in range(60):
                batch = [f"t{t}-{i}-{k}".encode() * (k + 1) for k in range(i % 3 + 1)]
                remember(wal.append(batch), batch)
        except BaseException as exc:
            errors.append(exc)

    async def task_writer(t: int) -> None:
        for i in range(60):
            batch = [f"a{t}-{i}-{k}".encode() * 7 for k in range(i % 2 + 1)]
            remember(await wal.append_async(batch), batch)

    threads = [threading.Thread(target=thread_writer, args=(t,)) for t in range(6)]
    for thread in threads:
        thread.start()
    await asyncio.gather(*(task_writer(t) for t in range(8)))
    for thread in threads:
        await asyncio.to_thread(thread.join)
    assert errors == []
    assert len(acked) == 6 * 120 + 8 * 90
    assert sorted(acked) == list(range(1, len(acked) + 1))
    assert len(segment_files(wal_dir)) > 1
    if policy != "never":
        assert wal.durable_lsn == wal.last_lsn
    wal.close()
    with WAL(wal_dir) as reopened:
        assert dict(reopened.replay()) == acked


def test_concurrent_appends_share_fsyncs(wal_dir: Path) -> None:
    name = "test-group-commit"
    writers, rounds = 8, 15
    wal = WAL(wal_dir, name=name, fsync="batch", batch_interval=0.01).open()
    barrier = threading.Barrier(writers)

    def writer(t: int) -> None:
        barrier.wait()
        for i in range(rounds):
            wal.append([f"{t}-{i}".encode()])

    before = metric("signalroom_wal_fsync_duration_seconds_count", name)
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(writers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    fsyncs = metric("signalroom_wal_fsync_duration_seconds_count", name) - before
    wal.close()
    assert 1 <= fsyncs <= writers * rounds / 2


async def test_async_append_rolls_over_in_a_worker_thread(wal_dir: Path) -> None:
    with WAL(wal_dir, segment_bytes=200, fsync="always") as wal:
        lsns = [await wal.append_async([b"z" * 100]) for _ in range(5)]
        assert lsns == [1, 2, 3, 4, 5]
        assert len(segment_files(wal_dir)) == 5
        assert [p for _, p in replayed(wal)] == [b"z" * 100] * 5


def test_replay_while_appending_sees_a_consistent_prefix(wal_dir: Path) -> None:
    with WAL(wal_dir, segment_bytes=1024, fsync="never") as wal:
        stop = threading.Event()

        def keep_appending() -> None:
            i = 0
            while not stop.is_set():
                wal.append([payload(i)])
                i += 1

        thread = threading.Thread(target=keep_appending)
        thread.start()
        try:
            for _ in range(20):
                lsns = [lsn for lsn, _ in replayed(wal)]
                assert lsns == list(range(1, len(lsns) + 1))
        finally:
            stop.set()
            thread.join()


# -- property -------------------------------------------------------------------------------

operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), st.lists(st.binary(max_size=80), max_size=6)),
        st.tuples(st.just("reopen"), st.none()),
        st.tuples(st.just("checkpoint"), st.floats(0.0, 1.0)),
    ),
    max_size=25,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=operations, segment_bytes=st.integers(120, 600))
def test_replay_matches_a_model_of_appends_checkpoints_and_restarts(
    ops: list[tuple[str, object]], segment_bytes: int
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        directory = Path(tmp)
        model: list[tuple[int, bytes]] = []
        checkpoint = 0
        wal = WAL(directory, segment_bytes=segment_bytes, fsync="never").open()
        try:
            for op, arg in ops:
                if op == "append":
                    assert isinstance(arg, list)
                    last = wal.append(arg)
                    model.extend(zip(range(last - len(arg) + 1, last + 1), arg, strict=True))
                elif op == "reopen":
                    wal.close()
                    wal = WAL(directory, segment_bytes=segment_bytes, fsync="never").open()
                    assert wal.repairs == []
                else:
                    assert isinstance(arg, float)
                    target = int(arg * wal.last_lsn)
                    wal.checkpoint(target)
                    checkpoint = max(checkpoint, target)
                assert wal.last_lsn == (model[-1][0] if model else 0)
                assert replayed(wal) == [(lsn, p) for lsn, p in model if lsn > checkpoint]
        finally:
            wal.close()
        assert [lsn for lsn, _ in model] == list(range(1, len(model) + 1))
