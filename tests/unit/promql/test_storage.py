"""MemoryStorage and matchers: RE2, fully anchored, `.` matching newlines."""

from __future__ import annotations

import math

import numpy as np
import pytest

from signalroom.model.labels import Labels
from signalroom.promql.storage import (
    STALE_NAN,
    Matcher,
    MatchType,
    MemoryStorage,
    is_stale_nan,
    stale_mask,
)

pytestmark = pytest.mark.unit


@pytest.fixture
def storage() -> MemoryStorage:
    s = MemoryStorage()
    s.add_series(Labels.of(__name__="up", job="api"), [0, 1000, 2000], [1, 2, 3])
    s.add_series(Labels.of(__name__="up", job="db", note="a\nb"), [0, 1000], [1, 0])
    s.add_series(Labels.of(__name__="down"), [5000], [7])
    return s


def _names(s: MemoryStorage, matchers: list[Matcher]) -> list[str]:
    return sorted(str(x.labels) for x in s.select(matchers, 0, 10_000))


def test_regex_matchers_are_anchored(storage: MemoryStorage) -> None:
    assert _names(storage, [Matcher(MatchType.REGEX, "job", "ap")]) == []
    assert _names(storage, [Matcher(MatchType.REGEX, "job", "ap.")]) == ['up{job="api"}']
    assert _names(storage, [Matcher(MatchType.NOT_REGEX, "job", "a.*")]) != []


def test_dot_matches_newline(storage: MemoryStorage) -> None:
    found = _names(storage, [Matcher(MatchType.REGEX, "note", "a.b")])
    assert len(found) == 1


def test_empty_matcher_matches_missing_label(storage: MemoryStorage) -> None:
    found = _names(storage, [Matcher(MatchType.EQUAL, "job", "")])
    assert found == ["down{}"]


def test_select_restricts_time_range(storage: MemoryStorage) -> None:
    (series,) = storage.select([Matcher(MatchType.EQUAL, "job", "api")], 500, 1000)
    assert series.timestamps.tolist() == [1000]
    assert series.values.tolist() == [2.0]


def test_out_of_order_samples_are_sorted_and_duplicates_replaced() -> None:
    s = MemoryStorage()
    lbl = Labels.of(__name__="x")
    s.add(lbl, 2000, 2)
    s.add(lbl, 1000, 1)
    s.add(lbl, 2000, 5)
    (series,) = s.select([Matcher(MatchType.EQUAL, "__name__", "x")], 0, 5000)
    assert series.timestamps.tolist() == [1000, 2000]
    assert series.values.tolist() == [1.0, 5.0]


def test_stale_nan_is_distinguished_from_nan() -> None:
    assert is_stale_nan(STALE_NAN)
    assert not is_stale_nan(math.nan)
    assert math.isnan(STALE_NAN)
    assert stale_mask(np.array([STALE_NAN, math.nan, 1.0])).tolist() == [True, False, False]


def test_label_names_and_values(storage: MemoryStorage) -> None:
    assert storage.label_names() == ["__name__", "job", "note"]
    assert storage.label_values("job") == ["api", "db"]


def test_label_lookups_with_matchers(storage: MemoryStorage) -> None:
    api = [Matcher(MatchType.EQUAL, "job", "api")]
    assert storage.label_names(api) == ["__name__", "job"]
    assert storage.label_values("job", [Matcher(MatchType.EQUAL, "__name__", "up")]) == [
        "api",
        "db",
    ]
    assert storage.label_values("job", api, 3000, 9000) == []
