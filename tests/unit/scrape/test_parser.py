"""Exposition parsing: prometheus_client's output, tricky inputs and Prometheus's errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from prometheus_client import (
    CollectorRegistry,
    Counter,
    Enum,
    Gauge,
    Histogram,
    Info,
    Summary,
    generate_latest,
)
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from prometheus_client.parser import text_string_to_metric_families

from signalroom.model.labels import Labels
from signalroom.scrape.appender import NORMAL_NAN_BITS
from signalroom.scrape.parser import (
    NO_TIMESTAMP,
    ParseError,
    UnsupportedContentType,
    format_of,
    parse,
    parse_openmetrics,
    parse_text,
)

pytestmark = pytest.mark.unit


def registry() -> CollectorRegistry:
    reg = CollectorRegistry()
    c = Counter("http_requests", "Requests \\ with\nnewline", ["path", "code"], registry=reg)
    c.labels('/a"quoted"', "200").inc(3)
    c.labels("/b\\slash\nnl", "500").inc(0.5)
    h = Histogram("latency_seconds", "Latency", registry=reg, buckets=[0.1, 1])
    h.observe(0.5)
    Summary("size_bytes", "Sizes", registry=reg).observe(12)
    Info("build", "Build info", registry=reg).info({"version": "1.2", "commit": "abc"})
    Enum("state", "State", states=["a", "b"], registry=reg)
    Gauge("temp", "T", unit="celsius", registry=reg).set(float("nan"))
    Gauge("inf_gauge", "Inf", registry=reg).set(float("-inf"))
    return reg


def as_dict(parsed: object) -> dict[Labels, float]:
    from signalroom.scrape.parser import ParsedScrape

    assert isinstance(parsed, ParsedScrape)
    pairs = zip(parsed.series, parsed.values.tolist(), strict=True)
    return {parsed.labels_of(k): v for k, v in pairs}


def reference(text: str) -> dict[Labels, float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[Labels({"__name__": sample.name, **sample.labels})] = sample.value
    return out


def same(a: dict[Labels, float], b: dict[Labels, float]) -> bool:
    if a.keys() != b.keys():
        return False
    return all((math.isnan(a[k]) and math.isnan(b[k])) or a[k] == b[k] for k in a)


def test_text_matches_prometheus_client_parser() -> None:
    text = generate_latest(registry()).decode()
    parsed = parse_text(text)
    assert same(as_dict(parsed), reference(text))
    assert len(parsed) == len(reference(text))
    assert parsed.metadata["http_requests_total"].type == "counter"
    assert parsed.metadata["http_requests_total"].help == "Requests \\ with\nnewline"
    assert parsed.metadata["latency_seconds"].type == "histogram"
    assert (parsed.timestamps_ms == NO_TIMESTAMP).all()
    key = next(k for k in parsed.series if "/b" in k)
    assert parsed.labels_of(key).get("path") == "/b\\slash\nnl"


def test_openmetrics_matches_prometheus_client_output() -> None:
    reg = registry()
    om = parse_openmetrics(generate_openmetrics(reg).decode())  # type: ignore[no-untyped-call]
    text = parse_text(generate_latest(reg).decode())
    assert same(as_dict(om), as_dict(text))
    assert om.metadata["http_requests"].type == "counter"
    assert om.metadata["build"].type == "info"
    assert om.metadata["state"].type == "stateset"
    assert om.metadata["temp_celsius"].unit == "celsius"


def test_nan_is_prometheus_normal_nan() -> None:
    parsed = parse_text("a NaN\nb +Inf\nc -Inf\nd nan\n")
    bits = parsed.values.view(np.uint64)
    assert bits[0] == NORMAL_NAN_BITS and bits[3] == NORMAL_NAN_BITS
    assert parsed.values[1] == math.inf and parsed.values[2] == -math.inf


def test_text_tricky_lines() -> None:
    text = (
        "# a plain comment\n"
        "\n"
        ' spaced { b = "c" , } 1 5\n'
        'brace{v="a } 7"} 2\n'
        'trailing{a="b",} 3 -7\n'
        '{"utf8.metric", "label.name"="v"} 4\n'
        "tabbed\t5\n"
        "# HELP no_text\n"
        'esc{a="x\\\\ny"} 6\n'
        'unknown_escape{a="x\\ty"} 7\n'
    )
    parsed = parse_text(text)
    got = as_dict(parsed)
    assert got[Labels({"__name__": "spaced", "b": "c"})] == 1
    assert got[Labels({"__name__": "brace", "v": "a } 7"})] == 2
    assert got[Labels({"__name__": "utf8.metric", "label.name": "v"})] == 4
    assert got[Labels({"__name__": "tabbed"})] == 5
    assert got[Labels({"__name__": "esc", "a": "x\\ny"})] == 6  # "\\\\n" is backslash then n
    assert got[Labels({"__name__": "unknown_escape", "a": "x\\ty"})] == 7
    assert parsed.timestamps_ms.tolist()[:3] == [5, NO_TIMESTAMP, -7]
    assert parsed.metadata["no_text"].help == ""


def test_openmetrics_timestamps_exemplars_created() -> None:
    text = (
        "# TYPE foo counter\n"
        '# HELP foo A \\"counter\\"\n'
        'foo_total 17 1520879607.789 # {trace_id="KOO5S4vxi0o"} 0.67 1520879602.0\n'
        'foo_total{a="b"} 1 # {} 3\n'
        "foo_created 1520872607.123\n"
        "# TYPE g gauge\n"
        "g_created 5\n"
        "# EOF\n"
    )
    parsed = parse_openmetrics(text)
    assert parsed.series == ["foo_total", 'foo_total{a="b"}', "foo_created", "g_created"]
    assert parsed.timestamps_ms.tolist()[0] == 1520879607789
    ex = parsed.exemplars
    assert ex[0].sample_index == 0 and ex[0].labels == Labels({"trace_id": "KOO5S4vxi0o"})
    assert ex[0].value == 0.67 and ex[0].timestamp_ms == 1520879602000
    assert ex[1].sample_index == 1 and ex[1].timestamp_ms is None
    assert parsed.created_ms == {"foo_created": 1520872607123}  # not g_created: a gauge
    assert parsed.metadata["foo"].help == 'A "counter"'
    skipped = parse_openmetrics(text, skip_created_series=True)
    assert skipped.series == ["foo_total", 'foo_total{a="b"}', "g_created"]
    assert [e.sample_index for e in skipped.exemplars] == [0, 1]


def test_known_keys_skip_label_parsing() -> None:
    text = 'a{x="1"} 1\nb 2\n'
    first = parse_text(text)
    again = parse_text(text, known=set(first.series))
    assert again.labels == {}
    assert again.values.tolist() == [1.0, 2.0]


def test_content_type_negotiation() -> None:
    assert format_of("text/plain; version=0.0.4; charset=utf-8") == "prometheus"
    assert format_of("application/openmetrics-text; version=1.0.0; charset=utf-8") == "openmetrics"
    with pytest.raises(UnsupportedContentType, match="blank Content-Type"):
        format_of("")
    with pytest.raises(UnsupportedContentType, match='unsupported Content-Type "application/json"'):
        format_of("application/json")
    assert format_of("", "prometheus") == "prometheus"
    parsed = parse(b"a 1\n# EOF\n", "application/openmetrics-text")
    assert parsed.format == "openmetrics"


# Inputs and messages from Prometheus's promparse and openmetricsparse tests.
TEXT_ERRORS = [
    ("a", 'expected value after metric, got "\\n" ("INVALID") while parsing: "a\\n"'),
    ("a{b='c'} 1\n", 'expected label value, got "\'" ("INVALID") while parsing: "a{b=\'"'),
    ("a{b=\n", 'expected label value, got "\\n" ("INVALID") while parsing: "a{b=\\n"'),
    (b'a{\xff="foo"} 1\n', 'expected label name, got "\\xff" ("INVALID") while parsing: "a{\\xff"'),
    (b'a{b="\xff"} 1\n', 'invalid UTF-8 label value: "\\"\\xff\\""'),
    ("a true\n", 'strconv.ParseFloat: parsing "true": invalid syntax while parsing: "a true"'),
    (
        'something_weird{problem="',
        'expected label value, got "\\"\\n" ("INVALID") while parsing: '
        '"something_weird{problem=\\"\\n"',
    ),
    (
        'empty_label_name{=""} 0',
        'expected label name, got "=\\"" ("EQUAL") while parsing: "empty_label_name{=\\""',
    ),
    ("foo 1_2\n", 'unsupported character in float while parsing: "foo 1_2"'),
    ("foo 0x1p-3\n", 'unsupported character in float while parsing: "foo 0x1p-3"'),
    (
        "foo 0 1_2\n",
        'expected next entry after timestamp, got "_" ("INVALID") while parsing: "foo 0 1_"',
    ),
    ('{a="ok"} 1', 'metric name not set while parsing: "{a=\\"ok\\"} 1"'),
    (
        "# TYPE #\n#EOF\n",
        'expected metric name after TYPE, got "#" ("INVALID") while parsing: "# TYPE #"',
    ),
    ('{"a",b\\nc="d"} 1', 'expected equal, got "\\\\" ("INVALID") while parsing: "{\\"a\\",b\\\\"'),
    ("# TYPE a info\n", 'invalid metric type "info"'),
]


@pytest.mark.parametrize(("given", "message"), TEXT_ERRORS)
def test_text_errors_as_prometheus(given: str | bytes, message: str) -> None:
    data = given if isinstance(given, bytes) else given.encode()
    with pytest.raises(ParseError) as info:
        parse(data, "text/plain; version=0.0.4")
    assert info.value.message == message


OM_ERRORS = [
    ("", "data does not end with # EOF"),
    ("metric 1\n", "data does not end with # EOF"),
    ("a\n#EOF\n", 'expected value after metric, got "\\n" ("INVALID") while parsing: "a\\n"'),
    ("\n\n#EOF\n", 'expected a valid start token, got "\\n" ("INVALID") while parsing: "\\n"'),
    (" a 1\n#EOF\n", 'expected a valid start token, got " " ("INVALID") while parsing: " "'),
    ("9\n#EOF\n", 'expected a valid start token, got "9" ("INVALID") while parsing: "9"'),
    ("# TYPE u untyped\n#EOF\n", 'invalid metric type "untyped"'),
    ("# TYPE c counter \n#EOF\n", 'invalid metric type "counter "'),
    (
        "#  TYPE c counter\n#EOF\n",
        'expected a valid start token, got "#  " ("INVALID") while parsing: "#  "',
    ),
    (
        "# TYPE \n#EOF\n",
        'expected metric name after TYPE, got "\\n" ("INVALID") while parsing: "# TYPE \\n"',
    ),
    ("# TYPE m\n#EOF\n", "expected text in TYPE"),
    ("# UNIT metric suffix\n#EOF\n", 'unit "suffix" not a suffix of metric "metric"'),
    ("# UNIT metricsuffix suffix\n#EOF\n", 'unit "suffix" not a suffix of metric "metricsuffix"'),
    ("# HELP m\n#EOF\n", "expected text in HELP"),
    ("a\t1\n#EOF\n", 'expected value after metric, got "\\t" ("INVALID") while parsing: "a\\t"'),
    (
        "a 1\t2\n#EOF\n",
        'strconv.ParseFloat: parsing "1\\t2": invalid syntax while parsing: "a 1\\t2"',
    ),
    (
        "a 1 2 \n#EOF\n",
        'expected next entry after timestamp, got " \\n" ("INVALID") while parsing: "a 1 2 \\n"',
    ),
    ("a 1 1z\n#EOF\n", 'strconv.ParseFloat: parsing "1z": invalid syntax while parsing: "a 1 1z"'),
    ("# EOF\na 1", "unexpected data after # EOF"),
    ("# EOF\n\n", "unexpected data after # EOF"),
    ("# EOFa 1", "unexpected data after # EOF"),
    (
        "#\tTYPE c counter\n",
        'expected a valid start token, got "#\\t" ("INVALID") while parsing: "#\\t"',
    ),
    ('a{,b="c"} 1\n# EOF\n', 'expected label name, got ",b" ("COMMA") while parsing: "a{,b"'),
    (
        'a{b="c"d="e"} 1\n# EOF\n',
        'expected comma or brace close, got "d=" ("LNAME") while parsing: "a{b=\\"c\\"d="',
    ),
    (
        'a{b="c",,d="e"} 1\n# EOF\n',
        'expected label name, got ",d" ("COMMA") while parsing: "a{b=\\"c\\",,d"',
    ),
    (
        "custom_metric_total 1 # {aa=bb}\n# EOF\n",
        'expected label value, got "b" ("INVALID") while parsing: "custom_metric_total 1 # {aa=b"',
    ),
    (
        'custom_metric_total 1 # {aa="bb"}\n# EOF\n',
        'expected value after exemplar labels, got "\\n" ("INVALID") while parsing: '
        '"custom_metric_total 1 # {aa=\\"bb\\"}\\n"',
    ),
    (
        'custom_metric_total 1 # {aa="bb"} 1_2',
        'unsupported character in float while parsing: "custom_metric_total 1 # {aa=\\"bb\\"} 1_2"',
    ),
    ('{b="c",} 1', 'metric name not set while parsing: "{b=\\"c\\",} 1"'),
    ("a 1 NaN", "invalid timestamp NaN"),
    ("a 1 -Inf", "invalid timestamp -Inf"),
    (
        '# TYPE hhh histogram\nhhh_bucket{le="+Inf"} 1 # {aa="bb"} 4 NaN',
        "invalid exemplar timestamp NaN",
    ),
]


@pytest.mark.parametrize(("given", "message"), OM_ERRORS)
def test_openmetrics_errors_as_prometheus(given: str, message: str) -> None:
    with pytest.raises(ParseError) as info:
        parse(given.encode(), "application/openmetrics-text; version=1.0.0")
    assert info.value.message == message


def test_errors_name_line_and_column() -> None:
    with pytest.raises(ParseError) as info:
        parse_text("ok 1\nok2 2\nbad{x=1} 3\n")
    assert (info.value.line, info.value.column) == (3, 7)
    assert str(info.value).startswith("line 3 column 7: expected label value")


def test_duplicate_label_names_rejected() -> None:
    with pytest.raises(ParseError, match='label name "b" is not unique'):
        parse_text('a{b="c",b="d"} 1\n')


@pytest.mark.parametrize("good", ["# EOF", "# EOF\n", "a 1\n# EOF"])
def test_openmetrics_eof_forms(good: str) -> None:
    parse_openmetrics(good)
