"""Labels: the sorted, hashable identity of a series."""

from __future__ import annotations

import pytest

from signalroom.model.labels import Labels, compare_labels, xxhash64

pytestmark = pytest.mark.unit


def test_labels_are_sorted_and_equal_whatever_the_input_order() -> None:
    a = Labels({"job": "api", "__name__": "up", "instance": "x"})
    b = Labels([("instance", "x"), ("job", "api"), ("__name__", "up")])
    assert a == b
    assert hash(a) == hash(b)
    assert a.names() == ["__name__", "instance", "job"]
    assert {a: 1}[b] == 1


def test_empty_values_are_the_same_as_missing_labels() -> None:
    assert Labels({"a": "1", "b": ""}) == Labels({"a": "1"})
    assert Labels({"a": "1"}).with_("a", "") == Labels()


def test_get_without_with_and_name() -> None:
    lbl = Labels.of(__name__="up", job="api", env="prod")
    assert lbl.get("job") == "api"
    assert lbl.get("missing") == ""
    assert lbl.name == "up"
    assert lbl.without("env") == Labels.of(__name__="up", job="api")
    assert lbl.without_name() == Labels.of(job="api", env="prod")
    assert lbl.with_("env", "dev").get("env") == "dev"
    assert lbl.only("job") == Labels.of(job="api")


def test_without_name_also_drops_type_and_unit_metadata() -> None:
    lbl = Labels.of(__name__="x", __type__="counter", __unit__="bytes", a="1")
    assert lbl.without_name() == Labels.of(a="1")


def test_match_signature_on_and_ignoring() -> None:
    lbl = Labels.of(__name__="up", job="api", env="prod")
    assert lbl.match_signature(["job"], on=True) == (("job", "api"),)
    # ignoring always drops the metric name too
    assert lbl.match_signature(["env"], on=False) == (("job", "api"),)


def test_ordering_matches_prometheus_labels_compare() -> None:
    a = Labels.of(a="1")
    b = Labels.of(a="1", b="2")
    c = Labels.of(a="2")
    assert compare_labels(a, b) < 0
    assert compare_labels(b, c) < 0
    assert sorted([c, b, a]) == [a, b, c]


def test_str_is_prometheus_text_form() -> None:
    assert str(Labels.of(__name__="up", job='a"b')) == 'up{job="a\\"b"}'


def test_xxhash64_known_vectors() -> None:
    # Reference values of XXH64 with seed 0 (used by Prometheus's labels.Hash).
    assert xxhash64(b"") == 0xEF46DB3751D8E999
    assert xxhash64(b"a") == 0xD24EC4F1A98C6E5B
    assert xxhash64(b"abc") == 0x44BC2CF5AD770999
