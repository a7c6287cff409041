"""The expansion vectors of Prometheus's template/template_test.go (TestTemplateExpansion)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest

from signalroom.model.labels import Labels
from signalroom.templating import Expander, ExpansionError

pytestmark = pytest.mark.unit

MAX_INT64 = 2**63 - 1
MIN_INT64 = -(2**63)
MAX_UINT64 = 2**64 - 1
EXTERNAL_URL = "http://testhost:9090/path/prefix"


@dataclass
class Case:
    text: str
    output: str = ""
    input: Any = None
    options: tuple[str, ...] = ()
    query_result: list[tuple[dict[str, str], float]] = field(default_factory=list)
    should_fail: bool = False
    html: bool = False
    error: str = ""


def _exec_error(pos: str, node: str) -> str:
    """The prefix Go's text/template puts on an execution error in template "test"."""
    return f'error executing template test: template: test:{pos}: executing "test" at <{node}>: '


def _metric(**kw: str) -> dict[str, str]:
    return {"__name__": "metric", **kw}


CASES = [
    Case("plain text", "plain text"),
    Case("{{ 1 }}", "1"),
    Case(
        "{{\u00a0}}",
        should_fail=True,
        error="error parsing template test: template: test:1: "
        "unrecognized character in action: U+00A0",
    ),
    Case('{{ "<b>" }}', "&lt;b&gt;", html=True),
    Case('{{ "<b>" | safeHtml }}', "<b>", html=True),
    Case('{{ "<b>" }}', "<b>"),
    Case('{{define "x"}}{{.arg0}} {{.arg1}}{{end}}{{template "x" (args 1 "2")}}', "1 2"),
    Case('{{ query "1.5" | first | value }}', "1.5", query_result=[({}, 1.5)]),
    Case(
        "{{ query \"metric{instance='a'}\" | first | value }}",
        "11",
        query_result=[(_metric(instance="a"), 11)],
    ),
    Case(
        '{{ query "metric{instance=\'a\'}" | first | label "instance" }}',
        "a",
        query_result=[(_metric(instance="a"), 11)],
    ),
    Case(
        "{{ query \"metric{__value__='a'}\" | first | strvalue }}",
        "a",
        query_result=[(_metric(__value__="a"), 11)],
    ),
    Case(
        '{{ query "metric{instance=\'a\'}" | first | label "foo" }}',
        "",
        query_result=[(_metric(instance="a"), 11)],
    ),
    Case(
        '{{ $x := query "metric" | first }}{{ $x.Labels.foo }}',
        "",
        query_result=[(_metric(instance="a"), 11)],
    ),
    Case(
        '{{ $x := query "metric" | first }}{{ $x.Labels.foo }}',
        "",
        query_result=[(_metric(instance="a"), 11)],
        html=True,
    ),
    Case(
        '{{ range query "metric" | sortByLabel "instance" }}'
        "{{.Labels.instance}}:{{.Value}}: {{end}}",
        "a:11: b:21: ",
        query_result=[(_metric(instance="b"), 21), (_metric(instance="a"), 11)],
    ),
    Case('{{ "foo.example.com" | stripPort }}', "foo.example.com"),
    Case('{{ "foo.example.com:12345" | stripPort }}', "foo.example.com"),
    Case('{{ "192.0.2.1" | stripPort }}', "192.0.2.1"),
    Case('{{ "192.0.2.1:12345" | stripPort }}', "192.0.2.1"),
    Case('{{ "2001:0DB8::1" | stripPort }}', "2001:0DB8::1"),
    Case('{{ "[2001:0DB8::1]:12345" | stripPort }}', "2001:0DB8::1"),
    Case('{{ "[2001:0DB8::1]::12345" | stripPort }}', "[2001:0DB8::1]::12345"),
    Case("{{ .Foo }}", "<no value>"),
    Case("{{ .Foo }}", "<no value>", options=()),
    Case(
        "{{ .Foo }}",
        options=("missingkey=error",),
        should_fail=True,
        error=_exec_error("1:3", ".Foo") + 'nil data; no entry for key "Foo"',
    ),
    Case("{{ .Foo }}", "", html=True),
    Case("{{ .Foo }}", "", options=(), html=True),
    Case(
        "{{ .Foo }}",
        options=("missingkey=error",),
        should_fail=True,
        html=True,
        error=_exec_error("1:3", ".Foo") + 'nil data; no entry for key "Foo"',
    ),
    Case(
        "{{",
        should_fail=True,
        error="error parsing template test: template: test:1: unclosed action",
    ),
    Case(
        '{{ query "missing" | first }}',
        should_fail=True,
        error=_exec_error("1:21", "first")
        + "error calling first: first() called on vector with no elements",
    ),
    Case(
        '{{ (query "missing").banana }}',
        should_fail=True,
        error=_exec_error("1:10", '"missing"')
        + "can't evaluate field banana in type template.queryResult",
    ),
    Case('{{ reReplaceAll "(a)b" "x$1" "ab" }}', "xa"),
    Case(
        "{{ range . }}{{ humanize . }}:{{ end }}",
        "0:1:1.235M:120m:",
        input=[0.0, 1.0, 1234567.0, 0.12],
    ),
    Case(
        "{{ range . }}{{ humanize . }}:{{ end }}",
        "0:1:1.235M:120m:",
        input=["0.0", "1.0", "1234567.0", ".12"],
    ),
    Case(
        '{{ humanize "one" }}',
        should_fail=True,
        error=_exec_error("1:3", 'humanize "one"')
        + 'error calling humanize: strconv.ParseFloat: parsing "one": invalid syntax',
    ),
    Case(
        "{{ range . }}{{ humanize . }}:{{ end }}",
        "0:-1:1:1.235M:9.223E:",
        input=[0, -1, 1, 1234567, MAX_INT64],
    ),
    Case(
        "{{ range . }}{{ humanize . }}:{{ end }}",
        "0:1:1.235M:18.45E:",
        input=[0, 1, 1234567, MAX_UINT64],
    ),
    Case(
        "{{ range . }}{{ humanize1024 . }}:{{ end }}",
        "0:1:1Mi:0.12:",
        input=[0.0, 1.0, 1048576.0, 0.12],
    ),
    Case(
        "{{ range . }}{{ humanize1024 . }}:{{ end }}",
        "0:1:1Mi:0.12:",
        input=["0.0", "1.0", "1048576.0", ".12"],
    ),
    Case(
        '{{ humanize1024 "one" }}',
        should_fail=True,
        error=_exec_error("1:3", 'humanize1024 "one"')
        + 'error calling humanize1024: strconv.ParseFloat: parsing "one": invalid syntax',
    ),
    Case(
        "{{ range . }}{{ humanize1024 . }}:{{ end }}",
        "0:-1:1:1.177Mi:8Ei:",
        input=[0, -1, 1, 1234567, MAX_INT64],
    ),
    Case(
        "{{ range . }}{{ humanize1024 . }}:{{ end }}",
        "0:1:1.177Mi:16Ei:",
        input=[0, 1, 1234567, MAX_UINT64],
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:1d 1h 0m 0s:-2d 3h 4m 5s:14m 59s:",
        input=[
            0.0,
            1.0,
            60.0,
            3600.0,
            86400.0,
            86400.0 + 3600,
            -(86400 * 2 + 3600 * 3 + 60 * 4 + 5.0),
            899.99,
        ],
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "0s:1s:1m 0s:1h 0m 0s:1d 0h 0m 0s:",
        input=["0", "1", "60", "3600", "86400"],
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
        input=[0.1, 0.0001, 0.12345, 60.1, 60.5, 1.2345, 12.345],
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "100ms:100us:123.5ms:1m 0s:1m 0s:1.234s:12.35s:",
        input=[".1", ".0001", ".12345", "60.1", "60.5", "1.2345", "12.345"],
    ),
    Case(
        '{{ humanizeDuration "one" }}',
        should_fail=True,
        error=_exec_error("1:3", 'humanizeDuration "one"')
        + 'error calling humanizeDuration: strconv.ParseFloat: parsing "one": invalid syntax',
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "0s:-1s:1s:14d 6h 56m 7s:",
        input=[0, -1, 1, 1234567],
    ),
    Case(
        "{{ range . }}{{ humanizeDuration . }}:{{ end }}",
        "0s:1s:14d 6h 56m 7s:",
        input=[0, 1, 1234567],
    ),
    Case(
        "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:"
        "{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
        "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        input=[math.inf, -math.inf, math.nan],
    ),
    Case(
        "{{ range . }}{{ humanize . }}:{{ humanize1024 . }}:"
        "{{ humanizeDuration . }}:{{humanizeTimestamp .}}:{{ end }}",
        "+Inf:+Inf:+Inf:+Inf:-Inf:-Inf:-Inf:-Inf:NaN:NaN:NaN:NaN:",
        input=["+Inf", "-Inf", "NaN"],
    ),
    Case(
        "{{ -0.22222 | humanizePercentage }}:{{ 0.0 | humanizePercentage }}:"
        "{{ 0.1234567 | humanizePercentage }}:{{ 1.23456 | humanizePercentage }}",
        "-22.22%:0%:12.35%:123.5%",
    ),
    Case(
        "{{ range . }}{{ humanizePercentage . }}:{{ end }}",
        "0%:-100%:100%:1.235e+08%:9.223e+20%:",
        input=[0, -1, 1, 1234567, MAX_INT64],
    ),
    Case(
        "{{ range . }}{{ humanizePercentage . }}:{{ end }}",
        "0%:100%:1.235e+08%:1.845e+21%:",
        input=[0, 1, 1234567, MAX_UINT64],
    ),
    Case(
        '{{ "-0.22222" | humanizePercentage }}:{{ "0.0" | humanizePercentage }}:'
        '{{ "0.1234567" | humanizePercentage }}:{{ "1.23456" | humanizePercentage }}',
        "-22.22%:0%:12.35%:123.5%",
    ),
    Case(
        '{{ "one" | humanizePercentage }}',
        should_fail=True,
        error=_exec_error("1:11", "humanizePercentage")
        + 'error calling humanizePercentage: strconv.ParseFloat: parsing "one": invalid syntax',
    ),
    Case(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        "1970-01-01 00:00:00 +0000 UTC:1969-12-31 23:59:59 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:"
        "1970-01-15 06:56:07 +0000 UTC:2262-04-11 23:47:16 +0000 UTC:",
        input=[0, -1, 1, 1234567, 9223372036],
    ),
    Case(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        "1970-01-01 00:00:00 +0000 UTC:1970-01-01 00:00:01 +0000 UTC:1970-01-15 06:56:07 +0000 UTC:"
        "2262-04-11 23:47:16 +0000 UTC:",
        input=[0, 1, 1234567, 9223372036],
    ),
    Case(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        input=[MIN_INT64, MAX_INT64],
        should_fail=True,
        error=_exec_error("1:16", "humanizeTimestamp .")
        + "error calling humanizeTimestamp: -9.223372036854776e+18 "
        "cannot be represented as a nanoseconds timestamp since it overflows int64",
    ),
    Case(
        "{{ range . }}{{ humanizeTimestamp . }}:{{ end }}",
        input=[MAX_UINT64],
        should_fail=True,
        error=_exec_error("1:16", "humanizeTimestamp .")
        + "error calling humanizeTimestamp: 1.8446744073709552e+19 "
        "cannot be represented as a nanoseconds timestamp since it overflows int64",
    ),
    Case("{{ 1435065584.128 | humanizeTimestamp }}", "2015-06-23 13:19:44.128 +0000 UTC"),
    Case('{{ "1435065584.128" | humanizeTimestamp }}', "2015-06-23 13:19:44.128 +0000 UTC"),
    Case('{{ (1435065584.128 | toTime).Format "2006" }}', "2015"),
    Case('{{ ("1435065584.128" | toTime).Format "2006" }}', "2015"),
    Case('{{ "aa bb CC" | title }}', "Aa Bb CC"),
    Case('{{ "aa bb CC" | toUpper }}', "AA BB CC"),
    Case('{{ "aA bB CC" | toLower }}', "aa bb cc"),
    Case('{{ match "a+" "aa" }} {{ match "a+" "b" }}', "true false"),
    Case('{{ graphLink "up" }}', "/graph?g0.expr=up&g0.tab=0"),
    Case('{{ tableLink "up" }}', "/graph?g0.expr=up&g0.tab=1"),
    Case('{{ define "a" }}x{{ end }}{{ $name := "a"}}{{ tmpl $name . }}', "x", html=True),
    Case("{{ pathPrefix }}", "/path/prefix"),
    Case("{{ externalURL }}", "http://testhost:9090/path/prefix"),
    Case('{{ printf "%0.2f" (parseDuration "1h2m10ms") }}', "3720.01"),
    Case('{{ "foo.example.com" | stripDomain }}', "foo"),
    Case('{{ "foo.example.com:12345" | stripDomain }}', "foo:12345"),
    Case('{{ "192.0.2.1" | stripDomain }}', "192.0.2.1"),
    Case('{{ "192.0.2.1:12345" | stripDomain }}', "192.0.2.1:12345"),
    Case('{{ "2001:0DB8::1" | stripDomain }}', "2001:0DB8::1"),
    Case('{{ "[2001:0DB8::1]:12345" | stripDomain }}', "[2001:0DB8::1]:12345"),
    Case('{{ "[2001:0DB8::1]::12345" | stripDomain }}', "[2001:0DB8::1]::12345"),
]


@pytest.mark.parametrize("case", CASES, ids=[f"{i}:{c.text[:40]}" for i, c in enumerate(CASES)])
def test_prometheus_template_expansion(case: Case) -> None:
    def query(_q: str, _t: int) -> list[tuple[Labels, float]]:
        return [(Labels(lbls), v) for lbls, v in case.query_result]

    expander = Expander(case.text, "test", case.input, 0, query, EXTERNAL_URL, case.options)
    if case.should_fail:
        with pytest.raises(ExpansionError) as info:
            expander.expand(html=case.html)
        assert str(info.value) == case.error
        return
    assert expander.expand(html=case.html) == case.output
