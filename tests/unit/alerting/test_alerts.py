"""Alerts: fingerprints, time text, merging, receive defaults, the persisted store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from signalroom.alerting.alerts import (
    Alert,
    AlertStore,
    fingerprint,
    fingerprints,
    format_time,
    parse_time,
    receive_defaults,
)
from signalroom.storage.state import StateStore

pytestmark = pytest.mark.unit

T0 = datetime(2024, 1, 1, tzinfo=UTC)


def test_fingerprint_is_prometheus_fnv1a() -> None:
    # model.LabelSet{}.Fingerprint() is the FNV-1a offset basis
    assert f"{fingerprint({}):016x}" == "cbf29ce484222325"
    # order of insertion does not matter; values and names are separated
    assert fingerprint({"a": "b", "c": "d"}) == fingerprint({"c": "d", "a": "b"})
    assert fingerprint({"a": "bc"}) != fingerprint({"ab": "c"})


def _fnv1a_reference(labels: dict[str, str]) -> int:
    # Written out as Prometheus does: name, 0xff, value, 0xff for each sorted name.
    h = 0xCBF29CE484222325
    for name in sorted(labels):
        for part in (name, labels[name]):
            for byte in [*part.encode(), 0xFF]:
                h = ((h ^ byte) * 0x100000001B3) % (1 << 64)
    return h


def test_batch_fingerprints_equal_single_ones() -> None:
    # Different lengths (the padded columns), non-ASCII values and an empty set, in a batch
    # large enough for the vectorised path and in a small one.
    sets = [
        {"alertname": "A", "i": str(i), "v": "\u00e9" * (i % 5), **({"x": "y"} if i % 3 else {})}
        for i in range(200)
    ] + [{}]
    expected = [_fnv1a_reference(s) for s in sets]
    assert fingerprints(sets) == expected
    assert fingerprints(sets[:3]) == expected[:3]
    assert [fingerprint(s) for s in sets] == expected


def test_persist_replaces_the_row_of_a_refired_alert(tmp_path: Path) -> None:
    with StateStore(f"sqlite:///{tmp_path / 'a.db'}") as state:
        state.migrate()
        store = AlertStore("t", state.engine)
        first = Alert({"a": "1"}, {"v": "1"}, T0, T0 + timedelta(hours=1), "", T0)
        store.put([first], T0)
        later = T0 + timedelta(minutes=1)
        again = Alert({"a": "1"}, {"v": "2"}, later, T0 + timedelta(hours=2), "", later)
        store.put([again, Alert({"a": "2"}, {}, T0, None, "", T0)], later)
        back = AlertStore("t", state.engine)
        assert back.load() == 2
        one = back.get(fingerprint({"a": "1"}))
        assert one is not None
        assert (one.annotations, one.starts_at, one.ends_at) == (
            {"v": "2"},
            T0,
            T0 + timedelta(hours=2),
        )


def test_time_text() -> None:
    assert parse_time("0001-01-01T00:00:00Z") is None
    assert parse_time("2024-01-01T00:00:00.123456789Z") == T0 + timedelta(microseconds=123456)
    assert parse_time("2024-01-01T01:00:00+01:00") == T0
    assert format_time(None) == "0001-01-01T00:00:00Z"
    assert format_time(T0 + timedelta(milliseconds=500)) == "2024-01-01T00:00:00.5Z"
    with pytest.raises(ValueError):
        parse_time("yesterday")


def test_receive_defaults() -> None:
    a = receive_defaults(Alert(labels={"a": "1", "empty": ""}), T0, timedelta(minutes=5))
    assert (a.starts_at, a.ends_at, a.timeout) == (T0, T0 + timedelta(minutes=5), True)
    assert a.labels == {"a": "1"}
    b = receive_defaults(
        Alert(labels={"a": "1"}, ends_at=T0 - timedelta(hours=1)), T0, timedelta(minutes=5)
    )
    assert b.starts_at == b.ends_at == T0 - timedelta(hours=1)
    assert not b.timeout


def test_merge_keeps_earliest_start_and_explicit_end() -> None:
    store = AlertStore()
    first = Alert({"a": "1"}, starts_at=T0, ends_at=T0 + timedelta(hours=1), updated_at=T0)
    store.put([first], T0, persist=False)
    # a timeout end from a later update does not shorten an explicit end
    later = T0 + timedelta(minutes=1)
    again = receive_defaults(
        Alert({"a": "1"}, starts_at=T0 + timedelta(minutes=1)), later, timedelta(minutes=5)
    )
    (merged,) = store.put([again], later, persist=False)
    assert merged.starts_at == T0
    assert merged.ends_at == T0 + timedelta(hours=1)
    # an explicit resolution wins
    resolve = Alert(
        {"a": "1"}, starts_at=T0, ends_at=later, updated_at=later + timedelta(seconds=1)
    )
    (merged,) = store.put([resolve], later + timedelta(seconds=1), persist=False)
    assert merged.ends_at == later
    assert merged.resolved_at(later)


def test_store_persists_and_gcs(tmp_path: Path) -> None:
    with StateStore(f"sqlite:///{tmp_path / 'a.db'}") as state:
        state.migrate()
        store = AlertStore("t", state.engine)
        seen: list[Alert] = []
        store.subscribe(seen.append)
        store.put(
            [
                Alert({"a": "1"}, {"s": "x"}, T0, T0 + timedelta(hours=1), "http://g", T0),
                Alert({"a": "2"}, {}, T0, T0 + timedelta(minutes=1), "", T0, timeout=True),
            ],
            T0,
        )
        assert len(seen) == 2
        back = AlertStore("t", state.engine)
        assert back.load() == 2
        one = back.get(fingerprint({"a": "1"}))
        assert one is not None
        assert (one.annotations, one.generator_url, one.ends_at) == (
            {"s": "x"},
            "http://g",
            T0 + timedelta(hours=1),
        )
        assert back.get(fingerprint({"a": "2"})).timeout  # type: ignore[union-attr]
        gone = back.gc(T0 + timedelta(minutes=2))
        assert [a.labels for a in gone] == [{"a": "2"}]
        assert AlertStore("t", state.engine).load() == 1
