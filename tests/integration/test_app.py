"""The composition root: state on PostgreSQL, flushing registered tables on stop."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pyarrow as pa
import pytest

from signalroom.app import Signalroom, StartupError
from signalroom.config import parse_config
from signalroom.storage.state import StateStore
from signalroom.storage.table import DurableTable
from tests.support.postgres import fresh_database
from tests.support.server import running_server

pytestmark = pytest.mark.integration

SCHEMA = pa.schema([("timestamp", pa.int64()), ("service", pa.string()), ("message", pa.string())])


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


async def test_stop_flushes_every_registered_table(tmp_path: Path) -> None:
    runtime = Signalroom(parse_config(""), data_dir=tmp_path / "data")
    await runtime.start()
    table = DurableTable(tmp_path / "data" / "logs", SCHEMA, sort_by=["service"]).open()
    runtime.add_table("logs", table)
    batch = pa.table(
        {
            "timestamp": [1_700_000_000_000_000_000 + i for i in range(1000)],
            "service": ["shop"] * 1000,
            "message": [f"line {i}" for i in range(1000)],
        },
        schema=SCHEMA,
    )
    await table.append_async("default", batch)
    await runtime.stop()

    reopened = DurableTable(tmp_path / "data" / "logs", SCHEMA, sort_by=["service"]).open()
    try:
        assert reopened.stats().rows_buffered == 0, "stop must flush, leaving nothing to replay"
        assert reopened.scan("default").num_rows == 1000
        assert list(tmp_path.glob("data/logs/**/*.parquet"))
    finally:
        reopened.close()


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
