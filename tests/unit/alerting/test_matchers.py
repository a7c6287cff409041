"""Matcher parsing (classic and UTF-8 syntaxes), matching, ordering and printing."""

from __future__ import annotations

import pytest

from signalroom.alerting.matchers import (
    Matcher,
    MatcherError,
    MatchType,
    format_matchers,
    go_quote,
    go_unquote,
    matches_all,
    parse_matcher,
    parse_matchers,
    sort_matchers,
)

pytestmark = pytest.mark.unit

EQ, NE, RE, NRE = MatchType.EQUAL, MatchType.NOT_EQUAL, MatchType.REGEXP, MatchType.NOT_REGEXP


def triples(ms: list[Matcher]) -> list[tuple[str, str, str]]:
    return [(m.name, m.type.value, m.value) for m in ms]


CLASSIC_OK = [
    ('{foo="bar"}', [("foo", "=", "bar")]),
    ('{foo=~"bar.*"}', [("foo", "=~", "bar.*")]),
    ('{foo!="bar"}', [("foo", "!=", "bar")]),
    ('{foo!~"bar.*"}', [("foo", "!~", "bar.*")]),
    ('{foo="bar", baz!="quux"}', [("foo", "=", "bar"), ("baz", "!=", "quux")]),
    (
        '{foo="bar",baz!~".*quux", derp="wat"}',
        [("foo", "=", "bar"), ("baz", "!~", ".*quux"), ("derp", "=", "wat")],
    ),
    ('{foo=""}', [("foo", "=", "")]),
    ("foo=", [("foo", "=", "")]),
    ('{foo="bar,quux", job="job1"}', [("foo", "=", "bar,quux"), ("job", "=", "job1")]),
    ('{foo = "bar", dings != "bums", }', [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("foo=bar,dings!=bums", [("foo", "=", "bar"), ("dings", "!=", "bums")]),
    ("{foo=bar}}", [("foo", "=", "bar}")]),
    (
        '{quote="She said: \\"Hi, ladies! That\'s gender-neutral…\\""}',
        [("quote", "=", 'She said: "Hi, ladies! That\'s gender-neutral…"')],
    ),
    ('statuscode=~"5.."', [("statuscode", "=~", "5..")]),
    ("  name  =~  value with spaces  ", [("name", "=~", "value with spaces")]),
    ('trailing="slash\\\\"', [("trailing", "=", "slash\\")]),
    ('newline="a\\nb"', [("newline", "=", "a\nb")]),
    # a spurious escape keeps its backslash; a lone trailing backslash is literal
    ('spurious="\\d+"', [("spurious", "=", "\\d+")]),
    ("lone=x\\", [("lone", "=", "x\\")]),
    ("colon:name=ok", [("colon:name", "=", "ok")]),
    ("unicode=héllo🙂", [("unicode", "=", "héllo🙂")]),
    ("", []),
]


@pytest.mark.parametrize(("text", "expected"), CLASSIC_OK)
def test_classic_parse(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert triples(parse_matchers(text)) == expected


CLASSIC_ERRORS = [
    ('{"foo"="bar"}', 'bad matcher format: "foo"="bar"'),
    ("foo", "bad matcher format: foo"),
    ("1abc=x", "bad matcher format: 1abc=x"),
    ("a=b,,c=d", "bad matcher format: "),
    ('foo="bar', 'matcher value contains unescaped double quote: "bar'),
    ('foo=bar"', 'matcher value contains unescaped double quote: bar"'),
    ('foo="bar"baz"', 'matcher value contains unescaped double quote: "bar"baz"'),
    ("foo=~(unclosed", "error parsing regexp: missing ): ^(?:(unclosed)$"),
]


@pytest.mark.parametrize(("text", "message"), CLASSIC_ERRORS)
def test_classic_errors(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matchers(text)
    assert str(info.value) == message


UTF8_OK = [
    ("", []),
    ("{}", []),
    ("{foo=bar}", [("foo", "=", "bar")]),
    ("{foo=bar,}", [("foo", "=", "bar")]),
    ("{foo=~[a-z]+}", [("foo", "=~", "[a-z]+")]),
    ("{foo!~[a-z]+}", [("foo", "!~", "[a-z]+")]),
    ("{foo=🙂bar}", [("foo", "=", "🙂bar")]),
    ('{"foo"="bar"}', [("foo", "=", "bar")]),
    ('{"foo"="\\xf0\\x9f\\x99\\x82"}', [("foo", "=", "🙂")]),
    ('{"foo"="\\U0001f642"}', [("foo", "=", "🙂")]),
    ('{"foo"="bar\\t"}', [("foo", "=", "bar\t")]),
    ('{"foo"="\\"bar\\""}', [("foo", "=", '"bar"')]),
    ('"foo"="bar",', [("foo", "=", "bar")]),
    ('{foo="bar",bar!="baz"}', [("foo", "=", "bar"), ("bar", "!=", "baz")]),
    ('{"service name"="api gateway"}', [("service name", "=", "api gateway")]),
]


@pytest.mark.parametrize(("text", "expected"), UTF8_OK)
def test_utf8_parse(text: str, expected: list[tuple[str, str, str]]) -> None:
    assert triples(parse_matchers(text, "utf8")) == expected


UTF8_ERRORS = [
    (",", "0:1: unexpected ,: expected label name"),
    ("{,}", "1:2: unexpected ,: expected label name"),
    ("{", "0:1: end of input: expected close brace"),
    ("}", "0:1: }: expected opening brace"),
    ("foo=bar}", "0:8: }: expected opening brace"),
    ("{foo=bar", "0:8: end of input: expected close brace"),
    ('{foo=:"bar"}', '6:11: unexpected "bar": expected a comma or close brace'),
    ('{foo="bar\\w"}', '5:12: "bar\\w": invalid input'),
    ("{foo=bar\\n}", "8:9: \\: invalid input: expected a comma or close brace"),
    ('{"foo"="\\xf0\\x9f"}', '7:17: "\\xf0\\x9f": invalid input'),
]


@pytest.mark.parametrize(("text", "message"), UTF8_ERRORS)
def test_utf8_errors(text: str, message: str) -> None:
    with pytest.raises(MatcherError) as info:
        parse_matchers(text, "utf8")
    assert str(info.value) == message


def test_single_matcher_parsing() -> None:
    assert triples([parse_matcher('foo="bar"')]) == [("foo", "=", "bar")]
    with pytest.raises(MatcherError, match="expected 1 matcher, found 2"):
        parse_matcher("foo=bar,bar=baz", "utf8")
    with pytest.raises(MatcherError, match="no matchers"):
        parse_matcher("{}", "utf8")


def test_fallback_prefers_utf8_and_falls_back_to_classic() -> None:
    # a tab escape: the UTF-8 parser decodes it, the classic parser keeps it literally
    assert parse_matchers('a="x\\ty"', "fallback")[0].value == "x\ty"
    assert parse_matchers('a="x\\ty"', "classic")[0].value == "x\\ty"
    # only the classic parser accepts an unquoted value with spaces
    assert parse_matchers("a=two words", "fallback")[0].value == "two words"
    with pytest.raises(MatcherError, match="expected label name"):
        parse_matchers(",", "fallback")


def test_regex_is_fully_anchored() -> None:
    m = Matcher.create(RE, "a", "b|c")
    assert m.matches("b") and m.matches("c")
    assert not m.matches("bc") and not m.matches("xb") and not m.matches("b\n")
    n = Matcher.create(NRE, "a", "prod.*")
    assert n.matches("") and not n.matches("production")
    assert Matcher.create(RE, "a", "").matches("")


def test_equality_and_missing_labels() -> None:
    ms = parse_matchers('a="1", b!="2", c=~"x|", d!~".+"')
    assert matches_all(ms, {"a": "1"})
    assert not matches_all(ms, {"a": "1", "b": "2"})
    assert not matches_all(ms, {"a": "1", "d": "v"})
    assert matches_all([], {})


def test_sort_and_format_like_alertmanager() -> None:
    ms = sort_matchers(parse_matchers('z="1", a!="2", a="2", a=~"1", b="x\\"y"'))
    assert format_matchers(ms) == '{a=~"1",a="2",a!="2",b="x\\"y",z="1"}'
    assert format_matchers([]) == "{}"
    utf8 = parse_matchers('{"my label"="v\\n"}', "utf8")[0]
    assert str(utf8) == '"my label"="v\\n"'


def test_invalid_regex_in_utf8_parser() -> None:
    with pytest.raises(MatcherError, match="failed to create matcher: error parsing regexp"):
        parse_matchers('a=~"("', "utf8")


def test_go_quote_and_unquote_round_trip() -> None:
    for value in ["plain", 'q"uote', "back\\slash", "tab\tnl\n", "é🙂", "\x01ctl", "\u200b"]:
        assert go_unquote(go_quote(value)) == value
    assert go_quote("\x01") == '"\\x01"'
    with pytest.raises(ValueError):
        go_unquote('"raw\nnewline"')
    with pytest.raises(ValueError):
        go_unquote('"\\q"')
