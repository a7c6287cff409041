"""The time-series store: append/query, label index, Prometheus's append rules, limits,
staleness markers, head -> block compaction, retention, replay after reopen, metadata, stats."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from prometheus_client import REGISTRY

from signalroom.model.labels import Labels
from signalroom.promql.storage import STALE_NAN, Matcher, MatchType, stale_mask
from signalroom.tsdb import (
    TSDB,
    DuplicateSampleError,
    InvalidLabelsError,
    LimitError,
    MetricMetadata,
    OutOfOrderError,
    SampleBatch,
    TSDBOptions,
)

pytestmark = pytest.mark.unit

HOUR = 3_600_000
FAST = {"wal_fsync": "never"}


def eq(name: str, value: str) -> Matcher:
    return Matcher(MatchType.EQUAL, name, value)


def lab(name: str, **labels: str) -> Labels:
    return Labels({"__name__": name, **labels})


def one(labels: Labels, ts: list[int], values: list[float]) -> SampleBatch:
    return SampleBatch.from_series([(labels, ts, values)])


@pytest.fixture
def db(tmp_path: Path) -> Iterator[TSDB]:
    store = TSDB(tmp_path / "tsdb", options=TSDBOptions(**FAST)).open(background=False)
    yield store
    store.close()


def open_db(path: Path, **options: object) -> TSDB:
    return TSDB(path, options=TSDBOptions(**{**FAST, **options})).open(background=False)  # type: ignore[arg-type]


def samples(store: TSDB, *matchers: Matcher, tenant: str = "default") -> dict[str, list]:
    q = store.querier(tenant, -(2**62), 2**62)
    return {
        str(s.labels): list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True))
        for s in q.select(list(matchers), -(2**62), 2**62)
    }


def counter(name: str, **labels: str) -> float:
    value = REGISTRY.get_sample_value(name, labels)
    return value or 0.0


def test_append_and_select_round_trip(db: TSDB) -> None:
    a, b = lab("up", job="api"), lab("up", job="db")
    result = db.append(
        "default", SampleBatch.from_series([(a, [1, 2], [1.0, 0.0]), (b, [1], [1.0])])
    )
    assert result.ok and result.accepted == 3 and result.new_series == 2 and result.lsn > 0
    assert samples(db, eq("__name__", "up")) == {
        'up{job="api"}': [(1, 1.0), (2, 0.0)],
        'up{job="db"}': [(1, 1.0)],
    }
    q = db.querier("default", 2, 10)
    selected = q.select([eq("job", "api")], 0, 100)
    assert [s.timestamps.tolist() for s in selected] == [[2]]
    assert selected[0].timestamps.dtype == np.int64 and selected[0].values.dtype == np.float64


def test_samples_of_one_batch_are_grouped_per_series(db: TSDB) -> None:
    series = [lab("m", i=str(i)) for i in range(5)]
    index = np.array([0, 1, 2, 3, 4] * 3, dtype=np.int32)
    ts = np.repeat(np.array([10, 20, 30]), 5)
    batch = SampleBatch(index, ts, ts.astype(float) + index, series=series)
    assert db.append("t", batch).accepted == 15
    got = samples(db, eq("__name__", "m"), tenant="t")
    assert got['m{i="3"}'] == [(10, 13.0), (20, 23.0), (30, 33.0)]


def test_tenants_are_separate(db: TSDB) -> None:
    db.append("a", one(lab("x"), [1], [1.0]))
    db.append("b", one(lab("x"), [1], [2.0]))
    assert samples(db, eq("__name__", "x"), tenant="a") == {"x{}": [(1, 1.0)]}
    assert samples(db, eq("__name__", "x"), tenant="b") == {"x{}": [(1, 2.0)]}
    assert samples(db, eq("__name__", "x"), tenant="c") == {}


def test_matchers_equal_not_equal_regex_not_regex(db: TSDB) -> None:
    rows = [
        lab("http_requests_total", code="200", path="/a"),
        lab("http_requests_total", code="500", path="/a"),
        lab("http_requests_total", code="404"),
        lab("other", code="200"),
    ]
    db.append("default", SampleBatch.from_series((r, [1], [1.0]) for r in rows))

    def names(*matchers: Matcher) -> set[str]:
        return set(samples(db, *matchers))

    metric = eq("__name__", "http_requests_total")
    assert names(metric, eq("code", "200")) == {'http_requests_total{code="200", path="/a"}'}
    assert len(names(metric, Matcher(MatchType.NOT_EQUAL, "code", "200"))) == 2
    assert names(metric, Matcher(MatchType.REGEX, "code", "[45]..")) == {
        'http_requests_total{code="500", path="/a"}',
        'http_requests_total{code="404"}',
    }
    assert names(metric, Matcher(MatchType.NOT_REGEX, "code", "2.*|5.*")) == {
        'http_requests_total{code="404"}'
    }
    # absent label: path="" matches series without the label; path!="" only those with it
    assert names(metric, eq("path", "")) == {'http_requests_total{code="404"}'}
    assert len(names(metric, Matcher(MatchType.NOT_EQUAL, "path", ""))) == 2
    assert len(names(Matcher(MatchType.REGEX, "__name__", ".+"))) == 4
    # RE2 regexes are anchored: "20" does not match "200"
    assert names(Matcher(MatchType.REGEX, "code", "20")) == set()
    assert names(eq("code", "200"), eq("code", "500")) == set()


def test_duplicates_follow_prometheus(db: TSDB) -> None:
    s = lab("g")
    db.append("default", one(s, [1000, 2000], [1.0, 2.0]))
    same = db.append("default", one(s, [2000], [2.0]))
    assert same.ok and same.duplicates_ignored == 1 and same.accepted == 0
    different = db.append("default", one(s, [2000, 3000], [5.0, 3.0]))
    assert different.accepted == 1 and different.rejected == {"duplicate_sample": 1}
    error = different.errors[0]
    assert isinstance(error, DuplicateSampleError)
    assert "duplicate sample for timestamp 2000" in str(error) and "g{}" in str(error)
    assert samples(db, eq("__name__", "g"))["g{}"] == [(1000, 1.0), (2000, 2.0), (3000, 3.0)]
    # StaleNaN twice at the same timestamp is the same value: ignored, not rejected
    db.append("default", one(s, [4000], [STALE_NAN]))
    assert db.append("default", one(s, [4000], [STALE_NAN])).ok


def test_out_of_order_rejected_by_default_naming_series_and_timestamps(db: TSDB) -> None:
    s = lab("c", job="x")
    db.append("default", one(s, [5000], [1.0]))
    before = counter("signalroom_tsdb_rejected_samples_total", reason="out_of_order")
    result = db.append("default", one(s, [4000, 6000, 5500], [0.0, 2.0, 3.0]))
    assert result.accepted == 1 and result.rejected == {"out_of_order": 2}
    error = result.errors[0]
    assert isinstance(error, OutOfOrderError)
    assert error.timestamps == (4000, 5500) and 'c{job="x"}' in str(error)
    assert counter("signalroom_tsdb_rejected_samples_total", reason="out_of_order") == before + 2
    assert [t for t, _ in samples(db, eq("__name__", "c"))['c{job="x"}']] == [5000, 6000]


def test_out_of_order_window_accepts_recent_samples(tmp_path: Path) -> None:
    store = open_db(tmp_path, out_of_order_window_ms=10_000)
    s = lab("c")
    store.append("default", one(s, [100_000], [1.0]))
    result = store.append("default", one(s, [95_000, 80_000, 101_000], [2.0, 3.0, 4.0]))
    assert result.accepted == 2 and result.rejected == {"out_of_order": 1}
    assert samples(store, eq("__name__", "c"))["c{}"] == [
        (95_000, 2.0),
        (100_000, 1.0),
        (101_000, 4.0),
    ]
    store.flush()
    store.append("default", one(s, [99_000], [9.0]))  # out of order into a flushed range
    assert [t for t, _ in samples(store, eq("__name__", "c"))["c{}"]] == [
        95_000,
        99_000,
        100_000,
        101_000,
    ]
    store.close()


def test_staleness_markers_are_stored_bit_exact(db: TSDB) -> None:
    s = lab("m")
    db.append("default", one(s, [1, 2, 3], [1.0, STALE_NAN, float("nan")]))
    db.flush()
    db.append("default", one(s, [4], [STALE_NAN]))
    data = db.querier("default", 0, 10).select([eq("__name__", "m")], 0, 10)[0]
    assert stale_mask(data.values).tolist() == [False, True, False, True]
    assert np.isnan(data.values[2])


def test_invalid_label_sets_are_rejected_per_series(db: TSDB) -> None:
    good = lab("ok")
    bad_name = Labels({"__name__": "0bad"})
    no_name = Labels({"job": "x"})
    bad_label = Labels({"__name__": "m", "bad-label": "x"})
    result = db.append(
        "default",
        SampleBatch.from_series(
            [(good, [1], [1.0]), (bad_name, [1], [1.0]), (no_name, [1, 2], [1.0, 2.0]),
             (bad_label, [1], [1.0])]
        ),
    )  # fmt: skip
    assert result.accepted == 1 and result.rejected == {"invalid_labels": 4}
    messages = " | ".join(str(e) for e in result.errors)
    assert all(isinstance(e, InvalidLabelsError) for e in result.errors)
    assert "invalid metric name '0bad'" in messages
    assert "missing metric name" in messages
    assert "invalid label name 'bad-label'" in messages


def test_series_limits_name_the_limit_and_metric(tmp_path: Path) -> None:
    store = open_db(tmp_path, max_series_per_metric=2, max_series_per_tenant=3, max_series_total=4)
    batch = SampleBatch.from_series((lab("a", i=str(i)), [1], [1.0]) for i in range(3))
    result = store.append("t1", batch)
    assert result.accepted == 2 and result.rejected == {"max_series_per_metric": 1}
    error = result.errors[0]
    assert isinstance(error, LimitError) and error.limit == "max_series_per_metric"
    assert error.metric == "a" and error.retryable and "'a'" in str(error)
    # an existing series still takes samples at the limit
    assert store.append("t1", one(lab("a", i="0"), [2], [2.0])).ok
    store.append("t1", one(lab("b"), [1], [1.0]))
    result = store.append("t1", one(lab("c"), [1], [1.0]))
    assert result.rejected == {"max_series_per_tenant": 1}
    store.append("t2", one(lab("x"), [1], [1.0]))
    result = store.append("t2", one(lab("y"), [1], [1.0]))
    assert result.rejected == {"max_series_total": 1} and "max_series_total=4" in str(
        result.errors[0]
    )
    store.close()


def test_label_length_and_request_size_limits(tmp_path: Path) -> None:
    store = open_db(
        tmp_path, max_label_name_length=10, max_label_value_length=5, max_samples_per_request=3
    )
    result = store.append(
        "default",
        SampleBatch.from_series(
            [(lab("m", averyverylongname="x"), [1], [1.0]), (lab("m", a="toolong"), [1], [1.0])]
        ),
    )
    assert result.rejected == {"max_label_name_length": 1, "max_label_value_length": 1}
    assert not any(e.retryable for e in result.errors)
    with pytest.raises(LimitError) as caught:
        store.append("default", one(lab("m"), [1, 2, 3, 4], [1.0] * 4))
    assert caught.value.limit == "max_samples_per_request" and "4 samples" in str(caught.value)
    assert samples(store, eq("__name__", "m")) == {}
    store.close()


def test_cardinality_bomb_is_contained(tmp_path: Path) -> None:
    store = open_db(tmp_path, max_series_total=1000)
    before = counter("signalroom_tsdb_rejected_samples_total", reason="max_series_total")
    for round_ in range(20):
        batch = SampleBatch.from_series(
            (lab("bomb", id=f"{round_}-{i}"), [1], [1.0]) for i in range(1000)
        )
        store.append("default", batch)
    assert store.index.num_series == 1000
    after = counter("signalroom_tsdb_rejected_samples_total", reason="max_series_total")
    assert after - before == 19_000
    assert store.append("default", one(lab("bomb", id="0-1"), [2], [2.0])).ok  # still healthy
    assert store.stats()["headStats"]["numSeries"] == 1000
    store.close()


def test_flush_to_blocks_and_queries_spanning_head_and_blocks(tmp_path: Path) -> None:
    store = open_db(tmp_path, block_duration_ms=HOUR, head_chunk_samples=500)
    series = [lab("m", i=str(i)) for i in range(20)]
    step = 60_000
    for k in range(180):  # 3 hours at 1 minute
        store.append(
            "default", SampleBatch.from_series((s, [k * step], [float(k)]) for s in series)
        )
    assert store.head.num_chunks > 0  # buffers were encoded
    blocks = store.flush()
    assert sorted(b.meta.window_start for b in blocks) == [0, HOUR, 2 * HOUR]
    assert store.head.num_samples == 0
    for k in range(180, 200):
        store.append(
            "default", SampleBatch.from_series((s, [k * step], [float(k)]) for s in series)
        )
    got = samples(store, eq("i", "7"))['m{i="7"}']
    assert [t for t, _ in got] == [k * step for k in range(200)]
    assert [v for _, v in got] == [float(k) for k in range(200)]
    # a range query inside one block reads only that range
    q = store.querier("default", 0, 2**62)
    part = q.select([eq("i", "7")], HOUR, HOUR + 5 * step)[0]
    assert part.timestamps.tolist() == [HOUR + k * step for k in range(6)]
    store.close()


def test_compaction_merges_blocks_of_a_window_and_then_windows(tmp_path: Path) -> None:
    store = open_db(tmp_path, block_duration_ms=HOUR, max_block_duration_ms=3 * HOUR)
    s = lab("m")
    for k in range(0, 8 * 60):  # 8 hours, flushed every 30 minutes
        store.append("default", one(s, [k * 60_000], [float(k)]))
        if k % 30 == 29:
            store.flush()
    before = len(store.blocks)
    assert before >= 16
    merges = store.compact()
    assert merges > 0
    windows = [(b.meta.window_start, b.meta.window_end) for b in store.blocks]
    assert (0, 3 * HOUR) in windows and (3 * HOUR, 6 * HOUR) in windows
    assert len(store.blocks) < before
    got = samples(store, eq("__name__", "m"))["m{}"]
    assert [t for t, _ in got] == [k * 60_000 for k in range(8 * 60)]
    on_disk = sorted(p.name for p in (tmp_path / "blocks").iterdir())
    assert len(on_disk) == len(store.blocks)
    store.close()


def test_retention_drops_whole_blocks_by_age_and_size(tmp_path: Path) -> None:
    store = open_db(tmp_path, block_duration_ms=HOUR)
    old, new = lab("m", age="old"), lab("m", age="new")
    for h in range(6):
        store.append("default", one(old if h < 3 else new, [h * HOUR + 1], [float(h)]))
        store.flush()
    assert len(store.blocks) == 6
    dropped = store.apply_retention(max_age_ms=2 * HOUR)
    assert dropped == 3  # blocks ending before newest - 2h
    assert [b.meta.window_start for b in store.blocks] == [3 * HOUR, 4 * HOUR, 5 * HOUR]
    assert 'm{age="old"}' not in samples(store, eq("__name__", "m"))
    assert store.index.num_series == 1  # the old series had nothing left: forgotten
    one_block = store.blocks[-1].size_bytes
    assert store.apply_retention(max_bytes=one_block) == 2
    assert [b.meta.window_start for b in store.blocks] == [5 * HOUR]
    store.close()


def test_reopen_replays_wal_and_restores_blocks_and_index(tmp_path: Path) -> None:
    store = open_db(tmp_path)
    s1, s2 = lab("m", i="1"), lab("m", i="2")
    store.append("default", one(s1, [1, 2], [1.0, 2.0]))
    store.add_metadata("default", [MetricMetadata("m", "gauge", "A gauge.", "bytes")])
    store.flush()
    store.append("default", one(s2, [3], [STALE_NAN]))
    store.append("other", one(s1, [5], [5.0]))
    store.close()

    again = open_db(tmp_path)
    assert samples(again, eq("__name__", "m")) == {
        'm{i="1"}': [(1, 1.0), (2, 2.0)],
        'm{i="2"}': [(3, pytest.approx(float("nan"), nan_ok=True))],
    }
    data = again.querier("default", 0, 10).select([eq("i", "2")], 0, 10)[0]
    assert stale_mask(data.values).tolist() == [True]
    assert samples(again, eq("__name__", "m"), tenant="other") == {'m{i="1"}': [(5, 5.0)]}
    # the newest sample per series survived: the rules still apply after a restart
    assert again.append("default", one(s1, [2], [9.0])).rejected == {"duplicate_sample": 1}
    assert again.append("default", one(s2, [3], [STALE_NAN])).duplicates_ignored == 1
    assert again.metadata() == {"m": [{"type": "gauge", "help": "A gauge.", "unit": "bytes"}]}
    # new series get fresh ids, never reused ones
    ids_before = {again.index.tenants["default"].ids[k] for k in again.index.tenants["default"].ids}
    again.append("default", one(lab("m", i="3"), [1], [1.0]))
    new_id = max(again.index.tenants["default"].ids.values())
    assert new_id not in ids_before
    again.close()
    third = open_db(tmp_path)
    assert set(samples(third, eq("__name__", "m"))) == {'m{i="1"}', 'm{i="2"}', 'm{i="3"}'}
    third.close()


def test_label_names_values_series_and_metadata(db: TSDB) -> None:
    db.append(
        "default",
        SampleBatch.from_series(
            [(lab("a", job="x", env="p"), [10], [1.0]), (lab("b", job="y"), [100], [1.0])]
        ),
    )
    q = db.querier("default", 0, 1000)
    assert q.label_names() == ["__name__", "env", "job"]
    assert q.label_names([eq("job", "y")]) == ["__name__", "job"]
    assert q.label_values("job") == ["x", "y"]
    assert q.label_values("job", [eq("__name__", "a")]) == ["x"]
    assert [str(s) for s in q.series([Matcher(MatchType.REGEX, "job", ".+")])] == [
        'a{env="p", job="x"}',
        'b{job="y"}',
    ]
    late = db.querier("default", 50, 1000)
    assert late.label_values("job") == ["y"]
    db.add_metadata("default", [MetricMetadata("a", "counter", "As.", "")])
    assert db.metadata("a") == {"a": [{"type": "counter", "help": "As.", "unit": ""}]}
    assert db.metadata("zzz") == {}


def test_stats_for_status_tsdb(db: TSDB) -> None:
    db.append(
        "default",
        SampleBatch.from_series(
            (lab("big" if i < 3 else "small", i=str(i)), [1], [1.0]) for i in range(4)
        ),
    )
    stats = db.stats("default")
    assert stats["headStats"]["numSeries"] == 4
    assert stats["seriesCountByMetricName"][0] == {"name": "big", "value": 3}
    assert {"name": "i", "value": 4} in stats["labelValueCountByLabelName"]
    assert stats["seriesCountByLabelValuePair"][0] == {"name": "__name__=big", "value": 3}
    assert db.stats("nobody")["headStats"]["numSeries"] == 0


async def test_append_async(db: TSDB) -> None:
    result = await db.append_async("default", one(lab("m"), [1], [1.0]))
    assert result.ok and result.accepted == 1
    assert samples(db, eq("__name__", "m")) == {"m{}": [(1, 1.0)]}


def test_selected_series_come_in_prometheus_label_order(db: TSDB) -> None:
    """Created out of order, with names that prefix each other and a value holding NUL (the
    separator of the store's sort keys): the answer is ordered as the label tuples are."""
    label_sets = [
        lab("m", b="1"),
        lab("m", a="x", b="1"),
        lab("m", a="x"),
        lab("m", ab="1"),
        lab("m", a="x\x00a"),
        lab("m", a="x\x01"),
        lab("m", a="w", c="3"),
    ]
    for i, labels in enumerate(label_sets):
        db.append("default", one(labels, [1_000 + i], [float(i)]))
    querier = db.querier("default", -(2**62), 2**62)
    got, _, _, _ = querier.select_flat([eq("__name__", "m")], -(2**62), 2**62)
    assert got == sorted(label_sets, key=Labels.items)
    # once more from the cached sort keys, and for a selection without the NUL value
    assert querier.select_flat([eq("__name__", "m")], -(2**62), 2**62)[0] == got
    no_nul = [Matcher(MatchType.NOT_EQUAL, "a", "x\x00a"), eq("__name__", "m")]
    assert querier.select_flat(no_nul, -(2**62), 2**62)[0] == [x for x in got if x != label_sets[4]]
