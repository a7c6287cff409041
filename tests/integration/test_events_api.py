"""The event APIs on the real application: PostHog capture (the real posthog client over a
socket), /api/sr/events, the dead-letter queue and its replay, PII hashing, idempotency,
GDPR erase, analytics endpoints, read-only SQL, and event metrics in the TSDB."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from signalroom.app import Signalroom
from signalroom.config import parse_config
from signalroom.events.service import EventService
from signalroom.web.server import create_http_app

pytestmark = pytest.mark.integration

CONFIG = (
    "server: {self_scrape: false}\nstorage: {wal: {fsync: never}}\n"
    "events: {queue: {batch_interval: 50ms}}\n"
)


@pytest.fixture
def env(tmp_path: Path) -> Iterator[tuple[TestClient, EventService]]:
    runtime = Signalroom(parse_config(CONFIG), data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as client:
        assert runtime.events is not None
        yield client, runtime.events


def drain(client: TestClient, service: EventService) -> None:
    client.portal.call(service.drain)  # type: ignore[union-attr]


def iso(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


NOW = datetime.now(UTC).replace(microsecond=0)


def sr_event(name: str, user: str, at: datetime, **props: Any) -> dict[str, Any]:
    return {
        "event_name": name,
        "event_id": str(uuid.uuid4()),
        "timestamp": iso(at),
        "user_id": user,
        "session_id": f"s-{user}",
        "properties": props,
    }


def ok(response: Any) -> Any:
    assert response.status_code == 200, response.text
    return response.json()["data"]


def test_seed_events_are_stored_invalid_and_unknown_go_to_the_dlq(env: Any) -> None:
    client, service = env
    events = [
        sr_event(
            "purchase_completed",
            "u1",
            NOW,
            order_id="o1",
            total_value=99.99,
            items=3,
            payment_method="stripe_card",
        ),
        sr_event("purchase_completed", "u2", NOW, order_id="o2", total_value=-5),
        sr_event("no_such_event", "u3", NOW),
        {"event_id": "x", "user_id": "u4"},
    ]
    body = client.post("/api/sr/events", json=events).json()
    assert body["accepted"] == 3 and body["dead_lettered"] == 1
    assert "event_name" in body["errors"][0]["reason"]
    drain(client, service)
    rows = ok(
        client.post(
            "/api/sr/analytics/sql",
            json={"query": "SELECT event, user_id, properties FROM events ORDER BY user_id"},
        )
    )["rows"]
    assert [r[:2] for r in rows] == [["purchase_completed", "u1"]]
    dlq = ok(client.get("/api/sr/events/dlq"))
    assert dlq["total"] == 3
    reasons = sorted(item["reason"] for item in dlq["items"])
    assert any(
        r.startswith("invalid: purchase_completed v1: properties.total_value") for r in reasons
    )
    assert any(r.startswith("unknown event") for r in reasons)
    assert any("event_name" in r for r in reasons)


def test_dlq_replay_after_registering_a_schema(env: Any) -> None:
    client, service = env
    client.post("/api/sr/events", json=sr_event("trial_started", "u1", NOW, plan="pro"))
    drain(client, service)
    assert ok(client.get("/api/sr/events/dlq"))["total"] == 1
    schema = {
        "x-event": "trial_started",
        "x-version": 1,
        "type": "object",
        "properties": {"plan": {"type": "string"}},
        "required": ["plan"],
    }
    ok(client.post("/api/sr/events/schemas", json=schema))
    assert client.post("/api/sr/events/schemas", json={"x-event": "bad"}).status_code == 400
    assert ok(client.post("/api/sr/events/dlq/replay", json={}))["replayed"] == 1
    drain(client, service)
    assert ok(client.get("/api/sr/events/dlq"))["total"] == 0
    rows = ok(client.post("/api/sr/analytics/sql", json={"query": "SELECT event FROM events"}))
    assert rows["rows"] == [["trial_started"]]


def test_pii_is_hashed_or_dropped_and_duplicates_are_stored_once(env: Any) -> None:
    client, service = env
    first = sr_event("user_signup", "u1", NOW, email="ann@example.com", source="paid")
    second = sr_event(
        "customer_support_ticket",
        "u1",
        NOW,
        ticket_id="t1",
        message="call me at +49 170 1234567",
        email="ann@example.com",
    )
    client.post("/api/sr/events", json=[first, second])
    client.post("/api/sr/events", json=[first])  # a client retry
    drain(client, service)
    rows = ok(
        client.post(
            "/api/sr/analytics/sql",
            json={"query": "SELECT event, properties FROM events ORDER BY event"},
        )
    )["rows"]
    assert len(rows) == 2
    text = " ".join(r[1] for r in rows)
    assert "ann@example.com" not in text and "1234567" not in text
    assert text.count("sha256:") == 2  # the same email hashes to the same value
    import json as _json

    emails = {_json.loads(r[1])["email"] for r in rows}
    assert len(emails) == 1


def test_gdpr_delete_removes_a_users_events(env: Any) -> None:
    client, service = env
    client.post(
        "/api/sr/events",
        json=[
            sr_event("product_viewed", "gone", NOW, product_id="p1"),
            sr_event("product_viewed", "kept", NOW, product_id="p1"),
            sr_event("no_such_event", "gone", NOW),
        ],
    )
    drain(client, service)
    client.portal.call(asyncio.to_thread, service.store.table.flush)  # type: ignore[union-attr]
    client.post("/api/sr/events", json=[sr_event("product_viewed", "gone", NOW, product_id="p2")])
    result = ok(client.delete("/api/sr/events/users/gone"))
    assert result == {"events_deleted": 2, "dead_letters_deleted": 1}
    rows = ok(client.post("/api/sr/analytics/sql", json={"query": "SELECT user_id FROM events"}))
    assert rows["rows"] == [["kept"]]


def test_sql_endpoint_is_read_only_and_limited(env: Any) -> None:
    client, service = env
    client.post(
        "/api/sr/events",
        json=[sr_event("product_viewed", f"u{i}", NOW, product_id="p") for i in range(30)],
    )
    drain(client, service)
    data = ok(
        client.post(
            "/api/sr/analytics/sql", json={"query": "SELECT user_id FROM events", "max_rows": 10}
        )
    )
    assert len(data["rows"]) == 10 and data["truncated"] is True
    for query in [
        "CREATE TABLE x AS SELECT 1",
        "SELECT * FROM read_text('/etc/passwd')",
        "SELECT 1; SELECT 2",
        "COPY (SELECT 1) TO '/tmp/x.csv'",
    ]:
        response = client.post("/api/sr/analytics/sql", json={"query": query})
        assert response.status_code == 400, (query, response.text)


def test_analytics_endpoints(env: Any) -> None:
    client, service = env
    day = NOW - timedelta(days=2)
    events = []
    for i in range(10):
        user = f"u{i}"
        events.append(sr_event("product_viewed", user, day, product_id=f"p{i % 3}"))
        if i < 6:
            events.append(
                sr_event(
                    "add_to_cart",
                    user,
                    day + timedelta(minutes=1),
                    product_id=f"p{i % 3}",
                    quantity=1,
                )
            )
        if i < 3:
            events.append(
                sr_event(
                    "purchase_completed",
                    user,
                    day + timedelta(minutes=5),
                    order_id=f"o{i}",
                    total_value=10.0 * (i + 1),
                    payment_method="card" if i else "paypal",
                    product_ids=[f"p{i % 3}"],
                )
            )
    # u0 comes back the next day
    events.append(sr_event("product_viewed", "u0", day + timedelta(days=1), product_id="p0"))
    client.post("/api/sr/events", json=events)
    drain(client, service)
    span = {"date_from": iso(day - timedelta(days=1)), "date_to": iso(NOW + timedelta(hours=1))}

    funnel = ok(
        client.post(
            "/api/sr/analytics/funnels",
            json={"steps": ["product_viewed", "add_to_cart", "purchase_completed"], **span},
        )
    )
    assert [s["count"] for s in funnel["steps"]] == [10, 6, 3]
    assert funnel["steps"][1]["dropped_off"] == 4
    assert funnel["steps"][2]["average_time_to_convert_s"] == pytest.approx(240)
    assert funnel["conversion_rate"] == pytest.approx(0.3)
    for order in ("strict", "unordered"):
        other = ok(
            client.post(
                "/api/sr/analytics/funnels",
                json={
                    "order": order,
                    "steps": ["product_viewed", "add_to_cart", "purchase_completed"],
                    **span,
                },
            )
        )
        assert [s["count"] for s in other["steps"]] == [10, 6, 3], order
    short = ok(
        client.post(
            "/api/sr/analytics/funnels",
            json={
                "window_seconds": 120,
                "steps": ["product_viewed", "add_to_cart", "purchase_completed"],
                **span,
            },
        )
    )
    assert [s["count"] for s in short["steps"]] == [10, 6, 0]
    broken = ok(
        client.post(
            "/api/sr/analytics/funnels",
            json={"breakdown": "product_id", "steps": ["product_viewed", "add_to_cart"], **span},
        )
    )
    assert {b["value"]: b["steps"][0]["count"] for b in broken["breakdown"]} == {
        "p0": 4,
        "p1": 3,
        "p2": 3,
    }

    trends = ok(
        client.post(
            "/api/sr/analytics/trends",
            json={
                "series": [
                    {"event": "product_viewed"},
                    {"event": "purchase_completed", "math": "sum", "property": "total_value"},
                ],
                "interval": "day",
                **span,
            },
        )
    )
    assert trends["result"][0]["count"] == 11 and trends["result"][1]["count"] == 60
    by_method = ok(
        client.post(
            "/api/sr/analytics/trends",
            json={"series": ["purchase_completed"], "breakdown": "payment_method", **span},
        )
    )
    assert {r["breakdown_value"]: r["count"] for r in by_method["result"]} == {
        "card": 2,
        "paypal": 1,
    }

    revenue = ok(client.get("/api/sr/analytics/revenue", params=span))
    assert revenue["total_revenue"] == 60 and revenue["orders"] == 3
    assert revenue["average_order_value"] == 20
    assert {g["value"]: g["revenue"] for g in revenue["groups"]} == {"card": 50, "paypal": 10}
    assert revenue["conversion_rate"] == pytest.approx(0.3)

    top = ok(client.get("/api/sr/analytics/top-products", params=span))
    assert top["by_views"][0] == {"product": "p0", "views": 5, "viewers": 4}
    assert top["by_revenue"][0]["product"] == "p2" and top["by_revenue"][0]["revenue"] == 30

    active = ok(client.get("/api/sr/analytics/active-users", params=span))
    days = active["labels"]
    assert active["dau"][days.index(iso(day.replace(hour=0, minute=0, second=0)))] == 10
    assert max(active["wau"]) == 10

    retention = ok(
        client.post(
            "/api/sr/analytics/retention",
            json={"target_event": "product_viewed", "period": "day", "periods": 3, **span},
        )
    )
    first = retention["result"][0]
    assert first["size"] == 10 and first["values"][1] == 1

    sticky = ok(
        client.get("/api/sr/analytics/stickiness", params={"event": "product_viewed", **span})
    )
    assert sticky["data"][:2] == [9, 1]

    bad = client.post("/api/sr/analytics/funnels", json={"steps": ["a"]})
    assert bad.status_code == 400


def test_event_metrics_reach_the_tsdb(env: Any) -> None:
    client, service = env
    client.post(
        "/api/sr/events",
        json=[
            sr_event(
                "sample_request",
                "sales1",
                NOW,
                product_type="cheese",
                urgency="high",
                outcome="success",
            ),
            sr_event(
                "sample_request",
                "sales1",
                NOW,
                product_type="cheese",
                urgency="high",
                outcome="failure",
            ),
            sr_event(
                "event_catering_responded",
                "sales2",
                NOW,
                request_id="r1",
                event_type="wedding",
                capacity_tier="large",
                response_seconds=900,
            ),
        ],
    )
    drain(client, service)
    series = dict((str(lb), v) for lb, v in service.event_metrics.series("default"))
    assert series['sample_request_total{product_type="cheese", urgency="high"}'] == 2
    assert series['sample_request_success_total{product_type="cheese", urgency="high"}'] == 1
    assert (
        series[
            'event_catering_sla_seconds_bucket{capacity_tier="large", '
            'event_type="wedding", le="1200"}'
        ]
        == 1
    )
    written = client.portal.call(service.write_event_metrics)  # type: ignore[union-attr]
    assert written >= 3


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, EventService, Any]]:
    import httpx
    import uvicorn

    from tests.support.server import free_port

    runtime = Signalroom(parse_config(CONFIG), data_dir=tmp_path)
    app = create_http_app(runtime)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    ready = threading.Event()
    stop = threading.Event()
    holder: dict[str, Any] = {}

    async def main() -> None:
        task = asyncio.create_task(server.serve())
        while not server.started:
            await asyncio.sleep(0.02)
        holder["service"], holder["loop"] = runtime.events, asyncio.get_running_loop()
        ready.set()
        while not stop.is_set():
            await asyncio.sleep(0.05)
        server.should_exit = True
        await task

    thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
    thread.start()
    assert ready.wait(30), "server did not start"
    url = f"http://127.0.0.1:{port}"
    with httpx.Client(base_url=url, timeout=10) as reader:
        try:
            yield url, holder["service"], (reader, holder["loop"])
        finally:
            stop.set()
            thread.join(30)


def test_posthog_python_client_capture_and_batch(served: Any) -> None:
    from posthog import Posthog

    url, service, (reader, loop) = served
    client = Posthog(
        "phc_test_key",
        host=url,
        sync_mode=False,
        gzip=True,
        flush_at=50,
        flush_interval=0.1,
        disable_geoip=True,
        enable_exception_autocapture=False,
    )
    stamp = datetime.now(UTC) - timedelta(hours=1)
    for i in range(20):
        client.capture(
            "product_viewed",
            distinct_id=f"user-{i % 4}",
            properties={"product_id": f"p{i % 5}", "price": 9.5},
            timestamp=stamp,
        )
    client.capture("$pageview", distinct_id="user-0", properties={"$current_url": "/"})
    client.capture(
        "purchase_completed",
        distinct_id="user-1",
        properties={"order_id": "o1", "total_value": 19.0},
    )
    client.flush()
    client.shutdown()
    asyncio.run_coroutine_threadsafe(service.drain(), loop).result(30)
    data = reader.post(
        "/api/sr/analytics/sql",
        json={
            "query": "SELECT event, count(*), count(DISTINCT user_id), min(timestamp) FROM events "
            "GROUP BY event ORDER BY event"
        },
    ).json()["data"]
    counts = {r[0]: (r[1], r[2]) for r in data["rows"]}
    assert counts == {"$pageview": (1, 1), "product_viewed": (20, 4), "purchase_completed": (1, 1)}
    # clock skew correction keeps the client's timestamp (sent_at is the client's now too)
    first = datetime.fromisoformat(next(r for r in data["rows"] if r[0] == "product_viewed")[3])
    assert abs(first.replace(tzinfo=UTC) - stamp) < timedelta(seconds=30)
    assert reader.post("/decide/?v=3", json={}).json()["featureFlags"] == {}


def test_capture_limits_and_bad_bodies(env: Any) -> None:
    client, service = env
    assert client.post("/batch/", content=b"{not json").status_code == 400
    assert client.post("/capture/", content=b"\x1f\x8bxx").status_code == 400
    big = b'{"batch": [' + b'{"event": "x", "distinct_id": "u"},' * 1_000_000 + b"{}]}"
    assert client.post("/batch/", content=big).status_code == 413
    sent = datetime.now(UTC) + timedelta(hours=2)  # the client clock runs 2h ahead
    body = {
        "api_key": "k",
        "sent_at": iso(sent),
        "batch": [
            {
                "event": "$pageview",
                "distinct_id": "u",
                "timestamp": iso(sent - timedelta(minutes=10)),
                "uuid": str(uuid.uuid4()),
            }
        ],
    }
    assert client.post("/batch/", json=body).json() == {"status": 1}
    drain(client, service)
    rows = ok(client.post("/api/sr/analytics/sql", json={"query": "SELECT timestamp FROM events"}))
    stored = datetime.fromisoformat(rows["rows"][0][0]).replace(tzinfo=UTC)
    assert abs(stored - (datetime.now(UTC) - timedelta(minutes=10))) < timedelta(seconds=30)


def test_batch_bodies_read_with_or_without_content_length_and_nan(env: Any) -> None:
    client, service = env
    events = [
        {"event": "$pageview", "distinct_id": f"u{i}", "uuid": f"id-{i}", "properties": {"n": i}}
        for i in range(3)
    ]
    chunks = iter([b'{"batch": ', json.dumps(events[:2]).encode(), b"}"])  # streamed
    answer = client.post("/batch/", content=chunks)
    assert (answer.status_code, answer.json()) == (200, {"status": 1})
    assert answer.headers["content-type"] == "application/json"
    # NaN is not JSON, but Python's parser took it before orjson: still accepted
    nan = b'{"batch": [{"event": "$pageview", "distinct_id": "u2", "uuid": "id-2",'
    nan += b' "properties": {"n": NaN}}]}'
    assert client.post("/batch/", content=nan).json() == {"status": 1}
    drain(client, service)
    query = {"query": "SELECT event_id, properties FROM events ORDER BY event_id"}
    rows = ok(client.post("/api/sr/analytics/sql", json=query))["rows"]
    assert [r[0] for r in rows] == ["id-0", "id-1", "id-2"]
    assert [json.loads(r[1]) for r in rows] == [{"n": 0}, {"n": 1}, {"n": None}]
