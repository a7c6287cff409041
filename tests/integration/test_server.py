"""The real server process: lifecycle endpoints, auth, tenancy, limits, reload, logs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from signalroom.auth import hash_token
from tests.support.server import free_port, running_server

pytestmark = pytest.mark.integration

READER, WRITER, ADMIN = "sr_reader-token", "sr_writer-token", "sr_admin-token"
TOKENS_CONFIG = f"""
auth:
  tokens:
    - {{name: reader, sha256: {hash_token(READER)}, scopes: [read]}}
    - {{name: writer, sha256: {hash_token(WRITER)}, scopes: [write], tenants: [shop]}}
    - {{name: admin, sha256: {hash_token(ADMIN)}, scopes: [admin]}}
"""


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def log_lines(text: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in text.splitlines() if line.startswith("{")]


def test_lifecycle_endpoints_request_ids_and_json_logs(tmp_path: Path) -> None:
    with running_server(tmp_path) as server, server.client() as client:
        assert client.get("/-/healthy").text == "signalroom is Healthy.\n"
        assert client.get("/-/ready").status_code == 200
        response = client.get("/api/sr/status", headers={"X-Request-ID": "req-42"})
        assert response.headers["x-request-id"] == "req-42"
        status = response.json()["data"]
        assert status["ready"] is True
        assert status["tenant"] == "default"
        assert status["authEnabled"] is False
        generated = client.get("/api/sr/status").headers["x-request-id"]
        assert len(generated) == 16
        assert (
            client.get("/api/sr/status", headers={"X-Request-ID": "bad id with spaces"}).headers[
                "x-request-id"
            ]
            != "bad id with spaces"
        )
        openapi = client.get("/openapi.json").json()
        assert "/-/reload" in openapi["paths"]
        metrics = client.get("/metrics").text
        assert (
            'signalroom_http_requests_total{code="200",handler="/api/sr/status",method="GET"}'
            in metrics
        )
        assert "signalroom_http_request_duration_seconds_bucket" in metrics
        assert "process_resident_memory_bytes" in metrics
        missing = client.get("/no/such/route")
        assert missing.status_code == 404
        assert missing.json() == {"status": "error", "errorType": "not_found", "error": "Not Found"}
    lines = log_lines(server.log())
    access = [line for line in lines if line.get("logger") == "signalroom.http"]
    assert any(
        line["request_id"] == "req-42"
        and line["path"] == "/api/sr/status"
        and line["status"] == 200
        for line in access
    )
    assert any(line.get("msg") == "signalroom stopped" for line in lines)


def test_openmetrics_negotiation(tmp_path: Path) -> None:
    with running_server(tmp_path) as server, server.client() as client:
        response = client.get(
            "/metrics", headers={"Accept": "application/openmetrics-text; version=1.0.0"}
        )
        assert response.headers["content-type"].startswith("application/openmetrics-text")
        assert response.text.rstrip().endswith("# EOF")


def test_tokens_scopes_and_tenants(tmp_path: Path) -> None:
    with running_server(tmp_path, TOKENS_CONFIG) as server, server.client() as client:
        # probes need no token
        assert client.get("/-/healthy").status_code == 200
        assert client.get("/-/ready").status_code == 200
        anonymous = client.get("/api/sr/status")
        assert anonymous.status_code == 401
        assert anonymous.headers["www-authenticate"].startswith("Bearer")
        assert anonymous.json()["errorType"] == "unauthorized"
        assert (
            client.get("/api/sr/status", headers=bearer("sr_wrong")).json()["error"]
            == "invalid API token"
        )
        ok = client.get("/api/sr/status", headers={**bearer(READER), "X-Scope-OrgID": "shop"})
        assert ok.status_code == 200
        assert ok.json()["data"]["tenant"] == "shop"
        # basic auth with the token as password, as Grafana and promtool can send it
        assert client.get("/metrics", auth=("grafana", READER)).status_code == 200
        forbidden = client.post("/-/reload", headers=bearer(READER))
        assert forbidden.status_code == 403
        assert (
            forbidden.json()["error"]
            == "token 'reader' lacks scope 'admin' needed for POST /-/reload"
        )
        assert client.get("/metrics", headers=bearer(WRITER)).status_code == 403
        assert client.post("/-/reload", headers=bearer(ADMIN)).status_code == 200
        bad_tenant = client.get(
            "/api/sr/status", headers={**bearer(READER), "X-Scope-OrgID": "a/b"}
        )
        assert bad_tenant.status_code == 400
        assert "X-Scope-OrgID" in bad_tenant.json()["error"]


def test_body_limit_from_content_length(tmp_path: Path) -> None:
    config = "limits: {max_request_body: 1KB}\n"
    with running_server(tmp_path, config) as server, server.client() as client:
        declared = client.post("/-/reload", content=b"x" * 2048)
        assert declared.status_code == 413
        assert "limits.max_request_body (1024 bytes)" in declared.json()["error"]

        assert client.post("/-/reload", content=b"small").status_code == 200
        assert "signalroom_http_request_body_rejected_total 1.0" in client.get("/metrics").text


def test_reload_by_sighup_and_http_keeps_running_config_when_invalid(tmp_path: Path) -> None:
    with (
        running_server(tmp_path, "limits: {max_request_body: 1KB}\n") as server,
        server.client() as client,
    ):
        config_path = tmp_path / "signalroom.yml"
        config_path.write_text("limits: {max_request_body: 4KB}\n")
        server.signal(signal.SIGHUP)
        deadline = time.monotonic() + 10
        while client.post("/-/reload", content=b"x" * 2048).status_code == 413:
            assert time.monotonic() < deadline, "SIGHUP did not reload the configuration"
            time.sleep(0.05)
        config_path.write_text("limits:\n  max_request_body: 4KB\n  max_bogus: 3\n")
        answer = client.post("/-/reload")
        assert answer.status_code == 400
        assert "kept the running configuration" in answer.json()["error"]
        assert (
            "signalroom.yml:3:3: limits.max_bogus: unknown key 'max_bogus'"
            in answer.json()["error"]
        )
        # still the 4KB limit from the last good configuration
        assert client.post("/-/reload", content=b"x" * 3000).status_code == 400
        assert client.get("/api/sr/status").json()["data"]["lastReloadSuccessful"] is False
        assert "signalroom_config_last_reload_successful 0.0" in client.get("/metrics").text
        config_path.write_text(TOKENS_CONFIG)
        assert client.post("/-/reload").status_code == 200
        # the new tokens are in force at once
        assert client.get("/api/sr/status").status_code == 401
        assert client.get("/api/sr/status", headers=bearer(READER)).status_code == 200


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "signalroom", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_non_loopback_without_tokens_is_refused(tmp_path: Path) -> None:
    result = run_cli(
        "serve", "--listen", f"0.0.0.0:{free_port()}", "--data-dir", str(tmp_path), cwd=tmp_path
    )
    assert result.returncode == 2
    assert "refusing to listen on 0.0.0.0" in result.stderr
    assert "signalroom token new" in result.stderr


def test_invalid_config_names_its_line(tmp_path: Path) -> None:
    (tmp_path / "bad.yml").write_text("storage:\n  wal:\n    fsync: maybe\n")
    result = run_cli("serve", "--config", "bad.yml", "--data-dir", str(tmp_path), cwd=tmp_path)
    assert result.returncode == 1
    assert "bad.yml:3:12: storage.wal.fsync" in result.stderr
    check = run_cli("check-config", "bad.yml", cwd=tmp_path)
    assert check.returncode == 1
    assert "bad.yml:3:12" in check.stderr


def test_second_server_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    with running_server(tmp_path):
        result = run_cli(
            "serve",
            "--listen",
            f"127.0.0.1:{free_port()}",
            "--data-dir",
            str(tmp_path / "data"),
            cwd=tmp_path,
        )
        assert result.returncode != 0
        assert "is in use by signalroom pid" in result.stdout + result.stderr


def test_several_instances_side_by_side(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with running_server(tmp_path / "a") as first, running_server(tmp_path / "b") as second:
        assert first.url != second.url
        assert httpx.get(first.url + "/-/healthy").status_code == 200
        assert httpx.get(second.url + "/-/healthy").status_code == 200


def test_sigterm_is_a_graceful_shutdown(tmp_path: Path) -> None:
    with running_server(tmp_path) as server:
        # uvicorn re-raises SIGTERM after its graceful shutdown, as a service manager expects
        assert server.stop() in (0, -signal.SIGTERM)
    assert "signalroom stopped" in server.log()
    assert "Traceback" not in server.log()
