"""Alertmanager configuration: defaults, durations and Alertmanager's validation messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from signalroom.alerting.config import (
    AlertmanagerConfig,
    AlertmanagerConfigError,
    config_error_message,
    format_duration,
    load_alertmanager_config,
    parse_alertmanager_config,
    parse_duration,
)

pytestmark = pytest.mark.unit

SHARED = Path(__file__).resolve().parents[3].parent / "shared" / "conformance" / "alertmanager"


def error_of(text: str) -> str:
    with pytest.raises(AlertmanagerConfigError) as info:
        parse_alertmanager_config(text)
    return str(info.value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("0", timedelta(0)),
        ("30s", timedelta(seconds=30)),
        ("5m", timedelta(minutes=5)),
        ("1h30m", timedelta(hours=1, minutes=30)),
        ("1d", timedelta(days=1)),
        ("2w", timedelta(weeks=2)),
        ("1y", timedelta(days=365)),
        ("1s500ms", timedelta(seconds=1, milliseconds=500)),
    ],
)
def test_parse_duration(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty duration string"),
        ("5", 'not a valid duration string: "5"'),
        ("1m1h", 'not a valid duration string: "1m1h"'),
        ("1.5h", 'unknown unit "." in duration "1.5h"'),
        ("3x", 'unknown unit "x" in duration "3x"'),
        ("-1m", 'not a valid duration string: "-1m"'),
        ("300y", "duration out of range"),
    ],
)
def test_parse_duration_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as info:
        parse_duration(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0s"),
        (timedelta(minutes=5), "5m"),
        (timedelta(hours=1, minutes=30), "1h30m"),
        (timedelta(days=14), "2w"),
        (timedelta(days=90), "90d"),
        (timedelta(days=365), "1y"),
        (timedelta(seconds=1, milliseconds=5), "1s5ms"),
    ],
)
def test_format_duration(value: timedelta, text: str) -> None:
    assert format_duration(value) == text


MINIMAL = "route: {receiver: a}\nreceivers: [{name: a}]\n"


def test_defaults() -> None:
    cfg = parse_alertmanager_config(MINIMAL)
    g = cfg.global_config
    assert g.resolve_timeout == timedelta(minutes=5)
    assert g.smtp_hello == "localhost" and g.smtp_require_tls
    assert g.pagerduty_url == "https://events.pagerduty.com/v2/enqueue"
    assert cfg.root_route.receiver == "a"
    assert cfg.inhibit_rules == [] and cfg.templates == []


def test_model_validate_accepts_the_alerting_section_dict() -> None:
    cfg = AlertmanagerConfig.model_validate(
        {
            "global": {"resolve_timeout": "1m", "slack_api_url": "https://hooks.slack.test/x"},
            "route": {"receiver": "slack", "group_by": ["alertname"], "group_wait": "10s"},
            "receivers": [{"name": "slack", "slack_configs": [{"channel": "#ops"}]}],
        }
    )
    assert cfg.global_config.resolve_timeout == timedelta(minutes=1)
    slack = cfg.receivers[0].slack_configs[0]
    assert slack.api_url == "https://hooks.slack.test/x"  # taken from global
    assert slack.send_resolved is False
    dumped = cfg.model_dump(by_alias=True, exclude_none=True)
    assert dumped["route"]["group_wait"] == "10s"
    assert dumped["global"]["resolve_timeout"] == "1m"


def test_conformance_configs_load_and_global_smtp_defaults_apply() -> None:
    cfg = load_alertmanager_config(SHARED / "simple.yml")
    email = cfg.receivers[0].email_configs[0]
    assert email.smarthost == "localhost:25"
    assert email.from_ == "alertmanager@example.org"
    assert email.auth_password == "password"
    assert email.require_tls is True
    assert cfg.receivers[1].pagerduty_configs[0].url == "https://events.pagerduty.com/v2/enqueue"
    assert cfg.inhibit_rules[0].equal == ["alertname", "cluster", "service"]
    assert [str(m) for m in cfg.inhibit_rules[0].source_matcher_list()] == ['severity="critical"']
    routing = load_alertmanager_config(SHARED / "conf.routing.yml")
    assert routing.root_route.routes[1].match == {"test": "2"}  # YAML int kept as text


def test_receivers_and_webhooks() -> None:
    cfg = parse_alertmanager_config(
        """
