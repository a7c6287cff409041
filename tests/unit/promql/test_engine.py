"""PromQL engine semantics that are easy to get wrong (Prometheus 3.x)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.functions import bucket_quantile, bucket_quantiles
from signalroom.promql.storage import STALE_NAN, MemoryStorage, SeriesData
from signalroom.promql.value import (
    BadDataError,
    ExecutionError,
    Matrix,
    Scalar,
    Vector,
)

pytestmark = pytest.mark.unit

S = 1000
M = 60 * S


def _store(series: dict[str, list[tuple[int, float]]]) -> MemoryStorage:
    storage = MemoryStorage()
    for text, points in series.items():
        name, _, rest = text.partition("{")
        pairs = {"__name__": name}
        for item in filter(None, rest.rstrip("}").split(",")):
            key, text_value = item.split("=")
            pairs[key.strip()] = text_value.strip().strip('"')
        for t, value in points:
            storage.add(Labels(pairs), t, value)
    return storage


def _vector(result_value: object) -> dict[str, float]:
    assert isinstance(result_value, Vector)
    return {str(s.labels): s.value for s in result_value.samples}


def test_rate_extrapolates_and_handles_counter_resets() -> None:
    # Samples every 15 s; a reset after 40 adds the pre-reset value.
    points = [(0, 10.0), (15 * S, 20.0), (30 * S, 40.0), (45 * S, 5.0), (60 * S, 15.0)]
    storage = _store({"c_total": points})
    engine = Engine()
    # Window (0, 60s]: first sample at 15s (t=0 excluded: left-open).
    res = engine.instant_query(storage, "increase(c_total[1m])", 60 * S)
    raw = (15 - 20) + 40  # last - first + value before reset
    sampled = 45.0
    # The first sample is 15 s after the window start, below 1.1 * the average spacing
    # (15 s): extrapolate all the way to the window start.
    dur_start = 15.0
    dur_to_zero = sampled * (20 / raw)
    dur_start = min(dur_start, dur_to_zero)
    expected = raw * (sampled + dur_start + 0.0) / sampled
    assert _vector(res.value) == pytest.approx({"{}": expected})
    rate = engine.instant_query(storage, "rate(c_total[1m])", 60 * S)
    assert _vector(rate.value)["{}"] == pytest.approx(expected / 60)


def test_rate_needs_two_samples_and_flags_non_counters() -> None:
    storage = _store({"gauge": [(0, 1.0), (30 * S, 2.0)]})
    engine = Engine()
    one = engine.instant_query(storage, "rate(gauge[20s])", 30 * S)
    assert _vector(one.value) == {}
    two = engine.instant_query(storage, "rate(gauge[1m])", 30 * S)
    assert len(_vector(two.value)) == 1
    assert any("might not be a counter" in i for i in two.infos)


def test_delta_does_not_treat_decreases_as_resets() -> None:
    storage = _store({"g": [(0, 10.0), (30 * S, 4.0), (60 * S, 1.0)]})
    res = Engine().instant_query(storage, "delta(g[90s])", 60 * S)
    # sampled 60 s, avg 30 s; durToStart 30 s < 33 s -> extrapolate 30 s; end 0.
    assert _vector(res.value)["{}"] == pytest.approx(-9.0 * 90 / 60)


def test_histogram_quantile_interpolates_within_bucket() -> None:
    buckets = [(0.1, 10.0), (0.5, 30.0), (1.0, 40.0), (math.inf, 40.0)]
    value, forced = bucket_quantile(0.5, buckets)
    # rank 20 falls in (0.1, 0.5] which holds 20 observations, 10 of them below rank.
    assert value == pytest.approx(0.1 + 0.4 * (10 / 20))
    assert not forced
    assert bucket_quantile(1.0, buckets)[0] == 1.0  # top bucket: second-highest bound
    assert math.isnan(bucket_quantile(0.5, buckets[:-1])[0])  # no +Inf bucket
    assert bucket_quantile(-0.1, buckets)[0] == -math.inf
    assert bucket_quantile(1.1, buckets)[0] == math.inf


def test_histogram_quantile_forces_monotonic_counts_with_info() -> None:
    storage = _store(
        {
            'h_bucket{le="1"}': [(0, 10.0)],
            'h_bucket{le="2"}': [(0, 8.0)],
            'h_bucket{le="+Inf"}': [(0, 12.0)],
        }
    )
    res = Engine().instant_query(storage, "histogram_quantile(0.5, h_bucket)", 0)
    assert _vector(res.value) == {"{}": pytest.approx(0.6)}
    assert any("monotonicity" in i for i in res.infos)


def test_histogram_quantile_warns_on_bad_le() -> None:
    storage = _store({'h_bucket{le="abc"}': [(0, 1.0)]})
    res = Engine().instant_query(storage, "histogram_quantile(0.5, h_bucket)", 0)
    assert _vector(res.value) == {}
    assert any('bucket label "le"' in w for w in res.warnings)


def test_staleness_marker_hides_series_and_lookback_is_left_open() -> None:
    storage = _store({"m": [(0, 1.0), (10 * S, STALE_NAN), (20 * S, 2.0)]})
    engine = Engine()
    assert _vector(engine.instant_query(storage, "m", 5 * S).value) == {"m{}": 1.0}
    assert _vector(engine.instant_query(storage, "m", 15 * S).value) == {}
    assert _vector(engine.instant_query(storage, "m", 20 * S).value) == {"m{}": 2.0}
    # The lookback window is (t-5m, t]: a sample exactly 5m old is gone.
    assert _vector(engine.instant_query(storage, "m", 20 * S + 5 * M - 1).value) == {"m{}": 2.0}
    assert _vector(engine.instant_query(storage, "m", 20 * S + 5 * M).value) == {}


def test_range_query_agrees_with_instant_queries() -> None:
    storage = _store({'x{a="1"}': [(t * 10 * S, float(t)) for t in range(60)]})
    engine = Engine()
    expr = "sum_over_time(x[1m]) + on() group_left() vector(1)"
    ranged = engine.range_query(storage, expr, 0, 9 * M, 30 * S)
    assert isinstance(ranged.value, Matrix)
    (series,) = ranged.value.series
    for t, v in zip(series.timestamps.tolist(), series.values.tolist(), strict=True):
        inst = _vector(engine.instant_query(storage, expr, t).value)
        assert inst['{a="1"}'] == pytest.approx(v)


def test_one_to_one_matching_with_duplicates_is_an_error() -> None:
    storage = _store(
        {
            'a{job="x",i="1"}': [(0, 1.0)],
            'a{job="x",i="2"}': [(0, 2.0)],
            'b{job="x"}': [(0, 3.0)],
        }
    )
    engine = Engine()
    with pytest.raises(ExecutionError, match="many-to-one matching must be explicit"):
        engine.instant_query(storage, "a + on(job) b", 0)
    with pytest.raises(ExecutionError, match="found duplicate series for the match group"):
        engine.instant_query(storage, "b + on(job) a", 0)
    ok = engine.instant_query(storage, "a + on(job) group_left b", 0)
    assert _vector(ok.value) == {'{i="1", job="x"}': 4.0, '{i="2", job="x"}': 5.0}


def test_comparison_keeps_name_and_bool_drops_it() -> None:
    storage = _store({'m{a="1"}': [(0, 5.0)]})
    engine = Engine()
    assert _vector(engine.instant_query(storage, "m > 1", 0).value) == {'m{a="1"}': 5.0}
    assert _vector(engine.instant_query(storage, "m > bool 10", 0).value) == {'{a="1"}': 0.0}


def test_name_removal_is_delayed_until_the_end() -> None:
    storage = _store({'m{a="1"}': [(0, 5.0)]})
    res = Engine().instant_query(
        storage, 'label_replace(rate(m[1m]) + 1, "orig", "$1", "__name__", "(.*)")', 0
    )
    # rate() of one sample is empty: use abs() instead, which also drops the name.
    assert _vector(res.value) == {}
    res = Engine().instant_query(
        storage, 'label_replace(abs(m), "orig", "$1", "__name__", "(.*)")', 0
    )
    assert _vector(res.value) == {'{a="1", orig="m"}': 5.0}


def test_set_operators_match_on_signatures() -> None:
    storage = _store({'a{x="1"}': [(0, 1.0)], 'a{x="2"}': [(0, 2.0)], 'b{x="1"}': [(0, 9.0)]})
    engine = Engine()
    assert _vector(engine.instant_query(storage, "a and b", 0).value) == {'a{x="1"}': 1.0}
    assert _vector(engine.instant_query(storage, "a unless b", 0).value) == {'a{x="2"}': 2.0}
    assert set(_vector(engine.instant_query(storage, "b or a", 0).value)) == {
        'b{x="1"}',
        'a{x="2"}',
    }


def test_subquery_and_at_modifier() -> None:
    storage = _store({"m": [(t * M, float(t)) for t in range(11)]})
    engine = Engine()
    res = engine.instant_query(storage, "max_over_time(m[5m:1m])", 10 * M)
    assert _vector(res.value) == {"{}": 10.0}
    res = engine.instant_query(storage, "m @ 120", 10 * M)
    assert _vector(res.value) == {"m{}": 2.0}
    res = engine.range_query(storage, "m @ end()", 0, 4 * M, M)
    assert isinstance(res.value, Matrix)
    assert res.value.series[0].values.tolist() == [4.0] * 5


def test_scalars_strings_and_errors() -> None:
    engine = Engine()
    storage = MemoryStorage()
    res = engine.instant_query(storage, "1 + 2 * 3", 0)
    assert isinstance(res.value, Scalar) and res.value.value == 7.0
    with pytest.raises(BadDataError):
        engine.instant_query(storage, "sum(", 0)
    with pytest.raises(BadDataError, match="range vector"):
        engine.range_query(storage, "m[5m]", 0, 60_000, 10_000)
    with pytest.raises(BadDataError, match="zero or negative"):
        engine.range_query(storage, "1", 0, 60_000, 0)
    with pytest.raises(ExecutionError, match="invalid smoothing factor"):
        storage.add(Labels.of(__name__="m"), 0, 1)
        storage.add(Labels.of(__name__="m"), 1000, 2)
        engine.instant_query(storage, "double_exponential_smoothing(m[1m], 2, 0.5)", 1000)


def test_topk_orders_instant_results() -> None:
    storage = _store({f'm{{i="{i}"}}': [(0, float(v))] for i, v in enumerate([3, 9, 1, 7])})
    res = Engine().instant_query(storage, "topk(3, m)", 0)
    assert isinstance(res.value, Vector)
    assert [s.value for s in res.value.samples] == [9.0, 7.0, 3.0]
    res = Engine().instant_query(storage, "sort(m)", 0)
    assert isinstance(res.value, Vector)
    assert [s.value for s in res.value.samples] == [1.0, 3.0, 7.0, 9.0]


def test_quantile_aggregation_and_warning() -> None:
    storage = _store({f'm{{i="{i}"}}': [(0, float(i))] for i in range(5)})
    engine = Engine()
    assert _vector(engine.instant_query(storage, "quantile(0.3, m)", 0).value) == {
        "{}": pytest.approx(1.2)
    }
    res = engine.instant_query(storage, "quantile(2, m)", 0)
    assert _vector(res.value) == {"{}": math.inf}
    assert res.warnings == ["PromQL warning: quantile value should be between 0 and 1, got 2"]


@pytest.mark.parametrize(
    "expr",
    [
        "sum_over_time(g[2m])",
        "avg_over_time(g[2m])",
        "min_over_time(g[2m])",
        "max_over_time(g[2m])",
        "stddev_over_time(g[2m])",
        "stdvar_over_time(g[2m])",
        "deriv(g[2m])",
        "predict_linear(g[2m], 600)",
        "rate(g[2m])",
        "quantile_over_time(0.9, g[2m])",
        "changes(g[2m])",
        "resets(g[2m])",
        "irate(g[2m])",
    ],
)
def test_vectorised_range_evaluation_matches_instant_evaluation(expr: str) -> None:
    # Range queries reduce windows column-wise; instant queries go window by window.
    rng = np.random.default_rng(7)
    values = rng.normal(100, 30, 200).round(3)
    values[[17, 60, 61]] = math.nan
    values[120:130] = 42.0
    storage = MemoryStorage()
    for i, v in enumerate(values):
        storage.add(Labels.of(__name__="g", k="v"), i * 10 * S + (i % 3), float(v))
    engine = Engine()
    ranged = engine.range_query(storage, expr, 0, 2000 * S, 15 * S)
    assert isinstance(ranged.value, Matrix)
    assert ranged.value.series
    for series in ranged.value.series:
        for t, v in zip(series.timestamps.tolist(), series.values.tolist(), strict=True):
            inst = _vector(engine.instant_query(storage, expr, t).value)
            got = inst[str(series.labels)]
            assert (math.isnan(got) and math.isnan(v)) or got == pytest.approx(v, rel=1e-9), t


class _SharedBufferQuerier:
    """Returns every series as a slice of one flat buffer (as the TSDB does), in the order
    given, so the engine's zero-copy join and its label sort are both exercised."""

    def __init__(self, storage: MemoryStorage, reverse: bool) -> None:
        self.storage = storage
        self.reverse = reverse

    def select(self, matchers: Any, start_ms: int, end_ms: int) -> list[SeriesData]:
        found = list(self.storage.select(matchers, start_ms, end_ms))
        found.sort(key=lambda s: s.labels.items(), reverse=self.reverse)
        ts = np.concatenate([s.timestamps for s in found])
        vals = np.concatenate([s.values for s in found])
        out, at = [], 0
        for s in found:
            n = len(s.timestamps)
            out.append(SeriesData(s.labels, ts[at : at + n], vals[at : at + n]))
            at += n
        return out


