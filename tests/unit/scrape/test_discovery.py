from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from signalroom.config import GlobalConfig
from signalroom.model.labels import Labels
from signalroom.scrape.config import ScrapeConfig, parse_scrape_configs
from signalroom.scrape.discovery import (
    FileDiscovery,
    TargetError,
    build_targets,
    populate_target,
    read_target_file,
    static_groups,
)

pytestmark = pytest.mark.unit


def job(**kwargs: Any) -> ScrapeConfig:
    (cfg,) = parse_scrape_configs([{"job_name": "node", **kwargs}], GlobalConfig())
    return cfg


def test_static_targets_get_prometheus_defaults() -> None:
    cfg = job(
        static_configs=[{"targets": ["a:9100", "b:9100"], "labels": {"env": "prod"}}],
        params={"module": ["x", "y"]},
    )
    result = build_targets(static_groups(cfg), cfg)
    assert [t.labels.get("instance") for t in result.active] == ["a:9100", "b:9100"]
    first = result.active[0]
    assert first.public_labels == Labels.of(instance="a:9100", job="node", env="prod")
    assert first.labels.get("__scrape_interval__") == "15s"
    assert first.labels.get("__scrape_timeout__") == "10s"
    assert first.labels.get("__param_module") == "x"
    assert first.url == "http://a:9100/metrics?module=x&module=y"
    assert first.discovered_labels.get("__address__") == "a:9100"


def test_relabeling_shapes_targets() -> None:
    cfg = job(
        static_configs=[{"targets": ["a:1", "b:2", "drop:3"]}],
        relabel_configs=[
            {"source_labels": ["__address__"], "regex": "drop:.*", "action": "drop"},
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"target_label": "__address__", "replacement": "prober:9115"},
            {"target_label": "__scheme__", "replacement": "https"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__scrape_interval__", "replacement": "1m"},
        ],
    )
    result = build_targets(static_groups(cfg), cfg)
    assert len(result.dropped) == 1
    assert [t.url for t in result.active] == [
        "https://prober:9115/metrics?target=a%3A1",
        "https://prober:9115/metrics?target=b%3A2",
    ]
    assert result.active[0].public_labels.get("instance") == "a:1"
    assert result.active[0].interval_ms == 60_000


@pytest.mark.parametrize(
    ("labels", "message"),
    [
        ({"__address__": ""}, "no address"),
        ({"__address__": "a", "__scrape_interval__": "0s"}, "scrape interval cannot be 0"),
        (
            {"__address__": "a", "__scrape_interval__": "1s", "__scrape_timeout__": "2s"},
            'scrape timeout cannot be greater than scrape interval ("2s" > "1s")',
        ),
        ({"__address__": "a", "__scrape_timeout__": "x"}, "error parsing scrape timeout"),
    ],
)
def test_invalid_targets(labels: dict[str, str], message: str) -> None:
    with pytest.raises(TargetError, match=message.replace("(", r"\(").replace(")", r"\)")):
        populate_target({}, labels, job())


def test_meta_labels_removed_after_relabel() -> None:
    cfg = job(relabel_configs=[{"action": "labelmap", "regex": "__meta_(.*)"}])
    target, _ = populate_target({"__meta_zone": "eu"}, {"__address__": "h:1"}, cfg)
    assert target is not None
    assert target.labels.get("zone") == "eu" and "__meta_zone" not in target.labels


def test_offsets_spread_within_interval() -> None:
    cfg = job(static_configs=[{"targets": [f"h{i}:1" for i in range(50)]}])
    targets = build_targets(static_groups(cfg), cfg).active
    offsets = [t.offset_s(15.0, seed=7, now=1000.0) for t in targets]
    assert all(0 <= o <= 15 for o in offsets)
    assert len({round(o, 3) for o in offsets}) > 40  # spread, not bunched
    assert targets[0].offset_s(15.0, 7, now=1000.0) == targets[0].offset_s(15.0, 7, now=1000.0)


def test_read_json_and_yaml_files(tmp_path: Path) -> None:
    j = tmp_path / "a.json"
    j.write_text(json.dumps([{"targets": ["x:1"], "labels": {"team": "a"}}]))
    y = tmp_path / "b.yml"
    y.write_text(yaml.safe_dump([{"targets": ["y:1", "z:1"]}]))
    assert read_target_file(str(j))[0].labels == {"team": "a", "__meta_filepath": str(j)}
    assert [t["__address__"] for t in read_target_file(str(y))[0].targets] == ["y:1", "z:1"]


def test_file_discovery_follows_changes(tmp_path: Path) -> None:
    (tmp_path / "one.json").write_text(json.dumps([{"targets": ["a:1"]}]))
    cfg = job(file_sd_configs=[{"files": [str(tmp_path / "*.json")]}])
    sd = FileDiscovery(cfg.file_sd_configs[0])
    assert sd.refresh(force=True)
    assert [t["__address__"] for g in sd.groups() for t in g.targets] == ["a:1"]
    assert not sd.refresh()  # nothing changed
    (tmp_path / "two.json").write_text(json.dumps([{"targets": ["b:1"]}]))
    assert sd.refresh()
    assert sorted(t["__address__"] for g in sd.groups() for t in g.targets) == ["a:1", "b:1"]
    path = tmp_path / "one.json"
    path.write_text("not json")  # a broken file keeps its last good groups
    os.utime(path, ns=(time.time_ns(), time.time_ns() + 10**9))
    sd.refresh()
    assert sorted(t["__address__"] for g in sd.groups() for t in g.targets) == ["a:1", "b:1"]
    assert str(path) in sd.errors
    path.unlink()
    assert sd.refresh()
    assert [t["__address__"] for g in sd.groups() for t in g.targets] == ["b:1"]
