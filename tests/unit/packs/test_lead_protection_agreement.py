"""Python, PostgreSQL and the metric series agree on thousands of generated leads and holds."""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from signalroom.model.labels import METRIC_NAME
from signalroom.packs.freshfoodz import metrics
from signalroom.packs.freshfoodz.lead_protection import (
    REMINDERS,
    STATES,
    Hold,
    Lead,
    LeadState,
    evaluate,
    state_counts,
)
from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb import TSDB, TSDBOptions
from tests.support.postgres import fresh_database

pytestmark = [pytest.mark.integration, pytest.mark.postgres]

SQL = Path(__file__).resolve().parents[3] / "src/signalroom/packs/freshfoodz/lead_protection.sql"
NOWS = [
    datetime(2026, 3, 29, 1, 15, tzinfo=UTC),  # the spring DST night
    datetime(2026, 10, 25, 0, 45, 30, 123456, tzinfo=UTC),  # the autumn DST night
    datetime(2027, 1, 1, tzinfo=UTC),
]
# Deadlines land on DST nights and month ends as well as anywhere.
SPECIAL_CREATED = [
    datetime(2025, 9, 29, 0, 30, tzinfo=UTC),  # 02:30 CEST -> 29 Mar 2026 02:30 (gap)
    datetime(2026, 4, 25, 0, 30, tzinfo=UTC),  # 02:30 CEST -> 25 Oct 2026 02:30 (repeat)
    datetime(2025, 8, 31, 8, 0, tzinfo=UTC),
    datetime(2023, 8, 31, 21, 59, 59, tzinfo=UTC),
    datetime(2024, 2, 29, 12, 0, tzinfo=UTC),
]


def generate(seed: int, n: int) -> tuple[list[Lead], list[Hold]]:
    rng = random.Random(seed)
    lo = datetime(2025, 1, 1, tzinfo=UTC)
    leads: list[Lead] = []
    holds: list[Hold] = []
    for i in range(n):
        if i < len(SPECIAL_CREATED):
            created = SPECIAL_CREATED[i]
        else:
            created = lo + timedelta(
                seconds=rng.randrange(0, 2 * 365 * 86400), microseconds=rng.randrange(10**6)
            )
        released = None
        if rng.random() < 0.1:
            released = created + timedelta(days=rng.uniform(0, 400))
        leads.append(Lead(f"L{i}", f"u{rng.randrange(40)}", created, released))
        for _ in range(rng.choice((0, 0, 1, 2, 3, 5))):
            start = created + timedelta(
                days=rng.uniform(-20, 300), microseconds=rng.randrange(10**6)
            )
            end = None if rng.random() < 0.2 else start + timedelta(days=rng.uniform(0, 60))
            holds.append(Hold(f"L{i}", start, end))
    return leads, holds


