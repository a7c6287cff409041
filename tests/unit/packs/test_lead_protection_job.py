"""The scheduled lead-protection job: reminders sent exactly once across restarts and failures,
series written to the store, leads rebuilt from events."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalroom.model.labels import METRIC_NAME
from signalroom.packs.freshfoodz.job import (
    KV_NAMESPACE,
    LeadProtectionJob,
    Reminder,
    ReminderLedger,
    lead_protection_job,
    leads_from_events,
)
from signalroom.packs.freshfoodz.lead_protection import Hold, Lead
from signalroom.promql.storage import Matcher, MatchType
from signalroom.sqlsource import SqlSourceConfig
from signalroom.storage.state import StateStore
from signalroom.tsdb import TSDB, TSDBOptions

pytestmark = pytest.mark.unit

NOW = datetime(2026, 6, 1, 12, tzinfo=UTC)


class ListSource:
    def __init__(self, leads: list[Lead], holds: list[Hold]) -> None:
        self.leads, self.holds = leads, holds

    def load(self) -> tuple[list[Lead], list[Hold]]:
        return list(self.leads), list(self.holds)

    def close(self) -> None:
        pass


class Outbox:
    """A sender that records what it sent and can be told to fail."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.fail = False

    async def __call__(self, reminder: Reminder) -> None:
        if self.fail:
            raise ConnectionError("CRM mailer down")
        self.sent.append(reminder.key)


@pytest.fixture
def state(tmp_path: Path) -> Iterator[StateStore]:
    with StateStore(f"sqlite:///{tmp_path / 'state.db'}") as store:
        store.migrate()
        yield store


@pytest.fixture
def tsdb(tmp_path: Path) -> Iterator[TSDB]:
    db = TSDB(tmp_path / "tsdb", options=TSDBOptions()).open(background=False)
    yield db
    db.close()


def leads() -> list[Lead]:
    return [
        # 6 months + 60 days + 1 day ago: first and second reminder due (grace)
        Lead("a", "u1", NOW - timedelta(days=184 + 61)),
        # 6 months + 1 day ago: first reminder due
        Lead("b", "u1", NOW - timedelta(days=185)),
        # fresh: nothing due
        Lead("c", "u2", NOW - timedelta(days=10)),
        # released before its reminder: nothing due
        Lead("d", "u2", NOW - timedelta(days=200), released_at=NOW - timedelta(days=30)),
    ]


def job(state: StateStore, tsdb: TSDB, source: ListSource, send: Outbox) -> LeadProtectionJob:
    ledger = ReminderLedger(state.kv(KV_NAMESPACE))
    return LeadProtectionJob(
        source, ledger, tsdb, interval_s=1, send=send, lease=timedelta(minutes=1)
    )


def latest(tsdb: TSDB, name: str) -> dict[str, float]:
    out: dict[str, float] = {}
    for s in tsdb.querier("default", 0, 2**62).select(
        [Matcher(MatchType.EQUAL, METRIC_NAME, name)], 0, 2**62
    ):
        key = s.labels.get("state") or s.labels.get("reminder") or ""
        out[key] = float(s.values[-1])
    return out


async def test_due_reminders_are_sent_once_across_runs_and_restarts(
    state: StateStore, tsdb: TSDB
) -> None:
    source, outbox = ListSource(leads(), []), Outbox()
    first = await job(state, tsdb, source, outbox).run_once(NOW)
    assert sorted(first.sent_now) == ["a/first", "a/second", "b/first"]
    assert first.due == 3 and first.leads == 4
    # the same run again, and a "restarted" job on the same state store: nothing new
    assert (await job(state, tsdb, source, outbox).run_once(NOW)).sent_now == []
    again = await job(state, tsdb, source, outbox).run_once(NOW + timedelta(seconds=5))
    assert again.sent_now == []
    assert sorted(outbox.sent) == ["a/first", "a/second", "b/first"]
    # time passes: a's final and b's second reminder fall due and go out, once
    later = NOW + timedelta(days=60)
    report = await job(state, tsdb, source, outbox).run_once(later)
    assert sorted(report.sent_now) == ["a/final", "b/second"]

    assert latest(tsdb, "lead_reminder_due_total") == latest(tsdb, "lead_reminder_sent_total")
    states = latest(tsdb, "lead_protection_state")
    assert states == {
        "protected": 1.0,
        "reminder_due": 0.0,
        "grace": 1.0,
        "expired": 1.0,
        "released": 1.0,
    }