@pytest.mark.parametrize("reverse", [False, True])
def test_series_sliced_from_one_buffer_evaluate_like_separate_arrays(reverse: bool) -> None:
    storage = _store(
        {
            f'req_total{{job="j{j}",code="{c}"}}': [
                (t * 15 * S, float(t * (j + c))) for t in range(60)
            ]
            for j in range(3)
            for c in range(1, 4)
        }
    )
    shared = _SharedBufferQuerier(storage, reverse)
    engine = Engine()
    for expr in ("rate(req_total[1m])", "sum by (code) (increase(req_total[5m]))", "req_total"):
        want = engine.range_query(storage, expr, 5 * M, 14 * M, 30 * S).value
        got = engine.range_query(shared, expr, 5 * M, 14 * M, 30 * S).value
        assert isinstance(want, Matrix) and isinstance(got, Matrix)
        assert [s.labels for s in got.series] == [s.labels for s in want.series]
        for a, b in zip(got.series, want.series, strict=True):
            np.testing.assert_array_equal(a.timestamps, b.timestamps)
            np.testing.assert_array_equal(a.values, b.values)


def test_bucket_quantiles_match_bucket_quantile_step_by_step() -> None:
    rng = np.random.default_rng(3)
    bounds = np.array([-1.0, 0.0, 0.05, 0.1, 0.5, 1.0, math.inf])
    steps = 400
    counts = np.cumsum(rng.integers(0, 5, (len(bounds), steps)).astype(float), axis=0)
    counts[:, :50] *= 1 + rng.normal(0, 1e-13, (len(bounds), 50))  # almost equal neighbours
    counts[3, 50:100] -= 3  # non-monotonic: forced
    counts[:, 100:110] = 0  # no observations
    counts[2, 110:115] = math.nan
    counts[0, 115:120] = math.inf
    qs = rng.choice([0.0, 0.25, 0.5, 0.9, 0.99, 1.0, -0.5, 1.5, math.nan], steps)
    got, forced = bucket_quantiles(qs, bounds, counts)
    any_forced = False
    for s in range(steps):
        want, was_forced = bucket_quantile(
            float(qs[s]), list(zip(bounds, counts[:, s], strict=True))
        )
        any_forced |= was_forced
        assert (math.isnan(want) and math.isnan(got[s])) or want == got[s], (s, qs[s])
    assert forced == any_forced and forced


