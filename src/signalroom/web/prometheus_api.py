"""The query side of the Prometheus HTTP API (``/api/v1/...``), in Prometheus' exact shapes.

Grafana's Prometheus data source, promtool and every Prometheus client talk to these routes
unchanged: GET or form-encoded POST, Prometheus' parameter parsing (unix seconds or RFC 3339
times, float seconds or Prometheus durations), its response envelope, error types, HTTP codes
and number formatting.
"""

from __future__ import annotations

import asyncio
import json
import math
import operator
import os
import platform
import re
import sys
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
import orjson
import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.types import Receive, Scope, Send

import signalroom
from signalroom.model.labels import Labels
from signalroom.model.samples import MAX_TIME_MS, MIN_TIME_MS
from signalroom.promql import ast
from signalroom.promql.engine import Engine, static_type
from signalroom.promql.storage import Matcher, MatchType, Querier
from signalroom.promql.value import (
    Matrix,
    PromQLError,
    QueryTimeoutError,
    Result,
    Scalar,
    String,
    Vector,
    format_float,
)
from signalroom.web.deps import Caller, authorize, require, runtime_of

MIN_TIME_TEXT = "-292273086-05-16T16:47:06Z"
MAX_TIME_TEXT = "292277025-08-18T07:12:54.999999999Z"
PROMETHEUS_API_VERSION = "3.5.0"

router = APIRouter(prefix="/api/v1", tags=["prometheus"])


class MetricsQuerier(Querier, Protocol):
    """What the API needs from the metric store, besides the engine's ``select``; the time
    range is the querier's own."""

    def label_names(self, matchers: Sequence[Matcher] = ()) -> list[str]: ...

    def label_values(self, name: str, matchers: Sequence[Matcher] = ()) -> list[str]: ...


class MetricsStore(Protocol):
    """The metric store as the Prometheus API sees it (implemented by ``tsdb.TSDB``)."""

    def querier(self, tenant: str, mint_ms: int, maxt_ms: int) -> MetricsQuerier: ...

    def metadata(
        self, metric: str | None = None, *, tenant: str = "default", limit: int = 0
    ) -> dict[str, list[dict[str, str]]]: ...

    def stats(self, tenant: str, limit: int = 10) -> dict[str, Any]: ...


class APIError(Exception):
    """An API failure with Prometheus' error type; the status follows from the type."""

    STATUS = {"bad_data": 400, "execution": 422, "timeout": 503, "canceled": 499,
              "internal": 500, "not_found": 404, "unavailable": 503}  # fmt: skip

    def __init__(self, error_type: str, message: str) -> None:
        self.error_type = error_type
        self.message = message
        super().__init__(message)


def invalid_param(name: str, problem: object) -> APIError:
    return APIError("bad_data", f'invalid parameter "{name}": {problem}')


# --- parameters ----------------------------------------------------------------------------


async def form_params(request: Request) -> dict[str, list[str]]:
    """Query-string and form-encoded body parameters together, as Go's ParseForm gives them."""
    params: dict[str, list[str]] = {}
    for key, value in request.query_params.multi_items():
        params.setdefault(key, []).append(value)
    if request.method == "POST":
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("application/x-www-form-urlencoded"):
            form = await request.form()
            for key, item in form.multi_items():
                if isinstance(item, str):
                    params.setdefault(key, []).append(item)
    return params


def first(params: Mapping[str, list[str]], name: str) -> str | None:
    values = params.get(name)
    return values[0] if values else None


def parse_time_ms(text: str) -> int:
    """Unix seconds with up to millisecond precision, or RFC 3339; Prometheus' min/max times."""
    try:
        seconds = float(text)
    except ValueError:
        pass
    else:
        if math.isnan(seconds) or math.isinf(seconds):
            raise ValueError(f"cannot parse {text!r} to a valid timestamp".replace("'", '"'))
        whole = math.trunc(seconds)
        return whole * 1000 + round((seconds - whole) * 1000)
    if text == MIN_TIME_TEXT:
        return MIN_TIME_MS
    if text == MAX_TIME_TEXT:
        return MAX_TIME_MS
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise ValueError(f'cannot parse "{text}" to a valid timestamp') from None
    if parsed.tzinfo is None or "T" not in text.upper():
        raise ValueError(f'cannot parse "{text}" to a valid timestamp')
    return math.floor(parsed.timestamp() * 1000)


