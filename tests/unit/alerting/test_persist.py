"""The alert manager's write-behind: ordered batches, durable awaited writes, coalescing, a
failing write failing alone, drain; and the alert store and notification log on top of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa

from signalroom.alerting.alerts import Alert, AlertStore
from signalroom.alerting.nflog import NotificationLog
from signalroom.alerting.persist import Op, StateWriter, executemany, upsert
from signalroom.storage.schema import alerting_alerts
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


@pytest.fixture
def state(tmp_path: Path) -> StateStore:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    store.migrate()
    with store.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE t (k TEXT PRIMARY KEY, v TEXT)")
    return store


def put(k: str, v: str) -> Op:
    def op(conn: sa.Connection) -> None:
        conn.exec_driver_sql(
            "INSERT INTO t VALUES (?, ?) ON CONFLICT (k) DO UPDATE SET v = excluded.v", (k, v)
        )

    return op


def rows(state: StateStore) -> dict[str, str]:
    with state.engine.connect() as conn:
        return dict(conn.exec_driver_sql("SELECT k, v FROM t").all())


async def test_writes_of_one_burst_share_a_commit_in_order(state: StateStore) -> None:
    writer = StateWriter(state.engine)
    for i in range(50):
        writer.submit(put("a", str(i)))
    await writer.write(put("b", "done"))
    assert rows(state) == {"a": "49", "b": "done"}  # the last write to a wins: order kept
    assert writer.batches == 1


async def test_an_awaited_write_is_committed_on_return(state: StateStore) -> None:
    writer = StateWriter(state.engine, linger=60)
    await asyncio.wait_for(writer.write(put("k", "v")), 10)
    assert rows(state) == {"k": "v"}  # seen by another connection


async def test_drain_does_not_wait_out_the_linger(state: StateStore) -> None:
    writer = StateWriter(state.engine, linger=60)
    writer.submit(put("k", "v"))
    await asyncio.sleep(0)
    assert rows(state) == {}  # lingering for more writes
    await asyncio.wait_for(writer.drain(), 10)
    assert rows(state) == {"k": "v"}


async def test_coalesced_writes_are_built_once_when_the_batch_starts(state: StateStore) -> None:
    writer = StateWriter(state.engine)
    pending: dict[str, str] = {}
    builds = 0

    def build() -> Op:
        nonlocal builds
        builds += 1
        taken = dict(pending)
        pending.clear()

        def op(conn: sa.Connection) -> None:
            for k, v in taken.items():
                put(k, v)(conn)

        return op

    async def record(k: str, v: str) -> None:
        pending[k] = v
        await writer.write_coalesced("t", build)

    await asyncio.gather(*(record(f"k{i % 3}", str(i)) for i in range(30)))
    assert builds == 1
    assert rows(state) == {"k0": "27", "k1": "28", "k2": "29"}


async def test_a_failing_write_fails_alone(state: StateStore) -> None:
    writer = StateWriter(state.engine)

    def broken(conn: sa.Connection) -> None:
        conn.exec_driver_sql("INSERT INTO no_such_table VALUES (1)")

    good = asyncio.ensure_future(writer.write(put("good", "1")))
    bad = asyncio.ensure_future(writer.write(broken))
    writer.submit(put("later", "2"))
    await good
    with pytest.raises(sa.exc.OperationalError):
        await bad
    await writer.drain()
    assert rows(state) == {"good": "1", "later": "2"}


async def test_without_a_database_writes_are_dropped() -> None:
    writer = StateWriter(None)
    writer.submit(put("k", "v"))
    await writer.write(put("k", "v"))
    await writer.drain()
    assert writer.batches == 0


def test_executemany_stores_what_sqlalchemy_reads_back(state: StateStore) -> None:
    alert = Alert(
        {"alertname": "Ünïcode", "x": "1"},
        {"summary": "ß"},
        T0,
        None,
        "http://g",
        T0 + timedelta(microseconds=7),
        timeout=True,
    )
    from signalroom.alerting.alerts import _alert_row

    op = executemany(
        state.engine, "test-alerts", upsert(state.engine, alerting_alerts), [_alert_row("t", alert)]
    )
    with state.engine.begin() as conn:
        op(conn)
    back = AlertStore("t", state.engine)
    assert back.load() == 1
    assert back.get(alert.fingerprint) == alert


def test_executemany_writes_the_text_sqlalchemy_writes(state: StateStore) -> None:
    from signalroom.storage.schema import alerting_timeline as timeline

    plus_one = timezone(timedelta(hours=1))
    # The same instant in two zones formats differently: the memo of formatted instants
    # must not hand one the other's text.
    instants = [T0, T0.astimezone(plus_one), T0 + timedelta(microseconds=7), T0]
    rows = [
        {
            "tenant": "t",
            "group_key": f"g{i}",
            "at": at,
            "kind": "notified",
            "actor": "",
            "level": None,
            "target": None,
            "receiver": "r",
            "integration": "webhook[0]",
            "outcome": "sent",
            "detail": {"ß": ["é", 1, None], "n": i},
        }
        for i, at in enumerate(instants)
    ]
    ours = executemany(state.engine, "test-timeline", timeline.insert(), rows)
    with state.engine.begin() as conn:
        ours(conn)  # the row id is left out: numbered by the database
        conn.execute(timeline.insert(), [{**r, "tenant": "sqlalchemy"} for r in rows])
        stored = conn.exec_driver_sql(
            "SELECT tenant, group_key, at, detail FROM alerting_timeline ORDER BY id"
        ).all()
    ours_rows = [r[1:] for r in stored if r[0] == "t"]
    theirs = [r[1:] for r in stored if r[0] == "sqlalchemy"]
    assert len(ours_rows) == 4
    assert ours_rows == theirs
    assert ours_rows[1][1] == "2024-01-01 01:00:00.000000"


async def test_alert_gc_then_refire_keeps_the_new_row(state: StateStore) -> None:
    writer = StateWriter(state.engine, linger=60)
    store = AlertStore("t", state.engine, writer)
    resolved = Alert({"a": "1"}, {}, T0, T0 + timedelta(minutes=1), "", T0)
    store.persist_later(store.put([resolved], T0, persist=False))
    await writer.drain()
    later = T0 + timedelta(minutes=5)
    other = Alert({"b": "1"}, {}, later, later + timedelta(hours=1), "", later)
    store.persist_later(store.put([other], later, persist=False))  # queues the alerts' upsert
    assert [a.labels for a in store.gc_later(later)] == [{"a": "1"}]
    # fires again before the delete ran: it joins the upsert queued before the delete
    again = Alert({"a": "1"}, {}, later, later + timedelta(hours=1), "", later)
    store.persist_later(store.put([again], later, persist=False))
    await writer.drain()
    back = AlertStore("t", state.engine)
    assert back.load() == 2
    found = back.get(again.fingerprint)
    assert found is not None and found.ends_at == later + timedelta(hours=1)


async def test_notification_log_record_is_durable_on_return(state: StateStore) -> None:
    writer = StateWriter(state.engine, linger=60)
    log = NotificationLog("t", state.engine, writer=writer)
    await asyncio.gather(
        *(log.record(f"r/webhook/{i}", '{}:{a="1"}', [1, 2], [3], T0) for i in range(20))
    )
    back = NotificationLog("t", state.engine)
    assert back.load() == 20  # committed without a drain
    entry = back.query('{}:{a="1"}', "r/webhook/7")
    assert entry is not None and entry.firing == frozenset({1, 2})
    assert writer.batches == 1
