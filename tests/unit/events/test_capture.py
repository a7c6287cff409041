"""Capture bodies into capture records: PostHog's clock-skew correction (``sent_at`` and
``offset``), envelope errors kept for the dead-letter queue, and body decoding."""

from __future__ import annotations

import base64
import gzip
import json

import pytest

from signalroom.ingest.posthog import (
    CaptureError,
    decode_capture_body,
    parse_posthog,
    parse_sr_events,
    parse_timestamp_ns,
)

pytestmark = pytest.mark.unit

S = 10**9
NOW = parse_timestamp_ns("2024-05-01T12:00:00Z")


def test_timestamps_parse_iso_and_epoch_seconds_or_millis() -> None:
    assert parse_timestamp_ns("2024-05-01T12:00:00Z") == 1_714_564_800 * S
    assert parse_timestamp_ns("2024-05-01T14:00:00+02:00") == 1_714_564_800 * S
    assert parse_timestamp_ns("2024-05-01T12:00:00") == 1_714_564_800 * S  # no zone: UTC
    assert parse_timestamp_ns(1_714_564_800) == 1_714_564_800 * S
    assert parse_timestamp_ns(1_714_564_800_500) == 1_714_564_800 * S + 500_000_000
    with pytest.raises(ValueError):
        parse_timestamp_ns(True)
    with pytest.raises(ValueError):
        parse_timestamp_ns("yesterday")


def test_sent_at_shifts_the_timestamp_by_the_client_clock_error() -> None:
    # the client's clock is 1 h behind: it says it sent at 11:00 an event from 10:59:30
    body = {
        "api_key": "phc_x",
        "sent_at": "2024-05-01T11:00:00Z",
        "batch": [
            {"event": "a", "distinct_id": "u", "timestamp": "2024-05-01T10:59:30Z"},
            {"event": "b", "distinct_id": "u", "timestamp": "2024-05-01T11:00:00Z"},
        ],
    }
    batch = parse_posthog(body, now_ns=NOW)
    assert batch.api_key == "phc_x"
    assert [r["ts"] for r in batch.records] == [NOW - 30 * S, NOW]


def test_offset_is_milliseconds_before_the_server_received_it() -> None:
    batch = parse_posthog(
        {"batch": [{"event": "a", "distinct_id": "u", "offset": 1500}]}, now_ns=NOW
    )
    assert batch.records[0]["ts"] == NOW - 1_500_000_000


def test_timestamp_without_sent_at_is_taken_as_is() -> None:
    batch = parse_posthog(
        {"event": "a", "distinct_id": "u", "timestamp": "2024-04-30T00:00:00Z"}, now_ns=NOW
    )
    assert batch.records[0]["ts"] == parse_timestamp_ns("2024-04-30T00:00:00Z")


def test_no_timestamp_and_no_offset_means_now() -> None:
    assert parse_posthog({"event": "a", "distinct_id": "u"}, now_ns=NOW).records[0]["ts"] == NOW


def test_historical_migration_is_not_corrected() -> None:
    body = {
        "historical_migration": True,
        "sent_at": "2024-05-01T11:00:00Z",
        "batch": [{"event": "a", "distinct_id": "u", "timestamp": "2023-01-01T00:00:00Z"}],
    }
    batch = parse_posthog(body, now_ns=NOW)
    assert batch.records[0]["ts"] == parse_timestamp_ns("2023-01-01T00:00:00Z")


def test_event_level_sent_at_is_used_when_the_envelope_has_none() -> None:
    body = [
        {
            "event": "a",
            "distinct_id": "u",
            "timestamp": "2024-05-01T08:00:00Z",
            "sent_at": "2024-05-01T08:00:10Z",
        }
    ]
    assert parse_posthog(body, now_ns=NOW).records[0]["ts"] == NOW - 10 * S


def test_sr_events_apply_sent_at_too() -> None:
    body = {
        "sent_at": "2024-05-01T00:00:00Z",
        "events": [
            {
                "event_name": "lead_created",
                "event_id": "e1",
                "user_id": "u1",
                "timestamp": "2024-04-30T23:59:00Z",
                "session_id": "s1",
                "properties": {"$schema_version": 1, "lead_id": "L1"},
            }
        ],
    }
    (record,) = parse_sr_events(body, now_ns=NOW).records
    assert record["ts"] == NOW - 60 * S
    assert (record["event"], record["id"], record["user"], record["session"], record["v"]) == (
        "lead_created",
        "e1",
        "u1",
        "s1",
        1,
    )


def test_posthog_record_fields() -> None:
    (record,) = parse_posthog(
        {
            "event": "$pageview",
            "uuid": "0190-abc",
            "properties": {"distinct_id": "u7", "$session_id": "s9", "path": "/"},
        },
        now_ns=NOW,
    ).records
    assert record == {
        "event": "$pageview",
        "id": "0190-abc",
        "ts": NOW,
        "user": "u7",
        "session": "s9",
        "props": {"distinct_id": "u7", "$session_id": "s9", "path": "/"},
        "v": None,
    }


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        ({"event": "a", "distinct_id": "u", "timestamp": "soon"}, "timestamp 'soon' is not a date"),
        ({"event": "a"}, "names no user"),
        ({"distinct_id": "u"}, "event must be a non-empty string"),
        ({"event": "a", "distinct_id": "u", "properties": [1]}, "properties must be a JSON"),
        ({"event": "a", "distinct_id": "u", "uuid": 5}, "uuid must be a string"),
        ("text", "an event must be a JSON object"),
    ],
)
def test_unusable_envelopes_become_error_records(event: object, reason: str) -> None:
    batch = parse_posthog({"batch": [event, {"event": "ok", "distinct_id": "u"}]}, now_ns=NOW)
    bad, good = batch.records
    assert reason in bad["error"]
    assert bad["raw"] == event
    assert "error" not in good
    assert batch.errors == 1


def test_unreadable_envelopes_are_refused() -> None:
    with pytest.raises(CaptureError, match="sent_at"):
        parse_posthog({"sent_at": "nope", "batch": []}, now_ns=NOW)
    with pytest.raises(CaptureError, match="'batch' must be a list"):
        parse_posthog({"batch": {}}, now_ns=NOW)


def test_bodies_decode_gzip_base64_and_forms() -> None:
    payload = {"event": "a", "distinct_id": "u"}
    raw = json.dumps(payload).encode()
    assert decode_capture_body(gzip.compress(raw), compression="gzip-js") == payload
    assert decode_capture_body(gzip.compress(raw), content_encoding="gzip") == payload
    assert decode_capture_body(base64.b64encode(raw), compression="base64") == payload
    form = b"data=" + base64.b64encode(raw).replace(b"=", b"%3D")
    assert decode_capture_body(form, content_type="application/x-www-form-urlencoded") == payload
    with pytest.raises(CaptureError) as too_big:
        decode_capture_body(gzip.compress(b" " * 5000 + raw), max_bytes=1000)
    assert too_big.value.status == 413
    with pytest.raises(CaptureError, match="not valid JSON"):
        decode_capture_body(b"{nope")
