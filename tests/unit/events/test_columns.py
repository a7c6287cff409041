"""The consumer's columnar path: the PostHog parser's fast lane gives the same records as the
per-event parser, the batch validator agrees with the compiled one, properties are serialised
into one buffer exactly as one at a time, and recent ids are bounded."""

from __future__ import annotations

import json
import random
from typing import Any

import orjson
import pytest

from signalroom.events.consumer import RecentIds, _serialise
from signalroom.events.schemas.registry import SchemaRegistry
from signalroom.ingest.posthog import (
    _posthog_record,
    _seeded_ids,
    parse_posthog,
    parse_timestamp_ns,
    posthog_columns,
)

pytestmark = pytest.mark.unit

S = 10**9
NOW = parse_timestamp_ns("2024-05-01T12:00:00Z")


def one_by_one(body: dict[str, Any], seed: int) -> list[dict[str, Any]]:
    """The records the per-event parser alone gives (the reference)."""
    sent = parse_timestamp_ns(body["sent_at"]) if "sent_at" in body else None
    new_id = _seeded_ids(seed)
    return [
        _posthog_record(raw, now_ns=NOW, sent_ns=sent, skew=True, new_id=new_id)
        for raw in body["batch"]
    ]


MIXED: list[Any] = [
    {"event": "a", "distinct_id": "u1", "timestamp": "2024-05-01T11:59:00Z", "properties": {}},
    {
        "event": "b",
        "distinct_id": "u2",
        "timestamp": "2024-05-01T13:59:00+02:00",
        "uuid": "given",
        "session_id": "s1",
        "properties": {"x": 1},
    },
    {
        "event": "c",
        "distinct_id": "u3",
        "timestamp": "2024-05-01T11:00:00.123456789Z",
        "properties": {"$session_id": "s2"},
    },
    {"event": "d", "distinct_id": "u4", "timestamp": "soon", "properties": {}},
    {"event": "e", "properties": {"distinct_id": "u5"}},  # no timestamp, user in properties
    "not an event",
    {"event": "f", "distinct_id": 7, "timestamp": "2024-05-01T11:00:00Z", "properties": {}},
    {"event": "g", "distinct_id": "u6", "timestamp": "2024-05-01T11:00:00Z", "uuid": 5},
    {"event": "h", "distinct_id": "u7", "timestamp": "3000-01-01T00:00:00Z", "properties": {}},
    {
        "event": "i",
        "distinct_id": "u8",
        "timestamp": "2024-05-01T11:00:00Z",
        "properties": {"$schema_version": 2},
    },
    {
        "event": "j",
        "distinct_id": "u9",
        "timestamp": "2024-05-01T11:00:00",
        "properties": {},
    },  # no zone: UTC
]


@pytest.mark.parametrize("sent_at", [None, "2024-05-01T11:00:00Z"])
def test_the_fast_lane_gives_the_records_of_the_per_event_parser(sent_at: str | None) -> None:
    body: dict[str, Any] = {"batch": MIXED}
    if sent_at:
        body["sent_at"] = sent_at
    got = parse_posthog(body, now_ns=NOW, id_seed=42).records
    want = one_by_one(body, 42)
    assert [r.get("error") is None for r in got] == [r.get("error") is None for r in want]
    for mine, theirs in zip(got, want, strict=True):
        if "error" in theirs:
            assert mine["error"] == theirs["error"] and mine["raw"] == theirs["raw"]
        else:
            assert mine == theirs


def test_columns_hold_the_usable_events_and_errors_in_their_places() -> None:
    cols = posthog_columns({"batch": MIXED}, now_ns=NOW, id_seed=1)
    assert cols.event == ["a", "b", "c", "e", "f", "i", "j"]
    # d before row 3 (e), the text before row 4 (f), g and h before row 5 (i)
    assert [(pos, r["raw"]) for pos, r in cols.errors] == [
        (3, MIXED[3]),
        (4, MIXED[5]),
        (5, MIXED[7]),
        (5, MIXED[8]),
    ]
    assert cols.user[4] == "7"
    assert cols.session == [None, "s1", "s2", None, None, None, None]
    assert cols.version == [None, None, None, None, None, 2, None]


def test_zoned_iso_timestamps_parse_in_one_go_to_microseconds() -> None:
    stamps = ["2024-05-01T11:00:00.123456789Z", "2024-05-01T13:59:00+02:00"]
    cols = posthog_columns(
        {"batch": [{"event": "a", "distinct_id": "u", "timestamp": t} for t in stamps]},
        now_ns=NOW,
    )
    # as datetime reads them: fractions beyond microseconds are cut
    assert cols.ts.tolist() == [
        parse_timestamp_ns("2024-05-01T11:00:00.123456Z"),
        parse_timestamp_ns("2024-05-01T11:59:00Z"),
    ]


