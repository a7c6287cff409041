"""The search index (per row group Bloom filters of service, operation, attribute pairs and
errors): searches through it find exactly what a search reading every row finds, across
flushes, a buffered tail, files not indexed yet, compaction and retention; it skips row
groups; its memory stays within its bound."""

from __future__ import annotations

import json
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from signalroom.traces.model import spans_table
from signalroom.traces.query import TraceQuery, find_trace_ids
from signalroom.traces.search_index import MAX_BITS_PER_ROW, SearchIndex, search_probe
from signalroom.traces.store import TraceStore

pytestmark = pytest.mark.unit

HOUR = 3600 * 10**9
SERVICES = ["web", "db", "queue", "auth", "crm"]
OPERATIONS = ["GET /", "SELECT", "publish", "login"]
# values of every JSON type, escapes and non-ASCII text: the index must hash the text the
# search compares (DuckDB's json_extract_string), whatever the type
VALUES: list[Any] = [
    "u1", "u2", "é\"x", "a\\b", "", "500", 500, 7, -3, 1.5, 2.0, 1e20, True, False, None,
    [1, "two"], {"k": "v"}, "true", "null",
]  # fmt: skip
KEYS = ["user", "http.status_code", "flag", "weird key", "n", "nested", "é"]


def _random_rows(rng: random.Random, base: int, traces: int) -> list[dict[str, Any]]:
    rows = []
    times = rng.sample(range(30 * HOUR // 10**6), traces * 4)  # unique start times (ms)
    for t in range(traces):
        trace_id = f"{rng.getrandbits(128):032x}"
        for s in range(rng.randint(1, 4)):
            attributes = {k: rng.choice(VALUES) for k in rng.sample(KEYS, rng.randint(0, 4))}
            resource = {"env": rng.choice(["prod", "dev"]), "region": rng.choice(["eu", 3])}
            rows.append({
                "trace_id": trace_id, "span_id": f"{t * 16 + s + 1:016x}",
                "service": rng.choice(SERVICES), "name": rng.choice(OPERATIONS),
                "kind": rng.choice([1, 2, 3]),
                "start_time": base + times[t * 4 + s] * 10**6,
                "duration": rng.randrange(10**9),
                "status_code": rng.choice([0, 0, 0, 1, 2]),
                "attributes": attributes, "resource": resource,
            })  # fmt: skip
    return rows


def _text(value: Any) -> str:
    """How a search may write the value it looks for."""
    return value if isinstance(value, str) else json.dumps(value, separators=(",", ":"))


def _random_query(rng: random.Random, rows: list[dict[str, Any]], base: int) -> TraceQuery:
    row = rng.choice(rows)  # conditions taken from a real span, so most queries match
    tags: dict[str, str] = {}
    for key, value in rng.sample(list(row["attributes"].items()), min(2, len(row["attributes"]))):
        if value is not None:
            tags[key] = _text(value) if rng.random() < 0.9 else "u2"
    if rng.random() < 0.3:
        tags["env"] = row["resource"]["env"]
    if rng.random() < 0.1:
        tags["error"] = rng.choice(["true", "false"])
    if rng.random() < 0.1:
        tags["otel.status_code"] = rng.choice(["ERROR", "OK"])
    if rng.random() < 0.1:
        tags["span.kind"] = rng.choice(["server", "client"])
    low = base + rng.randrange(10) * HOUR
    return TraceQuery(
        start_ns=low,
        end_ns=low + rng.randrange(1, 30) * HOUR,
        service=row["service"] if rng.random() < 0.7 else None,
        operation=row["name"] if rng.random() < 0.3 else None,
        tags=tags,
        min_duration_ns=rng.randrange(10**9) if rng.random() < 0.2 else None,
        max_duration_ns=rng.randrange(10**9) if rng.random() < 0.2 else None,
        error=rng.choice([None, None, True, False]),
        limit=rng.choice([1, 5, 20, 1000]),
    )


def _unindexed(store: TraceStore, tenant: str, query: TraceQuery) -> list[str]:
    """The search reading every row (a store with no search summaries reads files whole)."""
    index, store.search_index = store.search_index, SearchIndex()  # nothing summarised
    try:
        return find_trace_ids(store, tenant, query)
    finally:
        store.search_index = index


def _filled_store(
    tmp_path: Path, seed: int, bits_per_row: int
) -> tuple[TraceStore, list[dict[str, Any]], int]:
    rng = random.Random(seed)
    base = (time.time_ns() // HOUR - 40) * HOUR
    rows = _random_rows(rng, base, 600)
    store = TraceStore(tmp_path, wal_fsync="never", row_group_rows=16).open()
    store.search_index = SearchIndex(bits_per_row)
    for part in (rows[0::4], rows[1::4]):
        store.append("t", spans_table(part))
        store.table.flush()
    store.warm_index()
    store.append("t", spans_table(rows[2::4]))
    store.table.flush()  # a file not indexed yet: read whole
    store.append("t", spans_table(rows[3::4]))  # the buffered tail (WAL and buffer only)
    return store, rows, base


@pytest.mark.slow
@pytest.mark.parametrize("bits_per_row", [MAX_BITS_PER_ROW, 1024])
def test_indexed_search_finds_what_reading_every_row_finds(
    tmp_path: Path, bits_per_row: int
) -> None:
    """With the default budget (most attribute names left out of these dense filters) and
    with one that indexes every pair."""
    store, rows, base = _filled_store(tmp_path, 5, bits_per_row)
    rng = random.Random(7)
    matched = 0
    for _ in range(80):
        query = _random_query(rng, rows, base)
        expected = _unindexed(store, "t", query)
        assert find_trace_ids(store, "t", query) == expected, query
        matched += bool(expected)
    assert matched > 30  # the comparison is about real results, not empty ones

    # compaction replaces files, retention deletes some: still the same answers, and the
    # index keeps summaries of live files only
    store.table.compact(now_ns=base + 100 * HOUR)
    store.table.apply_retention(max_age_s=None, max_bytes=store.table.stats().bytes // 2)
    store.warm_index()
    live = {p for tenant in store.table.tenants() for p in store.table.files(tenant)}
    assert len(store.search_index) == len(live)
    assert all(store.search_index.get(p) is not None for p in live)
    for _ in range(40):
        query = _random_query(rng, rows, base)
        assert find_trace_ids(store, "t", query) == _unindexed(store, "t", query), query


@pytest.mark.slow
def test_summaries_rule_out_row_groups_and_never_a_match(tmp_path: Path) -> None:
    store, _, _ = _filled_store(tmp_path, 9, 1024)
    store.table.flush()
    store.warm_index()
    for path in store.table.files("t"):
        summary = store.search_index.get(path)
        assert summary is not None and not summary.unindexed
    connection = store.connect()
    try:
        for path in store.table.files("t"):
            summary = store.search_index.get(path)
            assert summary is not None
            # every (service, key, value as the search reads it, error) of every span
            pairs = connection.sql(
                "SELECT file_row_number AS i, service, status_code = 2 AS err, k,"
                " json_extract_string(attributes, '$.\"' || k || '\"') AS v"
                f" FROM read_parquet('{path}', file_row_number = true),"
                " unnest(json_keys(attributes)) AS t(k)"
            ).fetchall()
            assert pairs
            offsets = np.cumsum(summary.rows)
            for i, service, err, key, value in pairs:
                if value is None:
                    continue
                group = int(np.searchsorted(offsets, i, side="right"))
                for error in {False, err}:
                    probe = search_probe(connection, [service], None, [(key, value)], error)
                    assert probe.row_groups(summary)[group], (service, key, value)
    finally:
        connection.close()
    # and an attribute pair skips most row groups
    connection = store.connect()
    try:
        probe = search_probe(connection, ["crm"], None, [("user", "u1")])
    finally:
        connection.close()
    total = kept_groups = 0
    for path in store.table.files("t"):
        summary = store.search_index.get(path)
        assert summary is not None
        kept_groups += int(probe.row_groups(summary).sum())
        total += len(summary.rows)
    assert kept_groups < total / 4


def test_memory_is_bounded_per_span(tmp_path: Path) -> None:
    """Spans with many distinct attribute values cost at most ~2 bytes each (plus a little
    per row group): the names with the most distinct values are left out of the filters
    (searching them reads every row group), the others still rule row groups out."""
    rng = random.Random(3)
    base = (time.time_ns() // HOUR - 5) * HOUR
    rows: list[dict[str, Any]] = [
        {"trace_id": f"{rng.getrandbits(128):032x}", "span_id": f"{i + 1:016x}",
         "service": "web", "name": "GET", "start_time": base + i, "duration": 1,
         "attributes": {"tier": "gold" if i % 3000 == 0 else "basic",
                        **{f"k{j}": f"{rng.getrandbits(64):x}" for j in range(30)}}}
        for i in range(8192)
    ]  # fmt: skip
    store = TraceStore(tmp_path, wal_fsync="never", row_group_rows=1024).open()
    store.append("t", spans_table(rows))
    store.table.flush()
    store.warm_index()
    assert 0 < store.search_index.nbytes <= 2 * len(rows) + 8 * 64 + 40 * 60
    (path,) = store.table.files("t")
    summary = store.search_index.get(path)
    assert summary is not None and "tier" not in summary.unindexed
    assert {f"k{j}" for j in range(30)} - summary.unindexed  # some fit, not all
    span_ids = store.read_row_groups(path, range(len(summary.rows)), ["span_id"])["span_id"]
    position = {span_id: i // 1024 for i, span_id in enumerate(span_ids.to_pylist())}
    gold = {position[r["span_id"]] for r in rows if r["attributes"]["tier"] == "gold"}
    connection = store.connect()
    try:
        probe = search_probe(connection, ["web"], None, [("tier", "gold")])
        kept = set(np.flatnonzero(probe.row_groups(summary)).tolist())
        assert gold <= kept and len(kept) < len(summary.rows)
        for name in summary.unindexed:  # a left-out name cannot rule anything out
            probe = search_probe(connection, ["web"], None, [(name, "nothing has this")])
            assert probe.row_groups(summary).all()
    finally:
        connection.close()
    query = TraceQuery(start_ns=base, end_ns=base + HOUR, tags={"tier": "gold"}, limit=100)
    assert len(find_trace_ids(store, "t", query)) == 3


def test_row_groups_of_uneven_sizes(tmp_path: Path) -> None:
    """A file whose row groups differ in size (not what the store writes) is summarised
    through Arrow, each span's keys in its own row group."""
    import duckdb
    import pyarrow.parquet as pq

    from signalroom.traces.search_index import summarise

    rows = [
        {"trace_id": f"{i + 1:032x}", "span_id": f"{i + 1:016x}", "service": f"s{i % 2}",
         "name": "op", "start_time": i, "duration": i, "attributes": {"n": i}}
        for i in range(15)
    ]  # fmt: skip
    table = spans_table(rows)
    path = tmp_path / "uneven.parquet"
    with pq.ParquetWriter(path, table.schema) as writer:
        for start, end in ((0, 5), (5, 8), (8, 15)):
            writer.write_table(table.slice(start, end - start))
    connection = duckdb.connect()
    summary = summarise(path, connection, max_bits_per_row=1024)
    assert summary.rows.tolist() == [5, 3, 7]
    assert summary.min_duration.tolist() == [0, 5, 8]
    group_of = [0] * 5 + [1] * 3 + [2] * 7
    kept = 0
    for i, row in enumerate(rows):
        probe = search_probe(connection, [str(row["service"])], "op", [("n", str(i))])
        assert probe.row_groups(summary)[group_of[i]]
        kept += int(probe.row_groups(summary).sum())
    assert kept < 2 * len(rows)  # (tiny filters: a few false positives)
