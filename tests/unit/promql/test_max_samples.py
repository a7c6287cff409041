"""query.max-samples counts samples in memory at a time exactly as Prometheus does.

The cases are Prometheus' own (promql/engine_test.go, TestMaxQuerySamples): each query needs
exactly ``max_samples`` (it runs with that limit and fails with one less).
"""

from __future__ import annotations

import pytest

from signalroom.model.labels import Labels
from signalroom.promql.engine import Engine
from signalroom.promql.storage import MemoryStorage
from signalroom.promql.value import ExecutionError

pytestmark = pytest.mark.unit

S = 1000
TOO_MANY = "query processing would load too many samples into memory in query execution"


@pytest.fixture(scope="module")
def storage() -> MemoryStorage:
    # load 10s: metric 1+1x100, bigmetric{a="1"} 1+1x100, bigmetric{a="2"} 1+1x100
    store = MemoryStorage()
    for labels in (
        Labels({"__name__": "metric"}),
        Labels({"__name__": "bigmetric", "a": "1"}),
        Labels({"__name__": "bigmetric", "a": "2"}),
    ):
        for i in range(101):
            store.add(labels, i * 10 * S, 1.0 + i)
    return store


# (query, max samples, start s, end s, step s); no step: an instant query at start
CASES = [
    ("1", 1, 1, None, None),
    ("metric", 1, 1, None, None),
    ("metric[20s]", 2, 10, None, None),
    ("rate(metric[20s])", 3, 10, None, None),
    ("metric[20s:5s]", 3, 10, None, None),
    ("metric[20s] @ 10", 2, 0, None, None),
    ("1", 3, 0, 2, 1),
    ("metric", 3, 0, 2, 1),
    ("metric", 3, 0, 10, 5),
    ("rate(bigmetric[1s])", 1, 0, 10, 5),
    # the result at one step repeated: also 3 samples
    ("metric @ 10", 3, 0, 10, 5),
    # 20 (subquery) + 10 (one series' window) + 2 (both series' results), then repeated
    ("rate(bigmetric[10s:1s] @ 10)", 32, 0, 10, 5),
    # one side's 32 at its peak while holding the other side's 2 results
    ("rate(bigmetric[10s:1s] @ 10) + rate(bigmetric[10s:1s] @ 30)", 34, 0, 10, 5),
    # 2 x 20 (subquery over 0..20 s) + 10 (a window) + 6 (2 series x 3 steps)
    ("rate(bigmetric[10s:1s]) + rate(bigmetric[10s:1s] @ 30)", 56, 10, 20, 5),
    ("rate(rate(bigmetric[10:1s] @ 10)[100s:25s] @ 1000)[100s:20s] @ 2000", 32, 10, None, None),
    ("rate(rate(bigmetric[10s:1s] @ 10)[100s:25s] @ 1000)[17s:1s] @ 2000", 34, 10, None, None),
]


def _run(
    storage: MemoryStorage, query: str, limit: int, start: int, end: int | None, step: int | None
) -> None:
    engine = Engine(max_samples=limit)
    if step is None:
        engine.instant_query(storage, query, start * S)
    else:
        assert end is not None
        engine.range_query(storage, query, start * S, end * S, step * S)


@pytest.mark.parametrize(("query", "limit", "start", "end", "step"), CASES)
def test_query_needs_exactly_its_peak_samples(
    storage: MemoryStorage, query: str, limit: int, start: int, end: int | None, step: int | None
) -> None:
    _run(storage, query, limit, start, end, step)
    with pytest.raises(ExecutionError) as failure:
        _run(storage, query, limit - 1, start, end, step)
    assert str(failure.value) == TOO_MANY


def test_long_ranges_count_windows_once_not_per_step(storage: MemoryStorage) -> None:
    """A rate over 1000 s windows at 1 s steps holds its ~2,000 results and one series'
    window of 100 samples, not the ~200,000 window samples summed over all steps."""
    Engine(max_samples=2_500).range_query(storage, "rate(bigmetric[1000s])", 0, 1000 * S, 1 * S)
