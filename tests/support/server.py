"""Start real ``signalroom serve`` processes for integration tests."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from signalroom.alerting.testing import free_port as free_port  # re-exported for the tests


@dataclass
class ServerProcess:
    """A running server: its URL, process, data directory and captured log file."""

    url: str
    process: subprocess.Popen[bytes]
    data_dir: Path
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kwargs)  # type: ignore[arg-type]

    def signal(self, sig: int) -> None:
        self.process.send_signal(sig)

    def stop(self, timeout: float = 20) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


def wait_ready(
    url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 90
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise TimeoutError(f"server at {url} not ready after {timeout}s:\n{log_path.read_text()}")


@contextmanager
def running_server(
    tmp_path: Path,
    config_text: str | None = None,
    *,
    data_dir: Path | None = None,
    extra_args: tuple[str, ...] = (),
) -> Iterator[ServerProcess]:
    """Start ``signalroom serve`` on a free loopback port and stop it afterwards."""
    port = free_port()
    data = data_dir or tmp_path / "data"
    args = [
        sys.executable,
        "-m",
        "signalroom",
        "serve",
        "--data-dir",
        str(data),
        "--listen",
        f"127.0.0.1:{port}",
        *extra_args,
    ]
    if config_text is not None:
        config_path = tmp_path / "signalroom.yml"
        config_path.write_text(config_text)
        args += ["--config", str(config_path)]
    log_path = tmp_path / f"server-{port}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            args,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            cwd=tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    server = ServerProcess(f"http://127.0.0.1:{port}", process, data, log_path)
    try:
        wait_ready(server.url, process, log_path)
        yield server
    finally:
        server.stop()