def parse_duration_param_ms(text: str) -> int:
    """Float seconds or a Prometheus duration, as Prometheus' API accepts for step/timeout."""
    try:
        seconds = float(text)
    except ValueError:
        from signalroom.units import parse_duration_ms

        try:
            return parse_duration_ms(text)
        except ValueError:
            raise ValueError(f'cannot parse "{text}" to a valid duration') from None
    if math.isnan(seconds) or abs(seconds) * 1e9 > 2**63:
        raise ValueError(f'cannot parse "{text}" to a valid duration. It overflows int64')
    return round(seconds * 1000)


def time_param(params: Mapping[str, list[str]], name: str, default_ms: int) -> int:
    text = first(params, name)
    if text is None or text == "":
        return default_ms
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise invalid_param(name, exc) from None


def limit_param(params: Mapping[str, list[str]]) -> int:
    text = first(params, "limit")
    if not text:
        return 0
    try:
        limit = int(text)
    except ValueError:
        raise invalid_param("limit", 'cannot parse "' + text + '" to a valid limit') from None
    if limit < 0:
        raise invalid_param("limit", "limit must be non-negative")
    return limit


def parse_selectors(texts: Iterable[str]) -> list[list[Matcher]]:
    """``match[]`` series selectors into matcher lists (the metric name as ``__name__``)."""
    result = []
    for text in texts:
        try:
            node = ast.unwrap_parens(ast.parse(text))
        except PromQLError as exc:
            raise invalid_param("match[]", exc) from None
        if not isinstance(node, ast.VectorSelector):
            raise invalid_param(
                "match[]", f"1:1: parse error: expected vector selector, got {text}"
            )
        matchers = list(node.matchers)
        if node.name is not None and not any(m.name == "__name__" for m in matchers):
            matchers.append(Matcher(MatchType.EQUAL, "__name__", node.name))
        result.append(matchers)
    return result


# --- encoding --------------------------------------------------------------------------------


def format_value(value: float) -> str:
    """A sample value as Prometheus writes it: 'f' format, 'e' below 1e-6 or from 1e21."""
    magnitude = abs(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21) and not math.isinf(magnitude):
        return repr(value)  # Python's shortest 'e' form equals Go's ('1e-07', '1.5e+21')
    return format_float(value)


_WHOLE = re.compile(r"\.0(?=,|\Z)")  # a '.0' ending, in a comma-separated list


def _format_values(values: Sequence[float] | npt.NDArray[np.float64]) -> list[str]:
    """`format_value` of many values: the shortest round-trip digits (as repr) without a
    '.0' ending; values whose repr has an exponent or is not finite take the slow path.

    orjson writes the same digits as repr, positionally in repr's range (1e-4 to 1e16),
    several times faster than a repr per value."""
    array = np.ascontiguousarray(values, dtype=np.float64)
    if not len(array):
        return []
    text = orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()
    out = _WHOLE.sub("", text[1:-1]).split(",")
    with np.errstate(invalid="ignore"):
        magnitude = np.abs(array)
        # repr switches to an exponent below 1e-4 and from 1e16 (orjson: NaN and Inf as null)
        special = ~((magnitude < 1e16) & ((magnitude >= 1e-4) | (magnitude == 0)))
    if special.any():
        for i in np.flatnonzero(special).tolist():
            out[i] = format_value(float(array[i]))
    return out


def timestamp_json(ms: int) -> float | int:
    return ms // 1000 if ms % 1000 == 0 else ms / 1000


# The query routes write their JSON body directly: json.dumps over per-point Python lists
# cost more than evaluating most queries. Strings are escaped exactly as JSONResponse does.