def test_histogram_quantile_of_many_histograms_matches_bucket_quantile() -> None:
    # Histograms computed together (same bounds and steps) and alone (a bucket missing, a
    # bound spelled twice, no +Inf) must give what bucket_quantile gives each step.
    rng = np.random.default_rng(11)
    les = ["0.1", "0.5", "1", "+Inf"]
    storage = MemoryStorage()
    expected: dict[Labels, list[tuple[float, float]]] = {}
    for h in range(40):
        spelled = list(les)
        if h == 5:
            spelled[2] = "1.0"
            spelled.append("1")  # the same bound twice
        if h == 6:
            spelled = spelled[:-1]  # no +Inf: NaN
        counts = np.cumsum(rng.integers(0, 4, len(spelled))).astype(float)
        if h == 7:
            counts[1] = counts[0] - 1  # not monotonic: forced
        for k, le in enumerate(spelled):
            if h == 8 and k == 1:
                continue  # a bucket missing
            labels = Labels({"__name__": "lat_bucket", "h": str(h), "le": le})
            storage.add(labels, 0, float(counts[k]))
            expected.setdefault(Labels({"h": str(h)}), []).append((float(le), float(counts[k])))
    engine = Engine()
    for q in (0.5, 0.9):
        result = engine.instant_query(storage, f"histogram_quantile({q}, lat_bucket)", 0)
        got = _vector(result.value)
        for key, buckets in expected.items():
            want = bucket_quantile(q, buckets)[0]
            value = got[str(key)]
            assert (math.isnan(want) and math.isnan(value)) or value == want, (q, key)
        assert any("monotonicity" in info for info in result.infos)
