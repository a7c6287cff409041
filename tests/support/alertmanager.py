"""Start the real Alertmanager (Debian ``prometheus-alertmanager``) for differential tests."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import yaml

from signalroom.alerting.testing import free_port

AM_BINARY = "/usr/bin/prometheus-alertmanager"
AMTOOL_BINARY = "/usr/bin/amtool"


def alertmanager_installed() -> bool:
    return shutil.which(AM_BINARY) is not None


@contextmanager
def real_alertmanager(section: dict[str, Any], tmp: Path) -> Iterator[str]:
    """Alertmanager on 127.0.0.1 with ``section`` as its configuration; yields its base URL.

    Clustering is off so a test never gossips with another instance on the machine.
    """
    config = tmp / "am.yml"
    config.write_text(yaml.safe_dump(section))
    port = free_port()
    log_path = tmp / "am.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                AM_BINARY,
                f"--config.file={config}",
                f"--storage.path={tmp / 'am-data'}",
                f"--web.listen-address=127.0.0.1:{port}",
                "--cluster.listen-address=",
                "--log.level=warn",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if httpx.get(f"{url}/-/ready", timeout=1).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"Alertmanager did not start:\n{log_path.read_text()}")
                time.sleep(0.05)
            yield url
        finally:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
