"""Start the reference programs (Debian's Prometheus and Alertmanager) and signalroom side by
side on loopback, for benchmarks that compare both in one run."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from tests.support.server import free_port


@dataclass
class Process:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    directory: Path

    def rss_bytes(self) -> int:
        """Resident memory now, from /proc."""
        with open(f"/proc/{self.process.pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def disk_bytes(self, subdir: str = "") -> int:
        root = self.directory / subdir
        return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def _wait(url: str, process: subprocess.Popen[bytes], log: Path, path: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{url} exited:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url + path, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise TimeoutError(f"{url} did not become ready:\n{log.read_text()[-3000:]}")


@contextmanager
def _run(
    name: str,
    args: list[str],
    directory: Path,
    url: str,
    ready: str,
    env: dict[str, str] | None = None,
) -> Iterator[Process]:
    log = directory / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            args,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=directory,
            env={**os.environ, **env} if env else None,
        )
    try:
        _wait(url, process, log, ready)
        yield Process(name, url, process, directory)
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()


@contextmanager
def prometheus(extra_args: tuple[str, ...] = (), config: str = "global: {}\n") -> Iterator[Process]:
    """Prometheus (Debian's 2.42) with the remote-write receiver, on a free loopback port."""
    binary = shutil.which("prometheus")
    if binary is None:
        raise RuntimeError("prometheus is not installed: scripts/install-system-deps.sh prometheus")
    directory = Path(tempfile.mkdtemp(prefix="bench-prometheus-"))
    (directory / "prometheus.yml").write_text(config)
    port = free_port()
    args = [binary, f"--config.file={directory / 'prometheus.yml'}",
            f"--storage.tsdb.path={directory / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
            "--web.enable-remote-write-receiver", *extra_args]  # fmt: skip
    try:
        with _run("prometheus", args, directory, f"http://127.0.0.1:{port}", "/-/ready") as p:
            yield p
    finally:
        shutil.rmtree(directory, ignore_errors=True)


@contextmanager
def signalroom(config: str = "", env: dict[str, str] | None = None) -> Iterator[Process]:
    """A signalroom server with its own data directory, on a free loopback port (``env``:
    variables added to its environment)."""
    directory = Path(tempfile.mkdtemp(prefix="bench-signalroom-"))
    (directory / "signalroom.yml").write_text(config)
    port = free_port()
    config_path = directory / "signalroom.yml"
    args = [sys.executable, "-m", "signalroom", "serve", "--config", str(config_path),
            "--data-dir", str(directory / "data"), "--listen", f"127.0.0.1:{port}",
            "--log-level", "warning"]  # fmt: skip
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    try:
        url = f"http://127.0.0.1:{port}"
        with _run("signalroom", args, directory, url, "/-/ready", env) as p:
            yield p
    finally:
        shutil.rmtree(directory, ignore_errors=True)