route: {receiver: hook}
receivers:
- name: hook
  webhook_configs:
  - url: http://127.0.0.1:9/alerts
    max_alerts: 10
    custom_field: kept
  msteams_configs:
  - webhook_url: https://teams.test/hook
  pagerduty_configs:
  - routing_key: abc
"""
    )
    wh = cfg.receivers[0].webhook_configs[0]
    assert wh.send_resolved is True and wh.max_alerts == 10
    assert wh.model_extra == {"custom_field": "kept"}
    assert cfg.receivers[0].msteams_configs[0].send_resolved is True
    pd = cfg.receivers[0].pagerduty_configs[0]
    assert pd.severity == "error" and pd.details is not None and "num_firing" in pd.details
    assert cfg.receivers[0].integration_count() == 3


def route_cfg(route: str, extra: str = "") -> str:
    return f"route:\n{route}\nreceivers:\n- name: a\n- name: b\n{extra}"


VALIDATION_ERRORS = [
    ("", "no route provided in config"),
    ("receivers: [{name: a}]\n", "no route provided in config"),
    ("route: {}\nreceivers: [{name: a}]\n", "root route must specify a default receiver"),
    (route_cfg('  receiver: a\n  matchers: [x="1"]'), "root route must not have any matchers"),
    (route_cfg("  receiver: a\n  match: {x: '1'}"), "root route must not have any matchers"),
    (route_cfg("  receiver: a\n  continue: true"), "cannot have continue in root route"),
    (
        route_cfg("  receiver: a\n  mute_time_intervals: [x]"),
        "root route must not have any mute time intervals",
    ),
    (
        route_cfg("  receiver: a\n  active_time_intervals: [x]"),
        "root route must not have any active time intervals",
    ),
    (
        route_cfg('  receiver: a\n  routes:\n  - receiver: nope\n    matchers: [x="1"]'),
        'undefined receiver "nope" used in route',
    ),
    (
        "route: {receiver: a}\nreceivers: [{name: a}, {name: a}]\n",
        'notification config name "a" is not unique',
    ),
    ("route: {receiver: a}\nreceivers: [{name: a}, {}]\n", "missing name in receiver"),
    (
        route_cfg("  receiver: a\n  group_by: ['...', alertname]"),
        "cannot have wildcard group_by (`...`) and other labels at the same time",
    ),
    (route_cfg("  receiver: a\n  group_by: [a, a]"), 'duplicated label "a" in group_by'),
    (
        route_cfg("  receiver: a\n  group_by: ['bad-name']"),
        'invalid label name "bad-name" in group_by list',
    ),
    (route_cfg("  receiver: a\n  group_interval: 0s"), "group_interval cannot be zero"),
    (route_cfg("  receiver: a\n  repeat_interval: 0"), "repeat_interval cannot be zero"),
    (route_cfg("  receiver: a\n  group_wait: 5"), 'not a valid duration string: "5"'),
    (
        route_cfg("  receiver: a\n  routes:\n  - match: {'bad-label': x}"),
        'invalid label name "bad-label"',
    ),
    (
        route_cfg("  receiver: a\n  routes:\n  - match_re: {x: '(oops'}"),
        "error parsing regexp: missing ): ^(?:(oops)$",
    ),
    (
        route_cfg("  receiver: a\n  routes:\n  - matchers: ['x=\"unterminated']"),
        'matcher value contains unescaped double quote: "unterminated',
    ),
    (
        route_cfg("  receiver: a\n  routes:\n  - matchers: [x=y]\n    mute_time_intervals: [gone]"),
        'undefined time interval "gone" used in route',
    ),
    (
        route_cfg(
            "  receiver: a",
            "time_intervals:\n- name: t\n  time_intervals: []\n"
            "mute_time_intervals:\n- name: t\n  time_intervals: []\n",
        ),
        'time interval "t" is not unique',
    ),
    (
        route_cfg("  receiver: a", "time_intervals:\n- time_intervals: []\n"),
        "missing name in time interval",
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  email_configs: [{to: x@y.z}]\n",
        "no global SMTP smarthost set",
    ),
    (
        "global: {smtp_smarthost: 'h:25'}\nroute: {receiver: a}\n"
        "receivers:\n- name: a\n  email_configs: [{to: x@y.z}]\n",
        "no global SMTP from set",
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  slack_configs: [{channel: x}]\n",
        "no global Slack API URL set either inline or in a file",
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  webhook_configs: [{}]\n",
        "receivers[0].webhook_configs[0]: one of url or url_file must be configured",
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  webhook_configs: [{url: 'ftp://x/'}]\n",
        'receivers[0].webhook_configs[0].url: unsupported scheme "ftp" for URL',
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  pagerduty_configs: [{}]\n",
        "receivers[0].pagerduty_configs[0]: missing service or routing key in PagerDuty config",
    ),
    (
        "route: {receiver: a}\nreceivers:\n- name: a\n  email_configs: [{from: x}]\n",
        "receivers[0].email_configs[0]: missing to address in email config",
    ),
    (
        "route: {receiver: a, bogus: 1}\nreceivers: [{name: a}]\n",
        "field bogus not found in route",
    ),
    (
        "global: {slack_api_url: 'https://x/', slack_api_url_file: /f}\n" + MINIMAL,
        "global: at most one of slack_api_url & slack_api_url_file must be configured",
    ),
    (
        MINIMAL + "inhibit_rules:\n- equal: ['bad-name']\n",
        'inhibit_rules[0].equal: invalid label name "bad-name" in equal list',
    ),
]


@pytest.mark.parametrize(("text", "message"), VALIDATION_ERRORS)
def test_validation_errors(text: str, message: str) -> None:
    assert message in error_of(text)


def test_undefined_receiver_reports_deepest_route_first() -> None:
    text = route_cfg(
        "  receiver: a\n  routes:\n  - receiver: outer\n    routes:\n    - receiver: inner"
    )
    assert error_of(text) == 'undefined receiver "inner" used in route'


def test_model_validate_raises_pydantic_error_with_alertmanager_text() -> None:
    data: dict[str, Any] = yaml.safe_load(route_cfg("  receiver: missing"))
    with pytest.raises(ValidationError) as info:
        AlertmanagerConfig.model_validate(data)
    assert config_error_message(info.value) == 'undefined receiver "missing" used in route'


def test_load_missing_file(tmp_path: Path) -> None:
    with pytest.raises(AlertmanagerConfigError, match="no such file"):
        load_alertmanager_config(tmp_path / "absent.yml")


def test_inhibit_rules_combine_legacy_and_new_matchers() -> None:
    cfg = parse_alertmanager_config(
        MINIMAL
        + """inhibit_rules:
- source_match: {severity: critical}
  source_match_re: {service: 'api|web'}
  target_matchers: ['severity=~"warning|info"']
  equal: [cluster]
"""
    )
    rule = cfg.inhibit_rules[0]
    assert [str(m) for m in rule.source_matcher_list()] == [
        'severity="critical"',
        'service=~"^(?:api|web)$"',
    ]
    assert [str(m) for m in rule.target_matcher_list()] == ['severity=~"warning|info"']


def test_time_interval_map_includes_deprecated_mute_time_intervals() -> None:
    cfg = parse_alertmanager_config(
        """
route:
  receiver: a
  routes:
  - matchers: [x="1"]
    mute_time_intervals: [weekend]
    active_time_intervals: [office]
receivers: [{name: a}]
mute_time_intervals:
- name: weekend
  time_intervals: [{weekdays: ['saturday', 'sunday']}]
time_intervals:
- name: office
  time_intervals: [{times: [{start_time: '09:00', end_time: '17:00'}], location: Europe/Berlin}]
"""
    )
    assert set(cfg.time_interval_map()) == {"weekend", "office"}
