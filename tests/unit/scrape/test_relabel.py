"""Relabeling against the cases of Prometheus's model/relabel tests."""

from __future__ import annotations

from typing import Any

import pytest

from signalroom.model.labels import Labels
from signalroom.scrape.relabel import RelabelConfig, RelabelError, compile_regex, expand, process

pytestmark = pytest.mark.unit


def cfg(**kwargs: Any) -> RelabelConfig:
    return RelabelConfig.from_dict(kwargs)


CASES: list[tuple[dict[str, str], list[dict[str, Any]], dict[str, str] | None]] = [
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [
            {
                "source_labels": ["a"],
                "regex": "f(.*)",
                "target_label": "d",
                "replacement": "ch${1}-ch${1}",
            }
        ],
        {"a": "foo", "b": "bar", "c": "baz", "d": "choo-choo"},
    ),
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [
            {
                "source_labels": ["a", "b"],
                "regex": "f(.*);(.*)r",
                "target_label": "a",
                "replacement": "b${1}${2}m",
            },
            {
                "source_labels": ["c", "a"],
                "regex": "(b).*b(.*)ba(.*)",
                "target_label": "d",
                "replacement": "$1$2$2$3",
            },
        ],
        {"a": "boobam", "b": "bar", "c": "baz", "d": "boooom"},
    ),
    (
        {"a": "foo"},
        [
            {"source_labels": ["a"], "regex": ".*o.*", "action": "drop"},
            {"source_labels": ["a"], "regex": "f(.*)", "target_label": "d", "replacement": "ch$1"},
        ],
        None,
    ),
    (
        {"a": "abc"},
        [{"source_labels": ["a"], "regex": ".*(b).*", "target_label": "d"}],
        {"a": "abc", "d": "b"},
    ),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "drop"}], {"a": "foo"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f|o", "action": "drop"}], {"a": "foo"}),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "no-match", "action": "keep"}], None),
    ({"a": "foo"}, [{"source_labels": ["a"], "regex": "f.*", "action": "keep"}], {"a": "foo"}),
    (
        {"a": "boo"},
        [{"source_labels": ["a"], "regex": "f", "target_label": "b", "replacement": "bar"}],
        {"a": "boo"},
    ),
    (
        {"a": "foo", "b": "bar", "c": "baz"},
        [{"source_labels": ["c"], "target_label": "d", "action": "hashmod", "modulus": 1000}],
        {"a": "foo", "b": "bar", "c": "baz", "d": "976"},
    ),
    (
        {"a": "foo\nbar"},
        [{"source_labels": ["a"], "target_label": "b", "action": "hashmod", "modulus": 1000}],
        {"a": "foo\nbar", "b": "734"},
    ),
    (
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "replacement": "bar_${1}", "action": "labelmap"}],
        {"a": "foo", "b1": "bar", "b2": "baz", "bar_b1": "bar", "bar_b2": "baz"},
    ),
    (
        {"a": "foo", "__meta_my_bar": "aaa", "__meta_my_baz": "bbb", "__meta_other": "ccc"},
        [{"regex": "__meta_(my.*)", "replacement": "${1}", "action": "labelmap"}],
        {
            "a": "foo",
            "__meta_my_bar": "aaa",
            "__meta_my_baz": "bbb",
            "__meta_other": "ccc",
            "my_bar": "aaa",
            "my_baz": "bbb",
        },
    ),
    (
        {"a": "some-name-value"},
        [
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)-([^,]+)",
                "replacement": "${2}",
                "target_label": "${1}",
            }
        ],
        {"a": "some-name-value", "name": "value"},
    ),
    (
        {"a": "some-name-value"},  # replacement expands to "": the (missing) label is deleted
        [
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)-([^,]+)",
                "replacement": "${3}",
                "target_label": "${1}",
            }
        ],
        {"a": "some-name-value"},
    ),
    (
        {"a": "some-name-0"},  # target expands to "": nothing happens
        [
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)-([^,]+)",
                "replacement": "${1}",
                "target_label": "${3}",
            },
            {
                "source_labels": ["a"],
                "regex": "some-([^-]+)(-[^,]+)",
                "replacement": "${1}",
                "target_label": "${3}",
            },
        ],
        {"a": "some-name-0"},
    ),
    (
        {"__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar"},
        [
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)path:(/[^,]+).*",
                "replacement": "${1}",
                "target_label": "__metrics_path__",
            },
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)job:([^,]+).*",
                "replacement": "${1}",
                "target_label": "job",
            },
            {
                "source_labels": ["__meta_sd_tags"],
                "regex": "(?:.+,|^)label:([^=]+)=([^,]+).*",
                "replacement": "${2}",
                "target_label": "${1}",
            },
        ],
        {
            "__meta_sd_tags": "path:/secret,job:some-job,label:foo=bar",
            "__metrics_path__": "/secret",
            "job": "some-job",
            "foo": "bar",
        },
    ),
    (
        {
            "__meta_kubernetes_pod_container_port_name": "foo",
            "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
        },
        [
            {"regex": "^__meta_kubernetes_pod_container_port_name$", "action": "labeldrop"},
            {
                "source_labels": ["__meta_kubernetes_pod_annotation_XXX_metrics_port"],
                "regex": "(.+)",
                "replacement": "metrics",
                "target_label": "__meta_kubernetes_pod_container_port_name",
            },
            {
                "source_labels": ["__meta_kubernetes_pod_container_port_name"],
                "regex": "^metrics$",
                "action": "keep",
            },
        ],
        {
            "__meta_kubernetes_pod_annotation_XXX_metrics_port": "9091",
            "__meta_kubernetes_pod_container_port_name": "metrics",
        },
    ),
    (
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "action": "labelkeep"}],
        {"b1": "bar", "b2": "baz"},
    ),
    (
        {"a": "foo", "b1": "bar", "b2": "baz"},
        [{"regex": "(b.*)", "action": "labeldrop"}],
        {"a": "foo"},
    ),
    (
        {"foo": "bAr123Foo"},
        [
            {"source_labels": ["foo"], "action": "uppercase", "target_label": "foo_uppercase"},
            {"source_labels": ["foo"], "action": "lowercase", "target_label": "foo_lowercase"},
        ],
        {"foo": "bAr123Foo", "foo_lowercase": "bar123foo", "foo_uppercase": "BAR123FOO"},
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port1"}],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port1"}],
        None,
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "dropequal", "target_label": "__port2"}],
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
    ),
    (
        {"__tmp_port": "1234", "__port1": "1234", "__port2": "5678"},
        [{"source_labels": ["__tmp_port"], "action": "keepequal", "target_label": "__port2"}],
        None,
    ),
    # empty source value with the default regex: the fast path sets the replacement
    (
        {"a": "x"},
        [{"source_labels": ["missing"], "target_label": "b", "replacement": "set"}],
        {"a": "x", "b": "set"},
    ),
    # regexes are fully anchored
    ({"a": "foobar"}, [{"source_labels": ["a"], "regex": "foo", "action": "keep"}], None),
]


