"""The extension keys of the ``alerting:`` section: the seed's matrices parse, mistakes are
reported with their path, and Alertmanager's own validation is not involved."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import yaml

from signalroom.alerting.escalation_config import (
    EscalationConfigError,
    extension_problems,
    parse_extensions,
)
from signalroom.alerting.manager import config_from_section

pytestmark = pytest.mark.unit

SEED = """
route: {receiver: slack-ops}
receivers: [{name: slack-ops}, {name: dev-team}, {name: senior-engineers}, {name: leadership},
            {name: managers-pager}]
escalation:
  severity_matrix:
    critical: {priority: P0, response_time: 15m, policy: seed-matrix, description: immediate}
    warning: {priority: P2, response_time: 1h, policy: team-lead}
    info: {priority: P3, response_time: 4h}
escalation_policies:
  - name: seed-matrix
    levels:
      - {after: 0s, targets: [{receiver: dev-team}]}
      - {after: 5m, targets: [{receiver: senior-engineers}]}
      - {after: 15m, targets: [{schedule: eng-managers}]}
      - {after: 30m, targets: [{receiver: leadership}]}
  - name: team-lead
    levels: [{after: 0s, targets: [{receiver: senior-engineers}]}]
schedules:
  - name: eng-managers
    time_zone: Europe/Berlin
    receiver: managers-pager
    layers: [{name: weekly, rotation: weekly, start: 2024-01-01, handoff_time: "09:00",
              users: [anna, ben]}]
"""


def test_seed_matrix_parses_next_to_alertmanager_config() -> None:
    section = yaml.safe_load(SEED)
    am = config_from_section(section)  # Alertmanager's part ignores the extension keys
    ext = parse_extensions(section, [r.name for r in am.receivers])
    policy = ext.policy("seed-matrix")
    assert policy is not None
    assert [lvl.after for lvl in policy.levels] == [
        timedelta(0),
        timedelta(minutes=5),
        timedelta(minutes=15),
        timedelta(minutes=30),
    ]
    assert ext.escalation.severity_matrix["critical"].response_time == timedelta(minutes=15)
    assert [ext.severity_rank(s) for s in ("critical", "warning", "info", "other")] == [0, 1, 2, 3]
    assert extension_problems(section, [r.name for r in am.receivers]) == []


def change(**patch: Any) -> dict[str, Any]:
    section: dict[str, Any] = yaml.safe_load(SEED)
    section.update(patch)
    return section


@pytest.mark.parametrize(
    ("patch", "path", "message"),
    [
        (
            {"escalation": {"default_policy": "nope"}},
            "escalation.default_policy",
            "undefined escalation policy 'nope'",
        ),
        (
            {
                "escalation_policies": [
                    {
                        "name": "p",
                        "levels": [
                            {"after": "5m", "targets": [{"receiver": "dev-team"}]},
                            {"after": "1m", "targets": [{"receiver": "dev-team"}]},
                        ],
                    }
                ]
            },
            "escalation_policies[0].levels[1].after",
            "in order",
        ),
        (
            {
                "escalation_policies": [
                    {"name": "p", "levels": [{"targets": [{"receiver": "ghost"}]}]}
                ]
            },
            "escalation_policies[0].levels[0].targets[0].receiver",
            "undefined receiver 'ghost'",
        ),
        (
            {
                "escalation_policies": [
                    {
                        "name": "p",
                        "levels": [
                            {"targets": [{"receiver": "dev-team", "schedule": "eng-managers"}]}
                        ],
                    }
                ]
            },
            "escalation_policies[0].levels[0].targets[0]",
            "exactly one",
        ),
        (
            {
                "escalation_policies": [
                    {"name": "p", "repeat": 2, "levels": [{"targets": [{"receiver": "dev-team"}]}]}
                ]
            },
            "escalation_policies[0].repeat_interval",
            "required when repeat > 0",
        ),
        (
            {"escalation": {"severity_matrix": {"critical": {"response_time": "soon"}}}},
            "escalation.severity_matrix.critical.response_time",
            "soon",
        ),
        (
            {
                "escalation": {
                    "recovery": {
                        "rules": [
                            {
                                "name": "r",
                                "matchers": [],
                                "webhook": {"url": "http://x"},
                                "verify": {"expr": "rate(x[5m]"},
                            }
                        ]
                    }
                }
            },
            "escalation.recovery.rules[0].verify.expr",
            "invalid PromQL",
        ),
        ({"escalation": {"unknown_key": 1}}, "escalation.unknown_key", "Extra inputs"),
    ],
)
def test_mistakes_name_their_path(patch: dict[str, Any], path: str, message: str) -> None:
    receivers = ["slack-ops", "dev-team", "senior-engineers", "leadership", "managers-pager"]
    with pytest.raises(EscalationConfigError) as err:
        parse_extensions(change(**patch), receivers)
    assert any(line.startswith(path) and message in line for line in str(err.value).splitlines())
