"""Routing tree: Alertmanager's dispatch/route_test.go cases, plus keys, IDs and group keys."""

from __future__ import annotations

from datetime import timedelta

import pytest
import yaml

from signalroom.alerting.config import Route
from signalroom.alerting.route import RouteNode, RouteOpts, format_label_set

pytestmark = pytest.mark.unit

LEGACY_TREE = """
receiver: 'notify-def'
routes:
- match:
    owner: 'team-A'
  receiver: 'notify-A'
  routes:
  - match:
      env: 'testing'
    receiver: 'notify-testing'
    group_by: [...]
  - match:
      env: "production"
    receiver: 'notify-productionA'
    group_wait: 1m
    continue: true
  - match_re:
      env: "produ.*"
      job: ".*"
    receiver: 'notify-productionB'
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    group_by: ['job']
- match_re:
    owner: 'team-(B|C)'
  group_by: ['foo', 'bar']
  group_wait: 2m
  receiver: 'notify-BC'
- match:
    group_by: 'role'
  group_by: ['role']
  routes:
  - match:
      env: 'testing'
    receiver: 'notify-testing'
    routes:
    - match:
        wait: 'long'
      group_wait: 2m
"""

MATCHERS_TREE = """
receiver: 'notify-def'
routes:
- matchers: ['{owner="team-A"}', '{level!="critical"}']
  receiver: 'notify-A'
  routes:
  - matchers: ['{env="testing"}', '{baz!~".*quux"}']
    receiver: 'notify-testing'
    group_by: [...]
  - matchers: ['{env="production"}']
    receiver: 'notify-productionA'
    group_wait: 1m
    continue: true
  - matchers: [ env=~"produ.*", job=~".*"]
    receiver: 'notify-productionB'
    group_wait: 30s
    group_interval: 5m
    repeat_interval: 1h
    group_by: ['job']
- matchers: [owner=~"team-(B|C)"]
  group_by: ['foo', 'bar']
  group_wait: 2m
  receiver: 'notify-BC'
- matchers: [group_by="role"]
  group_by: ['role']
  routes:
  - matchers: ['{env="testing"}']
    receiver: 'notify-testing'
    routes:
    - matchers: [wait="long"]
      group_wait: 2m
"""

DEF = RouteOpts()


def tree(text: str) -> RouteNode:
    return RouteNode.build(Route.model_validate(yaml.safe_load(text)))


def opts(receiver: str, **kw: object) -> RouteOpts:
    base = {
        "receiver": receiver,
        "group_by": (),
        "group_by_all": False,
        "group_wait": DEF.group_wait,
        "group_interval": DEF.group_interval,
        "repeat_interval": DEF.repeat_interval,
    }
    base.update(kw)
    return RouteOpts(**base)  # type: ignore[arg-type]


def _norm(o: RouteOpts) -> RouteOpts:
    # group_by is a set in Alertmanager: compare ignoring order
    return RouteOpts(
        receiver=o.receiver,
        group_by=tuple(sorted(o.group_by)),
        group_by_all=o.group_by_all,
        group_wait=o.group_wait,
        group_interval=o.group_interval,
        repeat_interval=o.repeat_interval,
    )


LEGACY_CASES = [
    ({"owner": "team-A"}, [opts("notify-A")], ['{}/{owner="team-A"}']),
    ({"owner": "team-A", "env": "unset"}, [opts("notify-A")], ['{}/{owner="team-A"}']),
    (
        {"owner": "team-C"},
        [opts("notify-BC", group_by=("bar", "foo"), group_wait=timedelta(minutes=2))],
        ['{}/{owner=~"^(?:team-(B|C))$"}'],
    ),
    (
        {"owner": "team-A", "env": "testing"},
        [opts("notify-testing", group_by_all=True)],
        ['{}/{owner="team-A"}/{env="testing"}'],
    ),
    (
        {"owner": "team-A", "env": "production"},
        [
            opts("notify-productionA", group_wait=timedelta(minutes=1)),
            opts(
                "notify-productionB",
                group_by=("job",),
                group_wait=timedelta(seconds=30),
                group_interval=timedelta(minutes=5),
                repeat_interval=timedelta(hours=1),
            ),
        ],
        [
            '{}/{owner="team-A"}/{env="production"}',
            '{}/{owner="team-A"}/{env=~"^(?:produ.*)$",job=~"^(?:.*)$"}',
        ],
    ),
    ({"group_by": "role"}, [opts("notify-def", group_by=("role",))], ['{}/{group_by="role"}']),
    (
        {"env": "testing", "group_by": "role"},
        [opts("notify-testing", group_by=("role",))],
        ['{}/{group_by="role"}/{env="testing"}'],
    ),
    (
        {"env": "testing", "group_by": "role", "wait": "long"},
        [opts("notify-testing", group_by=("role",), group_wait=timedelta(minutes=2))],
        ['{}/{group_by="role"}/{env="testing"}/{wait="long"}'],
    ),
]


@pytest.mark.parametrize(("labels", "expected", "keys"), LEGACY_CASES)
def test_route_match_legacy(
    labels: dict[str, str], expected: list[RouteOpts], keys: list[str]
) -> None:
    matched = tree(LEGACY_TREE).match(labels)
    assert [_norm(r.opts) for r in matched] == [_norm(o) for o in expected]
    assert [r.key() for r in matched] == keys


