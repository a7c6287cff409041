"""kill -9 a process writing to the TSDB: every acknowledged sample must survive.

The writer (tsdb_writer.py beside this file) prints each acknowledged batch after append
returned, while a flusher writes blocks and checkpoints the WAL. After each SIGKILL the store
is reopened (WAL replay + blocks + index snapshot) and every acknowledged sample is checked.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb import TSDB, TSDBOptions

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(120)]

WRITER = Path(__file__).resolve().parent / "tsdb_writer.py"
SRC = Path(__file__).resolve().parents[3] / "src"
ROOT = Path(__file__).resolve().parents[3]
WRITERS = 4  # 3 threads + 1 asyncio task
SERIES = 50


def acknowledged(output: bytes) -> tuple[dict[int, set[int]], int]:
    acked: dict[int, set[int]] = {}
    flushes = 0
    for line in output.decode(errors="replace").splitlines():
        parts = line.split()
        if parts[:1] == ["A"] and len(parts) == 3:
            acked.setdefault(int(parts[1]), set()).add(int(parts[2]))
        elif parts == ["F"]:
            flushes += 1
    return acked, flushes


def test_sigkill_loses_nothing_acknowledged(tmp_path: Path) -> None:
    rng = random.Random()
    directory = tmp_path / "tsdb"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    all_acked: dict[int, set[int]] = {}
    total_flushes = 0
    start_k = 0
    for round_ in range(4):
        out_path = tmp_path / f"round-{round_}.out"
        err_path = tmp_path / f"round-{round_}.err"
        with out_path.open("wb") as out, err_path.open("wb") as err:
            process = subprocess.Popen(
                [sys.executable, str(WRITER), str(directory), str(start_k)],
                stdout=out, stderr=err, env=env,
            )  # fmt: skip
        try:
            deadline = time.monotonic() + 30
            while b"READY" not in out_path.read_bytes():
                assert process.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, "writer did not get ready"
                time.sleep(0.02)
            time.sleep(rng.uniform(0.3, 1.2))
            assert process.poll() is None, err_path.read_text()
        finally:
            process.send_signal(signal.SIGKILL)
            process.wait()
        acked, flushes = acknowledged(out_path.read_bytes())
        total_flushes += flushes
        for j, ks in acked.items():
            all_acked.setdefault(j, set()).update(ks)
        # the next round continues with later timestamps, so nothing it sends is out of order
        start_k = max((max(ks) for ks in all_acked.values()), default=0) + 1000

        store = TSDB(directory, options=TSDBOptions()).open(background=False)
        try:
            q = store.querier("default", 0, 2**62)
            found = q.select([Matcher(MatchType.EQUAL, "__name__", "crash")], 0, 2**62)
            by_series = {
                (s.labels.get("w"), s.labels.get("i")): dict(
                    zip(s.timestamps.tolist(), s.values.tolist(), strict=True)
                )
                for s in found
            }
            for j, ks in all_acked.items():
                for i in range(SERIES):
                    stored = by_series.get((str(j), str(i)), {})
                    missing = [k for k in ks if k not in stored]
                    assert not missing, f"round {round_}: writer {j} series {i} lost {missing[:10]}"
                    wrong = [k for k in ks if stored[k] != j * 1e6 + k + i / 8]
                    assert not wrong, f"writer {j} series {i}: wrong values at {wrong[:10]}"
        finally:
            store.close()
    assert sum(len(ks) for ks in all_acked.values()) > 20, "the writer acknowledged too little"
    assert total_flushes > 0, "no flush happened: checkpoints were not exercised"