def test_an_out_of_range_timestamp_is_a_dead_letter_not_a_failed_batch() -> None:
    body = {
        "sent_at": "2024-05-01T11:00:00Z",
        "batch": [
            {"event": "a", "distinct_id": "u", "timestamp": "2200-01-01T00:00:00Z"},
            {"event": "b", "distinct_id": "u", "timestamp": "2024-05-01T10:00:00Z"},
        ],
    }
    # 2200 is a valid int64 ns date, but shifted by the client's clock it is not
    records = parse_posthog(body, now_ns=2**62, id_seed=3).records
    assert "out of range" in records[0]["error"]
    assert "error" not in records[1]


def test_generated_ids_do_not_depend_on_which_lane_an_event_took() -> None:
    body = {
        "batch": [
            {"event": "a", "distinct_id": "u", "timestamp": t}
            for t in ("2024-05-01T11:00:00Z", "bad", "2024-05-01T11:00:00Z")
        ]
    }
    first = parse_posthog(body, now_ns=NOW, id_seed=9).records
    again = parse_posthog(json.loads(json.dumps(body)), now_ns=NOW, id_seed=9).records
    assert [r["id"] for r in first] == [r["id"] for r in again]
    assert len({r["id"] for r in first}) == 3


PRODUCT = {
    "x-event": "thing",
    "x-version": 1,
    "type": "object",
    "properties": {
        "sku": {"type": "string", "minLength": 2, "maxLength": 5},
        "price": {"type": "number", "minimum": 0, "exclusiveMaximum": 100},
        "count": {"type": "integer"},
        "tier": {"type": "string", "enum": ["a", "b"]},
        "code": {"type": "string", "pattern": "^[0-9]+$"},  # not checked by columns
        "tags": {"type": "array", "items": {"type": "string"}},
    },
    "required": ["sku"],
}

VALUES: dict[str, list[Any]] = {
    "sku": ["ab", "abcde", "a", "abcdef", 5, None, True],
    "price": [0, 1.5, 99.9, 100, -1, "3", True, float("nan"), 10**30],
    "count": [1, 1.0, 1.5, True, "1", -5],
    "tier": ["a", "b", "c", 1, None],
    "code": ["123", "12a", 5],
    "tags": [["x"], [1], "x", []],
}


def test_the_batch_validator_agrees_with_the_compiled_one() -> None:
    schema = SchemaRegistry().register(PRODUCT)
    rng = random.Random(5)
    for _ in range(40):
        batch = []
        for _ in range(rng.randint(1, 30)):
            props = {k: rng.choice(v) for k, v in VALUES.items() if rng.random() < 0.7}
            batch.append(props)
        want = [(i, schema.error(p)) for i, p in enumerate(batch) if schema.error(p) is not None]
        assert schema.errors(batch) == want


def test_a_clean_batch_never_reaches_the_compiled_validator() -> None:
    schema = SchemaRegistry().register(PRODUCT)
    assert schema.columns is not None
    batch = [{"sku": "ab", "price": 3, "count": 2, "tier": "a", "extra": [1]}] * 50
    assert all(not c.doubtful(batch) for c in schema.columns)
    assert schema.errors(batch) == []


def test_schemas_with_unknown_top_level_keywords_are_validated_one_by_one() -> None:
    schema = SchemaRegistry().register(
        {**PRODUCT, "x-event": "strict", "additionalProperties": False}
    )
    assert schema.columns is None
    assert schema.errors([{"sku": "ab"}, {"sku": "ab", "other": 1}])[0][0] == 1


@pytest.mark.parametrize(
    "props",
    [
        [{"a": 1}, {}, {"b": "x},{y"}, {"c": [{"d": 1}, {"e": 2}]}],  # the separator inside
        [{"a": 1}, {}, {"b": "üñí€"}, {}],
        [{}],
        [{"a": [{"x": 1}]}],
        [],
        [{"big": 2**70}, {"a": 1}],  # beyond orjson's integers
    ],
)
def test_properties_are_serialised_as_one_at_a_time(props: list[dict[str, Any]]) -> None:
    got = _serialise(props).to_pylist()
    assert [json.loads(text) for text in got] == props
    if not any("big" in p for p in props):
        assert got == [orjson.dumps(p).decode() for p in props]


def test_recent_ids_keep_at_least_capacity_per_tenant() -> None:
    recent = RecentIds(4)
    recent.add("t", ["a", "b", "c"])
    recent.add("u", ["a"])
    recent.add("t", ["d", "e", "a"])  # "a" is known: skipped
    assert ("t", "a") in recent and ("u", "a") in recent and ("t", "e") in recent
    assert len(recent) == 6  # nothing forgotten while the rest would hold fewer than 4
    recent.add("t", ["f", "g", "h", "i"])
    # older batches are forgotten, a batch at a time, while the newer ones hold 4
    assert ("t", "b") not in recent and ("u", "a") not in recent and ("t", "d") not in recent
    assert ("t", "i") in recent and len(recent) == 4
    disabled = RecentIds(0)
    disabled.add("t", ["a"])
    assert ("t", "a") not in disabled
