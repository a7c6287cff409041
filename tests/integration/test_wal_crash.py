"""kill -9 a process that appends to the WAL: nothing it acknowledged may be lost.

The writer (tests/support/wal_writer.py) prints every acknowledged record's LSN and payload
digest after append returned. After each SIGKILL this test reopens the WAL and checks that
every acknowledged record above the checkpoint replays with the same digest.
"""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signalroom.storage.wal import WAL

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(60)]

WRITER = Path(__file__).resolve().parents[1] / "support" / "wal_writer.py"
SRC = Path(__file__).resolve().parents[2] / "src"


def parse(output: bytes) -> tuple[dict[int, str], int, int]:
    """Acknowledged records, the highest acknowledged checkpoint, and the READY LSN."""
    acked: dict[int, str] = {}
    checkpoint = 0
    ready = -1
    for line in output.decode().splitlines():
        kind, *fields = line.split()
        if kind == "A":
            acked[int(fields[0])] = fields[1]
        elif kind == "C":
            checkpoint = max(checkpoint, int(fields[0]))
        elif kind == "READY":
            ready = int(fields[0])
    return acked, checkpoint, ready


def wait_for_ready(stdout_path: Path, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while b"READY" not in stdout_path.read_bytes():
        assert process.poll() is None, "writer exited early"
        assert time.monotonic() < deadline, "writer did not get ready"
        time.sleep(0.01)


def test_sigkill_at_random_moments_loses_nothing_acknowledged(tmp_path: Path) -> None:
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    directory = tmp_path / "wal"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    all_acked: dict[int, str] = {}
    highest_checkpoint = 0
    previous_last = 0
    policies = ["batch", "always", "batch", "always", "batch", "always"]
    started = time.monotonic()

    for round_, policy in enumerate(policies):
        if time.monotonic() - started > 14:
            break  # keep the whole test bounded on a slow machine
        stdout_path = tmp_path / f"round-{round_}.out"
        stderr_path = tmp_path / f"round-{round_}.err"
        with stdout_path.open("wb") as out, stderr_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, str(WRITER), str(directory), "--fsync", policy,
                 "--segment-bytes", str(rng.choice([32 * 1024, 256 * 1024]))],
                stdout=out, stderr=err, env=env,
            )  # fmt: skip
        try:
            wait_for_ready(stdout_path, process)
            time.sleep(rng.uniform(0.05, 0.8))
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        acked, checkpoint, ready = parse(stdout_path.read_bytes())
        context = f"seed={seed} round={round_} policy={policy}"
        assert ready >= previous_last, f"LSNs went back after restart ({context})"
        assert acked, f"writer acknowledged nothing ({context}): {stderr_path.read_text()}"
        assert min(acked) > previous_last, f"LSN reused after restart ({context})"
        all_acked.update(acked)
        highest_checkpoint = max(highest_checkpoint, checkpoint)

        with WAL(directory) as wal:
            assert wal.checkpoint_lsn >= highest_checkpoint, context
            replayed = {lsn: hashlib.sha256(p).hexdigest()[:16] for lsn, p in wal.replay()}
            lsns = list(replayed)
            assert lsns == sorted(lsns) and all(lsn > wal.checkpoint_lsn for lsn in lsns)
            missing = [lsn for lsn in all_acked if lsn > wal.checkpoint_lsn and lsn not in replayed]
            assert not missing, f"acknowledged records lost ({context}): {missing[:10]}"
            damaged = [
                lsn for lsn, d in all_acked.items() if lsn in replayed and replayed[lsn] != d
            ]
            assert not damaged, f"acknowledged records changed ({context}): {damaged[:10]}"
            # A torn tail is expected after kill -9; damage anywhere else is not.
            assert all(r.bytes_dropped < 4 * (5000 + 16) for r in wal.repairs), wal.repairs
            previous_last = wal.last_lsn
