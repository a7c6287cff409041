"""The composition root: state on PostgreSQL, flushing registered tables on stop."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from signalroom.app import Signalroom, StartupError
from signalroom.config import parse_config
from signalroom.ingest.remote_write import encode_write_request
from signalroom.logs.config import LogsConfig
from signalroom.logs.service import LogService
from signalroom.promql.storage import Matcher, MatchType
from signalroom.storage.state import StateStore
from signalroom.tsdb import TSDB
from signalroom.web.server import create_http_app
from tests.support.postgres import fresh_database
from tests.support.server import running_server

pytestmark = pytest.mark.integration


@pytest.mark.postgres
def test_server_keeps_its_state_in_postgresql(tmp_path: Path, postgres_url: str) -> None:
    with fresh_database(postgres_url) as url:
        config = f"storage:\n  state_url: '{url}'\n"
        with running_server(tmp_path, config) as server, server.client() as client:
            assert client.get("/-/ready").status_code == 200
        state = StateStore(url)
        try:
            assert state.current_revision() is not None
        finally:
            state.close()
        assert not (tmp_path / "data" / "state.db").exists()


def test_stop_flushes_logs_and_metrics_to_disk(tmp_path: Path) -> None:
    """A graceful stop leaves nothing in buffers: every store's WAL is fully checkpointed."""
    runtime = Signalroom(parse_config("server: {self_scrape: false}"), data_dir=tmp_path / "data")
    now_ns = time.time_ns()
    with TestClient(create_http_app(runtime)) as client:
        streams = [{"stream": {"service": "shop"}, "values": [[str(now_ns + i), f"line {i}"]
                                                              for i in range(1000)]}]  # fmt: skip
        assert client.post("/loki/api/v1/push", json={"streams": streams}).status_code == 204
        body = encode_write_request([({"__name__": "up", "job": "x"}, [(now_ns // 10**6, 1.0)])])
        headers = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
        assert client.post("/api/v1/write", content=body, headers=headers).status_code == 204
    assert list((tmp_path / "data" / "logs").rglob("*.parquet")), "logs were not flushed"

    async def reopen_logs() -> int:
        logs = LogService(LogsConfig(), tmp_path / "data" / "logs")
        await logs.start()
        buffered: int = logs.store.stats().rows_buffered
        await logs.stop()
        return buffered

    assert asyncio.run(reopen_logs()) == 0, "a graceful stop leaves no log rows to replay"
    tsdb = TSDB(tmp_path / "data" / "metrics").open(background=False)
    try:
        name = Matcher(MatchType.EQUAL, "__name__", "up")
        found = tsdb.querier("default", 0, now_ns // 10**6 + 1).select(
            [name], 0, now_ns // 10**6 + 1
        )
        assert [list(series.values) for series in found] == [[1.0]]
    finally:
        tsdb.close()


async def test_start_refuses_exposed_listen_without_tokens(tmp_path: Path) -> None:
    config = parse_config("server: {listen: '0.0.0.0:8290'}")
    runtime = Signalroom(config, data_dir=tmp_path)
    with pytest.raises(StartupError, match="without API tokens"):
        await runtime.start()


async def test_second_runtime_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = Signalroom(parse_config(""), data_dir=tmp_path)
    await first.start()
    try:
        with pytest.raises(StartupError, match="is in use by signalroom pid"):
            await Signalroom(parse_config(""), data_dir=tmp_path).start()
    finally:
        await first.stop()
    second = Signalroom(parse_config(""), data_dir=tmp_path)
    await second.start()
    await second.stop()


def test_reload_reports_keys_that_need_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "s.yml"
    path.write_text("server: {listen: '127.0.0.1:8290'}\n")
    from signalroom.config import load_config

    runtime = Signalroom(load_config(path), data_dir=tmp_path, config_path=path)
    path.write_text("server: {listen: '127.0.0.1:9999'}\nlimits: {max_request_body: 1KB}\n")
    result = asyncio.run(runtime.reload())
    assert result.ok
    assert result.restart_needed == ["server.listen"]
    assert runtime.config.limits.max_request_body == 1024


def test_notification_inbox_keeps_the_newest(tmp_path: Path) -> None:
    from signalroom.web import inbox

    runtime = Signalroom(parse_config("server: {self_scrape: false}"), data_dir=tmp_path / "data")
    with TestClient(create_http_app(runtime)) as client:
        for i in range(inbox.KEEP + 3):
            payload = {"version": "4", "status": "firing", "groupKey": f"g{i}"}
            assert client.post("/api/sr/inbox", json=payload).status_code == 200
        assert client.post("/api/sr/inbox", content=b"[1]").status_code == 400
        data = client.get("/api/sr/inbox", params={"limit": 1000}).json()["data"]
    assert len(data) == inbox.KEEP
    assert data[0]["payload"]["groupKey"] == f"g{inbox.KEEP + 2}"
    assert data[-1]["payload"]["groupKey"] == "g3"
