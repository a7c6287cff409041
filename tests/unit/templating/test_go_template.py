"""Go text/template semantics: control flow, variables, trim markers, builtins, fmt verbs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from signalroom.templating import StringMap, Template, TemplateExecError, TemplateParseError

pytestmark = pytest.mark.unit

CASES: list[tuple[str, Any, str]] = [
    ("{{/* comment */}}a", None, "a"),
    ("a  {{- 1 -}}  b", None, "a1b"),
    ('{{ $x := "a" }}{{ $x = "b" }}{{ $x }}', None, "b"),
    ("{{ if false }}1{{ else if true }}2{{ else }}3{{ end }}", None, "2"),
    ("{{ with .a }}{{ . }}{{ else }}none{{ end }}", {"a": ""}, "none"),
    ("{{ range $i, $e := . }}{{ $i }}{{ $e }}{{ end }}", ["x", "y"], "0x1y"),
    ("{{ range $k, $v := . }}{{ $k }}={{ $v }};{{ end }}", {"b": 2, "a": 1}, "a=1;b=2;"),
    ("{{ range . }}{{ if eq . 2 }}{{ break }}{{ end }}{{ . }}{{ end }}", [1, 2, 3], "1"),
    ("{{ range . }}{{ if eq . 2 }}{{ continue }}{{ end }}{{ . }}{{ end }}", [1, 2, 3], "13"),
    ("{{ range . }}x{{ else }}empty{{ end }}", [], "empty"),
    ('{{ define "x" }}[{{ . }}]{{ end }}{{ template "x" "v" }}', None, "[v]"),
    ('{{ block "b" . }}default {{ . }}{{ end }}', 1, "default 1"),
    ("{{ and 1 0 }} {{ or 0 2 }} {{ not true }}", None, "0 2 false"),
    ('{{ eq 1 2 1 }} {{ ne "a" "b" }} {{ lt 1 2 }} {{ ge "b" "a" }}', None, "true true true true"),
    ('{{ len "héllo" }} {{ index . "k" }} {{ slice "abcdef" 1 3 }}', {"k": "v"}, "6 v bc"),
    (
        '{{ printf "%s|%d|%5.1f|%-3d|%q|%x|%v|%g|%t|%%" '
        '"s" 42 3.14159 7 "q" 255 1e21 0.000001 true }}',
        None,
        's|42|  3.1|7  |"q"|ff|1e+21|1e-06|true|%',
    ),
    ('{{ printf "%d" "x" }} {{ printf "%s" }}', None, "%!d(string=x) %!s(MISSING)"),
    ('{{ print 1 2 "a" "b" 3 }}', None, "1 2ab3"),
    (
        '{{ html "<a href=\\"x\\">" }} {{ js "it\'s" }} {{ urlquery "a b&c" }}',
        None,
        "&lt;a href=&#34;x&#34;&gt; it\\'s a+b%26c",
    ),
    (
        "{{ .Labels.missing }}|{{ .Other.missing }}",
        {"Labels": StringMap(), "Other": {}},
        "|<no value>",
    ),
    ("{{ 1.5 }} {{ 1e6 }} {{ 0x10 }} {{ 'a' }}", None, "1.5 1e+06 16 97"),
    ('{{ . | printf "%v-%v" 1 }}', 2, "1-2"),
]


@pytest.mark.parametrize(("text", "data", "want"), CASES)
def test_go_template(text: str, data: Any, want: str) -> None:
    assert Template("t").parse(text).execute(data) == want


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("{{ if }}", "template: t:1: missing value for if"),
        ("{{ nosuch }}", 'template: t:1: function "nosuch" not defined'),
        ("{{ $x }}", 'template: t:1: undefined variable "$x"'),
        ("{{ end }}", "template: t:1: unexpected {{end}}"),
        ("{{ .a }", 'template: t:1: unexpected "}" in operand'),
    ],
)
def test_parse_errors(text: str, error: str) -> None:
    with pytest.raises(TemplateParseError) as info:
        Template("t").parse(text)
    assert str(info.value) == error


def test_exec_errors() -> None:
    with pytest.raises(TemplateExecError) as info:
        Template("t").parse('{{ lt 1 "a" }}').execute(None)
    assert str(info.value) == (
        'template: t:1:3: executing "t" at <lt 1 "a">: '
        "error calling lt: incompatible types for comparison"
    )
    with pytest.raises(TemplateExecError) as info:
        Template("t").parse("{{ index . 5 }}").execute([1])
    assert "error calling index: index out of range: 5" in str(info.value)


def test_custom_function_map() -> None:
    def join(sep: str, items: list[str]) -> str:
        return sep.join(items)

    funcs: dict[str, Callable[..., Any]] = {"join": join, "toUpper": str.upper}
    tmpl = Template("n", funcs).parse('{{ join ", " .names | toUpper }}')
    assert tmpl.execute({"names": ["a", "b"]}) == "A, B"
