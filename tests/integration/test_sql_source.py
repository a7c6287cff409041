"""SQL sources against a real PostgreSQL: configured queries become series, pg built-ins appear,
a broken query sets sql_source_up to 0 without stopping the others."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from signalroom.model.labels import METRIC_NAME
from signalroom.promql.storage import Matcher, MatchType
from signalroom.sqlsource import SqlSourceConfig, SqlSourceService
from signalroom.tsdb import TSDB, TSDBOptions
from tests.support.postgres import fresh_database

pytestmark = pytest.mark.integration


@pytest.fixture
def crm_url(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        u = sa.make_url(url)
        with psycopg.connect(
            host=u.host, port=u.port, user=u.username, dbname=u.database, autocommit=True
        ) as conn:
            conn.execute(
                "CREATE TABLE leads (id int, user_id text, team text, open bool);"
                "INSERT INTO leads VALUES (1,'7','north',true),(2,'7','north',true),"
                "(3,'9','south',true),(4,'9','south',false);"
                "CREATE TABLE backups (data_class text, finished_at timestamptz, ok bool);"
                "INSERT INTO backups VALUES ('lead_protection','2026-01-01T10:00:00Z',true),"
                "('lead_protection','2026-01-01T11:00:00Z',false),"
                "('archive','2025-12-31T00:00:00Z',true);"
            )
        yield url


@pytest.fixture
def store(tmp_path: Path) -> Iterator[TSDB]:
    db = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    yield db
    db.close()


def latest(store: TSDB, name: str) -> dict[frozenset[tuple[str, str]], float]:
    now = 2**62
    out: dict[frozenset[tuple[str, str]], float] = {}
    for s in store.querier("default", 0, now).select(
        [Matcher(MatchType.EQUAL, METRIC_NAME, name)], 0, now
    ):
        labels = frozenset((k, v) for k, v in s.labels.items() if k != METRIC_NAME)
        out[labels] = float(s.values[-1])
    return out


def config(url: str, **extra: object) -> SqlSourceConfig:
    return SqlSourceConfig.model_validate(
        {
            "name": "crm",
            "url": url,
            "interval": "1s",
            "postgres_builtin": True,
            "queries": [
                {
                    "metric": "crm_leads_open",
                    "help": "Open leads",
                    "sql": "SELECT user_id, team, count(*) FILTER (WHERE open) AS n, "
                    "count(*) AS total FROM leads GROUP BY 1, 2",
                    "values": ["n", "total"],
                    "value_label": "kind",
                    "labels": ["user_id", "team"],
                },
                {
                    "metric": "backup_last_success_timestamp_seconds",
                    "sql": "SELECT data_class, max(finished_at) AS t FROM backups "
                    "WHERE ok GROUP BY 1",
                    "values": ["t"],
                    "labels": ["data_class"],
                },
            ],
            **extra,
        }
    )


def test_queries_become_series_and_pg_builtins_appear(crm_url: str, store: TSDB) -> None:
    service = SqlSourceService([config(crm_url)], store)

    async def run() -> None:
        result = await service.run_once(service.runners[0])
        assert result.up, result.errors
        await service.stop()

    asyncio.run(run())
    leads = latest(store, "crm_leads_open")
    base = {("source", "crm")}
    assert leads[frozenset(base | {("user_id", "7"), ("team", "north"), ("kind", "n")})] == 2
    assert leads[frozenset(base | {("user_id", "9"), ("team", "south"), ("kind", "n")})] == 1
    assert leads[frozenset(base | {("user_id", "9"), ("team", "south"), ("kind", "total")})] == 2
    assert len(leads) == 4
    backups = latest(store, "backup_last_success_timestamp_seconds")
    assert backups[frozenset(base | {("data_class", "lead_protection")})] == 1767261600.0
    assert backups[frozenset(base | {("data_class", "archive")})] == 1767139200.0
    assert latest(store, "pg_up") == {frozenset(base): 1.0}
    activity = latest(store, "pg_stat_activity_count")
    database = sa.make_url(crm_url).database or ""
    # Our own connection is the active one while it counts.
    assert activity[frozenset(base | {("datname", database), ("state", "active")})] >= 1
    assert frozenset(base | {("datname", database), ("state", "idle in transaction")}) in activity
    # The test cluster does not preload pg_stat_statements: reported, not an error.
    assert latest(store, "pg_stat_statements_available") == {frozenset(base): 0.0}
    assert latest(store, "sql_source_up") == {frozenset(base): 1.0}
    assert store.metadata("crm_leads_open")["crm_leads_open"][0]["help"] == "Open leads"


def test_broken_query_sets_up_zero_and_the_others_still_run(crm_url: str, store: TSDB) -> None:
    cfg = config(crm_url)
    broken = cfg.queries[0].model_copy(update={"metric": "crm_broken", "sql": "SELECT * FROM nope"})
    cfg = cfg.model_copy(update={"queries": [broken, *cfg.queries]})
    service = SqlSourceService([cfg], store)

    async def run() -> None:
        # Twice through the scheduled loop: the error counter counts runs.
        await service.start()
        for _ in range(100):
            await asyncio.sleep(0.1)
            errors = latest(store, "sql_source_errors_total")
            if errors.get(frozenset({("source", "crm"), ("query", "crm_broken")}), 0) >= 2:
                break
        await service.stop()

    asyncio.run(run())
    base = {("source", "crm")}
    assert latest(store, "sql_source_up") == {frozenset(base): 0.0}
    assert (
        latest(store, "sql_source_errors_total")[frozenset(base | {("query", "crm_broken")})] >= 2
    )
    query_up = latest(store, "sql_source_query_up")
    assert query_up[frozenset(base | {("query", "crm_broken")})] == 0.0
    assert query_up[frozenset(base | {("query", "crm_leads_open")})] == 1.0
    assert len(latest(store, "crm_leads_open")) == 4
    assert latest(store, "crm_broken") == {}
    assert latest(store, "pg_up") == {frozenset(base): 1.0}
    assert "nope" in service.last_results["crm"].errors["crm_broken"]


def test_unreachable_database_is_reported_not_raised(tmp_path: Path, store: TSDB) -> None:
    secret = tmp_path / "url"
    secret.write_text("postgresql+psycopg://postgres@127.0.0.1:1/none\n")
    cfg = SqlSourceConfig.model_validate(
        {"name": "down", "url_file": str(secret), "timeout": "2s", "postgres_builtin": True}
    )
    service = SqlSourceService([cfg], store)
    result = asyncio.run(service.run_once(service.runners[0]))
    assert not result.connected and "connection" in result.errors
    assert latest(store, "pg_up") == {frozenset({("source", "down")}): 0.0}
    assert latest(store, "sql_source_up") == {frozenset({("source", "down")}): 0.0}
