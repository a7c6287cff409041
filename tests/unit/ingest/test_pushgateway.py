"""Pushgateway semantics: grouping keys, PUT/POST/DELETE, validation, the listing JSON,
staleness markers, the periodic re-append and persistence, on a real TSDB and state store."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from signalroom.ingest.pushgateway import (
    PushError,
    PushgatewayService,
    parse_grouping_key,
)
from signalroom.model.labels import Labels
from signalroom.model.samples import is_stale_nan
from signalroom.promql.storage import Matcher, MatchType
from signalroom.storage.state import StateStore
from signalroom.tsdb import TSDB

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_000


@pytest.mark.parametrize(
    ("job", "path", "b64", "expected"),
    [
        ("batch", "", False, {"job": "batch"}),
        ("batch", "/", False, {"job": "batch"}),
        ("batch", "/instance/host1/zone/eu", False,
         {"job": "batch", "instance": "host1", "zone": "eu"}),
        ("YS9i", "/path@base64/L3Zhci90bXA=", True, {"job": "a/b", "path": "/var/tmp"}),
        ("batch", "/path@base64/L3Zhci90bXA", False, {"job": "batch", "path": "/var/tmp"}),
        ("batch", "/instance@base64/=", False, {"job": "batch", "instance": ""}),
    ],
)  # fmt: skip
def test_grouping_keys(job: str, path: str, b64: bool, expected: dict[str, str]) -> None:
    assert parse_grouping_key(job, path, job_base64=b64) == expected


@pytest.mark.parametrize(
    ("job", "path", "message"),
    [
        ("batch", "/instance", "odd number of components in label string '/instance'"),
        ("batch", "/1bad/x", "improper label name '1bad'"),
        ("batch", "/__reserved/x", "improper label name '__reserved'"),
        ("", "", "job name is required"),
        ("batch", "/a@base64/!!", "invalid base64 encoding for label a='!!'"),
    ],
)
def test_grouping_key_errors(job: str, path: str, message: str) -> None:
    with pytest.raises(PushError) as info:
        parse_grouping_key(job, path)
    assert str(info.value).startswith(message)
    assert info.value.status == 400


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[StateStore, TSDB]]:
    state = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    state.migrate()
    db = TSDB(tmp_path / "metrics").open(background=False)
    yield state, db
    db.close()
    state.close()


@pytest.fixture
def service(stores: tuple[StateStore, TSDB]) -> PushgatewayService:
    state, db = stores
    return PushgatewayService(state, db)


def series(db: TSDB, name: str) -> dict[Labels, list[tuple[int, float]]]:
    querier = db.querier("default", 0, 2**62)
    selected = querier.select([Matcher(MatchType.EQUAL, "__name__", name)], 0, 2**62)
    return {
        s.labels: list(zip(s.timestamps.tolist(), s.values.tolist(), strict=True)) for s in selected
    }


BODY = b"""# TYPE jobs_processed counter
# HELP jobs_processed Jobs processed.
jobs_processed{kind="a"} 10
jobs_processed{kind="b"} 5
# TYPE last_success gauge
last_success 1.7e9
"""


def test_push_writes_samples_with_grouping_labels(service: PushgatewayService) -> None:
    grouping = {"job": "batch", "instance": "h1"}
    service.push("default", grouping, BODY, replace=True, now_ms=T0)
    db = service.tsdb
    assert series(db, "jobs_processed") == {
        Labels({"__name__": "jobs_processed", "job": "batch", "instance": "h1", "kind": "a"}):
            [(T0, 10.0)],
        Labels({"__name__": "jobs_processed", "job": "batch", "instance": "h1", "kind": "b"}):
            [(T0, 5.0)],
    }  # fmt: skip
    assert series(db, "push_time_seconds") == {
        Labels({"__name__": "push_time_seconds", "job": "batch", "instance": "h1"}):
            [(T0, T0 / 1000)]
    }  # fmt: skip
    assert list(series(db, "push_failure_time_seconds").values()) == [[(T0, 0.0)]]
    assert db.metadata("jobs_processed")["jobs_processed"] == [
        {"type": "counter", "help": "Jobs processed.", "unit": ""}
    ]


def test_grouping_key_wins_over_body_labels(service: PushgatewayService) -> None:
    service.push("default", {"job": "batch"}, b'm{job="other",x="1"} 3\n', replace=True, now_ms=T0)
    assert list(series(service.tsdb, "m")) == [Labels({"__name__": "m", "job": "batch", "x": "1"})]


def test_put_replaces_group_and_marks_gone_series_stale(service: PushgatewayService) -> None:
    grouping = {"job": "batch"}
    service.push("default", grouping, BODY, replace=True, now_ms=T0)
    service.push(
        "default", grouping, b"# TYPE other gauge\nother 1\n", replace=True, now_ms=T0 + 10
    )
    (group,) = service.groups("default")
    assert sorted(group.families) == ["other", "push_failure_time_seconds", "push_time_seconds"]
    for points in series(service.tsdb, "jobs_processed").values():
        assert points[0] == (T0, points[0][1])
        assert points[-1][0] == T0 + 10 and is_stale_nan(points[-1][1])
    # the failure time survives a replace
    failure = series(service.tsdb, "push_failure_time_seconds")
    assert [v for _, v in next(iter(failure.values()))] == [0.0, 0.0]


def test_post_replaces_only_families_with_the_same_name(service: PushgatewayService) -> None:
    grouping = {"job": "batch"}
    service.push("default", grouping, BODY, replace=True, now_ms=T0)
    service.push("default", grouping, b'jobs_processed{kind="c"} 1\n', replace=False, now_ms=T0 + 5)
    (group,) = service.groups("default")
    assert set(group.families) == {"jobs_processed", "last_success", "push_time_seconds",
                                   "push_failure_time_seconds"}  # fmt: skip
    assert [s[0].get("kind") for s in group.families["jobs_processed"].samples] == ["c"]
    # the POSTed family lost its TYPE line: it is untyped now, as in Pushgateway
    assert group.families["jobs_processed"].type == "UNTYPED"
    a = series(service.tsdb, "jobs_processed")[
        Labels({"__name__": "jobs_processed", "job": "batch", "kind": "a"})
    ]
    assert is_stale_nan(a[-1][1]) and a[-1][0] == T0 + 5
    assert series(service.tsdb, "last_success")[
        Labels({"__name__": "last_success", "job": "batch"})
    ][-1] == (T0 + 5, 1.7e9)


def test_delete_removes_group_and_writes_staleness(service: PushgatewayService) -> None:
    service.push("default", {"job": "batch"}, BODY, replace=True, now_ms=T0)
    service.push("default", {"job": "other"}, b"x 1\n", replace=True, now_ms=T0 + 1)
    assert service.delete("default", {"job": "batch"}, now_ms=T0 + 2)
    assert not service.delete("default", {"job": "missing"}, now_ms=T0 + 3)
    assert [g.labels for g in service.groups("default")] == [{"job": "other"}]
    pushed = series(service.tsdb, "push_time_seconds")
    assert is_stale_nan(pushed[Labels({"__name__": "push_time_seconds", "job": "batch"})][-1][1])
    assert not math.isnan(pushed[Labels({"__name__": "push_time_seconds", "job": "other"})][-1][1])


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"m 1 1700000000000\n", "pushed metrics must not have timestamps"),
        (b"m 1\nm 2\n", "was collected before with the same name and label values"),
        (b"m{ 1\n", "text format parsing error in line 1"),
    ],
)
def test_invalid_pushes(service: PushgatewayService, body: bytes, message: str) -> None:
    with pytest.raises(PushError, match=message):
        service.push("default", {"job": "batch"}, body, replace=True, now_ms=T0)


def test_inconsistent_type_across_groups_records_failure(service: PushgatewayService) -> None:
    service.push("default", {"job": "a"}, b"# TYPE m counter\nm 1\n", replace=True, now_ms=T0)
    with pytest.raises(PushError, match="gathered metric family m has type GAUGE but should have"
                       " COUNTER"):  # fmt: skip
        service.push("default", {"job": "b"}, b"# TYPE m gauge\nm 1\n", replace=True, now_ms=T0 + 1)
    listing = {tuple(g["labels"].items()): g for g in service.listing("default")["data"]}
    failed = listing[(("job", "b"),)]
    assert failed["last_push_successful"] is False
    assert failed["push_time_seconds"]["metrics"][0]["value"] == "0"
    assert float(failed["push_failure_time_seconds"]["metrics"][0]["value"]) == (T0 + 1) / 1000
    assert "m" not in failed
    assert listing[(("job", "a"),)]["last_push_successful"] is True


def test_listing_shape(service: PushgatewayService) -> None:
    body = b"""# TYPE lat histogram
