"""Append rows to a DurableTable from several threads until killed; print each acknowledgement.

Usage: python -m tests.support.table_writer DIR ROUND. Each acknowledged batch prints
``ack <round> <thread> <first_seq> <count>`` after ``append`` returned, so the test knows
exactly which rows were promised. A flusher thread flushes and compacts all the while, so a
kill can land in any step of the flush protocol.
"""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import pyarrow as pa

from signalroom.storage.table import DurableTable

SCHEMA = pa.schema([("timestamp", pa.int64()), ("writer", pa.string()), ("seq", pa.int64())])
BATCH = 50
_print_lock = threading.Lock()


def writer(table: DurableTable, round_: int, thread: int) -> None:
    seq = 0
    base_ns = 1_700_000_000_000_000_000 + round_ * 3_600_000_000_000
    name = f"{round_}-{thread}"
    while True:
        table.append(
            "default",
            pa.table(
                {
                    "timestamp": [base_ns + (seq + i) * 1_000_000 for i in range(BATCH)],
                    "writer": [name] * BATCH,
                    "seq": list(range(seq, seq + BATCH)),
                },
                schema=SCHEMA,
            ),
        )
        with _print_lock:
            sys.stdout.write(f"ack {name} {seq} {BATCH}\n")
            sys.stdout.flush()
        seq += BATCH


def flusher(table: DurableTable) -> None:
    while True:
        time.sleep(0.02)
        table.flush()
        table.compact(min_files=2)


def main() -> None:
    directory, round_ = Path(sys.argv[1]), int(sys.argv[2])
    table = DurableTable(directory, SCHEMA, wal_fsync="batch", wal_segment_bytes=256 * 1024).open()
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    for thread in range(3):
        threading.Thread(target=writer, args=(table, round_, thread), daemon=True).start()
    threading.Thread(target=flusher, args=(table,), daemon=True).start()
    threading.Event().wait()


if __name__ == "__main__":
    main()
