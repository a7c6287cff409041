"""``amtool config routes test`` output: receivers line, --tree, --verify.receivers, errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from signalroom.alerting.routes_test import routes_test

pytestmark = pytest.mark.unit

CONFIG = """
route:
  receiver: default
  group_by: [alertname]
  routes:
  - matchers: ['severity=~"critical|warning"']
    receiver: audit
    continue: true
  - matchers: [team="db"]
    receiver: db
    routes:
    - matchers: [severity="critical"]
      receiver: db-pager
receivers: [{name: default}, {name: audit}, {name: db}, {name: db-pager}]
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "alertmanager.yml"
    path.write_text(CONFIG)
    return path


def test_receivers_line(config: Path) -> None:
    assert routes_test(config, ["team=db", "severity=critical"]) == ("audit,db-pager\n", 0)
    assert routes_test(config, []) == ("default\n", 0)
    assert routes_test(config, {"team": "db"}) == ("db\n", 0)


def test_tree_output_matches_amtool(config: Path) -> None:
    out, code = routes_test(config, ["team=db", "severity=critical"], tree=True)
    assert code == 0
    assert out == (
        "Matching routes:\n"
        ".\n"
        "└── default-route\n"
        '    ├── {severity=~"critical|warning"}  receiver: audit  grouping: [alertname]\n'
        '    └── {team="db"}\n'
        '        └── {severity="critical"}  receiver: db-pager  grouping: [alertname]\n'
        "\n\n"
        "audit,db-pager\n"
    )


def test_verify_receivers(config: Path) -> None:
    assert routes_test(config, ["team=db"], verify_receivers="db") == ("db\n", 0)
    out, code = routes_test(config, ["team=db"], verify_receivers="default")
    assert code == 1
    assert out == "db\nWARNING: Expected receivers did not match resolved receivers.\n"


def test_label_errors(config: Path) -> None:
    assert routes_test(config, ["team!=db"]) == (
        "amtool: error: Labels must be specified as key=value pairs\n\n",
        1,
    )
    assert routes_test(config, ["novalue"]) == (
        "amtool: error: Failed to parse labels: bad matcher format: novalue\n\n",
        1,
    )


def test_quoted_label_values_and_last_one_wins(config: Path) -> None:
    assert routes_test(config, ['team="db"', 'severity="warning"', "team=x"]) == ("audit\n", 0)


def test_config_errors(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yml"
    bad.write_text("route: {receiver: nobody}\nreceivers: [{name: a}]\n")
    assert routes_test(bad, []) == (
        'amtool: error: undefined receiver "nobody" used in route\n\n',
        1,
    )
    out, code = routes_test(tmp_path / "absent.yml", [])
    assert code == 1 and out.startswith("amtool: error: open ")
