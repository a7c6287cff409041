"""Crash-test writer: appends to a TSDB from threads and an asyncio task until killed.

Writer j owns the series ``crash{w="j", i="0".."S-1"}``; its k-th batch has one sample per
series at timestamp k (ms) with value ``j * 1e6 + k + i / 8``. After ``append`` returned it
prints ``A j k`` (one os.write per line). A flusher thread turns the head into blocks and
checkpoints the WAL now and then, printing ``F`` after each flush.

    python tsdb_writer.py DIR START_K [--threads 3] [--series 50]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import threading
import time
from pathlib import Path

import numpy as np

from signalroom.model.labels import Labels
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def batch(labels: list[Labels], j: int, k: int) -> SampleBatch:
    n = len(labels)
    return SampleBatch(
        np.arange(n, dtype=np.int32),
        np.full(n, k, dtype=np.int64),
        j * 1e6 + k + np.arange(n) / 8,
        series=labels,
    )


def series_of(j: int, count: int) -> list[Labels]:
    return [Labels({"__name__": "crash", "w": str(j), "i": str(i)}) for i in range(count)]


def thread_writer(db: TSDB, j: int, start: int, count: int) -> None:
    labels = series_of(j, count)
    k = start
    while True:
        result = db.append("default", batch(labels, j, k))
        assert result.ok, result.summary()
        say(f"A {j} {k}")
        k += 1


async def task_writer(db: TSDB, j: int, start: int, count: int) -> None:
    labels = series_of(j, count)
    k = start
    while True:
        result = await db.append_async("default", batch(labels, j, k))
        assert result.ok, result.summary()
        say(f"A {j} {k}")
        k += 1


def flusher(db: TSDB) -> None:
    while True:
        time.sleep(0.15)
        db.flush()
        say("F")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("start", type=int)
    parser.add_argument("--threads", type=int, default=3)
    parser.add_argument("--series", type=int, default=50)
    args = parser.parse_args()
    options = TSDBOptions(head_chunk_samples=2000, wal_segment_bytes=64 * 1024)
    db = TSDB(args.directory, options=options).open()
    say("READY")
    for j in range(args.threads):
        threading.Thread(
            target=thread_writer, args=(db, j, args.start, args.series), daemon=True
        ).start()
    threading.Thread(target=flusher, args=(db,), daemon=True).start()
    asyncio.run(task_writer(db, args.threads, args.start, args.series))


if __name__ == "__main__":
    main()
