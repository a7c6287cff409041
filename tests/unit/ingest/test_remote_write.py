"""Remote write 1.0: decoding real payloads, malformed bodies, response codes."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import cramjam
import numpy as np
import pytest

from signalroom.ingest.remote_write import (
    WriteRequest,
    WriteRequestError,
    decode_write_request,
    decode_write_request_full,
    encode_write_request,
    handle_write,
)
from signalroom.model.labels import Labels
from signalroom.promql.storage import STALE_NAN, Matcher, MatchType, stale_mask
from signalroom.tsdb import TSDB, MetricMetadata, TSDBOptions

pytestmark = pytest.mark.unit

BAD_PROTOBUF = bytes(cramjam.snappy.compress_raw(b"\x0a\xff\xff\xff"))
HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@pytest.fixture
def db(tmp_path: Path) -> Iterator[TSDB]:
    store = TSDB(tmp_path, options=TSDBOptions(wal_fsync="never")).open(background=False)
    yield store
    store.close()


def varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def field(number: int, payload: bytes) -> bytes:
    return varint(number << 3 | 2) + varint(len(payload)) + payload


def hand_made_series(labels: list[tuple[str, str]], samples: list[bytes]) -> bytes:
    body = b"".join(field(1, field(1, n.encode()) + field(2, v.encode())) for n, v in labels)
    return field(1, body + b"".join(field(2, s) for s in samples))


def sample(value: float | None, ts: int | None, *, ts_first: bool = False) -> bytes:
    v = b"\x09" + struct.pack("<d", value) if value is not None else b""
    t = b"\x10" + varint(ts) if ts is not None else b""
    return t + v if ts_first else v + t


def test_encoder_round_trip_with_metadata() -> None:
    t0 = 1_700_000_000_000
    series = [
        (Labels({"__name__": "up", "job": "api"}), [(t0, 1.0), (t0 + 15_000, 0.0)]),
        ({"job": "db", "__name__": "up"}, [(-5, STALE_NAN), (0, 2.5)]),
    ]
    body = encode_write_request(series, [MetricMetadata("up", "gauge", "Is it up.", "")])
    batch, metadata = decode_write_request(body, "snappy")
    assert batch.num_series == 2
    assert batch.series_index.tolist() == [0, 0, 1, 1]
    assert batch.timestamps.tolist() == [1_700_000_000_000, 1_700_000_015_000, -5, 0]
    assert batch.values[:2].tolist() == [1.0, 0.0] and batch.values[3] == 2.5
    assert stale_mask(batch.values).tolist() == [False, False, True, False]
    assert batch.pairs(1) == [("__name__", "up"), ("job", "db")]
    assert metadata == [MetricMetadata("up", "gauge", "Is it up.", "")]


def test_hand_made_protobuf_including_unusual_sample_layouts() -> None:
    # built byte by byte, independent of the encoder: field order and omitted zero fields
    request = hand_made_series(
        [("__name__", "temp"), ("room", "a")],
        [
            sample(21.5, 1000),
            sample(None, 2000),  # value 0 omitted
            sample(3.25, None),  # timestamp 0 omitted
            sample(None, None),  # both omitted
            sample(-7.0, 4000, ts_first=True),  # fields in reverse order
            sample(1.0, -1),  # negative timestamp: 10-byte varint
            sample(2.0, 2**62),
        ],
    )
    body = bytes(cramjam.snappy.compress_raw(request))
    batch, _ = decode_write_request(body, None)
    assert batch.timestamps.tolist() == [1000, 2000, 0, 0, 4000, -1, 2**62]
    assert batch.values.tolist() == [21.5, 0.0, 3.25, 0.0, -7.0, 1.0, 2.0]
    assert batch.pairs(0) == [("__name__", "temp"), ("room", "a")]
    # the same request parsed by the generated classes agrees
    parsed = WriteRequest.FromString(request)
    assert [s.timestamp for s in parsed.timeseries[0].samples] == batch.timestamps.tolist()


def test_many_series_decode_vectorised_matches_generated_parser() -> None:
    rng = np.random.default_rng(3)
    stamps = rng.integers(-(2**40), 2**41, (500, 3))
    values = rng.normal(size=(500, 3))
    series = [
        (
            Labels({"__name__": f"m{i % 7}", "i": str(i)}),
            [(int(t), float(v)) for t, v in zip(stamps[i], values[i], strict=True)],
        )
        for i in range(500)
    ]
    batch, _ = decode_write_request(encode_write_request(series), "snappy")
    expected_ts = [t for _, pts in series for t, _ in pts]
    expected_v = [v for _, pts in series for _, v in pts]
    assert batch.timestamps.tolist() == expected_ts
    assert batch.values.tolist() == expected_v


@pytest.mark.parametrize(
    ("body", "encoding", "status", "message"),
    [
        (b"not snappy at all", "snappy", 400, "snappy decompression failed"),
        (b"", "snappy", 400, "empty body"),
        (BAD_PROTOBUF, "snappy", 400, "not a valid prometheus.WriteRequest"),
        (b"x", "gzip", 415, "unsupported Content-Encoding 'gzip'"),
    ],
)  # fmt: skip
def test_malformed_bodies_get_clear_errors(
    body: bytes, encoding: str, status: int, message: str
) -> None:
    with pytest.raises(WriteRequestError) as caught:
        decode_write_request(body, encoding)
    assert caught.value.status == status
    assert message in str(caught.value)


def test_handle_write_stores_and_answers_204(db: TSDB) -> None:
    body = encode_write_request(
        [(Labels({"__name__": "up", "job": "a"}), [(1000, 1.0), (2000, STALE_NAN)])],
        [MetricMetadata("up", "gauge", "Up.", "")],
    )
    assert handle_write(db, "default", body, HEADERS) == (204, "")
    data = db.querier("default", 0, 5000).select([Matcher(MatchType.EQUAL, "job", "a")], 0, 5000)
    assert data[0].timestamps.tolist() == [1000, 2000]
    assert stale_mask(data[0].values).tolist() == [False, True]
    assert db.metadata("up") == {"up": [{"type": "gauge", "help": "Up.", "unit": ""}]}
    # resending the newest sample (a retry): identical, ignored, still a success
    again = encode_write_request([(Labels({"__name__": "up", "job": "a"}), [(2000, STALE_NAN)])])
    assert handle_write(db, "default", again, HEADERS) == (204, "")
    # the whole request again: the older sample is out of order, as in Prometheus
    assert handle_write(db, "default", body, HEADERS)[0] == 400


def test_unsorted_labels_are_the_same_series(db: TSDB) -> None:
    sorted_body = hand_made_series([("__name__", "m"), ("a", "1"), ("b", "2")], [sample(1.0, 1)])
    unsorted_body = hand_made_series([("b", "2"), ("__name__", "m"), ("a", "1")], [sample(2.0, 2)])
    for request in (sorted_body, unsorted_body):
        status, _ = handle_write(
            db, "default", bytes(cramjam.snappy.compress_raw(request)), HEADERS
        )
        assert status == 204
    (series,) = db.querier("default", 0, 10).select([Matcher(MatchType.EQUAL, "a", "1")], 0, 10)
    assert series.timestamps.tolist() == [1, 2]


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ([], "series has no labels"),
        ([("job", "x")], "missing metric name"),
        ([("__name__", "m"), ("job", "x"), ("job", "y")], "duplicate label name 'job'"),
        ([("__name__", "m"), ("", "x")], "empty label name"),
        ([("__name__", "1m")], "invalid metric name '1m'"),
        ([("__name__", "m"), ("a.b", "x")], "invalid label name 'a.b'"),
    ],
)
def test_invalid_series_answer_400_and_valid_ones_are_kept(
    db: TSDB, labels: list[tuple[str, str]], message: str
) -> None:
    request = hand_made_series(labels, [sample(1.0, 1)]) + hand_made_series(
        [("__name__", "good")], [sample(1.0, 1)]
    )
    status, text = handle_write(db, "default", bytes(cramjam.snappy.compress_raw(request)), HEADERS)
    assert status == 400
    assert message in text and "invalid_labels" in text
    assert (
        len(
            db.querier("default", 0, 10).select(
                [Matcher(MatchType.EQUAL, "__name__", "good")], 0, 10
            )
        )
        == 1
    )


def test_out_of_order_answers_400_naming_series_and_timestamps(db: TSDB) -> None:
    labels = Labels({"__name__": "c", "job": "x"})
    assert (
        handle_write(db, "default", encode_write_request([(labels, [(5000, 1.0)])]), HEADERS)[0]
        == 204
    )
    status, text = handle_write(
        db, "default", encode_write_request([(labels, [(4000, 1.0), (6000, 2.0)])]), HEADERS
    )
    assert status == 400
    assert "out of order sample" in text and 'c{job="x"}' in text and "4000" in text


def test_limits_answer_429_or_400_with_the_limit_name(tmp_path: Path) -> None:
    store = TSDB(
        tmp_path,
        options=TSDBOptions(wal_fsync="never", max_series_per_metric=1, max_samples_per_request=5),
    ).open(background=False)
    body = encode_write_request(
        [(Labels({"__name__": "m", "i": str(i)}), [(1, 1.0)]) for i in range(2)]
    )
    status, text = handle_write(store, "default", body, HEADERS)
    assert status == 429 and "max_series_per_metric" in text and "'m'" in text
    big = encode_write_request(
        [(Labels({"__name__": "m", "i": "0"}), [(t, 1.0) for t in range(2, 9)])]
    )
    status, text = handle_write(store, "default", big, HEADERS)
    assert status == 400 and "max_samples_per_request" in text
    store.close()


def test_protocol_and_storage_errors(db: TSDB, tmp_path: Path) -> None:
    body = encode_write_request([(Labels({"__name__": "m"}), [(1, 1.0)])])
    v2 = {**HEADERS, "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request"}
    assert handle_write(db, "default", body, v2)[0] == 415
    closed = TSDB(tmp_path / "closed", options=TSDBOptions(wal_fsync="never"))
    status, text = handle_write(closed, "default", body, HEADERS)
    assert status == 503 and "not open" in text


def test_native_histograms_are_reported_not_silently_dropped(db: TSDB) -> None:
    series = hand_made_series([("__name__", "h")], [sample(1.0, 1)])
    # append a histograms field (4) to the series message
    inner = series[2:]  # strip the outer tag and 1-byte length
    with_histogram = field(1, inner + field(4, b"\x08\x01"))
    decoded = decode_write_request_full(bytes(cramjam.snappy.compress_raw(with_histogram)), None)
    assert decoded.histogram_series == [0]
    status, text = handle_write(
        db, "default", bytes(cramjam.snappy.compress_raw(with_histogram)), HEADERS
    )
    assert status == 400 and "native histograms are not supported" in text