@pytest.mark.parametrize(("given", "configs", "expected"), CASES)
def test_relabel_cases(
    given: dict[str, str], configs: list[dict[str, Any]], expected: dict[str, str] | None
) -> None:
    result = process(Labels(given), [RelabelConfig.from_dict(c) for c in configs])
    if expected is None:
        assert result is None
    else:
        assert result == Labels(expected)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        (
            {"action": "replace"},
            "relabel configuration for replace action requires 'target_label' value",
        ),
        ({"action": "lowercase"}, "requires 'target_label' value"),
        ({"action": "lowercase", "target_label": "${3}"}, "\"${3}\" is invalid 'target_label'"),
        ({"source_labels": ["a"], "target_label": "0${3}"}, "\"0${3}\" is invalid 'target_label'"),
        (
            {"source_labels": ["a"], "target_label": "-${3}"},
            "\"-${3}\" is invalid 'target_label' for replace action",
        ),
        (
            {"action": "hashmod", "target_label": "x"},
            "relabel configuration for hashmod requires non-zero modulus",
        ),
        (
            {"action": "labeldrop", "regex": "x", "source_labels": ["a"]},
            "labeldrop action requires only 'regex', and no other fields",
        ),
        (
            {"action": "keepequal", "target_label": "x", "regex": "y"},
            "keepequal action requires only 'source_labels' and `target_label`, "
            "and no other fields",
        ),
        (
            {"action": "uppercase", "target_label": "x", "replacement": "y"},
            "'replacement' can not be set for uppercase action",
        ),
        (
            {"action": "labelmap", "replacement": "-bad"},
            "\"-bad\" is invalid 'replacement' for labelmap action",
        ),
        ({"action": "explode"}, 'unknown relabel action "explode"'),
        ({"regex": "(", "target_label": "x"}, "error parsing regexp"),
    ],
)
def test_validation_messages(config: dict[str, Any], message: str) -> None:
    with pytest.raises(RelabelError) as info:
        RelabelConfig.from_dict(config)
    assert message in str(info.value)


def test_valid_dollar_target() -> None:
    cfg(source_labels=["a"], regex="some-([^-]+)-([^,]+)", replacement="${1}", target_label="${3}")


def test_action_is_case_insensitive() -> None:
    assert cfg(action="LabelMap", regex="(.*)").action == "labelmap"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("$1", "a"),
        ("${1}", "a"),
        ("$1x", ""),
        ("${1}x", "ax"),
        ("$name", "b"),
        ("${name}!", "b!"),
        ("$$1", "$1"),
        ("$", "$"),
        ("${", "${"),
        ("${}", "${}"),
        ("$9", ""),
        ("$01", ""),
        ("x$2y", "x"),
        ("$2", "b"),
    ],
)
def test_expand_follows_go(template: str, expected: str) -> None:
    regex = compile_regex("(a)(?P<name>b)")
    match = regex.match("ab")
    assert expand(template, "ab", match, regex) == expected


def test_dot_matches_newline() -> None:
    result = process(Labels({"a": "x\ny"}), [cfg(source_labels=["a"], regex="x.y", action="keep")])
    assert result is not None
