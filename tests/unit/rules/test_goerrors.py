"""Parse errors in Prometheus 2.42's words; the expected texts are promtool's own output
(tests/integration/test_rules_promtool.py compares against promtool itself when installed)."""

from __future__ import annotations

import pytest

from signalroom.rules.rulefmt import RuleFileError, check_promql_expr, parse_rules

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("sum by (job) (up", "1:17: parse error: unclosed left parenthesis"),
        ("up)", "1:4: parse error: unexpected right parenthesis ')'"),
        ('up{job="a}', "1:8: parse error: unterminated quoted string"),
        ('up{job="a"', "1:11: parse error: unexpected end of input inside braces"),
        ('up{job~"a"}', "1:7: parse error: unexpected character inside braces: '~'"),
        (
            "rate(up)",
            '1:6: parse error: expected type range vector in call to function "rate", '
            "got instant vector",
        ),
        (
            'absent(nonexistent{job="x"}[5m])',
            '1:8: parse error: expected type instant vector in call to function "absent", '
            "got range vector",
        ),
        ("foo(up)", '1:1: parse error: unknown function with name "foo"'),
        (
            "histogram_quantile(0.9)",
            '1:1: parse error: expected 2 argument(s) in call to "histogram_quantile", got 1',
        ),
        (
            "topk(up)",
            "1:1: parse error: wrong number of arguments for aggregate expression provided, "
            "expected 2, got 1",
        ),
        ("1 > 2", "1:3: parse error: comparisons between scalars must use BOOL modifier"),
        (
            '{__name__=~".*"}',
            "1:1: parse error: vector selector must contain at least one non-empty matcher",
        ),
        (
            "up and 1",
            '1:1: parse error: set operator "and" not allowed in binary scalar expression',
        ),
        ("up offset", "1:10: parse error: unexpected end of input in offset, expected duration"),
        ("sum(\n  rate(x[5m]\n", "3:1: parse error: unclosed left parenthesis"),
    ],
)
def test_promql_errors_read_as_prometheus(expr: str, message: str) -> None:
    assert check_promql_expr(expr) == message


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "groups:\n- name: a\n  rules:\n  - alert: A\n   expr: up\n",
            "yaml: line 1: did not find expected key",
        ),
        (
            "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up\n   - alert: B\n",
            "yaml: line 1: did not find expected key",
        ),
        ("groups:\n- name: a\n  rules: [\n", "yaml: line 3: did not find expected node content"),
        (
            "groups:\n- name: a\n  rules:\n  - alert: A\n    expr: up: x\n",
            "yaml: line 5: mapping values are not allowed in this context",
        ),
        ("groups:\n- name: *x\n", "yaml: unknown anchor 'x' referenced"),
        ("groups: @\n", "yaml: found character that cannot start any token"),
        ("- a\nb: c\n", "yaml: line 1: did not find expected '-' indicator"),
    ],
)
def test_yaml_errors_read_as_go_yaml(text: str, message: str) -> None:
    with pytest.raises(RuleFileError) as raised:
        parse_rules(text)
    # promtool decodes twice and reports the syntax error from both passes.
    assert raised.value.errors == [message, message]