@pytest.fixture(scope="module")
def database(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        yield url


def connect(url: str) -> psycopg.Connection[tuple[object, ...]]:
    u = sa.make_url(url)
    return psycopg.connect(
        host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True
    )


def load(
    conn: psycopg.Connection[tuple[object, ...]], leads: list[Lead], holds: list[Hold]
) -> None:
    conn.execute(SQL.read_text())
    conn.execute(SQL.read_text())  # idempotent
    conn.execute("TRUNCATE leads CASCADE")
    with conn.cursor() as cur:
        with cur.copy("COPY leads (id, user_id, created_at, released_at) FROM STDIN") as copy:
            for lead in leads:
                copy.write_row((lead.lead_id, lead.user_id, lead.created_at, lead.released_at))
        with cur.copy("COPY lead_holds (lead_id, start_at, end_at) FROM STDIN") as copy:
            for hold in holds:
                copy.write_row((hold.lead_id, hold.start_at, hold.end_at))


def sql_states(
    conn: psycopg.Connection[tuple[object, ...]], now: datetime, session_tz: str
) -> dict[str, tuple[object, ...]]:
    conn.execute(f"SET TIME ZONE '{session_tz}'")
    rows = conn.execute(
        "SELECT lead_id, state, hold_us, reminder_at, grace_at, expires_at, reminders_due "
        "FROM freshfoodz_lead_protection(%s)",
        (now,),
    ).fetchall()
    # Normalised to UTC: Python never finds aware datetimes of different zones equal when one
    # falls in a repeated (DST fold) hour of its zone.
    return {
        str(r[0]): tuple(v.astimezone(UTC) if isinstance(v, datetime) else v for v in r[1:])
        for r in rows
    }


def py_row(s: LeadState) -> tuple[object, ...]:
    hold_us = s.hold // timedelta(microseconds=1)
    return (s.state, hold_us, s.reminder_at, s.grace_at, s.expires_at, s.reminders_due)


async def series_values(
    tmp_path: Path, leads: list[Lead], holds: list[Hold], now: datetime
) -> dict[str, float]:
    store = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    try:
        result = await metrics.write_lead_protection_metrics(store, "default", leads, holds, now)
        assert result.ok, result.summary()
        ts = int(now.timestamp() * 1000)
        out: dict[str, float] = {}
        for name in ("lead_protection_state", "lead_reminder_due_total"):
            matcher = Matcher(MatchType.EQUAL, METRIC_NAME, name)
            for s in store.querier("default", ts, ts).select([matcher], ts, ts):
                key = s.labels.get("state") or s.labels.get("reminder")
                out[f"{name}/{key}"] = float(s.values[-1])
        return out
    finally:
        store.close()


@pytest.mark.parametrize("session_tz", ["UTC", "America/New_York"])
async def test_python_sql_and_series_agree(database: str, tmp_path: Path, session_tz: str) -> None:
    leads, holds = generate(seed=20260329, n=4000)
    with connect(database) as conn:
        load(conn, leads, holds)
        for now in NOWS:
            py = {s.lead_id: s for s in evaluate(leads, holds, now)}
            sql = sql_states(conn, now, session_tz)
            assert sql.keys() == py.keys()
            mismatches = [
                (lead_id, py_row(py[lead_id]), sql[lead_id])
                for lead_id in py
                if py_row(py[lead_id]) != sql[lead_id]
            ]
            assert not mismatches, mismatches[:5]
            counts = state_counts(py.values())
            assert len({c for c in counts.values() if c}) > 1  # the data set covers several states

            sql_counts = {
                r[0]: r[1]
                for r in conn.execute(
                    "SELECT state, COUNT(*) FROM freshfoodz_lead_protection(%s) GROUP BY state",
                    (now,),
                ).fetchall()
            }
            series = await series_values(tmp_path / now.strftime("%Y%m%d%H%M"), leads, holds, now)
            for state in STATES:
                assert series[f"lead_protection_state/{state}"] == sql_counts.get(state, 0)
                assert counts[state] == sql_counts.get(state, 0)
            sql_due = conn.execute(
                "SELECT COALESCE(SUM(reminders_due), 0) FROM freshfoodz_lead_protection(%s)", (now,)
            ).fetchone()
            assert sql_due is not None
            assert sum(series[f"lead_reminder_due_total/{k}"] for k in REMINDERS) == sql_due[0]


def test_view_uses_now(database: str) -> None:
    leads = [Lead("fresh", "u1", datetime.now(UTC) - timedelta(days=1))]
    with connect(database) as conn:
        load(conn, leads, [])
        rows = conn.execute("SELECT lead_id, state FROM v_lead_protection").fetchall()
        assert rows == [("fresh", "protected")]
        counts = {
            r[0]: r[1]
            for r in conn.execute("SELECT state, leads FROM v_lead_protection_state_counts")
        }
        assert counts == {
            "protected": 1,
            "reminder_due": 0,
            "grace": 0,
            "expired": 0,
            "released": 0,
        }