def _timestamp_texts(ms: npt.NDArray[np.int64]) -> list[str]:
    """JSON numbers of `timestamp_json` for many timestamps (whole seconds as integers)."""
    return [str(t // 1000) if t % 1000 == 0 else repr(t / 1000) for t in ms.tolist()]


_LABELS_JSON: dict[Labels, str] = {}
_LABELS_JSON_MAX = 200_000


def _labels_json(labels: Labels) -> str:
    """A label set as a JSON object. Kept per label set: the store hands out the same label
    sets query after query, and writing them is most of the cost of a large answer."""
    text = _LABELS_JSON.get(labels)
    if text is None:
        if len(_LABELS_JSON) >= _LABELS_JSON_MAX:
            _LABELS_JSON.clear()  # bounded memory; the series of the dashboards come back
        text = _LABELS_JSON[labels] = _dumps(labels.to_dict())
    return text


def _matrix_json(value: Matrix) -> str:
    """A matrix's ``result`` array; timestamps are formatted once over all series."""
    series = value.series
    if not series:
        return "[]"
    stamps = np.unique(np.concatenate([s.timestamps for s in series]))
    # '[<time>,"' per distinct timestamp, so a point is one concatenation away.
    heads = [f'[{t},"' for t in _timestamp_texts(stamps)]
    out = []
    for s in series:
        if not len(s.timestamps):
            out.append(f'{{"metric":{_labels_json(s.labels)},"values":[]}}')
            continue
        idx = np.searchsorted(stamps, s.timestamps)
        first, count = int(idx[0]), len(idx)
        if int(idx[-1]) - first + 1 == count:  # no gap (the usual case): a slice of heads
            own = heads[first : first + count]
        else:
            own = [heads[i] for i in idx.tolist()]
        points = '"],'.join(map(operator.add, own, _format_values(s.values)))
        out.append(f'{{"metric":{_labels_json(s.labels)},"values":[{points}"]]}}')
    return "[" + ",".join(out) + "]"


def _vector_json(value: Vector) -> str:
    samples = value.samples
    texts = _format_values([s.value for s in samples])
    # an instant query's samples share one time: each distinct time written once
    stamp_text = {t: json.dumps(timestamp_json(t)) for t in {s.timestamp_ms for s in samples}}
    out = [
        f'{{"metric":{_labels_json(s.labels)},"value":[{stamp_text[s.timestamp_ms]},"{text}"]}}'
        for s, text in zip(samples, texts, strict=True)
    ]
    return "[" + ",".join(out) + "]"


def encode_result_json(result: Result) -> str:
    """The ``data`` object of a query response as JSON text (the same values as
    `encode_result`, built without intermediate Python objects per point)."""
    value = result.value
    if isinstance(value, Matrix):
        return '{"resultType":"matrix","result":' + _matrix_json(value) + "}"
    if isinstance(value, Vector):
        return '{"resultType":"vector","result":' + _vector_json(value) + "}"
    return _dumps(encode_result(result))


def _dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def query_body(result: Result) -> bytes:
    """A successful query's JSON body, written directly."""
    body = '{"status":"success","data":' + encode_result_json(result)
    if result.warnings:
        body += ',"warnings":' + _dumps(list(result.warnings))
    if result.infos:
        body += ',"infos":' + _dumps(list(result.infos))
    return (body + "}").encode()


def encode_result(result: Result) -> dict[str, Any]:
    value = result.value
    if isinstance(value, Scalar):
        point = [timestamp_json(value.timestamp_ms), format_value(value.value)]
        return {"resultType": "scalar", "result": point}
    if isinstance(value, String):
        return {"resultType": "string", "result": [timestamp_json(value.timestamp_ms), value.value]}
    if isinstance(value, Vector):
        samples = value.samples
        texts = _format_values([s.value for s in samples])
        return {
            "resultType": "vector",
            "result": [
                {"metric": s.labels.to_dict(), "value": [timestamp_json(s.timestamp_ms), text]}
                for s, text in zip(samples, texts, strict=True)
            ],
        }
    assert isinstance(value, Matrix)
    series_out = []
    for series in value.series:
        stamps = series.timestamps.tolist()
        texts = _format_values(series.values.tolist())
        series_out.append(
            {
                "metric": series.labels.to_dict(),
                "values": [[timestamp_json(t), v] for t, v in zip(stamps, texts, strict=True)],
            }
        )
    return {"resultType": "matrix", "result": series_out}


def success(data: Any, warnings: Sequence[str] = (), infos: Sequence[str] = ()) -> JSONResponse:
    body: dict[str, Any] = {"status": "success", "data": data}
    if warnings:
        body["warnings"] = list(warnings)
    if infos:
        body["infos"] = list(infos)
    return JSONResponse(body)


def failure(error: APIError) -> JSONResponse:
    body = {"status": "error", "errorType": error.error_type, "error": error.message}
    return JSONResponse(body, status_code=APIError.STATUS.get(error.error_type, 500))


# --- query routes -----------------------------------------------------------------------------


def _store(request: Request) -> MetricsStore:
    store: MetricsStore | None = getattr(runtime_of(request), "metrics", None)
    if store is None:
        raise APIError("unavailable", "the metric store is not running")
    return store


def _engine(request: Request) -> Engine:
    engine: Engine = runtime_of(request).query_engine
    return engine


async def _evaluate(
    request: Request, params: Mapping[str, list[str]], evaluate: Callable[[], Result]
) -> bytes:
    """Run ``evaluate`` in a worker thread and encode its answer there too (a large body
    would hold up the event loop), within the engine's timeout or a shorter ``timeout``."""
    timeout_text = first(params, "timeout")
    timeout_s = _engine(request).timeout_s
    if timeout_text:
        try:
            timeout_s = min(timeout_s, parse_duration_param_ms(timeout_text) / 1000)
        except ValueError as exc:
            raise invalid_param("timeout", exc) from None

    def run() -> bytes:
        return query_body(evaluate())

    try:
        async with asyncio.timeout(timeout_s):
            return await asyncio.to_thread(run)
    except TimeoutError:
        raise APIError("timeout", "query timed out in expression evaluation") from None
    except QueryTimeoutError as exc:
        raise APIError("timeout", str(exc)) from None
    except PromQLError as exc:
        raise APIError(exc.error_type, str(exc)) from None


def _query_text(params: Mapping[str, list[str]]) -> str:
    text = first(params, "query")
    if not text:
        raise invalid_param("query", "unknown position: parse error: no expression found in input")
    return text


def _parse(text: str) -> ast.Expr:
    try:
        return ast.parse(text)
    except PromQLError as exc:
        raise invalid_param("query", exc) from None


async def instant_query(request: Request, caller: Caller) -> bytes:
    """Instant query: ``query``, ``time`` (default now), ``timeout``."""
    params = await form_params(request)
    text = _query_text(params)
    at_ms = time_param(params, "time", int(time.time() * 1000))
    node = _parse(text)
    store = _store(request)
    engine = _engine(request)
    lookback = engine.lookback_delta_ms

    def evaluate() -> Result:
        querier = store.querier(caller.tenant, MIN_TIME_MS, at_ms + lookback)
        return engine.instant_query(querier, node, at_ms)

    return await _evaluate(request, params, evaluate)


async def range_query(request: Request, caller: Caller) -> bytes:
    """Range query: ``query``, ``start``, ``end``, ``step``, ``timeout``."""
    params = await form_params(request)
    text = _query_text(params)
    start_ms = _required_time(params, "start")
    end_ms = _required_time(params, "end")
    if end_ms < start_ms:
        raise invalid_param("end", "end timestamp must not be before start time")
    step_text = first(params, "step")
    if not step_text:
        raise invalid_param("step", 'cannot parse "" to a valid duration')
    try:
        step_ms = parse_duration_param_ms(step_text)
    except ValueError as exc:
        raise invalid_param("step", exc) from None
    if step_ms <= 0:
        raise invalid_param(
            "step", "zero or negative query resolution step widths are not accepted. "
            "Try a positive integer",
        )  # fmt: skip
    if (end_ms - start_ms) // step_ms > 11_000:
        raise APIError(
            "bad_data",
            "exceeded maximum resolution of 11,000 points per timeseries. "
            "Try decreasing the query resolution (?step=XX)",
        )
    node = _parse(text)
    store = _store(request)
    engine = _engine(request)

    def evaluate() -> Result:
        querier = store.querier(caller.tenant, MIN_TIME_MS, end_ms + engine.lookback_delta_ms)
        return engine.range_query(querier, node, start_ms, end_ms, step_ms)

    return await _evaluate(request, params, evaluate)


class QueryRoute:
    """``/api/v1/query`` and ``/api/v1/query_range`` as plain ASGI apps (Starlette routes).

    These are the hot routes of every dashboard: FastAPI's per-request dependency solving
    and response wrapping cost more than evaluating a small query, so they authorise
    inline. Errors are raised as elsewhere (`APIError`, `AuthError`) and answered by the
    application's exception handlers."""

    def __init__(self, path: str, handle: Callable[[Request, Caller], Awaitable[bytes]]) -> None:
        self.path = path  # the route template the request metrics are labelled with
        self.handle = handle

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = self
        request = Request(scope, receive)
        body = await self.handle(request, authorize(request, "read"))
        await send({"type": "http.response.start", "status": 200, "headers": [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})


for _route in (
    QueryRoute("/api/v1/query", instant_query),
    QueryRoute("/api/v1/query_range", range_query),
):
    router.add_route(_route.path, _route, methods=["GET", "POST"])  # type: ignore[arg-type]


def _required_time(params: Mapping[str, list[str]], name: str) -> int:
    text = first(params, name)
    if not text:
        raise invalid_param(name, 'cannot parse "" to a valid timestamp')
    try:
        return parse_time_ms(text)
    except ValueError as exc:
        raise invalid_param(name, exc) from None


# --- series and labels ----------------------------------------------------------------------------


def _range(params: Mapping[str, list[str]]) -> tuple[int, int]:
    return time_param(params, "start", MIN_TIME_MS), time_param(params, "end", MAX_TIME_MS)


@router.api_route("/series", methods=["GET", "POST"])
async def series(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Label sets of the series matching any ``match[]`` selector."""
    params = await form_params(request)
    selectors = params.get("match[]", [])
    if not selectors:
        raise APIError("bad_data", "no match[] parameter provided")
    matcher_sets = parse_selectors(selectors)
    start_ms, end_ms = _range(params)
    limit = limit_param(params)
    store = _store(request)

    def find() -> list[Labels]:
        querier = store.querier(caller.tenant, start_ms, end_ms)
        found: set[Labels] = set()
        series_of = getattr(querier, "series", None)  # label sets without reading samples
        for matchers in matcher_sets:
            if series_of is not None:
                found.update(series_of(matchers))
            else:
                found.update(data.labels for data in querier.select(matchers, start_ms, end_ms))
        return sorted(found)

    labels = await asyncio.to_thread(find)
    warnings = []
    if limit and len(labels) > limit:
        labels = labels[:limit]
        warnings.append("results truncated due to limit")
    return success([item.to_dict() for item in labels], warnings)


@router.api_route("/labels", methods=["GET", "POST"])
async def labels(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Label names, of all series or of those matching ``match[]``."""
    params = await form_params(request)
    matcher_sets = parse_selectors(params.get("match[]", []))
    start_ms, end_ms = _range(params)
    store = _store(request)

    def find() -> list[str]:
        querier = store.querier(caller.tenant, start_ms, end_ms)
        names: set[str] = set()
        for matchers in matcher_sets or [[]]:
            names.update(querier.label_names(matchers))
        return sorted(names)

    return _limited(await asyncio.to_thread(find), limit_param(params))


@router.get("/label/{name}/values")
async def label_values(
    name: str, request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    """Values of one label, of all series or of those matching ``match[]``."""
    params = await form_params(request)
    if name.startswith("U__"):
        name = _unescape_label_name(name)
    matcher_sets = parse_selectors(params.get("match[]", []))
    start_ms, end_ms = _range(params)
    store = _store(request)

    def find() -> list[str]:
        querier = store.querier(caller.tenant, start_ms, end_ms)
        values: set[str] = set()
        for matchers in matcher_sets or [[]]:
            values.update(querier.label_values(name, matchers))
        return sorted(values)

    return _limited(await asyncio.to_thread(find), limit_param(params))


def _unescape_label_name(name: str) -> str:
    """Prometheus' ``U__`` escaping of UTF-8 label names in URL paths (``_2e_`` is ``.``)."""
    out, i, body = [], 0, name[3:]
    while i < len(body):
        if body[i] == "_" and body[i : i + 2] == "__":
            out.append("_")
            i += 2
            continue
        if body[i] == "_":
            end = body.find("_", i + 1)
            if end > i:
                try:
                    out.append(chr(int(body[i + 1 : end], 16)))
                    i = end + 1
                    continue
                except ValueError:
                    pass
        out.append(body[i])
        i += 1
    return "".join(out)


def _limited(items: list[str], limit: int) -> JSONResponse:
    if limit and len(items) > limit:
        return success(items[:limit], ["results truncated due to limit"])
    return success(items)


@router.get("/metadata")
async def metadata(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """TYPE, HELP and UNIT of metrics: ``metric``, ``limit``, ``limit_per_metric``."""
    params = await form_params(request)
    metric = first(params, "metric") or None
    limit = _int_param(params, "limit", -1)
    per_metric = _int_param(params, "limit_per_metric", -1)
    data = _store(request).metadata(metric, tenant=caller.tenant, limit=max(limit, 0))
    if per_metric > 0:
        data = {name: entries[:per_metric] for name, entries in data.items()}
    return success(data)


def _int_param(params: Mapping[str, list[str]], name: str, default: int) -> int:
    text = first(params, name)
    if not text:
        return default
    try:
        return int(text)
    except ValueError:
        raise invalid_param(name, f'cannot parse "{text}" to a valid integer') from None


@router.api_route("/query_exemplars", methods=["GET", "POST"])
async def query_exemplars(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Exemplars are not stored yet: a valid query answers an empty list."""
    params = await form_params(request)
    _parse(_query_text(params))
    return success([])


@router.api_route("/format_query", methods=["GET", "POST"])
async def format_query(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """The query pretty-printed by the parser."""
    params = await form_params(request)
    text = _query_text(params)
    try:
        import promql_parser

        tree = promql_parser.parse(text)
    except ValueError as exc:
        raise invalid_param("query", exc) from None
    pretty = getattr(tree, "prettify", None)
    return success(pretty() if callable(pretty) else str(tree))


@router.api_route("/parse_query", methods=["GET", "POST"])
async def parse_query(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """The query's syntax tree as JSON, in the shape of Prometheus' ``translateAST``."""
    params = await form_params(request)
    return success(translate_ast(_parse(_query_text(params))))


def translate_ast(node: ast.Expr) -> dict[str, Any]:
    """A syntax tree as Prometheus 3.5's ``/api/v1/parse_query`` writes it."""
    if isinstance(node, ast.Aggregate):
        return {
            "type": "aggregation",
            "op": node.op,
            "expr": translate_ast(node.expr),
            "param": translate_ast(node.param) if node.param is not None else None,
            "grouping": list(node.grouping),
            "without": node.without,
        }
    if isinstance(node, ast.Binary):
        matching = None
        # Prometheus keeps vector matching only between two instant vectors
        if static_type(node.lhs) == "vector" and static_type(node.rhs) == "vector":
            m = node.matching
            matching = {
                "card": m.card,
                "labels": list(m.labels),
                "on": m.on,
                "include": list(m.include),
            }
        return {
            "type": "binaryExpr",
            "op": node.op,
            "lhs": translate_ast(node.lhs),
            "rhs": translate_ast(node.rhs),
            "matching": matching,
            "bool": node.return_bool,
        }
    if isinstance(node, ast.Call):
        return {
            "type": "call",
            "func": {
                "name": node.name,
                "argTypes": list(node.arg_types),
                "variadic": node.variadic,
                "returnType": node.return_type,
            },
            "args": [translate_ast(arg) for arg in node.args],
        }
    if isinstance(node, ast.MatrixSelector):
        vs = node.selector
        return {
            "type": "matrixSelector",
            "name": vs.name or "",
            "range": node.range_ms,
            "offset": vs.offset_ms,
            "matchers": _matchers_json(vs.matchers),
            **_at_json(vs.at),
        }
    if isinstance(node, ast.Subquery):
        return {
            "type": "subquery",
            "expr": translate_ast(node.expr),
            "range": node.range_ms,
            "offset": node.offset_ms,
            "step": node.step_ms,
            **_at_json(node.at),
        }
    if isinstance(node, ast.NumberLiteral):
        return {"type": "numberLiteral", "val": _go_float_f(node.value)}
    if isinstance(node, ast.Paren):
        return {"type": "parenExpr", "expr": translate_ast(node.expr)}
    if isinstance(node, ast.StringLiteral):
        return {"type": "stringLiteral", "val": node.value}
    if isinstance(node, ast.Unary):
        return {"type": "unaryExpr", "op": node.op, "expr": translate_ast(node.expr)}
    if isinstance(node, ast.VectorSelector):
        return {
            "type": "vectorSelector",
            "name": node.name or "",
            "offset": node.offset_ms,
            "matchers": _matchers_json(node.matchers),
            **_at_json(node.at),
        }
    raise APIError("internal", f"unsupported node type {type(node).__name__}")


def _matchers_json(matchers: Sequence[Matcher]) -> list[dict[str, str]]:
    return [{"name": m.name, "value": m.value, "type": m.type.value} for m in matchers]


def _at_json(at: ast.At | None) -> dict[str, Any]:
    """``timestamp`` (ms, for ``@ <time>``) and ``startOrEnd`` (``@ start()``/``@ end()``)."""
    if at is None:
        return {"timestamp": None, "startOrEnd": None}
    if at.kind == ast.AT_TIME:
        return {"timestamp": at.time_ms, "startOrEnd": None}
    return {"timestamp": None, "startOrEnd": at.kind}


def _go_float_f(value: float) -> str:
    """Go's ``strconv.FormatFloat(v, 'f', -1, 64)``: shortest digits, never an exponent."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return np.format_float_positional(value, trim="-")


# --- status ----------------------------------------------------------------------------------


@router.get("/status/buildinfo")
async def buildinfo(caller: Caller = Depends(require("read"))) -> Response:
    """Version of the Prometheus API signalroom implements (Grafana reads it for features)."""
    return success(
        {
            "version": PROMETHEUS_API_VERSION,
            "revision": f"signalroom-{signalroom.__version__}",
            "branch": "signalroom",
            "buildUser": "signalroom",
            "buildDate": "",
            "goVersion": f"python{platform.python_version()}",
        }
    )


@router.get("/status/config")
async def status_config(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """The running configuration as YAML, with secrets replaced by ``<secret>``."""
    config = runtime_of(request).config.model_dump(mode="json", by_alias=True)
    for token in config.get("auth", {}).get("tokens", []):
        token["sha256"] = "<secret>"
    return success({"yaml": yaml.safe_dump(config, sort_keys=False)})


@router.get("/status/flags")
async def status_flags(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    runtime = runtime_of(request)
    return success(
        {
            "config.file": str(runtime.config_path or ""),
            "storage.tsdb.path": str(runtime.data_dir),
            "web.listen-address": str(runtime.listen),
            "query.lookback-delta": "5m",
            "query.max-samples": str(_engine(request).max_samples),
            "query.timeout": f"{int(_engine(request).timeout_s)}s",
        }
    )


@router.get("/status/runtimeinfo")
async def status_runtimeinfo(
    request: Request, caller: Caller = Depends(require("read"))
) -> Response:
    runtime = runtime_of(request)
    retention = runtime.config.storage.metrics_retention
    return success(
        {
            "startTime": datetime.fromtimestamp(runtime.started_at).astimezone().isoformat(),
            "CWD": os.getcwd(),
            "reloadConfigSuccess": runtime.last_reload_ok,
            "lastConfigTime": datetime.fromtimestamp(runtime.last_reload_at)
            .astimezone()
            .isoformat(),
            "corruptionCount": 0,
            "goroutineCount": len(asyncio.all_tasks()),
            "GOMAXPROCS": os.cpu_count() or 1,
            "GOMEMLIMIT": sys.maxsize,
            "GOGC": "",
            "GODEBUG": "",
            "storageRetention": f"{retention.time // 86_400_000}d"
            if retention.time
            else "unlimited",
        }
    )


@router.get("/status/tsdb")
async def status_tsdb(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Cardinality statistics of the head: series by metric, label pairs, memory by label."""
    params = await form_params(request)
    limit = _int_param(params, "limit", 10)
    if limit <= 0:
        raise invalid_param("limit", "limit must be a positive number")
    return success(_store(request).stats(caller.tenant, limit))


# --- rules and alerts ---------------------------------------------------------------------


@router.get("/rules")
async def rules(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Rule groups with their rules' state: ``type``, ``rule_name[]``, ``rule_group[]``,
    ``file[]``, ``exclude_alerts`` filters as Prometheus has them."""
    params = await form_params(request)
    manager = runtime_of(request).rules
    if manager is None:
        return success({"groups": []})
    kind = first(params, "type")
    if kind not in (None, "", "alert", "record"):
        raise invalid_param("type", f'not supported value "{kind}"')
    exclude = (first(params, "exclude_alerts") or "false").lower() == "true"
    data = manager.rules_api(
        kind or None,
        params.get("rule_name[]", []),
        params.get("rule_group[]", []),
        params.get("file[]", []),
        exclude,
    )
    return success(data)


@router.get("/alerts")
async def alerts(request: Request, caller: Caller = Depends(require("read"))) -> Response:
    """Every pending and firing alert of the alerting rules."""
    manager = runtime_of(request).rules
    return success(manager.alerts_api() if manager is not None else {"alerts": []})
