"""Metrics end to end on a real server: remote write in, PromQL out, the self-scrape, real
Prometheus as a sender and promtool as a client, and kill -9 during writes."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path

import httpx
import pytest

from signalroom.ingest.remote_write import encode_write_request
from tests.support.server import free_port, running_server

pytestmark = pytest.mark.integration

WRITE_HEADERS = {
    "Content-Encoding": "snappy",
    "Content-Type": "application/x-protobuf",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


def write(
    client: httpx.Client, series: list[tuple[dict[str, str], list[tuple[int, float]]]]
) -> httpx.Response:
    return client.post("/api/v1/write", content=encode_write_request(series), headers=WRITE_HEADERS)


def query(client: httpx.Client, expr: str, at: float) -> list[dict[str, object]]:
    response = client.get("/api/v1/query", params={"query": expr, "time": str(at)})
    assert response.status_code == 200, response.text
    result: list[dict[str, object]] = response.json()["data"]["result"]
    return result


def wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def test_remote_write_then_query(tmp_path: Path) -> None:
    now_ms = int(time.time() * 1000) // 1000 * 1000
    series = [
        ({"__name__": "http_requests_total", "job": "shop", "code": code},
         [(now_ms - 60_000 * (10 - i), float(i * rate)) for i in range(11)])
        for code, rate in (("200", 60), ("500", 6))
    ]  # fmt: skip
    with (
        running_server(tmp_path, "server: {self_scrape: false}\n") as server,
        server.client() as client,
    ):
        assert write(client, series).status_code == 204
        result = query(client, "sum by (code) (rate(http_requests_total[5m]))", now_ms / 1000)
        rates = {r["metric"]["code"]: float(r["value"][1]) for r in result}  # type: ignore[index]
        assert rates == pytest.approx({"200": 1.0, "500": 0.1})
        series_found = client.get(
            "/api/v1/series", params={"match[]": "http_requests_total"}
        ).json()
        assert len(series_found["data"]) == 2
        assert client.get("/api/v1/label/code/values").json()["data"] == ["200", "500"]
        # tenants are kept apart
        other = client.get("/api/v1/query", params={"query": "http_requests_total"},
                           headers={"X-Scope-OrgID": "crm"})  # fmt: skip
        assert other.json()["data"]["result"] == []


def test_malformed_remote_write_bodies_get_clear_400s(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, "server: {self_scrape: false}\n") as server,
        server.client() as client,
    ):
        not_snappy = client.post("/api/v1/write", content=b"\x00garbage", headers=WRITE_HEADERS)
        assert not_snappy.status_code == 400
        assert "snappy" in not_snappy.text.lower()
        no_name = write(client, [({"job": "x"}, [(1000, 1.0)])])
        assert no_name.status_code == 400
        assert "__name__" in no_name.text or "metric name" in no_name.text
        bad_label = write(client, [({"__name__": "ok", "0bad": "x"}, [(1000, 1.0)])])
        assert bad_label.status_code == 400
        assert "0bad" in bad_label.text
        # the server stays healthy
        assert client.get("/-/healthy").status_code == 200


def test_self_scrape_and_staleness_free_up(tmp_path: Path) -> None:
    config = "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
    with running_server(tmp_path, config) as server, server.client() as client:
        # The first scrape of a just-started server can time out on a loaded machine (up 0);
        # what matters is that the self-scrape succeeds.
        wait_for(lambda: query(client, 'up{job="signalroom"} == 1', time.time()))
        wait_for(lambda: query(client, "signalroom_http_requests_total", time.time()))


def test_self_scrape_works_with_auth_on(tmp_path: Path) -> None:
    from signalroom.auth import hash_token

    config = (
        "global: {scrape_interval: 1s, scrape_timeout: 1s}\n"
        f"auth: {{tokens: [{{name: r, sha256: {hash_token('sr_t')}, scopes: [read]}}]}}\n"
    )
    with running_server(tmp_path, config) as server:
        client = server.client(headers={"Authorization": "Bearer sr_t"})
        wait_for(lambda: query(client, 'up{job="signalroom"} == 1', time.time()))


@pytest.mark.slow
def test_real_prometheus_remote_writes_into_signalroom(tmp_path: Path) -> None:
    binary = shutil.which("prometheus")
    assert binary, "prometheus is not installed: scripts/install-system-deps.sh prometheus"
    with (
        running_server(tmp_path, "server: {self_scrape: false}\n") as server,
        server.client() as client,
    ):
        prom_port = free_port()
        target = f"127.0.0.1:{prom_port}"
        (tmp_path / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            f"scrape_configs: [{{job_name: prom, static_configs: [{{targets: ['{target}']}}]}}]\n"
            f"remote_write: [{{url: '{server.url}/api/v1/write',\n"
            "                 queue_config: {batch_send_deadline: 1s}}]\n"
        )
        log = (tmp_path / "prometheus.log").open("wb")
        prometheus = subprocess.Popen(
            [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
             f"--storage.tsdb.path={tmp_path / 'prom'}", f"--web.listen-address={target}"],
            stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        try:
            wait_for(lambda: query(client, 'up{job="prom"} == 1', time.time()), timeout=45)
            wait_for(
                lambda: query(client, 'prometheus_build_info{job="prom"}', time.time()), timeout=30
            )
            names = client.get("/api/v1/label/__name__/values").json()["data"]
            assert "prometheus_tsdb_head_series" in names
        finally:
            prometheus.send_signal(signal.SIGTERM)
            prometheus.wait(30)
            log.close()


@pytest.mark.slow
def test_promtool_queries_signalroom(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "promtool is not installed: scripts/install-system-deps.sh prometheus"
    now = int(time.time())
    points = [((now - 60 + i * 15) * 1000, 20.0 + i) for i in range(5)]
    series = [
        ({"__name__": "temperature_celsius", "room": room}, points)
        for room in ("kitchen", "cellar")
    ]
    with (
        running_server(tmp_path, "server: {self_scrape: false}\n") as server,
        server.client() as client,
    ):
        assert write(client, series).status_code == 204

        def run(*args: str) -> str:
            done = subprocess.run(
                [promtool, "query", *args], capture_output=True, text=True, timeout=30
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        instant = run(
            "instant", "-o", "json", server.url, "max(temperature_celsius)", f"--time={now}"
        )
        assert json.loads(instant)[0]["value"][1] == "24"
        ranged = run("range", "-o", "json", f"--start={now - 60}", f"--end={now}", "--step=15s",
                     server.url, 'temperature_celsius{room="kitchen"}')  # fmt: skip
        assert [v[1] for v in json.loads(ranged)[0]["values"]] == ["20", "21", "22", "23", "24"]
        assert "cellar" in run("series", server.url, "--match=temperature_celsius")
        assert run("labels", server.url, "room").split() == ["cellar", "kitchen"]


@pytest.mark.slow
def test_kill_9_during_remote_write_loses_no_acknowledged_sample(tmp_path: Path) -> None:
    acknowledged: list[int] = []
    stop = threading.Event()
    base_ms = int(time.time() * 1000) - 3_600_000

    with running_server(tmp_path, "server: {self_scrape: false}\n") as server:

        def writer() -> None:
            with server.client() as client:
                i = 0
                while not stop.is_set():
                    body = [
                        ({"__name__": "acked", "writer": "w"}, [(base_ms + i * 1000, float(i))])
                    ]
                    try:
                        if write(client, body).status_code == 204:
                            acknowledged.append(i)
                    except httpx.HTTPError:
                        return
                    i += 1

        thread = threading.Thread(target=writer)
        thread.start()
        time.sleep(2.0)
        server.process.send_signal(signal.SIGKILL)
        server.process.wait()
        stop.set()
        thread.join()
    assert len(acknowledged) > 10
    at = str((base_ms + 3_600_000) / 1000)
    config = "server: {self_scrape: false}\n"
    with (
        running_server(tmp_path, config, data_dir=server.data_dir) as again,
        again.client() as client,
    ):
        counted = client.get(
            "/api/v1/query", params={"query": "count_over_time(acked[2h])", "time": at}
        )
        assert counted.status_code == 200, counted.text
        stored = int(counted.json()["data"]["result"][0]["value"][1])
        values = client.get("/api/v1/query", params={"query": "acked[2h]", "time": at}).json()
    present = {int(float(v)) for _, v in values["data"]["result"][0]["values"]}
    missing = set(acknowledged) - present
    assert not missing, f"{len(missing)} acknowledged samples lost, e.g. {sorted(missing)[:5]}"
    assert stored >= len(acknowledged)
