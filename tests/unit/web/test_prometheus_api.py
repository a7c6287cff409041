"""The Prometheus query API's shapes, parameters, errors and number formatting, on an
in-memory store (the TSDB-backed server is tested in tests/integration)."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from signalroom.app import Signalroom
from signalroom.config import parse_config
from signalroom.model.labels import Labels
from signalroom.promql.storage import MemoryStorage
from signalroom.promql.value import Matrix, Result, Sample, Scalar, Series, String, Vector
from signalroom.web.prometheus_api import (
    _format_values,
    encode_result,
    format_value,
    parse_time_ms,
    query_body,
    success,
)
from signalroom.web.server import create_http_app

pytestmark = pytest.mark.unit


class MemoryMetrics:
    """The MetricsStore protocol over promql's MemoryStorage (one tenant)."""

    def __init__(self, storage: MemoryStorage) -> None:
        self.storage = storage

    def querier(self, tenant: str, mint_ms: int, maxt_ms: int) -> MemoryStorage:
        return self.storage

    def metadata(
        self, metric: str | None = None, *, tenant: str = "default", limit: int = 0
    ) -> dict[str, list[dict[str, str]]]:
        data = {"http_requests_total": [{"type": "counter", "help": "Requests.", "unit": ""}]}
        return {k: v for k, v in data.items() if metric in (None, k)}

    def stats(self, tenant: str, limit: int = 10) -> dict[str, Any]:
        return {"headStats": {"numSeries": 3}}


@pytest.fixture
def client(tmp_path: Path) -> Iterator[TestClient]:
    storage = MemoryStorage()
    for instance, factor in (("a:80", 1), ("b:80", 2)):
        labels = Labels({"__name__": "http_requests_total", "job": "api", "instance": instance})
        for minute in range(0, 61):
            storage.add(labels, minute * 60_000, minute * 60 * factor)
    storage.add(Labels({"__name__": "temperature", "room": "cold"}), 3_600_000, 0.1)
    runtime = Signalroom(parse_config("server: {self_scrape: false}"), data_dir=tmp_path)
    with TestClient(create_http_app(runtime)) as test_client:
        tsdb, runtime.metrics = runtime.metrics, MemoryMetrics(storage)  # type: ignore[assignment]
        yield test_client
        runtime.metrics = tsdb


def data(response: Any) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def error(response: Any, status: int, error_type: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "error"
    assert body["errorType"] == error_type
    message: str = body["error"]
    return message


def test_instant_vector(client: TestClient) -> None:
    result = data(client.get("/api/v1/query", params={"query": "rate(http_requests_total[5m])",
                                                        "time": "3600"}))  # fmt: skip
    assert result["resultType"] == "vector"
    assert result["result"] == [
        {"metric": {"instance": "a:80", "job": "api"}, "value": [3600, "1"]},
        {"metric": {"instance": "b:80", "job": "api"}, "value": [3600, "2"]},
    ]


def test_scalar_string_and_post_form(client: TestClient) -> None:
    assert data(client.post("/api/v1/query", data={"query": "1.5", "time": "10.25"})) == {
        "resultType": "scalar",
        "result": [10.25, "1.5"],
    }
    assert data(client.get("/api/v1/query", params={"query": '"hi"', "time": "7"})) == {
        "resultType": "string",
        "result": [7, "hi"],
    }


def test_instant_matrix(client: TestClient) -> None:
    result = data(client.get("/api/v1/query", params={"query": "temperature[5m]", "time": "3600"}))
    assert result == {
        "resultType": "matrix",
        "result": [
            {"metric": {"__name__": "temperature", "room": "cold"}, "values": [[3600, "0.1"]]}
        ],
    }


def test_range_query(client: TestClient) -> None:
    params = {"query": "sum(http_requests_total)", "start": "0", "end": "120", "step": "60s"}
    result = data(client.get("/api/v1/query_range", params=params))
    assert result == {
        "resultType": "matrix",
        "result": [{"metric": {}, "values": [[0, "0"], [60, "180"], [120, "360"]]}],
    }
    rfc = {
        **params,
        "start": "1970-01-01T00:00:00Z",
        "end": "1970-01-01T00:02:00.000Z",
        "step": "60",
    }
    assert data(client.get("/api/v1/query_range", params=rfc)) == result


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"start": "0", "end": "10", "step": "0"},
         'invalid parameter "step": zero or negative query resolution step widths are not '
         "accepted. Try a positive integer"),
        ({"start": "10", "end": "0", "step": "1"},
         'invalid parameter "end": end timestamp must not be before start time'),
        ({"start": "0", "end": "11001", "step": "1"},
         "exceeded maximum resolution of 11,000 points per timeseries. "
         "Try decreasing the query resolution (?step=XX)"),
        ({"start": "x", "end": "1", "step": "1"},
         'invalid parameter "start": cannot parse "x" to a valid timestamp'),
        ({"start": "0", "end": "1", "step": "often"},
         'invalid parameter "step": cannot parse "often" to a valid duration'),
    ],
)  # fmt: skip
def test_range_query_parameter_errors(
    client: TestClient, params: dict[str, str], message: str
) -> None:
    response = client.get("/api/v1/query_range", params={"query": "up", **params})
    assert error(response, 400, "bad_data") == message


