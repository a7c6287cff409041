"""kill -9 a process appending to a DurableTable while it flushes and compacts: every
acknowledged row is there after reopening, exactly once."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from signalroom.storage.table import DurableTable
from tests.support.table_writer import SCHEMA

pytestmark = [pytest.mark.integration, pytest.mark.slow]

REPO_ROOT = Path(__file__).resolve().parents[2]


def run_and_kill(directory: Path, round_: int, seconds: float) -> list[tuple[str, int, int]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.support.table_writer", str(directory), str(round_)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    time.sleep(seconds)
    process.send_signal(signal.SIGKILL)
    output, _ = process.communicate()
    acks = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] == "ack":  # a torn last line was never acknowledged
            acks.append((parts[1], int(parts[2]), int(parts[3])))
    return acks


def test_kill_9_loses_no_acknowledged_row_and_duplicates_none(tmp_path: Path) -> None:
    rng = random.Random(7)
    promised: set[tuple[str, int]] = set()
    for round_ in range(4):
        acks = run_and_kill(tmp_path, round_, rng.uniform(0.5, 1.5))
        assert acks, "the writer acknowledged nothing before the kill"
        promised |= {(name, first + i) for name, first, count in acks for i in range(count)}
        table = DurableTable(tmp_path, SCHEMA).open()
        try:
            rows = table.scan("default", columns=["writer", "seq"])
        finally:
            table.close()
        stored = Counter(
            zip(rows.column("writer").to_pylist(), rows.column("seq").to_pylist(), strict=True)
        )
        duplicates = [key for key, n in stored.items() if n > 1]
        assert not duplicates, f"round {round_}: rows stored twice: {duplicates[:5]}"
        lost = promised - stored.keys()
        assert not lost, (
            f"round {round_}: {len(lost)} acknowledged rows lost, e.g. {sorted(lost)[:5]}"
        )
