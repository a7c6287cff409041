"""Scrape loops: label merging, limits, staleness, synthetic series, request headers.

The target is an httpx transport that answers in-process (no network), so each test drives
single scrapes with ``scrape_once`` and needs no timing.
"""

from __future__ import annotations

import gzip
from pathlib import Path
from typing import Any

import httpx
import pytest

from signalroom.config import GlobalConfig
from signalroom.model.labels import Labels
from signalroom.scrape.appender import MemoryAppender, is_stale_nan
from signalroom.scrape.config import ScrapeConfig, parse_scrape_configs
from signalroom.scrape.discovery import build_targets, static_groups
from signalroom.scrape.manager import ScrapeLoop, ScrapeManager

pytestmark = pytest.mark.unit

TEXT = "text/plain; version=0.0.4"


class Target:
    """An in-process exposition endpoint whose body and status tests change."""

    def __init__(self, body: str, content_type: str = TEXT) -> None:
        self.body = body
        self.content_type = content_type
        self.status = 200
        self.gzip = False
        self.requests: list[httpx.Request] = []

    def handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        data = self.body.encode()
        headers = {"content-type": self.content_type}
        if self.gzip:
            data = gzip.compress(data)
            headers["content-encoding"] = "gzip"
        return httpx.Response(self.status, content=data, headers=headers)


def make_loop(target: Target, **job: Any) -> tuple[ScrapeLoop, MemoryAppender]:
    (cfg,) = parse_scrape_configs(
        [{"job_name": "app", "static_configs": [{"targets": ["host:80"]}], **job}], GlobalConfig()
    )
    (tgt,) = build_targets(static_groups(cfg), cfg).active
    client = httpx.AsyncClient(transport=httpx.MockTransport(target.handle))
    appender = MemoryAppender()
    return ScrapeLoop(tgt, cfg, client, appender, tenant="t1", seed=0), appender


def last(appender: MemoryAppender) -> dict[Labels, float]:
    batch = appender.batches[-1]
    return dict(zip(batch.series, batch.values.tolist(), strict=True))


def L(name: str, **labels: str) -> Labels:
    return Labels({"__name__": name, "job": "app", "instance": "host:80", **labels})


async def test_samples_and_synthetic_series() -> None:
    target = Target('# TYPE a counter\na_total{x="1"} 5\nb 2\n')
    loop, app = make_loop(target)
    await loop.scrape_once()
    got = last(app)
    assert got[L("a_total", x="1")] == 5 and got[L("b")] == 2
    assert got[L("up")] == 1
    assert got[L("scrape_samples_scraped")] == 2
    assert got[L("scrape_samples_post_metric_relabeling")] == 2
    assert got[L("scrape_series_added")] == 2
    assert got[L("scrape_duration_seconds")] >= 0
    assert app.batches[-1].tenant == "t1"
    assert app.batches[-1].metadata[0].type == "counter"
    assert loop.health == "up" and loop.status().to_api()["health"] == "up"
    await loop.scrape_once()
    assert last(app)[L("scrape_series_added")] == 0


async def test_request_headers_as_prometheus(tmp_path: Path) -> None:
    secret = tmp_path / "token"
    secret.write_text("s3cret\n")
    target = Target("a 1\n")
    loop, _ = make_loop(target, scrape_timeout="2500ms", bearer_token_file=str(secret))
    await loop.scrape_once()
    headers = target.requests[0].headers
    assert headers["accept"].startswith("application/openmetrics-text;version=1.0.0")
    assert headers["x-prometheus-scrape-timeout-seconds"] == "2.5"
    assert headers["authorization"] == "Bearer s3cret"
    assert headers["accept-encoding"] == "gzip"
    basic, _ = make_loop(target, basic_auth={"username": "u", "password": "p"})
    await basic.scrape_once()
    assert target.requests[-1].headers["authorization"] == "Basic dTpw"


async def test_gzip_bodies_are_decoded() -> None:
    target = Target("a 7\n")
    target.gzip = True
    loop, app = make_loop(target)
    await loop.scrape_once()
    assert last(app)[L("a")] == 7


async def test_honor_labels() -> None:
    body = 'm{job="exposed",instance="i2",other="x"} 1\n'
    loop, app = make_loop(Target(body))
    await loop.scrape_once()
    assert L("m", exported_job="exposed", exported_instance="i2", other="x") in last(app)
    honored, app2 = make_loop(Target(body), honor_labels=True)
    await honored.scrape_once()
    assert Labels({"__name__": "m", "job": "exposed", "instance": "i2", "other": "x"}) in last(app2)


async def test_honor_timestamps() -> None:
    loop, app = make_loop(Target("a 1 1000\n"))
    await loop.scrape_once()
    assert app.batches[-1].timestamps_ms[0] == 1000
    ignored, app2 = make_loop(Target("a 1 1000\n"), honor_timestamps=False)
    await ignored.scrape_once()
    assert app2.batches[-1].timestamps_ms[0] > 1000


