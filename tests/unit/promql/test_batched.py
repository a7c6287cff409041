"""All-series-at-once evaluation: range functions, selectors and aggregations must give what
evaluating each series on its own gives."""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from signalroom.model.labels import Labels, compare_labels
from signalroom.promql import blocks
from signalroom.promql.blocks import flat_search
from signalroom.promql.engine import Engine
from signalroom.promql.storage import STALE_NAN, Matcher, MatchType, MemoryStorage
from signalroom.promql.value import Vector

pytestmark = pytest.mark.unit

S = 1000


def _random_series(rng: np.random.Generator, n: int) -> dict[Labels, list[tuple[int, float]]]:
    out: dict[Labels, list[tuple[int, float]]] = {}
    for i in range(n):
        count = int(rng.integers(0, 30))
        times = np.sort(rng.choice(np.arange(0, 600, 7), size=count, replace=False)) * S
        kind = i % 4
        if kind == 0:  # integer counter with resets
            vals = np.cumsum(rng.integers(0, 5, count)).astype(float)
            vals[count // 2 :] -= vals[count // 2] if count > 2 else 0
        elif kind == 1:  # float counter with several resets
            vals = np.cumsum(rng.random(count) * 3.3)
            for cut in (count // 3, 2 * count // 3):
                if 0 < cut < count:
                    vals[cut:] -= vals[cut] - 0.25
        elif kind == 2:  # gauge
            vals = rng.normal(0, 1e3, count)
        else:  # gauge with a staleness marker
            vals = rng.normal(5, 1, count)
            if count > 3:
                vals[count // 2] = STALE_NAN
        labels = Labels({"__name__": "m_total", "job": f"j{i % 3}", "i": f"{i:03d}"})
        out[labels] = list(zip(times.tolist(), vals.tolist(), strict=True))
    return out


def _storage(series: dict[Labels, list[tuple[int, float]]]) -> MemoryStorage:
    storage = MemoryStorage()
    for labels, points in series.items():
        for t, v in points:
            storage.add(labels, t, v)
    return storage


def _samples(value: object) -> dict[Labels, float]:
    assert isinstance(value, Vector)
    return {s.labels: s.value for s in value.samples}


def _same(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == pytest.approx(b, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    "fn",
    [
        "rate",
        "increase",
        "delta",
        "irate",
        "idelta",
        "resets",
        "changes",
        "deriv",
        "sum_over_time",
        "avg_over_time",
        "min_over_time",
        "max_over_time",
        "count_over_time",
        "stddev_over_time",
        "last_over_time",
        "first_over_time",
        "mad_over_time",
        "ts_of_max_over_time",
        "present_over_time",
    ],
)
@pytest.mark.parametrize("chunk", [1 << 18, 3])
def test_range_function_over_many_series_equals_each_series_alone(
    fn: str, chunk: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocks, "WINDOW_CHUNK", chunk)
    series = _random_series(np.random.default_rng(7), 24)
    engine = Engine()
    together = _storage(series)
    for at in (200 * S, 455 * S, 700 * S):
        query = f"{fn}(m_total[2m])"
        combined = _samples(engine.instant_query(together, query, at).value)
        expected: dict[Labels, float] = {}
        for labels, points in series.items():
            alone = _samples(engine.instant_query(_storage({labels: points}), query, at).value)
            expected.update(alone)
        assert combined.keys() == expected.keys()
        for key, value in expected.items():
            assert _same(combined[key], value), (query, at, key)
        # A range query answers each step as the instant query at that step.
        matrix = engine.range_query(together, query, at - 60 * S, at, 30 * S).value
        for s in matrix.series:  # type: ignore[union-attr]
            if s.timestamps[-1] == at:
                assert _same(float(s.values[-1]), combined[s.labels])


def test_predict_linear_and_quantile_over_time_use_each_steps_parameters() -> None:
    series = _random_series(np.random.default_rng(3), 8)
    storage = _storage(series)
    engine = Engine()
    for query in (
        "predict_linear(m_total[3m], time() / 1000)",
        "quantile_over_time(0.3, m_total[3m])",
    ):
        matrix = engine.range_query(storage, query, 300 * S, 600 * S, 60 * S).value
        for s in matrix.series:  # type: ignore[union-attr]
            for t, v in zip(s.timestamps.tolist(), s.values.tolist(), strict=True):
                single = _samples(engine.instant_query(storage, query, t).value)
                assert _same(v, single[s.labels])


def test_flat_search_matches_searchsorted_per_series() -> None:
    rng = np.random.default_rng(1)
    parts = [np.sort(rng.choice(1000, size=k, replace=False)) for k in (5, 0, 1, 40, 17)]
    ts = np.concatenate(parts).astype(np.int64)
    offsets = np.concatenate(([0], np.cumsum([len(p) for p in parts]))).astype(np.int64)
    starts = np.array([-50, 0, 10, 499, 998, 2000], dtype=np.int64)
    ends = starts + 300
    for first, last in ((0, 5), (1, 4), (3, 5)):
        lo, hi = flat_search(ts, offsets[first : last + 1], starts, ends)
        for row, i in enumerate(range(first, last)):
            own = parts[i]
            assert (lo[row] == offsets[i] + np.searchsorted(own, starts, "right")).all()
            assert (hi[row] == offsets[i] + np.searchsorted(own, ends, "right")).all()
    # Spans too wide for the composite key take the per-series loop, same answer.
    wide = np.array([0, 2**61, 1, 2**61 + 5], dtype=np.int64)
    wide_offsets = np.array([0, 2, 4], dtype=np.int64)
    lo, hi = flat_search(wide, wide_offsets, np.array([0, 2**61 - 1]), np.array([2**61, 2**62]))
    assert lo.tolist() == [[1, 1], [2, 3]]
    assert hi.tolist() == [[2, 2], [3, 4]]


def test_selection_order_is_prometheus_label_order() -> None:
    storage = MemoryStorage()
    names = [
        {"a": "1"},
        {"a": "1", "b": "0"},
        {"a": "10"},
        {"a": "2"},
        {"b": "1"},
        {"a": "1", "c": "0"},
    ]
    for pairs in names:
        storage.add(Labels({"__name__": "x", **pairs}), 0, 1.0)
    res = Engine().instant_query(storage, "x", 0).value
    got = [s.labels for s in res.samples]  # type: ignore[union-attr]
    assert got == sorted(got, key=functools.cmp_to_key(compare_labels))
    assert len(got) == len(names)


def test_memory_storage_matchers_through_postings_and_per_series() -> None:
    storage = MemoryStorage()
    for i in range(6):
        pairs = {"__name__": "x", "code": ("200", "500", "")[i % 3], "i": str(i)}
        storage.add(Labels(pairs), 10, float(i))
    eq = Matcher(MatchType.EQUAL, "__name__", "x")

    def codes(*matchers: Matcher) -> list[str]:
        return sorted(s.labels.get("i") for s in storage.select([eq, *matchers], 0, 100))

    assert codes(Matcher(MatchType.EQUAL, "code", "500")) == ["1", "4"]
    assert codes(Matcher(MatchType.NOT_EQUAL, "code", "500")) == ["0", "2", "3", "5"]
    assert codes(Matcher(MatchType.REGEX, "code", "2.*|")) == ["0", "2", "3", "5"]
    assert codes(Matcher(MatchType.NOT_REGEX, "code", ".+")) == ["2", "5"]
    assert codes(Matcher(MatchType.EQUAL, "code", "404")) == []
    assert storage.select([eq], 11, 100) == []


def _agg(values: list[float], op: str) -> float:
    storage = MemoryStorage()
    for i, v in enumerate(values):
        storage.add(Labels({"__name__": "g", "i": str(i), "job": "a"}), 0, v)
    res = _samples(Engine().instant_query(storage, f"{op} by (job) (g)", 0).value)
    return res[Labels({"job": "a"})]


def test_group_sums_are_compensated_where_cancellation_needs_it() -> None:
    assert _agg([1e100, 1.0, -1e100], "sum") == 1.0
    assert _agg([1e308, 1e308, -1e308], "sum") == math.inf  # overflows as Prometheus's
    assert _agg([1e308, 1e308], "avg") == 1e308  # incremental mean after overflow
    assert math.isnan(_agg([math.inf, -math.inf, 1.0], "sum"))
    assert math.isnan(_agg([1.0, math.nan], "avg"))
    rng = np.random.default_rng(5)
    many = (rng.random(5000) * 1e6).tolist()
    assert _agg(many, "sum") == pytest.approx(math.fsum(many), rel=1e-14)
    assert _agg(many, "avg") == pytest.approx(math.fsum(many) / len(many), rel=1e-14)
    assert _agg([3.0, math.nan, 1.0], "min") == 1.0
    assert _agg([3.0, math.nan, 1.0], "max") == 3.0
    assert math.isnan(_agg([math.nan, math.nan], "max"))
    assert _agg([3.0, math.nan, 1.0], "count") == 3.0


def test_aggregation_groups_keep_first_appearance_order_and_labels() -> None:
    storage = MemoryStorage()
    for i in range(30):
        pairs = {"__name__": "g", "job": f"j{(i * 7) % 4}", "env": ("", "prod")[i % 2], "i": str(i)}
        storage.add(Labels(pairs), 0, float(i))
    engine = Engine()
    by = _samples(engine.instant_query(storage, "sum by (env, job) (g)", 0).value)
    without = _samples(engine.instant_query(storage, "sum without (i) (g)", 0).value)
    assert by == without
    expected: dict[Labels, float] = {}
    for i in range(30):
        key = Labels({"job": f"j{(i * 7) % 4}", "env": ("", "prod")[i % 2]})
        expected[key] = expected.get(key, 0.0) + i
    assert by == expected