def test_query_errors(client: TestClient) -> None:
    missing = error(client.get("/api/v1/query"), 400, "bad_data")
    assert (
        missing
        == 'invalid parameter "query": unknown position: parse error: no expression found in input'
    )
    parse = error(client.get("/api/v1/query", params={"query": "sum(("}), 400, "bad_data")
    assert parse.startswith('invalid parameter "query": ')
    params = {"query": "up[5m]", "start": "0", "end": "1", "step": "1"}
    matrix_range = client.get("/api/v1/query_range", params=params)
    assert "invalid expression type" in error(matrix_range, 400, "bad_data")


def test_series_labels_and_values(client: TestClient) -> None:
    series = data(
        client.get("/api/v1/series", params={"match[]": 'http_requests_total{instance="a:80"}'})
    )
    assert series == [{"__name__": "http_requests_total", "instance": "a:80", "job": "api"}]
    assert data(client.get("/api/v1/labels")) == ["__name__", "instance", "job", "room"]
    assert data(client.get("/api/v1/labels", params={"match[]": "temperature"})) == [
        "__name__",
        "room",
    ]
    assert data(client.get("/api/v1/label/instance/values")) == ["a:80", "b:80"]
    assert data(client.get("/api/v1/label/__name__/values")) == [
        "http_requests_total",
        "temperature",
    ]
    limited = client.get("/api/v1/label/instance/values", params={"limit": "1"}).json()
    assert limited["data"] == ["a:80"]
    assert limited["warnings"] == ["results truncated due to limit"]
    assert error(client.get("/api/v1/series"), 400, "bad_data") == "no match[] parameter provided"
    bad = error(client.get("/api/v1/series", params={"match[]": "sum(x)"}), 400, "bad_data")
    assert bad.startswith('invalid parameter "match[]"')


def test_metadata_status_and_misc(client: TestClient) -> None:
    assert data(client.get("/api/v1/metadata"))["http_requests_total"][0]["type"] == "counter"
    assert data(client.get("/api/v1/metadata", params={"metric": "nope"})) == {}
    assert data(client.get("/api/v1/status/buildinfo"))["version"] == "3.5.0"
    assert "storage:" in data(client.get("/api/v1/status/config"))["yaml"]
    assert data(client.get("/api/v1/status/tsdb"))["headStats"]["numSeries"] == 3
    assert data(client.get("/api/v1/status/flags"))["query.lookback-delta"] == "5m"
    assert "startTime" in data(client.get("/api/v1/status/runtimeinfo"))
    assert data(client.get("/api/v1/query_exemplars", params={"query": "up"})) == []
    formatted = data(client.get("/api/v1/format_query", params={"query": "sum by(job)(up)"}))
    assert "sum by (job) (up)" in formatted.replace("\n", " ")


def test_parse_query_returns_the_syntax_tree_as_prometheus(client: TestClient) -> None:
    query = (
        'sum without (instance) (rate(http_requests_total{job=~"api|web"}[5m] offset 1m))'
        " / on (job) group_left (env) topk(3, up @ 1700000000) > bool 1e21"
    )
    tree = data(client.post("/api/v1/parse_query", data={"query": query}))
    selector_at = {"timestamp": 1_700_000_000_000, "startOrEnd": None}
    rate = {
        "type": "call",
        "func": {"name": "rate", "argTypes": ["matrix"], "variadic": 0, "returnType": "vector"},
        "args": [
            {"type": "matrixSelector", "name": "http_requests_total", "range": 300_000,
             "offset": 60_000, "timestamp": None, "startOrEnd": None,
             "matchers": [{"name": "__name__", "value": "http_requests_total", "type": "="},
                          {"name": "job", "value": "api|web", "type": "=~"}]},
        ],
    }  # fmt: skip
    division = {
        "type": "binaryExpr",
        "op": "/",
        "lhs": {"type": "aggregation", "op": "sum", "expr": rate, "param": None,
                "grouping": ["instance"], "without": True},
        "rhs": {"type": "aggregation", "op": "topk",
                "expr": {"type": "vectorSelector", "name": "up", "offset": 0,
                         "matchers": [{"name": "__name__", "value": "up", "type": "="}],
                         **selector_at},
                "param": {"type": "numberLiteral", "val": "3"},
                "grouping": [], "without": False},
        "matching": {"card": "many-to-one", "labels": ["job"], "on": True, "include": ["env"]},
        "bool": False,
    }  # fmt: skip
    assert tree == {
        "type": "binaryExpr",
        "op": ">",
        "lhs": division,
        "rhs": {"type": "numberLiteral", "val": "1000000000000000000000"},
        "matching": None,  # vector matching only between two instant vectors
        "bool": True,
    }


