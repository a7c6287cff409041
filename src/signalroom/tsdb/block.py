"""Immutable blocks on disk: one time window of samples sorted by (series, time).

A block is a directory, written under a temporary name and renamed into place::

    meta.json      time range, counts, compaction level, window
    index.npz      the chunk set's series index: series ids, sample offsets, group tables
    chunks.bin     the encoded groups (memory-mapped when read)
    series.arrow   tenant and key of every series in the block (Arrow IPC, zstd), so each
                   sample's tenant and labels are on disk with it
"""

from __future__ import annotations

import json
import mmap
import os
import secrets
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.ipc as ipc

from signalroom.tsdb.codec import ChunkSet

__all__ = ["Block", "BlockMeta"]

FORMAT_VERSION = 1


@dataclass(frozen=True)
class BlockMeta:
    """What a block holds; stored as meta.json."""

    name: str
    min_time: int
    max_time: int
    window_start: int
    window_end: int
    level: int
    num_series: int
    num_samples: int
    created_ms: int
    version: int = FORMAT_VERSION


def _fsync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def new_block_name() -> str:
    return f"{int(time.time() * 1000):013d}-{secrets.token_hex(4)}"


class Block:
    """A block opened for reading; its samples are decoded on demand from the mapped file."""

    def __init__(self, path: Path, meta: BlockMeta, chunks: ChunkSet, size: int) -> None:
        self.path = path
        self.meta = meta
        self.chunks = chunks
        self.size_bytes = size

    @property
    def min_time(self) -> int:
        return self.meta.min_time

    @property
    def max_time(self) -> int:
        return self.meta.max_time

    @classmethod
    def write(
        cls,
        parent: Path,
        chunks: ChunkSet,
        *,
        tenants: list[str],
        keys: list[bytes],
        level: int,
        window: tuple[int, int],
    ) -> Block:
        """Write a block for ``chunks`` (tenant and key given per series, in chunk order)."""
        name = new_block_name()
        tmp = parent / f"{name}.tmp"
        tmp.mkdir(parents=True)
        meta = BlockMeta(
            name=name,
            min_time=chunks.min_time,
            max_time=chunks.max_time,
            window_start=window[0],
            window_end=window[1],
            level=level,
            num_series=chunks.num_series,
            num_samples=chunks.num_samples,
            created_ms=int(time.time() * 1000),
        )
        with open(tmp / "chunks.bin", "wb") as f:
            f.write(chunks.data)
        np.savez(
            tmp / "index.npz",
            gids=chunks.gids,
            offsets=chunks.offsets,
            group_series=chunks.group_series,
            group_bytes=chunks.group_bytes,
        )
        table = pa.table(
            {
                "series_id": pa.array(chunks.gids, pa.int64()),
                "tenant": pa.array(tenants, pa.string()).dictionary_encode(),
                "key": pa.array(keys, pa.binary()),
            }
        )
        options = ipc.IpcWriteOptions(compression="zstd")
        with ipc.new_file(str(tmp / "series.arrow"), table.schema, options=options) as writer:
            writer.write_table(table)
        (tmp / "meta.json").write_text(json.dumps(asdict(meta), indent=1))
        for file in tmp.iterdir():
            _fsync_file(file)
        _fsync_dir(tmp)
        final = parent / name
        os.rename(tmp, final)
        _fsync_dir(parent)
        return cls.open(final)

    @classmethod
    def open(cls, path: Path) -> Block:
        meta_raw = json.loads((path / "meta.json").read_text())
        meta = BlockMeta(**meta_raw)
        if meta.version != FORMAT_VERSION:
            raise ValueError(f"block {path}: unsupported format version {meta.version}")
        with np.load(path / "index.npz") as index:
            gids = index["gids"].astype(np.int64)
            offsets = index["offsets"].astype(np.int64)
            group_series = index["group_series"].astype(np.int64)
            group_bytes = index["group_bytes"].astype(np.int64)
        with open(path / "chunks.bin", "rb") as f:
            size = os.fstat(f.fileno()).st_size
            data: object = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) if size else b""
        if size != int(group_bytes[-1]):
            raise ValueError(
                f"block {path}: chunks.bin has {size} bytes, index says {group_bytes[-1]}"
            )
        chunks = ChunkSet(
            gids, offsets, group_series, group_bytes, data, meta.min_time, meta.max_time
        )
        total = sum(p.stat().st_size for p in path.iterdir())
        return cls(path, meta, chunks, total)

    def series_table(self) -> pa.Table:
        with ipc.open_file(str(self.path / "series.arrow")) as reader:
            return reader.read_all()

    def delete(self) -> None:
        """Remove from disk: renamed first so a crash never leaves a half-deleted block."""
        doomed = self.path.with_name(self.path.name + ".deleted")
        os.rename(self.path, doomed)
        _fsync_dir(self.path.parent)
        shutil.rmtree(doomed, ignore_errors=True)
