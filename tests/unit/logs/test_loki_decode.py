"""Loki push protobuf decoding: times decoded for the whole request at once."""

from __future__ import annotations

import cramjam
import pytest

from signalroom.ingest.loki import PushRequest, decode_push_protobuf

pytestmark = pytest.mark.unit

STAMPS = [(0, 0), (0, 1), (1, 0), (1_700_000_000, 123_456_789), (4_102_444_800, 999_999_999)]


def _body(request: object) -> bytes:
    return bytes(cramjam.snappy.compress_raw(request.SerializeToString()))  # type: ignore[attr-defined]


def test_timestamps_lines_and_streams_round_trip() -> None:
    request = PushRequest()
    for number in range(2):
        stream = request.streams.add(labels=f'{{service="s{number}"}}')
        for seconds, nanos in STAMPS:
            entry = stream.entries.add(line=f"line {number} {seconds} é")
            entry.timestamp.seconds, entry.timestamp.nanos = seconds, nanos
    stream = request.streams.add(labels='{service="empty"}')  # a stream without entries
    batch = decode_push_protobuf(_body(request))
    expected = [s * 1_000_000_000 + n for s, n in STAMPS] * 2
    assert batch.timestamps.tolist() == expected
    assert batch.stream_index.tolist() == [0] * 5 + [1] * 5
    assert batch.lines[5] == "line 1 0 é"
    assert [s["service"] for s in batch.streams] == ["s0", "s1", "empty"]
    assert batch.metadata is None


def test_structured_metadata_keeps_its_entry() -> None:
    request = PushRequest()
    stream = request.streams.add(labels='{service="shop"}')
    for number in range(3):
        entry = stream.entries.add(line=f"line {number}")
        entry.timestamp.seconds = 10 + number
        if number == 1:
            entry.structuredMetadata.add(name="trace_id", value="4bf92f3577b34da6")
    batch = decode_push_protobuf(_body(request))
    assert batch.timestamps.tolist() == [10_000_000_000, 11_000_000_000, 12_000_000_000]
    assert batch.metadata == [None, '{"trace_id":"4bf92f3577b34da6"}', None]
    assert batch.trace_ids == [None, "4bf92f3577b34da6", None]
