"""The lead-protection job in a running server against a real PostgreSQL CRM: the series appear
in PromQL, equal to the shipped SQL function at the same instant, every due reminder is sent,
and a restart sends only the reminders that fell due meanwhile."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from signalroom.packs.freshfoodz.lead_protection import Lead
from tests.support.postgres import fresh_database
from tests.support.server import running_server
from tests.unit.packs.test_lead_protection_agreement import connect, generate, load

pytestmark = [pytest.mark.integration, pytest.mark.postgres, pytest.mark.slow]

REMINDER_LOG = "lead protection reminder"


@pytest.fixture
def crm(postgres_url: str) -> Iterator[str]:
    with fresh_database(postgres_url) as url:
        leads, holds = generate(seed=11, n=300)
        with connect(url) as conn:
            load(conn, leads, holds)
        yield url


def query(client: httpx.Client, expr: str) -> list[dict[str, Any]]:
    body = client.get("/api/v1/query", params={"query": expr}).json()
    assert body["status"] == "success", body
    result: list[dict[str, Any]] = body["data"]["result"]
    return result


def wait_for(predicate: Any, what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def settled(client: httpx.Client) -> dict[str, float] | None:
    """``{state: leads}`` at one job run once every due reminder is also sent, else None."""
    states = query(client, "lead_protection_state")
    due = query(client, "sum(lead_reminder_due_total)")
    sent = query(client, "sum(lead_reminder_sent_total)")
    if len(states) != 5 or not due or not sent or due[0]["value"][1] != sent[0]["value"][1]:
        return None
    return {r["metric"]["state"]: float(r["value"][1]) for r in states}


def test_series_from_the_crm_and_reminders_once(crm: str, tmp_path: Path) -> None:
    config = f"""
global: {{evaluation_interval: 1s}}
sql_sources:
  - {{name: crm, url: '{crm}', interval: 1s, postgres_builtin: true}}
packs: [freshfoodz]
"""
    with running_server(tmp_path, config) as server, server.client() as client:
        wait_for(lambda: settled(client), "the first lead-protection run")
        # the sample's own timestamp, so SQL is asked about the same instant
        stamp = query(client, "max(timestamp(lead_protection_state))")[0]["value"][1]
        at = datetime.fromtimestamp(float(stamp), UTC)
        states = {
            r["metric"]["state"]: float(r["value"][1])
            for r in query(client, "lead_protection_state")
        }
        due_series = float(query(client, "sum(lead_reminder_due_total)")[0]["value"][1])
        with connect(crm) as conn:
            rows = conn.execute(
                "SELECT state, count(*), sum(reminders_due) FROM freshfoodz_lead_protection(%s) "
                "GROUP BY state",
                (at,),
            ).fetchall()
        sql_states = {str(state): float(str(n)) for state, n, _ in rows}
        assert {k: v for k, v in states.items() if v} == sql_states
        assert due_series == sum(float(str(d)) for _, _, d in rows) > 0
        assert query(client, 'pg_up{source="crm"}')[0]["value"][1] == "1"
        server.stop()
        first_log = server.log()
    sent_first = first_log.count(REMINDER_LOG)
    assert sent_first == due_series  # every due reminder went out, each once

    # while signalroom is down, a lead reaches its reminder phase
    with connect(crm) as conn:
        created = datetime.now(UTC) - timedelta(days=190)
        new = Lead("late", "u1", created)
        conn.execute(
            "INSERT INTO leads (id, user_id, created_at) VALUES (%s, %s, %s)",
            (new.lead_id, new.user_id, new.created_at),
        )
    with running_server(tmp_path, config) as server, server.client() as client:
        wait_for(lambda: (s := settled(client)) and sum(s.values()) == 301, "the run after restart")
        server.stop()
        log = server.log()
    again = log.count(REMINDER_LOG)
    assert again == 1 and "lead late" in log  # only the new one; nothing repeated