async def test_a_failed_send_is_retried_after_the_lease_never_missed(
    state: StateStore, tsdb: TSDB
) -> None:
    source, outbox = ListSource([leads()[1]], []), Outbox()
    outbox.fail = True
    report = await job(state, tsdb, source, outbox).run_once(NOW)
    assert report.failed == ["b/first"] and report.sent_now == []
    assert latest(tsdb, "lead_reminder_sent_total")["first"] == 0
    outbox.fail = False
    # within the lease the claim is respected (another run could be sending it) ...
    soon = await job(state, tsdb, source, outbox).run_once(NOW + timedelta(seconds=30))
    assert soon.sent_now == []
    # ... after it, the next run takes the claim over and sends
    report = await job(state, tsdb, source, outbox).run_once(NOW + timedelta(minutes=2))
    assert report.sent_now == ["b/first"] and outbox.sent == ["b/first"]
    assert latest(tsdb, "lead_reminder_sent_total")["first"] == 1


def test_only_one_claim_wins(state: StateStore) -> None:
    ledger = ReminderLedger(state.kv(KV_NAMESPACE))
    reminder = Reminder("a", "u1", "first", NOW)
    assert ledger.claim(reminder, NOW) == 1
    assert ledger.claim(reminder, NOW) is None  # a second server racing for it
    assert ledger.claim(reminder, NOW, expected_version=1) == 2  # a takeover needs the version
    assert ledger.claim(reminder, NOW, expected_version=1) is None


def test_leads_and_holds_from_events() -> None:
    t0 = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        ("lead_created", "u1", t0, {"lead_id": "l1"}),
        ("lead_created", "u9", t0, {"lead_id": "l2", "created_at": "2025-06-01T10:00:00Z"}),
        ("lead_created", "u1", t0 + timedelta(days=1), {"lead_id": "l1"}),  # repeat: ignored
        ("lead_hold_started", "u1", t0 + timedelta(days=2), {"lead_id": "l1", "hold_id": "h"}),
        ("lead_hold_ended", "u1", t0 + timedelta(days=5), {"lead_id": "l1", "hold_id": "h"}),
        ("lead_hold_started", "u1", t0 + timedelta(days=6), {"lead_id": "l1", "hold_id": "o"}),
        ("lead_hold_ended", "u1", t0 + timedelta(days=7), {"lead_id": "l1", "hold_id": "x"}),
        ("lead_released", "u9", t0 + timedelta(days=3), {"lead_id": "l2"}),
        ("lead_hold_started", "u1", t0, {"lead_id": "unknown", "hold_id": "h"}),
    ]
    got_leads, got_holds = leads_from_events(rows)
    assert got_leads == [
        Lead("l1", "u1", t0),
        Lead("l2", "u9", datetime(2025, 6, 1, 10, tzinfo=UTC), t0 + timedelta(days=3)),
    ]
    assert got_holds == [
        Hold("l1", t0 + timedelta(days=2), t0 + timedelta(days=5)),
        Hold("l1", t0 + timedelta(days=6), None),  # still open: counts up to now
    ]


def test_configuration_picks_the_crm_or_the_events(state: StateStore, tsdb: TSDB) -> None:
    crm = SqlSourceConfig.model_validate(
        {"name": "crm", "url": "sqlite://", "interval": "7s", "postgres_builtin": True}
    )
    from_crm = lead_protection_job(
        None, sql_sources=[crm], tsdb=tsdb, state=state, events=lambda: None,
        evaluation_interval_s=5,
    )  # fmt: skip
    assert type(from_crm.source).__name__ == "CrmSource" and from_crm.interval_s == 7
    from_events = lead_protection_job(
        {"lead_protection": {"sql_source": "other", "interval": "30s"}},
        sql_sources=[crm], tsdb=tsdb, state=state, events=lambda: None,
        evaluation_interval_s=5,
    )  # fmt: skip
    assert type(from_events.source).__name__ == "EventsSource"
    assert from_events.interval_s == 30
    assert from_events.source.load() == ([], [])  # no events service yet: no leads
    with pytest.raises(ValueError, match="lead_protection"):
        lead_protection_job(
            {"lead_protection": {"dsn": "x"}}, sql_sources=[], tsdb=tsdb, state=state,
            events=lambda: None, evaluation_interval_s=5,
        )  # fmt: skip


async def test_the_webhook_gets_json_with_an_idempotency_key() -> None:
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from signalroom.packs.freshfoodz.job import WebhookSender

    got: list[tuple[str, dict[str, str]]] = []

    class Receiver(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            got.append((self.headers["Idempotency-Key"], body))
            self.send_response(500 if body["lead_id"] == "broken" else 204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    send = WebhookSender(f"http://127.0.0.1:{server.server_port}/reminders")
    try:
        await send(Reminder("a", "u1", "second", NOW))
        with pytest.raises(Exception, match="500"):
            await send(Reminder("broken", "u1", "first", NOW))
    finally:
        await send.aclose()
        server.shutdown()
    assert got[0] == (
        "a/second",
        {"lead_id": "a", "user_id": "u1", "reminder": "second", "due_at": NOW.isoformat()},
    )