def test_parse_query_subqueries_strings_and_errors(client: TestClient) -> None:
    tree = data(
        client.get(
            "/api/v1/parse_query",
            params={"query": 'label_join(max_over_time((-x)[1h:5m] @ end()), "a", ",")'},
        )
    )
    assert tree["func"] == {"name": "label_join", "argTypes": ["vector", "string", "string",
                            "string"], "variadic": -1, "returnType": "vector"}  # fmt: skip
    call, text, _ = tree["args"]
    assert call["func"]["name"] == "max_over_time"
    assert call["args"][0] == {
        "type": "subquery",
        "expr": {"type": "parenExpr", "expr": {"type": "unaryExpr", "op": "-", "expr": {
            "type": "vectorSelector", "name": "x", "offset": 0, "timestamp": None,
            "startOrEnd": None, "matchers": [{"name": "__name__", "value": "x", "type": "="}]}}},
        "range": 3_600_000, "offset": 0, "step": 300_000, "timestamp": None, "startOrEnd": "end",
    }  # fmt: skip
    assert text == {"type": "stringLiteral", "val": "a"}
    message = error(client.get("/api/v1/parse_query", params={"query": "sum("}), 400, "bad_data")
    assert message.startswith('invalid parameter "query": ')


@pytest.mark.parametrize(
    ("value", "text"),
    [(0.0, "0"), (1.0, "1"), (-2.5, "-2.5"), (0.1, "0.1"), (1e16, "10000000000000000"),
     (1e-05, "0.00001"), (1e-07, "1e-07"), (1.5e21, "1.5e+21"), (123456.789, "123456.789"),
     (math.nan, "NaN"), (math.inf, "+Inf"), (-math.inf, "-Inf")],
)  # fmt: skip
def test_value_formatting_matches_prometheus(value: float, text: str) -> None:
    assert format_value(value) == text


@pytest.mark.parametrize(
    ("text", "ms"),
    [("1435781451.781", 1435781451781), ("1435781451", 1435781451000), ("-1.5", -1500),
     ("2015-07-01T20:10:51.781Z", 1435781451781), ("2015-07-01T22:10:51+02:00", 1435781451000)],
)  # fmt: skip
def test_time_parameters(text: str, ms: int) -> None:
    assert parse_time_ms(text) == ms


# --- the directly written query body --------------------------------------------------------

_AWKWARD_VALUES = [0.0, -0.0, 1.0, -3.0, 0.1, 1 / 3, 1e-4, 9.99e-5, 1e-7, 123456789.0, 1e15,
                   1e16, 2.5e21, -7e300, 5e-324, math.nan, math.inf, -math.inf]  # fmt: skip


def _reference_body(result: Result) -> bytes:
    """What the routes answered before the direct encoder: JSONResponse over encode_result."""
    return bytes(success(encode_result(result), result.warnings, result.infos).body)


def test_matrix_body_is_byte_identical_to_json_response() -> None:
    stamps = np.array([0, 1_500, 2_000, 3_001, 1_700_000_000_123], dtype=np.int64)
    series = [
        Series(Labels({"__name__": "a", "job": 'q"uo\\te', "ü": "ß\n"}), stamps[:3],
               np.array(_AWKWARD_VALUES[:3])),
        Series(Labels({"job": "b"}), stamps[1:], np.array([0.1, 1e-7, math.nan, 2.5e21])),
        Series(Labels({"job": "empty"}), stamps[:0], np.zeros(0)),
        Series(Labels({"job": "gaps"}), stamps[::2], np.array([1.0, 2.5, 1e300])),
        Series(Labels(), np.arange(len(_AWKWARD_VALUES), dtype=np.int64) * 15_000,
               np.array(_AWKWARD_VALUES)),
    ]  # fmt: skip
    result = Result(Matrix(series), ["PromQL warning: w"], ['PromQL info: "i"'])
    body = query_body(result)
    assert body == _reference_body(result)
    decoded = json.loads(body)
    assert decoded["data"]["result"][0]["values"][1] == [1.5, "-0"]
    assert decoded["data"]["result"][4]["values"][-3:] == [
        [225, "NaN"], [240, "+Inf"], [255, "-Inf"]
    ]  # fmt: skip


def test_vector_and_scalar_bodies_are_byte_identical_to_json_response() -> None:
    samples = [
        Sample(Labels({"job": f"j{i}", "path": "/ä"}), v, 1_700_000_000_500 + (i % 2) * 500)
        for i, v in enumerate(_AWKWARD_VALUES)
    ]
    for value in (Vector(samples), Vector([]), Scalar(1e-7, 1_000), String('x"y', 2_500)):
        result = Result(value)
        assert query_body(result) == _reference_body(result)


def test_format_values_matches_format_value_one_by_one() -> None:
    rng = np.random.default_rng(7)
    values = np.concatenate(
        [np.array(_AWKWARD_VALUES), rng.normal(0, 1e6, 200), rng.random(200) * 1e-3,
         np.round(rng.normal(0, 1e9, 200)), 10.0 ** rng.integers(-30, 30, 200)]
    )  # fmt: skip
    texts = _format_values(values)
    # -0 keeps its sign in samples, as Go's FormatFloat writes it (format_value drops it)
    assert texts[1] == "-0"
    assert texts[:1] + texts[2:] == [
        format_value(v) for v in values.tolist()[:1] + values.tolist()[2:]
    ]
