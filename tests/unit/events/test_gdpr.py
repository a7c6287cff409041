"""GDPR erasure through the segment store: the files holding a person's events are rewritten
without them in one transaction; a crash before the commit point leaves every file as it was,
a crash after it is completed on the next open, and running the erasure again finishes it."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from datetime import timedelta
from pathlib import Path

import pyarrow.compute as pc
import pytest

from signalroom.events.store import EventStore
from tests.unit.events.eventdata import DAY0, rows

pytestmark = pytest.mark.unit

USERS = ["alice", "bob", "carol"]


def fill(store: EventStore) -> None:
    # three days, two files a day (two flushes), and rows left in the buffer
    for batch in range(2):
        store.append(
            "t",
            rows(
                [
                    (DAY0 + timedelta(days=d, hours=batch * 3 + i), "view", u, {"i": i})
                    for d in range(3)
                    for i, u in enumerate(USERS)
                ]
            ),
        )
        store.table.flush()
    store.append("t", rows([(DAY0 + timedelta(hours=30), "view", "alice", {})]))
    store.append("other", rows([(DAY0, "view", "alice", {})]))


def users(store: EventStore, tenant: str = "t") -> dict[str, int]:
    column = store.table.scan(tenant, columns=["user_id"])["user_id"]
    counts = pc.value_counts(column).to_pylist()
    return {c["values"]: c["counts"] for c in counts}


def test_delete_user_rewrites_only_the_affected_files(store: EventStore) -> None:
    fill(store)
    assert users(store) == {"alice": 7, "bob": 6, "carol": 6}
    before = set(store.table.files("t"))
    assert store.delete_user("t", "alice") == 7  # the buffered row is flushed and erased too
    assert users(store) == {"bob": 6, "carol": 6}
    assert users(store, "other") == {"alice": 1}  # another tenant's alice is someone else
    assert not before & set(store.table.files("t"))  # every file held alice: all rewritten
    assert store.delete_user("t", "alice") == 0  # idempotent
    assert store.delete_user("t", "nobody") == 0
    # a file left empty is removed, not rewritten
    assert store.delete_user("t", "bob") == 6 and store.delete_user("t", "carol") == 6
    assert store.table.files("t") == [] and users(store) == {}


def test_erasure_survives_a_reopen(tmp_path: Path) -> None:
    store = EventStore(tmp_path / "s", wal_fsync="never")
    store.open()
    fill(store)
    store.delete_user("t", "bob")
    store.close()
    again = EventStore(tmp_path / "s", wal_fsync="never")
    again.open()
    try:
        assert users(again) == {"alice": 7, "carol": 6}  # WAL replay brings nothing back
    finally:
        again.close()


CRASH = textwrap.dedent(
    """
    import os, sys
    from signalroom.events.store import EventStore
    from signalroom.storage import segments

    where = sys.argv[2]
    if where == "before-commit":
        def crash(*args, **kwargs):
            os._exit(9)
        segments.SegmentStore._commit_txn = crash
    else:
        real = os.replace
        def replace(src, dst):
            real(src, dst)
            if str(dst).endswith(".parquet"):
                os._exit(9)  # after the first new file is in place
        segments.os.replace = replace
    store = EventStore(sys.argv[1], wal_fsync="never")
    store.open()
    store.delete_user("t", "alice")
    """
)


@pytest.mark.parametrize("where", ["before-commit", "after-commit"])
def test_a_crash_during_erasure_leaves_old_or_new_files(tmp_path: Path, where: str) -> None:
    store = EventStore(tmp_path / "s", wal_fsync="always")
    store.open()
    fill(store)
    store.table.flush()
    store.table.wal.close()  # leave it as a killed process would (no close-time flush)
    done = subprocess.run(
        [sys.executable, "-c", CRASH, str(tmp_path / "s"), where], capture_output=True, check=False
    )
    assert done.returncode == 9, done.stderr.decode()
    again = EventStore(tmp_path / "s", wal_fsync="never")
    again.open()
    try:
        if where == "before-commit":
            assert users(again)["alice"] == 7  # nothing half-done
            assert again.delete_user("t", "alice") == 7
        else:
            assert "alice" not in users(again)  # the transaction was completed on open
            assert again.delete_user("t", "alice") == 0
        assert users(again) == {"bob": 6, "carol": 6}
        leftovers = [p for p in (tmp_path / "s").rglob("*.tmp")]
        assert leftovers == []
    finally:
        again.close()
