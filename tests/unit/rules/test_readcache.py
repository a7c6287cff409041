"""The per-evaluation read cache: it answers exactly what the store answers, reads each
selector family once, and never hides what the group's own rules just wrote."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from signalroom.model.labels import Labels
from signalroom.promql import ast
from signalroom.promql.engine import Engine
from signalroom.promql.storage import (
    Matcher,
    MatchType,
    MemoryStorage,
    Querier,
    SeriesData,
)
from signalroom.rules.manager import ListNotifier, MemoryStorageAppender, RuleManager
from signalroom.rules.readcache import GroupQuerier, ReadPlan
from signalroom.rules.rule import AlertingRule, AlertState
from signalroom.tsdb import TSDB, SampleBatch, TSDBOptions

pytestmark = pytest.mark.unit

STEP = 15_000
EVAL = 100 * STEP
LOOKBACK = 300_000


class CountingStorage(MemoryStorage):
    def __init__(self) -> None:
        super().__init__()
        self.reads = 0

    def select(self, matchers, start_ms, end_ms):  # type: ignore[no-untyped-def]
        self.reads += 1
        return super().select(matchers, start_ms, end_ms)


def _storage() -> CountingStorage:
    storage = CountingStorage()
    rng = np.random.default_rng(3)
    ts = [i * STEP for i in range(101)]
    for job in ("a", "b"):
        for code in ("200", "500"):
            for instance in range(3):
                lbls = Labels({"__name__": "req_total", "job": job, "code": code,
                               "instance": str(instance)})  # fmt: skip
                values = np.cumsum(rng.integers(0, 5, len(ts))).astype(float)
                # a gap, so some windows hold no samples of this series
                keep = [t for t in range(len(ts)) if not (instance == 2 and 40 < t < 90)]
                storage.add_series(lbls, [ts[t] for t in keep], [values[t] for t in keep])
        storage.add_series(Labels({"__name__": "up", "job": job}), ts, [1.0] * len(ts))
    return storage


def _tsdb(memory: MemoryStorage, directory: Path) -> Querier:
    """The same series in the metric store (which answers through `select_flat`)."""
    db = TSDB(directory, options=TSDBOptions(wal_fsync="never")).open(background=False)
    found = list(memory.select([Matcher(MatchType.REGEX, "__name__", ".+")], 0, 2**62))
    for series in found:
        db.append(
            "default",
            SampleBatch(np.zeros(len(series.timestamps), np.int32), series.timestamps,
                        series.values, series=[series.labels]),
        )  # fmt: skip
    querier = db.querier("default", -(2**62), 2**62)
    assert hasattr(querier, "select_flat")
    return querier


def _m(name: str, value: str, kind: MatchType = MatchType.EQUAL) -> Matcher:
    return Matcher(kind, name, value)


def _same(got: list[SeriesData], want: list[SeriesData]) -> None:
    # MemoryStorage answers in no particular order; the engine sorts.
    got = sorted(got, key=lambda s: s.labels.items())
    want = sorted(want, key=lambda s: s.labels.items())
    assert [s.labels for s in got] == [s.labels for s in want]
    for g, w in zip(got, want, strict=True):
        assert g.timestamps.tolist() == w.timestamps.tolist()
        assert g.values.tolist() == w.values.tolist()


EXPRS = [
    'sum by (job) (rate(req_total{job="a"}[5m]))',
    'sum(rate(req_total{job="a",code=~"5.."}[1h])) / sum(rate(req_total{job="a"}[1h]))',
    'req_total{job="a"} offset 10m',
    'up{job="a"} == 0',
    "rec:total",
    "max_over_time(up[10m:1m])",
]


def test_plan_folds_narrow_selectors_into_one_base() -> None:
    plan = ReadPlan.build([ast.parse(e) for e in EXPRS], {"rec:total"}, LOOKBACK)
    by_matchers = {frozenset(str(m) for m in b.matchers): b for b in plan.bases}
    base = by_matchers[frozenset({'__name__="req_total"', 'job="a"'})]
    # 1h back from the evaluation time, and the offset selector's lookback window too.
    assert (base.back_ms, base.ahead_ms) == (3_600_000, 0)
    assert frozenset({'__name__="up"', 'job="a"'}) in by_matchers
    # What the group writes and what a subquery reads are not planned.
    assert len(plan.bases) == 2
    assert not plan.cacheable(frozenset({_m("__name__", "rec:total")}))
    assert not plan.cacheable(frozenset({_m("job", "a")}))
    assert plan.cacheable(frozenset({_m("__name__", "req_total")}))


@pytest.mark.parametrize(
    ("matchers", "start", "end"),
    [
        ([_m("__name__", "req_total"), _m("job", "a")], EVAL - 300_000 + 1, EVAL),
        ([_m("__name__", "req_total"), _m("job", "a")], EVAL - 3_600_000 + 1, EVAL),
        (
            [_m("__name__", "req_total"), _m("job", "a"), _m("code", "5..", MatchType.REGEX)],
            EVAL - 3_600_000 + 1,
            EVAL,
        ),
        (
            [_m("__name__", "req_total"), _m("job", "a"), _m("instance", "2", MatchType.NOT_EQUAL)],
            EVAL - 900_000 + 1,
            EVAL - 600_000,
        ),
        ([_m("__name__", "req_total"), _m("job", "a"), _m("code", "404")], EVAL - 1, EVAL),
        # outside every base: read through
        ([_m("__name__", "req_total"), _m("job", "b")], EVAL - 300_000 + 1, EVAL),
        ([_m("__name__", "req_total"), _m("job", "a")], EVAL - 7_200_000, EVAL),
    ],
)
@pytest.mark.parametrize("store", ["memory", "tsdb"])
def test_answers_what_the_store_answers(
    matchers: list[Matcher], start: int, end: int, store: str, tmp_path: Path
) -> None:
    storage: Querier = _storage()
    if store == "tsdb":
        storage = _tsdb(storage, tmp_path)
    plan = ReadPlan.build([ast.parse(e) for e in EXPRS], {"rec:total"}, LOOKBACK)
    cached = GroupQuerier(storage, plan, EVAL)
    _same(cached.select(matchers, start, end), list(storage.select(matchers, start, end)))
    # twice: the second answer comes from memory and is the same
    _same(cached.select(matchers, start, end), list(storage.select(matchers, start, end)))


def test_rules_read_each_family_once_and_match_uncached_results(tmp_path: Path) -> None:
    storage = _storage()
    rules = tmp_path / "r.yml"
    body = "\n".join(f"  - record: r{i}\n    expr: '{e}'" for i, e in enumerate(EXPRS[:4]))
    rules.write_text(f"groups:\n- name: g\n  rules:\n{body}\n")
    manager = RuleManager(Engine(), lambda: storage, MemoryStorageAppender(storage))
    manager.groups = manager.load_groups([str(rules)])
    group = next(iter(manager.groups.values()))
    expected = {f"r{i}": manager.query(e, EVAL) for i, e in enumerate(EXPRS[:4])}
    storage.reads = 0
    manager.eval_group(group, EVAL)
    assert storage.reads == 2  # req_total{job="a"} over 1h and up{job="a"}
    for i in range(4):
        got = manager.query(f"r{i}", EVAL)
        want = [(lbls.with_("__name__", f"r{i}"), v) for lbls, v in expected[f"r{i}"]]
        assert sorted(got, key=lambda s: s[0].items()) == sorted(want, key=lambda s: s[0].items())


def test_a_rule_sees_what_the_rules_before_it_wrote(tmp_path: Path) -> None:
    storage = _storage()
    rules = tmp_path / "r.yml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n"
        "  - alert: Before\n    expr: job:req:sum > 0\n"
        "  - record: job:req:sum\n    expr: sum by (job) (req_total)\n"
        "  - alert: Traffic\n    expr: job:req:sum > 0\n"
    )
    manager = RuleManager(Engine(), lambda: storage, MemoryStorageAppender(storage), ListNotifier())
    manager.groups = manager.load_groups([str(rules)])
    group = next(iter(manager.groups.values()))
    manager.eval_group(group, EVAL)
    before, alert_rule = group.rules[0], group.rules[2]
    assert isinstance(before, AlertingRule) and isinstance(alert_rule, AlertingRule)
    assert not before.active
    # No job:req:sum existed before this evaluation: the alert saw the first rule's output.
    assert {a.labels.get("job") for a in alert_rule.active.values()} == {"a", "b"}
    assert all(a.state == AlertState.FIRING for a in alert_rule.active.values())


def test_metrics_read_over_the_same_range_share_one_store_read(tmp_path: Path) -> None:
    storage = _storage()
    exprs = ['sum by (job) (rate(req_total{job="a"}[5m]))', 'up{job="a"} == 1', 'up{job="b"}']
    plan = ReadPlan.build([ast.parse(e) for e in exprs], (), LOOKBACK)
    assert len(plan.bases) == 3 and len(plan.fetches) == 2
    manager = RuleManager(Engine(), lambda: storage, MemoryStorageAppender(storage))
    expected = [manager.query(e, EVAL) for e in exprs]
    cached = GroupQuerier(storage, plan, EVAL)
    storage.reads = 0
    got = [manager.engine_query.query(cached, e, EVAL) for e in exprs]  # type: ignore[union-attr]
    assert storage.reads == 2
    assert got == expected


class CountingAppender(MemoryStorageAppender):
    def __init__(self, storage: MemoryStorage) -> None:
        super().__init__(storage)
        self.calls = 0

    def append_samples(self, samples):  # type: ignore[no-untyped-def]
        self.calls += 1
        super().append_samples(samples)


def test_output_is_written_once_per_group_unless_a_rule_reads_it(tmp_path: Path) -> None:
    storage = _storage()
    rules = tmp_path / "r.yml"
    rules.write_text(
        "groups:\n- name: g\n  rules:\n"
        "  - record: job:req:sum\n    expr: sum by (job) (req_total)\n"
        "  - record: job:up:sum\n    expr: sum by (job) (up)\n"
        "  - alert: Traffic\n    expr: job:req:sum > 0\n"  # reads the first rule: flush before
        "  - record: job:req:max\n    expr: max by (job) (req_total)\n"
    )
    appender = CountingAppender(storage)
    manager = RuleManager(Engine(), lambda: storage, appender, ListNotifier())
    manager.groups = manager.load_groups([str(rules)])
    group = next(iter(manager.groups.values()))
    manager.eval_group(group, EVAL)
    assert appender.calls == 2
    assert {
        s.labels.get("job") for s in storage.select([_m("__name__", "job:req:max")], 0, EVAL)
    } == {"a", "b"}
    alert_rule = group.rules[2]
    assert isinstance(alert_rule, AlertingRule) and len(alert_rule.active) == 2
