"""LogQL parsing and evaluation against hand-computed expectations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from signalroom.logs.config import LogsConfig, ThrottleConfig
from signalroom.logs.logql.ast import LogQLError, LogQuery
from signalroom.logs.logql.engine import LogQLEngine
from signalroom.logs.logql.parser import parse
from signalroom.logs.pipeline import EntryBatch, Pipeline
from signalroom.logs.store import LogStore

pytestmark = pytest.mark.unit

S = 10**9
BASE = 1_700_000_000 * S


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[LogQLEngine]:
    store = LogStore(tmp_path / "logs", wal_fsync="never").open()
    pipeline = Pipeline(LogsConfig())
    api = [
        json.dumps({"level": "error" if i % 3 == 0 else "info", "msg": f"req {i}", "ms": i * 10})
        for i in range(10)
    ]
    web = [f"method=GET path=/p{i % 2} status={200 + i} dur={i}s" for i in range(6)]
    batch = EntryBatch(
        [{"app": "api", "env": "prod"}, {"app": "web", "env": "dev"}],
        np.array([0] * 10 + [1] * 6),
        np.array([BASE + i * S for i in range(10)] + [BASE + i * S for i in range(6)]),
        api + web,
    )
    store.append("default", pipeline.process("default", batch).table)
    yield LogQLEngine(store)
    store.close()


def lines(engine: LogQLEngine, query: str, limit: int = 100, **kw: str) -> list[str]:
    expr = parse(query)
    assert isinstance(expr, LogQuery)
    result = engine.select_logs("default", expr, BASE, BASE + 100 * S, limit=limit, **kw)  # type: ignore[arg-type]
    pairs = sorted(
        ((t, line) for s in result.streams for t, line in zip(s.timestamps, s.lines, strict=True)),
        reverse=kw.get("direction", "backward") == "backward",
    )
    return [line for _, line in pairs]


def test_parse_errors_name_position() -> None:
    with pytest.raises(LogQLError, match="col 7"):
        parse('{a="b"')
    with pytest.raises(LogQLError, match="empty-compatible"):
        parse('{a=~".*"}')
    with pytest.raises(LogQLError, match="needs a range"):
        parse('count_over_time({a="b"})')
    with pytest.raises(LogQLError, match="unwrap"):
        parse('sum_over_time({a="b"}[5m])')
    with pytest.raises(LogQLError, match="invalid regular expression"):
        parse('{a="b"} |~ "("')


def test_line_filters(engine: LogQLEngine) -> None:
    assert lines(engine, '{app="api"} |= "req 3"') == [
        '{"level": "error", "msg": "req 3", "ms": 30}'
    ]
    assert len(lines(engine, '{app="api"} != "error"')) == 6
    assert len(lines(engine, '{app=~"a.*|w.*"} |~ "req [12]|/p1"')) == 5
    assert len(lines(engine, '{env="dev"} !~ "status=20[0-2]"')) == 3
    assert len(lines(engine, '{app="api"} |= "req 1" or "req 2"')) == 2


def test_limit_and_direction(engine: LogQLEngine) -> None:
    newest = lines(engine, '{app="web"}', limit=2)
    assert newest == [
        "method=GET path=/p1 status=205 dur=5s",
        "method=GET path=/p0 status=204 dur=4s",
    ]
    oldest = lines(engine, '{app="web"}', limit=1, direction="forward")
    assert oldest == ["method=GET path=/p0 status=200 dur=0s"]


def test_parsers_label_filters_and_formats(engine: LogQLEngine) -> None:
    assert lines(
        engine, '{app="api"} | json | level="error" and ms > 40 | line_format "{{.msg}}"'
    ) == [
        "req 9",
        "req 6",
    ]
    assert lines(
        engine, '{app="web"} | logfmt | dur >= 3s, path="/p1" | line_format "{{.status}}"'
    ) == ["205", "203"]
    assert lines(engine, '{app="web"} | regexp "status=(?P<code>\\\\d+)" | code="202"') == [
        "method=GET path=/p0 status=202 dur=2s"
    ]
    assert lines(
        engine,
        '{app="web"} | pattern "<m> path=<p> status=<_> dur=<d>" | d="1s"'
        ' | line_format "{{.m}}{{.p}}"',
    ) == ["method=GET/p1"]
    expr = parse('{app="web"} | logfmt | label_format route=path | drop method, dur, status')
    assert isinstance(expr, LogQuery)
    result = engine.select_logs("default", expr, BASE, BASE + 100 * S, limit=100)
    assert sorted(tuple(sorted(s.labels.items())) for s in result.streams) == [
        (("app", "web"), ("env", "dev"), ("route", "/p0")),
        (("app", "web"), ("env", "dev"), ("route", "/p1")),
    ]


def test_metric_queries(engine: LogQLEngine) -> None:
    result = engine.query_range(
        "default", parse('sum by (app) (count_over_time({env=~".+"}[5s]))'),  # type: ignore[arg-type]
        BASE + 4 * S, BASE + 9 * S, 5 * S,
    )  # fmt: skip
    by_app = {s.labels["app"]: s.values.tolist() for s in result.series}
    # windows (t-5s, t]: api has lines at 0..9 s, web at 0..5 s
    assert by_app["api"] == [5.0, 5.0]
    assert by_app["web"][0] == 5.0 and by_app["web"][1] == 1.0

    rate = engine.query_instant(
        "default", parse('rate({app="api"} |= "error" [10s])'), BASE + 9 * S
    )  # type: ignore[arg-type]
    assert [s.values[0] for s in rate.series] == [pytest.approx(4 / 10)]  # 0, 3, 6, 9 in (-1s, 9s]

    total = engine.query_instant(
        "default",
        parse('sum_over_time({app="api"} | json | unwrap ms [1m])'),
        BASE + 60 * S,  # type: ignore[arg-type]
    )
    assert sum(float(s.values[0]) for s in total.series) == 450.0  # 10..90, the 0 is at t-60s

    avg = engine.query_instant(
        "default",
        parse('avg_over_time({app="api"} | json | unwrap ms [1m]) by (level)'),  # type: ignore[arg-type]
        BASE + 60 * S,
    )
    assert {s.labels["level"]: float(s.values[0]) for s in avg.series} == {
        "error": (30 + 60 + 90) / 3,
        "info": (10 + 20 + 40 + 50 + 70 + 80) / 6,
    }
    q = engine.query_instant(
        "default",
        parse('quantile_over_time(0.5, {app="web"} | logfmt | unwrap duration(dur) [1m]) by (app)'),  # type: ignore[arg-type]
        BASE + 30 * S,
    )
    assert [float(s.values[0]) for s in q.series] == [2.5]  # median of 0..5 s

    top = engine.query_instant(
        "default",
        parse('topk(1, sum by (app) (bytes_over_time({env=~".+"}[1m])))'),
        BASE + 30 * S,  # type: ignore[arg-type]
    )
    assert [s.labels for s in top.series] == [{"app": "api"}]

    scaled = engine.query_instant(
        "default",
        parse('sum(count_over_time({app="api"}[1m])) * 2 + 1'),
        BASE + 30 * S,  # type: ignore[arg-type]
    )
    assert float(scaled.series[0].values[0]) == 21.0


def test_throttle_drops_and_counts(tmp_path: Path) -> None:
    pipeline = Pipeline(LogsConfig(throttle=ThrottleConfig(lines_per_second=1, burst_lines=3)))
    batch = EntryBatch(
        [{"app": "a"}, {"app": "b"}], np.array([0] * 5 + [1] * 2), np.arange(7) + BASE,
        [f"l{i}" for i in range(7)],
    )  # fmt: skip
    result = pipeline.process("default", batch)
    assert result.throttled == 2
    assert result.table.column("line").to_pylist() == ["l0", "l1", "l2", "l5", "l6"]
