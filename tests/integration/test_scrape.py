"""Scraping a real exposition endpoint (prometheus_client's HTTP server) through the manager."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from signalroom.alerting.testing import free_port
from signalroom.config import GlobalConfig
from signalroom.model.labels import Labels
from signalroom.scrape.appender import MemoryAppender, is_stale_nan
from signalroom.scrape.manager import ScrapeManager

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]


class Exporter:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("jobs", "Jobs done.", ["kind"], registry=self.registry)
        self.jobs.labels("email").inc(3)
        self.queue = Gauge("queue_depth", "Queue depth.", registry=self.registry)
        self.queue.set(7)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.server, self.thread = start_http_server(self.port, "127.0.0.1", self.registry)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def exporter() -> Iterator[Exporter]:
    exp = Exporter()
    yield exp
    exp.close()


def series(app: MemoryAppender, name: str, instance: str) -> list[float]:
    return [
        v for lbls, _, v in app.samples() if lbls.name == name and lbls.get("instance") == instance
    ]


async def test_scrape_values_synthetic_and_staleness(exporter: Exporter) -> None:
    app = MemoryAppender()
    manager = ScrapeManager(app, GlobalConfig())
    await manager.apply_config(
        [
            {
                "job_name": "exp",
                "scrape_interval": "200ms",
                "static_configs": [{"targets": [exporter.address], "labels": {"env": "test"}}],
            }
        ]
    )
    await manager.start()
    try:
        await app.wait_for(lambda: len(series(app, "up", exporter.address)) >= 2)
        common = {"job": "exp", "instance": exporter.address, "env": "test"}
        jobs = Labels({"__name__": "jobs_total", "kind": "email", **common})
        assert app.series_samples(jobs)[-1][1] == 3.0
        assert series(app, "queue_depth", exporter.address)[-1] == 7.0
        assert series(app, "up", exporter.address)[-1] == 1.0
        assert series(app, "scrape_samples_scraped", exporter.address)[-1] >= 3
        assert app.metadata["jobs"].type == "counter"  # OpenMetrics was negotiated
        (status,) = manager.targets()
        assert status.health == "up" and status.labels == common

        # a metric removed from the target goes stale at the next scrape
        exporter.registry.unregister(exporter.queue)
        await app.wait_for(
            lambda: any(is_stale_nan(v) for v in series(app, "queue_depth", exporter.address))
        )
        assert app.series_samples(jobs)[-1][1] == 3.0  # the rest carries on

        # a target removed by reload: every series of it goes stale
        await manager.apply_config(
            [{"job_name": "other", "scrape_interval": "1h", "static_configs": []}]
        )
        await manager.drain()
        assert is_stale_nan(app.series_samples(jobs)[-1][1])
        assert is_stale_nan(series(app, "up", exporter.address)[-1])
        assert manager.targets() == []
    finally:
        await manager.stop()


async def test_file_sd_changes_are_picked_up(tmp_path: Path, exporter: Exporter) -> None:
    second = Exporter()
    try:
        sd_file = tmp_path / "targets.json"
        sd_file.write_text(json.dumps([{"targets": [exporter.address]}]))
        app = MemoryAppender()
        manager = ScrapeManager(app, GlobalConfig(), file_sd_poll_interval=0.1)
        await manager.apply_config(
            [
                {
                    "job_name": "files",
                    "scrape_interval": "200ms",
                    "file_sd_configs": [{"files": [str(tmp_path / "*.json")]}],
                }
            ]
        )
        await manager.start()
        try:
            await app.wait_for(lambda: series(app, "up", exporter.address) != [])
            sd_file.write_text(json.dumps([{"targets": [second.address], "labels": {"team": "b"}}]))
            await app.wait_for(lambda: series(app, "up", second.address) != [])
            (status,) = manager.targets()
            assert status.labels["team"] == "b"
            assert status.discovered_labels["__meta_filepath"] == str(sd_file)
            await manager.drain()
            assert is_stale_nan(series(app, "up", exporter.address)[-1])
        finally:
            await manager.stop()
    finally:
        second.close()
