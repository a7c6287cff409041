"""Crash-test writer: appends to a WAL from threads and asyncio tasks until it is killed.

Prints, one ``os.write`` per line (atomic, unbuffered) on stdout:

    READY <last_lsn>          after open()
    A <lsn> <sha256-prefix>   for every record, after the append that holds it has returned
    C <lsn>                   after checkpoint(lsn) has returned

Used by tests/integration/test_wal_crash.py, which kills it with SIGKILL at random moments.

    python tests/support/wal_writer.py DIR [--fsync batch] [--threads 4] [--tasks 8]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import random
import threading
import time
from pathlib import Path

from signalroom.storage.wal import WAL


def digest(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()[:16]


def say(line: str) -> None:
    os.write(1, (line + "\n").encode())


def acknowledge(last_lsn: int, batch: list[bytes]) -> None:
    first = last_lsn - len(batch) + 1
    say("\n".join(f"A {first + i} {digest(p)}" for i, p in enumerate(batch)))


def make_batch(rng: random.Random) -> list[bytes]:
    return [rng.randbytes(rng.choice((0, 10, 100, 1000, 5000))) for _ in range(rng.randint(1, 4))]


def thread_writer(wal: WAL, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        batch = make_batch(rng)
        acknowledge(wal.append(batch), batch)


async def task_writer(wal: WAL, seed: int) -> None:
    rng = random.Random(seed)
    while True:
        batch = make_batch(rng)
        acknowledge(await wal.append_async(batch), batch)


def checkpointer(wal: WAL, keep: int) -> None:
    while True:
        time.sleep(0.1)
        lsn = wal.last_lsn - keep
        if lsn > wal.checkpoint_lsn:
            wal.checkpoint(lsn)
            say(f"C {lsn}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("directory", type=Path)
    parser.add_argument("--fsync", default="batch", choices=["always", "batch", "never"])
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--tasks", type=int, default=8)
    parser.add_argument("--segment-bytes", type=int, default=256 * 1024)
    parser.add_argument("--checkpoint-keep", type=int, default=500)
    args = parser.parse_args()

    wal = WAL(args.directory, fsync=args.fsync, segment_bytes=args.segment_bytes).open()
    say(f"READY {wal.last_lsn}")
    seed = random.randrange(2**32)
    for i in range(args.threads):
        threading.Thread(target=thread_writer, args=(wal, seed + i), daemon=True).start()
    threading.Thread(target=checkpointer, args=(wal, args.checkpoint_keep), daemon=True).start()

    async def tasks() -> None:
        await asyncio.gather(*(task_writer(wal, seed + 1000 + i) for i in range(args.tasks)))

    asyncio.run(tasks())  # runs until killed


if __name__ == "__main__":
    main()