async def test_metric_relabeling_and_counts() -> None:
    loop, app = make_loop(
        Target("go_x 1\ngo_y 2\nkeep 3\n"),
        metric_relabel_configs=[
            {"source_labels": ["__name__"], "regex": "go_.*", "action": "drop"}
        ],
    )
    await loop.scrape_once()
    got = last(app)
    assert L("keep") in got and L("go_x") not in got
    assert got[L("scrape_samples_scraped")] == 3
    assert got[L("scrape_samples_post_metric_relabeling")] == 1


async def test_staleness_when_series_disappears() -> None:
    target = Target("a 1\nb 2\n")
    loop, app = make_loop(target)
    await loop.scrape_once()
    target.body = "a 1\n"
    await loop.scrape_once()
    got = last(app)
    assert is_stale_nan(got[L("b")]) and got[L("a")] == 1
    await loop.scrape_once()
    assert L("b") not in last(app)  # marked once


async def test_sample_limit_fails_the_scrape() -> None:
    target = Target("a 1\n")
    loop, app = make_loop(target, sample_limit=2)
    await loop.scrape_once()
    target.body = "a 1\nb 2\nc 3\n"
    await loop.scrape_once()
    got = last(app)
    assert got[L("up")] == 0
    assert is_stale_nan(got[L("a")])  # a failed scrape marks the previous series stale
    assert L("b") not in got
    assert got[L("scrape_samples_scraped")] == 3
    assert loop.last_error == "sample limit exceeded"


@pytest.mark.parametrize(
    ("job", "message"),
    [
        ({"label_limit": 3}, "label_limit exceeded (metric: a, number of labels: 4, limit: 3)"),
        ({"label_name_length_limit": 5}, "label_name_length_limit exceeded"),
        ({"label_value_length_limit": 3}, "label_value_length_limit exceeded"),
    ],
)
async def test_label_limits_fail_the_scrape(job: dict[str, Any], message: str) -> None:
    loop, app = make_loop(Target('a{longname="longvalue"} 1\n'), **job)
    await loop.scrape_once()
    assert last(app)[L("up")] == 0
    assert loop.last_error.startswith(message)


async def test_http_errors_and_bad_bodies() -> None:
    target = Target("a 1\n")
    loop, app = make_loop(target)
    target.status = 500
    await loop.scrape_once()
    assert last(app)[L("up")] == 0
    assert loop.last_error == "server returned HTTP status 500 Internal Server Error"
    target.status = 200
    target.body = "a{ 1\n"
    await loop.scrape_once()
    assert loop.last_error.startswith("line 1 column 4: expected label name")
    target.body, target.content_type = "a 1\n", ""
    await loop.scrape_once()
    assert "blank Content-Type" in loop.last_error
    fallback, app2 = make_loop(target, fallback_scrape_protocol="PrometheusText0.0.4")
    await fallback.scrape_once()
    assert last(app2)[L("up")] == 1


async def test_duplicate_series_keep_the_first() -> None:
    loop, app = make_loop(Target('a{x="1"} 1\na{x="1"} 2\n'))
    await loop.scrape_once()
    assert last(app)[L("a", x="1")] == 1


async def test_target_limit_and_reload_keeps_loops() -> None:
    app = MemoryAppender()
    target = Target("a 1\n")

    def client(cfg: ScrapeConfig) -> httpx.AsyncClient:
        return httpx.AsyncClient(transport=httpx.MockTransport(target.handle))

    manager = ScrapeManager(app, GlobalConfig(), http_client=client)
    config = {
        "job_name": "j",
        "scrape_interval": "1h",
        "scrape_timeout": "1s",
        "static_configs": [{"targets": ["a:1", "b:1"]}],
    }
    await manager.apply_config([{**config, "target_limit": 1}])
    await manager.start()
    try:
        loops = list(manager.pools["j"].loops.values())
        assert all(
            loop.forced_error == "target_limit exceeded (number of targets: 2, limit: 1)"
            for loop in loops
        )
        await loops[0].scrape_once()
        assert (
            last(app)[
                Labels(
                    {"__name__": "up", "job": "j", "instance": loops[0].target.labels["instance"]}
                )
            ]
            == 0
        )
        await manager.apply_config([config])
        reloaded = manager.pools["j"].loops
        assert all(loop.forced_error is None for loop in reloaded.values())
        before = {id(loop) for loop in reloaded.values()}
        await manager.apply_config([config])  # unchanged: the same loops keep running
        assert {id(loop) for loop in manager.pools["j"].loops.values()} == before
        assert {t.scrape_url for t in manager.targets()} == {
            "http://a:1/metrics",
            "http://b:1/metrics",
        }
    finally:
        await manager.stop()
