"""The NumPy funnels and active users (with the event index) against the DuckDB queries on
random data: every order, several windows, repeated steps, rows in files and in the buffer,
and files rewritten or removed under the index."""

from __future__ import annotations

import itertools
import random
from datetime import timedelta
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from signalroom.events.analytics import Analytics, FunnelStep
from signalroom.events.index import EventIndex
from signalroom.events.store import EventStore
from tests.unit.events.eventdata import DAY0, rows

pytestmark = pytest.mark.unit

NAMES = ["view", "cart", "buy", "search", "refund"]
SPAN = {
    "date_from": (DAY0 + timedelta(days=2)).isoformat(),
    "date_to": (DAY0 + timedelta(days=9)).isoformat(),
}


def random_events(seed: int, n: int) -> list[tuple[Any, str, str, dict[str, Any]]]:
    rnd = random.Random(seed)
    # distinct seconds: ties in time would be ordered by event id in SQL, by name here
    seconds = rnd.sample(range(12 * 86_400), n)
    weights = [5, 3, 2, 2, 1]
    return [
        (DAY0 + timedelta(seconds=s), rnd.choices(NAMES, weights)[0], f"u{rnd.randrange(40)}", {})
        for s in seconds
    ]


def load(store: EventStore, seed: int) -> None:
    events = random_events(seed, 1500)
    for i in range(0, 1200, 400):  # three flushes: several files per day partition
        store.append("t", rows(events[i : i + 400]))
        store.table.flush()
    store.append("t", rows(events[1200:]))  # and some rows still in the buffer


def steps_of(names: list[str]) -> list[FunnelStep]:
    return [FunnelStep(n) for n in names]


@pytest.mark.parametrize("seed", [1, pytest.param(2, marks=pytest.mark.slow)])
def test_funnels_match_the_sql_engine(store: EventStore, seed: int) -> None:
    load(store, seed)
    sql, fast = Analytics(store), Analytics(store, index=EventIndex(store))
    funnels = [
        ["view", "cart", "buy"],
        ["view", "cart", "buy", "refund", "search"],
        ["view", "view", "cart"],
        ["search", "view"],
    ]
    for names in funnels:
        for order in ("ordered", "strict", "unordered"):
            for window in (600, 3 * 3600, 2 * 86_400):
                a = sql.funnel("t", steps_of(names), order=order, window_s=window, **SPAN)
                b = fast.funnel("t", steps_of(names), order=order, window_s=window, **SPAN)
                assert [s["count"] for s in b["steps"]] == [s["count"] for s in a["steps"]], (
                    names,
                    order,
                    window,
                )
                for x, y in zip(a["steps"], b["steps"], strict=True):
                    for key in ("average_time_to_convert_s", "median_time_to_convert_s"):
                        assert y[key] == pytest.approx(x[key]), (names, order, window, key)


def test_strict_funnel_on_day_files_that_do_not_overlap(store: EventStore) -> None:
    # one file a day and no buffer: the packed-key sort instead of the lexsort fallback
    load(store, 7)
    store.table.flush()
    store.table.compact(min_files=2, now_ns=2**62)
    index = EventIndex(store)
    sql, fast = Analytics(store), Analytics(store, index=index)
    parts = sorted(index.parts("t", None, None), key=lambda p: p.min_t)
    assert len(parts) > 5 and all(a.max_t < b.min_t for a, b in itertools.pairwise(parts))
    for names in (["view", "cart", "buy"], ["view", "view", "cart", "search"]):
        for window in (600, 86_400):
            a = sql.funnel("t", steps_of(names), order="strict", window_s=window, **SPAN)
            b = fast.funnel("t", steps_of(names), order="strict", window_s=window, **SPAN)
            assert b["steps"] == a["steps"]


@pytest.mark.parametrize("seed", [4, pytest.param(5, marks=pytest.mark.slow)])
def test_active_users_match_the_sql_engine(store: EventStore, seed: int) -> None:
    load(store, seed)
    sql, fast = Analytics(store), Analytics(store, index=EventIndex(store))
    for span in (
        SPAN,
        {
            "date_from": (DAY0 + timedelta(hours=30)).isoformat(),
            "date_to": (DAY0 + timedelta(hours=200)).isoformat(),
        },
    ):
        for event in (None, "cart"):
            assert fast.active_users("t", event=event, **span) == sql.active_users(
                "t", event=event, **span
            )


def test_the_index_follows_rewrites_and_compaction(store: EventStore) -> None:
    load(store, 6)
    index = EventIndex(store)
    fast, sql = Analytics(store, index=index), Analytics(store)
    names = steps_of(["view", "cart", "buy"])
    fast.funnel("t", names, **SPAN)  # indexes the current files
    store.table.flush()
    store.table.compact(min_files=2, now_ns=2**62)
    store.delete_user("t", "u1")
    assert fast.funnel("t", names, **SPAN)["steps"] == sql.funnel("t", names, **SPAN)["steps"]
    assert fast.active_users("t", **SPAN) == sql.active_users("t", **SPAN)
    # entries of the replaced files are dropped, the erased user's id is forgotten
    index.forget_user("t", "u1")
    assert index.refresh() == sum(rows_in(path) for path in store.table.files("t"))
    assert "u1" not in index._users["t"].by_name
    assert fast.funnel("t", names, **SPAN)["steps"] == sql.funnel("t", names, **SPAN)["steps"]


def rows_in(path: Path) -> int:
    return pq.read_metadata(path).num_rows
