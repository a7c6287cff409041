from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from signalroom.config import GlobalConfig
from signalroom.scrape.config import (
    ScrapeConfigError,
    default_self_scrape_config,
    parse_scrape_configs,
)

pytestmark = pytest.mark.unit

PASTED = """
- job_name: prometheus
  static_configs:
    - targets: ["localhost:9090"]
- job_name: node
  scrape_interval: 5s
  metrics_path: /probe
  scheme: https
  params: {module: [http_2xx]}
  basic_auth: {username: admin, password_file: secret.txt}
  tls_config: {insecure_skip_verify: true}
  honor_labels: true
  honor_timestamps: false
  sample_limit: 1000
  label_limit: 30
  label_name_length_limit: 100
  label_value_length_limit: 200
  target_limit: 10
  file_sd_configs:
    - files: ["targets/*.json", "more.yml"]
      refresh_interval: 1m
  relabel_configs:
    - source_labels: [__address__]
      target_label: __param_target
    - action: labelmap
      regex: __meta_(.+)
  metric_relabel_configs:
    - source_labels: [__name__]
      regex: go_.*
      action: drop
"""


def parse(text: str, **global_kwargs: Any) -> Any:
    return parse_scrape_configs(
        yaml.safe_load(text), GlobalConfig(**global_kwargs), base_dir=Path("/etc/sr")
    )


def test_prometheus_config_pastes_unchanged() -> None:
    prom, node = parse(PASTED)
    assert (prom.scrape_interval, prom.scrape_timeout) == (15_000, 10_000)
    assert prom.metrics_path == "/metrics" and prom.scheme == "http"
    assert prom.honor_timestamps and not prom.honor_labels
    assert (node.scrape_interval, node.scrape_timeout) == (5_000, 5_000)  # cut to the interval
    assert node.basic_auth is not None and node.basic_auth.password_file == "/etc/sr/secret.txt"
    assert node.file_sd_configs[0].files == ["/etc/sr/targets/*.json", "/etc/sr/more.yml"]
    assert node.file_sd_configs[0].refresh_interval == 60_000
    assert [r.action for r in node.relabel_configs] == ["replace", "labelmap"]
    assert node.params == {"module": ["http_2xx"]}


def test_global_defaults_apply() -> None:
    (cfg,) = parse("- job_name: a", scrape_interval=30_000, scrape_timeout=20_000)
    assert (cfg.scrape_interval, cfg.scrape_timeout) == (30_000, 20_000)


@pytest.mark.parametrize(
    ("text", "path", "message"),
    [
        ("- static_configs: []", "scrape_configs[0]", "job_name is empty"),
        (
            "- job_name: a\n- job_name: a",
            "scrape_configs[1].job_name",
            'found multiple scrape configs with job name "a"',
        ),
        (
            "- {job_name: a, scrape_interval: 5s, scrape_timeout: 10s}",
            "scrape_configs[0].scrape_timeout",
            'scrape timeout greater than scrape interval for scrape config with job name "a"',
        ),
        (
            "- {job_name: a, relabel_configs: [{}, {action: hashmod, target_label: x}]}",
            "scrape_configs[0].relabel_configs[0].action",
            "relabel configuration for replace action requires 'target_label' value",
        ),
        (
            "- {job_name: a, metric_relabel_configs: [{action: nope}]}",
            "scrape_configs[0].metric_relabel_configs[0].action",
            'unknown relabel action "nope"',
        ),
        ("- {job_name: a, scheme: ftp}", "scrape_configs[0].scheme", 'must be "http" or "https"'),
        (
            "- {job_name: a, static_configs: [{targets: ['a/b']}]}",
            "scrape_configs[0].static_configs[0].targets",
            '"a/b" is not a valid hostname',
        ),
        (
            "- {job_name: a, file_sd_configs: [{files: [x.txt]}]}",
            "scrape_configs[0].file_sd_configs[0].files",
            'path name "x.txt" is not valid for file discovery',
        ),
        (
            "- {job_name: a, bearer_token: x, bearer_token_file: y}",
            "scrape_configs[0]",
            "at most one of bearer_token & bearer_token_file must be configured",
        ),
        (
            "- {job_name: a, authorization: {type: Basic}}",
            "scrape_configs[0].authorization",
            'authorization type cannot be set to "basic"',
        ),
        (
            "- {job_name: a, scrape_intervall: 5s}",
            "scrape_configs[0].scrape_intervall",
            "not found",
        ),
        (
            "- {job_name: a, kubernetes_sd_configs: [{role: pod}]}",
            "scrape_configs[0].kubernetes_sd_configs",
            "not supported",
        ),
        ("- {job_name: a, sample_limit: -1}", "scrape_configs[0].sample_limit", "greater than"),
        (
            "- {job_name: a, scrape_protocols: [Bogus]}",
            "scrape_configs[0].scrape_protocols",
            "unknown scrape protocol Bogus",
        ),
    ],
)
def test_errors_name_the_path(text: str, path: str, message: str) -> None:
    with pytest.raises(ScrapeConfigError) as info:
        parse(text)
    problems = [str(p) for p in info.value.problems]
    assert any(p.startswith(path + ":") and message in p for p in problems), problems


def test_error_paths_are_tuples_for_line_lookup() -> None:
    with pytest.raises(ScrapeConfigError) as info:
        parse("- job_name: a\n- job_name: b\n- {job_name: c, relabel_configs: [{action: x}]}")
    assert info.value.problems[0].path == ("scrape_configs", 2, "relabel_configs", 0, "action")


def test_accept_header_is_prometheus_default() -> None:
    (cfg,) = parse("- job_name: a")
    assert cfg.accept_header == (
        "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,"
        "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,"
        "text/plain;version=0.0.4;q=0.3,*/*;q=0.2"
    )
    (text_only,) = parse("- {job_name: a, scrape_protocols: [PrometheusText0.0.4]}")
    assert text_only.accept_header == "text/plain;version=0.0.4;q=0.6,*/*;q=0.5"


def test_self_scrape_config() -> None:
    (cfg,) = parse_scrape_configs([default_self_scrape_config("0.0.0.0:8290")], GlobalConfig())
    assert cfg.job_name == "signalroom"
    assert cfg.static_configs[0].targets == ["127.0.0.1:8290"]