MATCHERS_KEYS = [
    ({"owner": "team-A"}, ["notify-A"], ['{}/{level!="critical",owner="team-A"}']),
    (
        {"owner": "team-A", "env": "testing"},
        ["notify-testing"],
        ['{}/{level!="critical",owner="team-A"}/{baz!~".*quux",env="testing"}'],
    ),
    (
        {"owner": "team-A", "env": "production"},
        ["notify-productionA", "notify-productionB"],
        [
            '{}/{level!="critical",owner="team-A"}/{env="production"}',
            '{}/{level!="critical",owner="team-A"}/{env=~"produ.*",job=~".*"}',
        ],
    ),
    ({"owner": "team-C"}, ["notify-BC"], ['{}/{owner=~"team-(B|C)"}']),
    # level="critical" fails the != matcher: the root is the match
    ({"owner": "team-A", "level": "critical"}, ["notify-def"], ["{}"]),
    (
        {"env": "testing", "group_by": "role", "wait": "long"},
        ["notify-testing"],
        ['{}/{group_by="role"}/{env="testing"}/{wait="long"}'],
    ),
]


@pytest.mark.parametrize(("labels", "receivers", "keys"), MATCHERS_KEYS)
def test_route_match_matchers(
    labels: dict[str, str], receivers: list[str], keys: list[str]
) -> None:
    matched = tree(MATCHERS_TREE).match(labels)
    assert [r.opts.receiver for r in matched] == receivers
    assert [r.key() for r in matched] == keys


def test_walk_order_and_inherited_receivers() -> None:
    assert [r.opts.receiver for r in tree(LEGACY_TREE).walk()] == [
        "notify-def",
        "notify-A",
        "notify-testing",
        "notify-productionA",
        "notify-productionB",
        "notify-BC",
        "notify-def",
        "notify-testing",
        "notify-testing",
    ]


def test_group_by_all_is_inherited_until_a_child_sets_labels() -> None:
    root = tree(
        """
routes:
- match: {env: parent}
  group_by: ['...']
  routes:
  - match: {env: child1}
  - match: {env: child2}
    group_by: ['foo']
"""
    )
    parent = root.routes[0]
    assert parent.opts.group_by_all
    assert parent.routes[0].opts.group_by_all
    assert not parent.routes[1].opts.group_by_all
    assert parent.routes[1].opts.group_by == ("foo",)


def test_empty_group_by_inherits_like_alertmanager() -> None:
    root = tree("group_by: [a]\nroutes:\n- group_by: []\n")
    assert root.routes[0].opts.group_by == ("a",)


def test_mute_and_active_intervals_are_not_inherited() -> None:
    root = tree(
        """
receiver: r
routes:
- matchers: [a="1"]
  mute_time_intervals: [night]
  active_time_intervals: [day]
  routes:
  - matchers: [b="1"]
"""
    )
    child = root.routes[0]
    assert child.opts.mute_time_intervals == ("night",)
    assert child.opts.active_time_intervals == ("day",)
    assert child.routes[0].opts.mute_time_intervals == ()


def test_no_child_matches_returns_the_node_and_failed_node_returns_nothing() -> None:
    root = tree('receiver: root\nroutes:\n- matchers: [a="1"]\n  receiver: x\n')
    assert root.match({"a": "2"}) == [root]
    assert root.routes[0].match({"a": "2"}) == []


def test_continue_collects_in_order_and_stops_at_first_non_continue() -> None:
    root = tree(
        """
receiver: root
routes:
- matchers: [a="1"]
  receiver: first
  continue: true
- matchers: [a=~"1|2"]
  receiver: second
- matchers: [a="1"]
  receiver: never
"""
    )
    assert root.receivers_for({"a": "1"}) == ["first", "second"]
    assert root.receivers_for({"a": "2"}) == ["second"]
    assert root.receivers_for({"a": "3"}) == ["root"]


def test_missing_label_matches_as_empty_string() -> None:
    root = tree(
        'receiver: root\nroutes:\n- matchers: [env=""]\n  receiver: noenv\n'
        '- matchers: [env!~"prod"]\n  receiver: notprod\n'
    )
    assert root.receivers_for({}) == ["noenv"]
    assert root.receivers_for({"env": "dev"}) == ["notprod"]
    assert root.receivers_for({"env": "prod"}) == ["root"]


def test_ids_add_the_position_among_siblings() -> None:
    root = tree(
        'receiver: r\nroutes:\n- matchers: [a="1"]\n- matchers: [a="1"]\n  routes:\n'
        '  - matchers: [b="2"]\n'
    )
    assert root.id() == "{}"
    assert [r.key() for r in root.routes] == ['{}/{a="1"}', '{}/{a="1"}']
    assert [r.id() for r in root.routes] == ['{}/{a="1"}/0', '{}/{a="1"}/1']
    assert root.routes[1].routes[0].id() == '{}/{a="1"}/{b="2"}/0'


def test_group_key_and_group_labels() -> None:
    root = tree(
        'receiver: r\ngroup_by: [alertname, cluster]\nroutes:\n- matchers: [team="db"]\n'
        "  group_by: ['...']\n"
    )
    labels = {"alertname": "Down", "cluster": "eu", "team": "ops", "x": 'q"uote'}
    (node,) = root.match(labels)
    assert node.group_labels(labels) == {"alertname": "Down", "cluster": "eu"}
    assert node.group_key(labels) == '{}:{alertname="Down", cluster="eu"}'
    db = {"alertname": "Down", "team": "db", "x": 'q"uote'}
    (dbnode,) = root.match(db)
    assert dbnode.group_labels(db) == db
    assert dbnode.group_key(db) == '{}/{team="db"}:{alertname="Down", team="db", x="q\\"uote"}'


def test_format_label_set_sorts_formatted_pairs() -> None:
    assert format_label_set({"b": "1", "a_b": "2", "a": "é\n"}) == '{a="é\\n", a_b="2", b="1"}'
