"""The vectorised key parser against the per-series rules, and bulk series creation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from signalroom.promql.storage import Matcher, MatchType
from signalroom.tsdb import TSDB, LimitError, SampleBatch, TSDBOptions
from signalroom.tsdb.index import validate_pairs
from signalroom.tsdb.keys import encode_pair, parse_keys

pytestmark = pytest.mark.unit

NAMES = ["__name__", "a", "job", "instance", "Zed", "_x", "0bad", "bad-name", "", "é", "a" * 40]
VALUES = ["m", "up", "x:y", "1", "", "héllo", "nul\x00", "v" * 40, "0metric", "a\x00"]


def raw_key(pairs: list[tuple[str, str]]) -> bytes:
    """Labels as a sender may put them on the wire: any order, empty values kept."""
    out = b""
    for name, value in pairs:
        n, v = name.encode(), value.encode()
        inner = b"\x0a" + bytes((len(n),)) + n + (b"\x12" + bytes((len(v),)) + v if v else b"")
        out += b"\x0a" + bytes((len(inner),)) + inner
    return out


label_sets = st.lists(
    st.lists(st.tuples(st.sampled_from(NAMES), st.sampled_from(VALUES)), max_size=5),
    min_size=1,
    max_size=30,
)


@settings(max_examples=300, deadline=None)
@given(label_sets)
def test_parse_keys_vouches_only_for_canonical_valid_keys(
    sets: list[list[tuple[str, str]]],
) -> None:
    keys = [raw_key(pairs) for pairs in sets]
    parsed = parse_keys(keys, max_name_length=30, max_value_length=30, max_labels=4)
    for i, pairs in enumerate(sets):
        canonical = (
            validate_pairs(pairs) is None
            and all(v for _, v in pairs)
            and [n for n, _ in pairs] == sorted(n for n, _ in pairs)
            and all(len(n) <= 30 and len(v) <= 30 for n, v in pairs)
            and len(pairs) <= 4
            and all(v.isascii() and "\x00" not in v for _, v in pairs)
        )
        assert bool(parsed.ok[i]) == canonical, (pairs, parsed.ok[i])
        if canonical:
            assert b"".join(encode_pair(n.encode(), v.encode()) for n, v in pairs) == keys[i]
            rows = np.flatnonzero(parsed.owner == i)
            names = [parsed.names[g] for g in parsed.name_of[rows].tolist()]
            values = [
                parsed.blob[a:b].decode()
                for a, b in zip(parsed.value_start[rows], parsed.value_end[rows], strict=True)
            ]
            assert list(zip(names, values, strict=True)) == pairs
            assert parsed.metrics[parsed.metric_of[i]] == dict(pairs)["__name__"]
        else:
            assert parsed.metric_of[i] == -1


def test_parse_keys_rejects_malformed_bytes() -> None:
    good = raw_key([("__name__", "m"), ("a", "b")])
    broken = [good[:-1], good + b"\x0a", b"\x12" + good[1:], b"\x0a\x80\x00" + good[2:], b""]
    parsed = parse_keys([good, *broken])
    assert parsed.ok.tolist() == [True] + [False] * len(broken)


def open_db(tmp_path: Path, **options: int) -> TSDB:
    return TSDB(tmp_path, options=TSDBOptions(wal_fsync="never", **options)).open(background=False)


def keyed_batch(sets: list[list[tuple[str, str]]]) -> SampleBatch:
    n = len(sets)
    return SampleBatch(
        np.arange(n, dtype=np.int32),
        np.full(n, 1000, np.int64),
        np.arange(n, dtype=np.float64),
        keys=[raw_key(p) for p in sets],
    )


@settings(max_examples=40, deadline=None)
@given(label_sets)
def test_bulk_creation_matches_one_by_one(sets: list[list[tuple[str, str]]]) -> None:
    import tempfile

    # One series twice in a batch is one series with two samples at one time (a duplicate),
    # which appending one by one cannot produce: compare distinct label sets only.
    sets = list({tuple(sorted(p)): p for p in sets}.values())

    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        bulk, single = open_db(Path(a)), open_db(Path(b))
        together = bulk.append("default", keyed_batch(sets))
        alone = [single.append("default", keyed_batch([p])) for p in sets]
        assert together.accepted == sum(r.accepted for r in alone)
        reasons: dict[str, int] = {}
        for r in alone:
            for reason, count in r.rejected.items():
                reasons[reason] = reasons.get(reason, 0) + count
        assert together.rejected == reasons
        for store in (bulk, single):
            store.index.finish_restore()
        assert {k for k in bulk.index.keys if k} == {k for k in single.index.keys if k}
        for name, values in single.index.tenants["default"].postings.items():
            got = bulk.index.tenants["default"].postings[name]
            assert set(got) == set(values)
            for value, members in values.items():
                assert len(got[value]) == len(members)
        bulk.close()
        single.close()


def test_bulk_creation_indexes_and_reopens(tmp_path: Path) -> None:
    store = open_db(tmp_path)
    sets = [[("__name__", f"m{i % 3}"), ("id", str(i)), ("job", "j")] for i in range(500)]
    sets.append([("job", "j"), ("__name__", "m0"), ("id", "0")])  # unsorted: same as id=0
    result = store.append("default", keyed_batch(sets))
    # the unsorted copy is series id=0 again: same timestamp, other value
    assert result.new_series == 500 and result.accepted == 500
    assert result.rejected == {"duplicate_sample": 1}
    eq = [Matcher(MatchType.EQUAL, "__name__", "m0"), Matcher(MatchType.EQUAL, "id", "3")]
    assert len(store.querier("default", 0, 10_000).select(eq, 0, 10_000)) == 1
    ids = store.index.match("default", [Matcher(MatchType.EQUAL, "__name__", "m1")])
    assert len(ids) == 167 and bool(np.all(np.diff(ids) > 0))
    store.close()
    again = open_db(tmp_path)
    assert again.index.num_series == 500
    got = again.querier("default", 0, 10_000).select(eq, 0, 10_000)
    assert len(got) == 1 and got[0].values.tolist() == [3.0]
    again.close()


def test_bulk_limits_refuse_per_metric_then_in_total(tmp_path: Path) -> None:
    store = open_db(tmp_path, max_series_total=10, max_series_per_metric=4)
    sets = [[("__name__", f"m{i % 2}"), ("id", str(i))] for i in range(20)]
    result = store.append("default", keyed_batch(sets))
    # m0 and m1 take 4 series each; the 8 created stay under the total limit of 10
    assert result.accepted == 8 and result.rejected == {"max_series_per_metric": 12}
    errors = [e for e in result.errors if isinstance(e, LimitError)]
    assert {e.metric for e in errors} == {"m0", "m1"}
    assert all("6 new series" in str(e) and e.retryable for e in errors)
    sets = [[("__name__", f"n{i}"), ("id", str(i))] for i in range(5)]
    result = store.append("default", keyed_batch(sets))
    assert result.accepted == 2 and result.rejected == {"max_series_total": 3}
    assert store.index.num_series == 10
    store.close()
