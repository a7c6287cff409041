"""Write-ahead log: opaque records in numbered, CRC-checked segment files with group commit.

Every ingest path appends its batch here and answers 2xx only after :meth:`WAL.append` (or
:meth:`WAL.append_async`) has returned, so a crash at any moment loses nothing acknowledged.

On-disk layout, in one directory per log::

    00000000000000000001.seg    segment: header, then records; named after its first LSN
    00000000000000004711.seg    the active segment (the only one ever appended to)
    checkpoint                  last checkpoint LSN (magic, LSN, CRC), replaced atomically
    LOCK                        flock()ed while a WAL object has the directory open

A segment header is 32 bytes: magic ``SRWALSEG``, version (u32), first LSN (u64), CRC32 of
those 20 bytes (u32), 8 reserved zero bytes. A record is a 16-byte header -- payload length
(u32), LSN (u64), CRC32 (u32) -- followed by the payload. The CRC covers the payload followed
by the length and LSN fields, so the payload part can be computed before the write lock is
taken. All integers are little-endian. LSNs are consecutive within a segment.

Durability policies (``fsync=``):

``"always"``
    every append call is fdatasync()ed before it returns. Concurrent callers share fsyncs
    (leader/follower): whoever takes the fsync lock fsyncs everything written so far, and a
    caller whose records were written before that fsync began is covered by it.
``"batch"`` (default)
    the same group commit, but while appends are concurrent (the previous fsync covered more
    than one append call) a new fsync starts at the earliest ``batch_interval`` seconds after
    the previous one, so more appends share each fsync: fewer disk flushes for more latency.
    A lone sequential writer is fsynced at once, as with "always".
``"never"``
    data goes to the OS page cache only (no fsync on rollover either; close() still
    fsyncs). This survives a crash of the process (kill -9) but NOT a power loss or kernel
    crash: acknowledged records may be lost or the tail torn.

Threads fsync themselves (measured: a handoff to a flusher thread costs more than it saves);
async appenders cannot block their event loop, so a background flusher thread fsyncs for them
and resolves their futures. Both kinds share the same fsyncs. Writes happen under one lock,
fsyncs outside it (fdatasync releases the GIL); only a segment rollover fsyncs the full
segment under the write lock, once per ``segment_bytes``.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import heapq
import itertools
import logging
import os
import re
import struct
import threading
import time
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Literal

from prometheus_client import Counter, Gauge, Histogram

__all__ = ["WAL", "FsyncPolicy", "WALError", "WALRepair"]

FsyncPolicy = Literal["always", "batch", "never"]

logger = logging.getLogger("signalroom.storage.wal")

SEGMENT_MAGIC = b"SRWALSEG"
SEGMENT_VERSION = 1
_HEADER_BODY = struct.Struct("<8sIQ")  # magic, version, first LSN
_HEADER_CRC = struct.Struct("<I")
SEGMENT_HEADER_SIZE = 32
_RECORD_HEAD = struct.Struct("<IQ")  # length, LSN: the part the CRC covers after the payload
_RECORD_HEADER = struct.Struct("<IQI")  # length, LSN, CRC
RECORD_HEADER_SIZE = _RECORD_HEADER.size
MAX_RECORD_BYTES = 1 << 30
_CHECKPOINT = struct.Struct("<8sQI")  # magic, LSN, CRC32 of magic+LSN
_CHECKPOINT_MAGIC = b"SRWALCKP"
_SEGMENT_NAME = re.compile(r"^(\d{20})\.seg$")
_IOV_MAX = 1024
# Async appends at most this big are written on the event loop thread (a page-cache copy of
# microseconds) when the lock is free; bigger ones, and rollovers, go to a worker thread.
_INLINE_WRITE_LIMIT = 256 * 1024

_fdatasync = getattr(os, "fdatasync", os.fsync)

_LATENCY_BUCKETS = (
    0.00005,
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

APPEND_DURATION = Histogram(
    "signalroom_wal_append_duration_seconds",
    "Time from append call to return, including the wait for durability.",
    ["wal"],
    buckets=_LATENCY_BUCKETS,
)
FSYNC_DURATION = Histogram(
    "signalroom_wal_fsync_duration_seconds",
    "Duration of fsync/fdatasync calls on WAL segments.",
    ["wal"],
    buckets=_LATENCY_BUCKETS,
)
BYTES_WRITTEN = Counter(
    "signalroom_wal_bytes_written_total", "Bytes appended to WAL segments.", ["wal"]
)
RECORDS_WRITTEN = Counter(
    "signalroom_wal_records_written_total", "Records appended to the WAL.", ["wal"]
)
CORRUPTIONS = Counter(
    "signalroom_wal_corruptions_total",
    "Torn or corrupt records, segments and checkpoint files found and repaired.",
    ["wal"],
)
SEGMENTS = Gauge("signalroom_wal_segments", "Segment files of the WAL.", ["wal"])


class WALError(RuntimeError):
    """The WAL cannot take the operation: not open, closed, in use, or failed after an I/O error."""


@dataclass(frozen=True)
class WALRepair:
    """One problem :meth:`WAL.open` found on disk and what it did about it."""

    path: Path
    offset: int
    bytes_dropped: int
    reason: str
    moved_to: Path | None = None


class _Segment:
    __slots__ = ("closed", "fd", "first_lsn", "last_lsn", "path", "size")

    def __init__(self, path: Path, first_lsn: int, last_lsn: int, size: int, fd: int = -1):
        self.path = path
        self.first_lsn = first_lsn
        self.last_lsn = last_lsn  # first_lsn - 1 while the segment holds no record
        self.size = size
        self.fd = fd
        self.closed = fd < 0


class _ScanStatus:
    __slots__ = ("end", "last_lsn", "problem", "records", "torn")

    def __init__(self, first_lsn: int) -> None:
        self.end = SEGMENT_HEADER_SIZE
        self.last_lsn = first_lsn - 1
        self.records = 0
        self.problem: str | None = None
        self.torn = False  # the problem is an incomplete write, not damaged bytes


def _segment_header(first_lsn: int) -> bytes:
    body = _HEADER_BODY.pack(SEGMENT_MAGIC, SEGMENT_VERSION, first_lsn)
    header = body + _HEADER_CRC.pack(zlib.crc32(body))
    return header + bytes(SEGMENT_HEADER_SIZE - len(header))


def _header_problem(data: bytes, first_lsn: int) -> str | None:
    if not data:
        return "empty file, no segment header"
    if len(data) < SEGMENT_HEADER_SIZE:
        return f"file of {len(data)} bytes is shorter than the segment header"
    magic, version, header_lsn = _HEADER_BODY.unpack_from(data, 0)
    if magic != SEGMENT_MAGIC:
        return f"bad segment magic {magic!r}"
    (crc,) = _HEADER_CRC.unpack_from(data, _HEADER_BODY.size)
    if crc != zlib.crc32(data[: _HEADER_BODY.size]):
        return "segment header CRC mismatch"
    if version != SEGMENT_VERSION:
        return f"unsupported segment version {version}"
    if header_lsn != first_lsn:
        return f"header first LSN {header_lsn} does not match the file name"
    return None


def _iter_records(
    data: bytes, first_lsn: int, status: _ScanStatus
) -> Iterator[tuple[int, int, int]]:
    """Yield (lsn, payload_start, payload_end) of each valid record after the header.

    Stops at the first torn or corrupt record and describes it in ``status``.
    """
    view = memoryview(data)
    end = len(data)
    pos = SEGMENT_HEADER_SIZE
    expected = first_lsn
    while pos < end:
        if end - pos < RECORD_HEADER_SIZE:
            status.problem, status.torn = f"partial record header ({end - pos} bytes)", True
            return
        length, lsn, crc = _RECORD_HEADER.unpack_from(data, pos)
        body = pos + RECORD_HEADER_SIZE
        if length > end - body:
            status.problem = f"record of {length} bytes runs past the end of the file"
            status.torn = True
            return
        if zlib.crc32(view[pos : pos + 12], zlib.crc32(view[body : body + length])) != crc:
            status.problem = "record CRC mismatch"
            status.torn = body + length == end  # the file's last record: a torn write
            return
        if lsn != expected:
            status.problem = f"record has LSN {lsn} where {expected} was expected"
            return
        pos = body + length
        status.end, status.last_lsn = pos, lsn
        status.records += 1
        expected += 1
        yield lsn, body, pos


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, parts: list[bytes]) -> None:
    for start in range(0, len(parts), _IOV_MAX):
        chunk = parts[start : start + _IOV_MAX]
        done = os.writev(fd, chunk)
        wanted = sum(map(len, chunk))
        if done < wanted:  # short write (signal, nearly full disk): finish the rest
            rest = memoryview(b"".join(chunk))[done:]
            while rest:
                rest = rest[os.write(fd, rest) :]


def _resolve(futures: list[asyncio.Future[None]], error: BaseException | None) -> None:
    for future in futures:
        if not future.done():
            if error is None:
                future.set_result(None)
            else:
                future.set_exception(error)


class WAL:
    """Append-only log of opaque records in numbered segment files.

    ``append`` / ``append_async`` return the LSN of the last record of the batch once it is
    durable per the ``fsync`` policy; the records of one call get consecutive LSNs. LSNs are
    64-bit, start at 1, strictly increase and survive restarts. ``replay`` yields what is on
    disk after the checkpoint; ``checkpoint`` declares records stored elsewhere and deletes
    segments holding nothing newer. Thread-safe; one WAL object per directory (flock).
    """

    def __init__(
        self,
        directory: Path,
        *,
        name: str = "wal",
        segment_bytes: int = 64 * 2**20,
        fsync: FsyncPolicy = "batch",
        batch_interval: float = 0.002,
    ) -> None:
        if fsync not in ("always", "batch", "never"):
            raise ValueError(f"fsync must be 'always', 'batch' or 'never', not {fsync!r}")
        if segment_bytes <= SEGMENT_HEADER_SIZE + RECORD_HEADER_SIZE:
            raise ValueError(f"segment_bytes={segment_bytes} is too small")
        if batch_interval < 0:
            raise ValueError("batch_interval must be >= 0")
        self.directory = Path(directory)
        self.name = name
        self.segment_bytes = segment_bytes
        self.fsync: FsyncPolicy = fsync
        self.batch_interval = batch_interval

        self._lock = threading.Lock()  # segment list, active segment, next LSN, writes
        self._fsync_lock = threading.Lock()  # held while fsyncing or closing segment fds
        # durable LSN, the fsync leader's seat, async waiters
        self._durable_cond = threading.Condition(threading.Lock())
        self._flush_cond = threading.Condition(threading.Lock())
        self._checkpoint_lock = threading.Lock()

        self._open = False
        self._failed: BaseException | None = None
        self._segments: list[_Segment] = []
        self._active: _Segment | None = None
        # (active segment, last written LSN, append calls so far), replaced as a whole
        self._tail: tuple[_Segment, int, int] | None = None
        self._next_lsn = 1
        self._durable_lsn = 0
        self._checkpoint_lsn = 0
        self._lock_fd = -1
        self._repairs: list[WALRepair] = []
        self._async_waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]]
        self._async_waiters = []
        self._waiter_seq = itertools.count()
        self._flush_requested = False
        self._stopping = False
        self._flusher: threading.Thread | None = None
        self._sync_spacing = batch_interval if fsync == "batch" else 0.0
        self._last_sync_start = -batch_interval
        self._sync_leader = False
        self._append_calls = 0
        self._synced_calls = 0  # append calls covered by fsyncs so far
        self._concurrent = False  # the last fsync covered more than one append call

        self._m_append = APPEND_DURATION.labels(name)
        self._m_fsync = FSYNC_DURATION.labels(name)
        self._m_bytes = BYTES_WRITTEN.labels(name)
        self._m_records = RECORDS_WRITTEN.labels(name)
        self._m_corruptions = CORRUPTIONS.labels(name)
        self._m_segments = SEGMENTS.labels(name)

    # -- public state --------------------------------------------------------------------

    @property
    def last_lsn(self) -> int:
        """LSN of the last record written (0 for an empty log)."""
        return self._next_lsn - 1

    @property
    def checkpoint_lsn(self) -> int:
        """Records up to and including this LSN are stored elsewhere; replay starts after it."""
        return self._checkpoint_lsn

    @property
    def durable_lsn(self) -> int:
        """Highest LSN known to be fsynced (meaningless with fsync="never")."""
        return self._durable_lsn

    @property
    def repairs(self) -> list[WALRepair]:
        """Problems the last :meth:`open` found on disk and repaired."""
        return list(self._repairs)

    @property
    def segment_paths(self) -> list[Path]:
        """Segment files, oldest first."""
        with self._lock:
            return [segment.path for segment in self._segments]

    def __repr__(self) -> str:
        return (
            f"WAL({str(self.directory)!r}, name={self.name!r}, fsync={self.fsync!r}, "
            f"last_lsn={self.last_lsn}, checkpoint_lsn={self._checkpoint_lsn})"
        )

    def __enter__(self) -> WAL:
        return self.open()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- open: scan, validate, repair ----------------------------------------------------

    def open(self) -> WAL:
        """Scan and validate the segments, repair damage, and get ready to append.

        Never raises because of damaged data: a torn or corrupt record truncates its segment
        there (later segments are kept), a file with a bad header is renamed ``*.corrupt``;
        each repair is logged, counted in ``signalroom_wal_corruptions_total`` and listed in
        :attr:`repairs`. Raises :class:`WALError` if another WAL holds the directory.
        """
        with self._lock:
            if self._open:
                return self
            self.directory.mkdir(parents=True, exist_ok=True)
            self._acquire_directory_lock()
            try:
                self._load()
            except BaseException:
                self._close_files()
                raise
            self._open = True
            self._failed = None
            self._stopping = False
        if self.fsync != "never":
            self._flusher = threading.Thread(
                target=self._flush_loop, name=f"wal-flusher-{self.name}", daemon=True
            )
            self._flusher.start()
        return self

    def _acquire_directory_lock(self) -> None:
        path = self.directory / "LOCK"
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise WALError(f"WAL directory {self.directory} is in use (locked {path})") from exc
            raise
        self._lock_fd = fd

    def _load(self) -> None:
        self._repairs = []
        self._segments = []
        for leftover in self.directory.glob("*.tmp"):
            leftover.unlink(missing_ok=True)  # unfinished segment creation or checkpoint
        self._checkpoint_lsn = self._read_checkpoint()
        floor = self._checkpoint_lsn + 1  # the next LSN is at least this
        previous_last = self._checkpoint_lsn
        files = sorted(
            (int(match.group(1)), path)
            for path in self.directory.iterdir()
            if (match := _SEGMENT_NAME.match(path.name))
        )
        for index, (first_lsn, path) in enumerate(files):
            is_last = index == len(files) - 1
            floor = max(floor, first_lsn)  # LSNs up to here may have been handed out
            data = path.read_bytes()
            problem = _header_problem(data, first_lsn)
            if problem is None and self._segments and first_lsn <= self._segments[-1].last_lsn:
                problem = f"first LSN {first_lsn} overlaps the previous segment"
            if problem is not None:
                moved = self._move_aside(path)
                self._report(path, 0, len(data), problem, moved_to=moved, loud=True)
                continue
            status = _ScanStatus(first_lsn)
            for _ in _iter_records(data, first_lsn, status):
                pass
            if status.problem is not None:
                self._truncate(path, status.end)
                dropped = len(data) - status.end
                if is_last:
                    self._report(path, status.end, dropped, status.problem, loud=not status.torn)
                else:
                    self._report(path, status.end, dropped, status.problem, loud=True)
            if status.records and first_lsn > previous_last + 1:
                logger.error(
                    "WAL %s: LSN gap: records %d..%d are missing before %s",
                    self.name,
                    previous_last + 1,
                    first_lsn - 1,
                    path,
                    extra={"wal": self.name, "segment": str(path)},
                )
            if status.records:
                previous_last = status.last_lsn
            self._segments.append(_Segment(path, first_lsn, status.last_lsn, status.end))

        last_record = max((s.last_lsn for s in self._segments), default=0)
        self._next_lsn = max(floor, last_record + 1)
        self._durable_lsn = self._next_lsn - 1  # what is on disk now counts as durable
        tail = self._segments[-1] if self._segments else None
        if tail is not None and tail.last_lsn + 1 == self._next_lsn:
            tail.fd = os.open(tail.path, os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
            tail.closed = False
            self._active = tail
        else:
            self._active = self._create_segment(self._next_lsn)
            self._segments.append(self._active)
        self._tail = (self._active, self._next_lsn - 1, self._append_calls)
        self._delete_covered_segments(self._checkpoint_lsn)  # an interrupted checkpoint
        self._m_segments.set(len(self._segments))
        logger.info(
            "WAL %s opened: %d segments, last LSN %d, checkpoint %d, %d repairs",
            self.name,
            len(self._segments),
            self._next_lsn - 1,
            self._checkpoint_lsn,
            len(self._repairs),
            extra={"wal": self.name},
        )

    def _report(
        self,
        path: Path,
        offset: int,
        dropped: int,
        reason: str,
        *,
        loud: bool,
        moved_to: Path | None = None,
    ) -> None:
        self._repairs.append(WALRepair(path, offset, dropped, reason, moved_to))
        self._m_corruptions.inc()
        action = f"moved aside to {moved_to.name}" if moved_to else "truncated"
        logger.log(
            logging.ERROR if loud else logging.WARNING,
            "WAL %s: %s in %s at offset %d: %s, %d bytes dropped",
            self.name,
            reason,
            path,
            offset,
            action,
            dropped,
            extra={
                "wal": self.name,
                "segment": str(path),
                "offset": offset,
                "bytes_dropped": dropped,
            },
        )

    def _move_aside(self, path: Path) -> Path:
        target = path.with_name(path.name + ".corrupt")
        for n in itertools.count(1):
            if not target.exists():
                break
            target = path.with_name(f"{path.name}.corrupt.{n}")
        path.rename(target)
        _fsync_directory(self.directory)
        return target

    def _truncate(self, path: Path, size: int) -> None:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)
        finally:
            os.close(fd)

    def _create_segment(self, first_lsn: int) -> _Segment:
        # Written to a temporary name and renamed, so a segment file always has its header.
        path = self.directory / f"{first_lsn:020d}.seg"
        if path.exists():
            raise WALError(f"segment {path} already exists")  # a bug, not bad data
        tmp = path.with_name(path.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_APPEND | os.O_CLOEXEC, 0o644)
        try:
            os.write(fd, _segment_header(first_lsn))
            if self.fsync != "never":
                _fdatasync(fd)
            os.rename(tmp, path)
            _fsync_directory(self.directory)
        except BaseException:
            os.close(fd)
            tmp.unlink(missing_ok=True)
            raise
        return _Segment(path, first_lsn, first_lsn - 1, SEGMENT_HEADER_SIZE, fd)

    # -- checkpoint ----------------------------------------------------------------------

    def _read_checkpoint(self) -> int:
        path = self.directory / "checkpoint"
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return 0
        if len(data) == _CHECKPOINT.size:
            magic, lsn, crc = _CHECKPOINT.unpack(data)
            if magic == _CHECKPOINT_MAGIC and crc == zlib.crc32(data[:16]):
                return int(lsn)
        # Replaying too much is safe, skipping records is not: start from the beginning.
        moved = self._move_aside(path)
        self._report(path, 0, len(data), "corrupt checkpoint file", moved_to=moved, loud=True)
        return 0

    def checkpoint(self, lsn: int) -> None:
        """Declare records up to ``lsn`` stored elsewhere.

        Persists ``lsn`` (replay after a restart starts after it) and deletes every segment
        whose records are all <= ``lsn``, never the active one. Lower LSNs than the current
        checkpoint are ignored.
        """
        self._check_usable()
        if lsn > self.last_lsn:
            raise ValueError(f"checkpoint LSN {lsn} is beyond the last LSN {self.last_lsn}")
        with self._checkpoint_lock:
            if lsn <= self._checkpoint_lsn:
                return
            body = _CHECKPOINT_MAGIC + lsn.to_bytes(8, "little")
            data = body + zlib.crc32(body).to_bytes(4, "little")
            path = self.directory / "checkpoint"
            tmp = path.with_name("checkpoint.tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
            try:
                os.write(fd, data)
                os.fsync(fd)
            finally:
                os.close(fd)
            os.replace(tmp, path)
            _fsync_directory(self.directory)
            self._checkpoint_lsn = lsn
            with self._lock:
                doomed = self._detach_covered_segments(lsn)
                self._m_segments.set(len(self._segments))
            self._unlink_segments(doomed)

    def _detach_covered_segments(self, lsn: int) -> list[_Segment]:
        doomed = [s for s in self._segments if s is not self._active and s.last_lsn <= lsn]
        self._segments = [s for s in self._segments if s not in doomed]
        return doomed

    def _delete_covered_segments(self, lsn: int) -> None:
        self._unlink_segments(self._detach_covered_segments(lsn))

    def _unlink_segments(self, segments: list[_Segment]) -> None:
        if not segments:
            return
        for segment in segments:
            segment.path.unlink(missing_ok=True)
        _fsync_directory(self.directory)
        logger.debug(
            "WAL %s: deleted %d segments up to LSN %d",
            self.name,
            len(segments),
            segments[-1].last_lsn,
            extra={"wal": self.name},
        )

    # -- replay --------------------------------------------------------------------------

    def replay(self, after_lsn: int = 0) -> Iterator[tuple[int, bytes]]:
        """Yield ``(lsn, payload)`` in LSN order for records after ``after_lsn`` and after the
        checkpoint, as they are on disk when called (later appends are not included)."""
        self._check_usable()
        start = max(after_lsn, self._checkpoint_lsn)
        with self._lock:
            snapshot = [(s.path, s.first_lsn, s.last_lsn, s.size) for s in self._segments]
        return self._replay(snapshot, start)

    def _replay(
        self, snapshot: list[tuple[Path, int, int, int]], start: int
    ) -> Iterator[tuple[int, bytes]]:
        for path, first_lsn, last_lsn, size in snapshot:
            if last_lsn <= start:
                continue
            try:
                with open(path, "rb") as file:
                    data = file.read(size)
            except FileNotFoundError:
                continue  # deleted by a checkpoint since the snapshot: nothing left to replay
            status = _ScanStatus(first_lsn)
            if _header_problem(data, first_lsn) is None:
                for lsn, begin, end in _iter_records(data, first_lsn, status):
                    if lsn > start:
                        yield lsn, data[begin:end]
            else:
                status.problem = "segment header damaged since open"
            if status.problem is not None or status.last_lsn < last_lsn:
                self._m_corruptions.inc()
                logger.error(
                    "WAL %s: %s in %s at offset %d during replay; records %d..%d skipped",
                    self.name,
                    status.problem or "file shrank",
                    path,
                    status.end,
                    status.last_lsn + 1,
                    last_lsn,
                    extra={"wal": self.name, "segment": str(path), "offset": status.end},
                )

    # -- append --------------------------------------------------------------------------

    def append(self, payloads: Sequence[bytes]) -> int:
        """Append records; return the LSN of the last one once durable per the policy.

        Blocks the calling thread (use :meth:`append_async` on an event loop). An empty batch
        writes nothing and returns :attr:`last_lsn`.
        """
        started = time.perf_counter()
        prepared = self._prepare(payloads)
        with self._lock:
            lsn = self._write_locked(payloads, *prepared, may_roll=True)
        if lsn is None:  # pragma: no cover - may_roll=True always writes
            raise AssertionError("write did not happen")
        self._count(len(payloads), prepared[1])
        if self.fsync != "never":
            self._sync_upto(lsn)
        self._m_append.observe(time.perf_counter() - started)
        return lsn

    async def append_async(self, payloads: Sequence[bytes]) -> int:
        """Like :meth:`append`, without blocking the event loop.

        Small batches are written on the loop thread when the lock is free (a page-cache copy);
        otherwise a worker thread writes. The fsync wait is an asyncio future that the flusher
        thread resolves, so async and thread appenders share group commits.
        """
        started = time.perf_counter()
        prepared = self._prepare(payloads)
        lsn: int | None = None
        if prepared[1] <= _INLINE_WRITE_LIMIT and self._lock.acquire(blocking=False):
            try:
                lsn = self._write_locked(payloads, *prepared, may_roll=False)
            finally:
                self._lock.release()
        if lsn is None:
            lsn = await asyncio.to_thread(self._write_blocking, payloads, prepared)
        self._count(len(payloads), prepared[1])
        if self.fsync != "never":
            await self._wait_durable_async(lsn)
        self._m_append.observe(time.perf_counter() - started)
        return lsn

    def _write_blocking(self, payloads: Sequence[bytes], prepared: tuple[list[int], int]) -> int:
        with self._lock:
            lsn = self._write_locked(payloads, *prepared, may_roll=True)
        assert lsn is not None
        return lsn

    @staticmethod
    def _prepare(payloads: Sequence[bytes]) -> tuple[list[int], int]:
        """CRC of each payload and the batch's size on disk, computed outside the lock."""
        crcs = []
        total = 0
        for payload in payloads:
            size = len(payload)
            if size > MAX_RECORD_BYTES:
                raise ValueError(f"record of {size} bytes exceeds {MAX_RECORD_BYTES}")
            crcs.append(zlib.crc32(payload))
            total += RECORD_HEADER_SIZE + size
        return crcs, total

    def _write_locked(
        self, payloads: Sequence[bytes], crcs: list[int], total: int, *, may_roll: bool
    ) -> int | None:
        """Write the batch to the active segment; None if it needs a rollover and may not."""
        self._check_usable_locked()
        segment = self._active
        assert segment is not None
        if not payloads:
            return self._next_lsn - 1
        if segment.size > SEGMENT_HEADER_SIZE and segment.size + total > self.segment_bytes:
            if not may_roll:
                return None
            segment = self._roll_locked()
        first = self._next_lsn
        parts: list[bytes] = []
        head = _RECORD_HEAD.pack
        record_header = _RECORD_HEADER.pack
        crc32 = zlib.crc32
        for lsn, payload, payload_crc in zip(itertools.count(first), payloads, crcs, strict=False):
            size = len(payload)
            parts.append(record_header(size, lsn, crc32(head(size, lsn), payload_crc)))
            parts.append(payload)
        try:
            _write_all(segment.fd, parts)
        except BaseException as exc:
            # Cut the partial batch off so later records do not land behind garbage.
            try:
                os.ftruncate(segment.fd, segment.size)
            except OSError:
                self._fail(exc)
            raise
        last = first + len(payloads) - 1
        self._next_lsn = last + 1
        segment.size += total
        segment.last_lsn = last
        self._append_calls += 1
        self._tail = (segment, last, self._append_calls)
        return last

    def _roll_locked(self) -> _Segment:
        old = self._active
        assert old is not None
        try:
            if self.fsync != "never":
                # Once per segment, under the write lock: afterwards only the active segment
                # can hold unsynced records, which is what the flusher's bookkeeping assumes.
                self._timed_sync(old.fd)
            new = self._create_segment(self._next_lsn)
        except OSError as exc:
            self._fail(exc)
            raise
        self._segments.append(new)
        self._active = new
        self._tail = (new, self._next_lsn - 1, self._append_calls)
        with self._fsync_lock:  # nobody is fsyncing old.fd while we close it
            os.close(old.fd)
            old.fd, old.closed = -1, True
        self._m_segments.set(len(self._segments))
        return new

    def _count(self, records: int, size: int) -> None:
        if records:
            self._m_records.inc(records)
            self._m_bytes.inc(size)

    # -- durability ----------------------------------------------------------------------

    def _timed_sync(self, fd: int) -> None:
        started = time.perf_counter()
        _fdatasync(fd)
        self._m_fsync.observe(time.perf_counter() - started)

    def _sync_upto(self, lsn: int) -> None:
        """Make everything up to ``lsn`` durable; one caller (the leader) fsyncs for all.

        Followers wait on a condition and return as soon as a leader's fsync covered them;
        the first uncovered caller becomes the next leader. With "batch" the leader first
        waits until ``batch_interval`` has passed since the previous fsync started, so more
        appends join it -- but only while appends are concurrent (the previous fsync covered
        more than one call), so a lone sequential writer is not slowed down.
        """
        with self._durable_cond:
            while True:
                if self._durable_lsn >= lsn:
                    return
                self._raise_if_failed()
                if not self._sync_leader:
                    self._sync_leader = True
                    break
                self._durable_cond.wait()
        try:
            if self._concurrent:
                delay = self._last_sync_start + self._sync_spacing - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            with self._fsync_lock:  # a rollover cannot close the segment under us
                self._last_sync_start = time.monotonic()
                tail = self._tail
                if tail is None:
                    return  # closed meanwhile; close() synced everything
                segment, written, calls = tail  # written before this fsync starts => covered
                if not segment.closed:
                    try:
                        self._timed_sync(segment.fd)
                    except OSError as exc:
                        self._fail(exc)  # after a failed fsync the page cache is not trusted
                        raise
                self._concurrent = calls - self._synced_calls > 1
                self._synced_calls = calls
            self._mark_durable(written)
        finally:
            with self._durable_cond:
                self._sync_leader = False
                self._durable_cond.notify_all()

    def _mark_durable(self, lsn: int) -> None:
        ready: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]] = []
        with self._durable_cond:
            if lsn <= self._durable_lsn:
                return
            self._durable_lsn = lsn
            self._durable_cond.notify_all()
            while self._async_waiters and self._async_waiters[0][0] <= lsn:
                ready.append(heapq.heappop(self._async_waiters))
        self._wake_async(ready, None)

    @staticmethod
    def _wake_async(
        waiters: list[tuple[int, int, asyncio.AbstractEventLoop, asyncio.Future[None]]],
        error: BaseException | None,
    ) -> None:
        by_loop: dict[asyncio.AbstractEventLoop, list[asyncio.Future[None]]] = {}
        for _, _, loop, future in waiters:
            by_loop.setdefault(loop, []).append(future)
        for loop, futures in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
                loop.call_soon_threadsafe(_resolve, futures, error)

    async def _wait_durable_async(self, lsn: int) -> None:
        loop = asyncio.get_running_loop()
        with self._durable_cond:
            if self._durable_lsn >= lsn:
                return
            self._raise_if_failed()
            future: asyncio.Future[None] = loop.create_future()
            entry = (lsn, next(self._waiter_seq), loop, future)
            heapq.heappush(self._async_waiters, entry)
        self._request_flush()
        await future

    def _request_flush(self) -> None:
        with self._flush_cond:
            self._flush_requested = True
            self._flush_cond.notify()

    def _flush_loop(self) -> None:
        # Fsyncs on behalf of async appenders, which cannot block their event loop.
        while True:
            with self._flush_cond:
                while not self._flush_requested and not self._stopping:
                    self._flush_cond.wait()
                if self._stopping:
                    return
                self._flush_requested = False
            tail = self._tail
            if tail is None or self._failed is not None:
                continue
            with contextlib.suppress(OSError, WALError):  # _fail() has told the waiters
                self._sync_upto(tail[1])

    def _fail(self, exc: BaseException) -> None:
        if self._failed is not None:
            return
        self._failed = exc
        logger.critical(
            "WAL %s failed, appends are refused until it is reopened: %s",
            self.name,
            exc,
            extra={"wal": self.name},
        )
        error = WALError(f"WAL {self.name} failed: {exc}")
        with self._durable_cond:
            waiters, self._async_waiters = self._async_waiters, []
            self._durable_cond.notify_all()
        self._wake_async(waiters, error)

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            raise WALError(f"WAL {self.name} failed: {self._failed}; reopen it") from self._failed

    def _check_usable_locked(self) -> None:
        if not self._open:
            raise WALError(f"WAL {self.name} at {self.directory} is not open")
        self._raise_if_failed()

    def _check_usable(self) -> None:
        with self._lock:
            self._check_usable_locked()

    # -- close ---------------------------------------------------------------------------

    def close(self) -> None:
        """Fsync what was written, stop the flusher and close the files. Idempotent."""
        with self._lock:
            if not self._open:
                return
            self._open = False  # refuse new writes; those under way have finished
        try:
            if self._failed is None:
                self._sync_upto(self._next_lsn - 1)
        finally:
            with self._flush_cond:
                self._stopping = True
                self._flush_cond.notify()
            if self._flusher is not None:
                self._flusher.join()
                self._flusher = None
            with self._lock:
                self._close_files()

    def _close_files(self) -> None:
        with self._fsync_lock:
            for segment in self._segments:
                if not segment.closed:
                    os.close(segment.fd)
                    segment.fd, segment.closed = -1, True
        self._active = None
        self._tail = None
        if self._lock_fd >= 0:
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1