# HELP lat Latency.
lat_bucket{le="0.5"} 1
lat_bucket{le="+Inf"} 3
lat_sum 2.5
lat_count 3
# TYPE q summary
q{quantile="0.9"} 0.7
q_sum 1
q_count 2
g 4
"""
    service.push("default", {"job": "j", "instance": "i"}, body, replace=True, now_ms=T0)
    (entry,) = service.listing("default")["data"]
    assert entry["labels"] == {"job": "j", "instance": "i"}
    assert entry["lat"] == {
        "time_stamp": "2023-11-14T22:13:20.000Z",
        "type": "HISTOGRAM",
        "help": "Latency.",
        "metrics": [{"labels": {"instance": "i", "job": "j"}, "buckets": {"0.5": "1", "+Inf": "3"},
                     "sum": "2.5", "count": "3"}],
    }  # fmt: skip
    assert entry["q"]["metrics"] == [
        {"labels": {"instance": "i", "job": "j"}, "quantiles": {"0.9": "0.7"}, "sum": "1",
         "count": "2"}
    ]  # fmt: skip
    assert entry["g"]["type"] == "UNTYPED"
    assert entry["g"]["metrics"] == [{"labels": {"instance": "i", "job": "j"}, "value": "4"}]
    assert entry["push_time_seconds"]["help"].startswith("Last Unix time when changing")


def test_refresh_reappends_and_groups_survive_restart(
    stores: tuple[StateStore, TSDB], tmp_path: Path
) -> None:
    state, db = stores
    first = PushgatewayService(state, db)
    first.push("default", {"job": "batch"}, BODY, replace=True, now_ms=T0)
    first.push("team-b", {"job": "nightly"}, b"n 1\n", replace=True, now_ms=T0 + 1)
    assert first.refresh(now_ms=T0 + 15_000) == 5 + 3  # 3 + 2 push metrics, 1 + 2
    points = series(db, "last_success")[Labels({"__name__": "last_success", "job": "batch"})]
    assert points == [(T0, 1.7e9), (T0 + 15_000, 1.7e9)]

    second = PushgatewayService(state, db)  # a restart: everything comes from the state store
    second.load()
    assert [g.labels for g in second.groups("default")] == [{"job": "batch"}]
    assert [g.labels for g in second.groups("team-b")] == [{"job": "nightly"}]
    assert second.refresh(now_ms=T0 + 30_000) == 8
    assert second.groups("default")[0].families["jobs_processed"].help == "Jobs processed."


async def test_start_and_stop_run_the_refresh_loop(stores: tuple[StateStore, TSDB]) -> None:
    state, db = stores
    PushgatewayService(state, db).push("default", {"job": "j"}, b"x 1\n", replace=True, now_ms=T0)
    service = PushgatewayService(state, db, interval=3600)
    await service.start()
    await service.stop()
    # start() loaded the group and re-appended it at the current time
    (points,) = series(db, "x").values()
    assert len(points) == 2 and points[1][0] > T0
