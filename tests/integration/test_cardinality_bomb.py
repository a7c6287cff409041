"""A cardinality bomb against a real server: 10 million distinct series over remote write.

With ``max_series_total`` at 200,000 the server must create series up to the limit, then answer
every further request 429 naming the limit and the metric, without growing in memory per
rejected series, while health checks and PromQL queries keep answering; the rejections are
counted in /metrics and series that exist keep taking samples afterwards.

Bodies are built from one label-set template (the series id is the only part that changes,
written into a tiled byte matrix with NumPy), so the client spends milliseconds per body of
10,000 series and the run measures the server.
"""

from __future__ import annotations

import re
import struct
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cramjam
import httpx
import numpy as np
import pytest

from signalroom.ingest.remote_write import encode_write_request
from signalroom.model.labels import Labels
from tests.support.server import running_server

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(400)]

LIMIT = 200_000
BOMB_SERIES = 10_000_000
PER_REQUEST = 10_000
SEEDED = 10  # series that exist before the bomb
METRIC = "bomb_series_total"
DIGITS = 9  # width of the zero-padded series id
HEADERS = {"Content-Encoding": "snappy", "Content-Type": "application/x-protobuf"}
CONFIG = f"limits:\n  max_series_total: {LIMIT}\nserver:\n  self_scrape: false\n"


def _field(tag: int, payload: bytes) -> bytes:
    assert len(payload) < 0x80  # one-byte lengths keep the template simple
    return bytes((tag, len(payload))) + payload


def _label(name: bytes, value: bytes) -> bytes:
    return _field(0x0A, _field(0x0A, name) + _field(0x12, value))


def _varint(n: int) -> bytes:
    out = bytearray()
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def bomb_body(first: int, count: int, timestamp_ms: int) -> bytes:
    """A snappy WriteRequest of ``count`` new series ``bomb_series_total{id=..., job="bomb"}``
    (ids ``first``...), one sample each; labels sorted by name, as Prometheus sends them."""
    sample = _field(0x12, b"\x09" + struct.pack("<d", 1.0) + b"\x10" + _varint(timestamp_ms))
    tail = _label(b"job", b"bomb") + sample
    series = _label(b"__name__", METRIC.encode()) + _label(b"id", b"0" * DIGITS) + tail
    template = _field(0x0A, series)
    rows = np.tile(np.frombuffer(template, np.uint8), (count, 1))
    at = len(template) - len(tail) - DIGITS  # where the id's digits are
    ids = np.arange(first, first + count, dtype=np.int64)
    for d in range(DIGITS):
        rows[:, at + DIGITS - 1 - d] = 48 + (ids // 10**d) % 10
    return bytes(cramjam.snappy.compress_raw(rows.tobytes()))


def rss_bytes(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    found = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
    assert found is not None
    return int(found.group(1)) * 1024


def counter(text: str, name: str, **labels: str) -> float:
    wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
    pattern = "^" + re.escape(f"{name}{{{wanted}}}" if wanted else name) + r" (\S+)$"
    found = re.search(pattern, text, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def test_ten_million_series_bomb_is_contained(tmp_path: Path) -> None:
    now = int(time.time() * 1000)
    with running_server(tmp_path, CONFIG) as server, server.client() as client:
        write = f"{server.url}/api/v1/write"
        seed = encode_write_request(
            (Labels({"__name__": "pre_bomb", "i": str(i)}), [(now - 1000, float(i))])
            for i in range(SEEDED)
        )
        assert client.post(write, content=seed, headers=HEADERS).status_code == 204
        before = counter(
            client.get("/metrics").text,
            "signalroom_tsdb_rejected_samples_total",
            reason="max_series_total",
        )

        statuses: dict[int, int] = {}
        rejections: list[str] = []
        liveness: list[tuple[int, int]] = []  # (healthy status, query status) along the way
        rss_at_limit = 0
        started = time.monotonic()
        requests = BOMB_SERIES // PER_REQUEST
        # the limit is reached after this many requests; every one from then on is refused
        full = (LIMIT - SEEDED) // PER_REQUEST

        def post(k: int) -> tuple[int, int, str]:
            body = bomb_body(k * PER_REQUEST, PER_REQUEST, now)
            with httpx.Client(timeout=60) as c:
                response = c.post(write, content=body, headers=HEADERS)
            return k, response.status_code, response.text

        with ThreadPoolExecutor(max_workers=2) as pool:
            # the first requests in order, so which ones fill the store is known
            for k in range(full + 1):
                _, status, text = post(k)
                statuses[status] = statuses.get(status, 0) + 1
                if k == full:
                    assert status == 429, text
                    rejections.append(text)
            rss_at_limit = rss_bytes(server.process.pid)
            for k, status, text in pool.map(post, range(full + 1, requests)):
                statuses[status] = statuses.get(status, 0) + 1
                if status != 429 or len(rejections) < 3:
                    rejections.append(text)
                if k % 100 == 0:
                    healthy = client.get("/-/healthy").status_code
                    query = client.get("/api/v1/query", params={"query": "sum(pre_bomb)"})
                    liveness.append((healthy, query.status_code))
        elapsed = time.monotonic() - started
        rss_after = rss_bytes(server.process.pid)

        accepted_requests = (LIMIT - SEEDED) // PER_REQUEST
        assert statuses == {204: accepted_requests, 429: requests - accepted_requests}, (
            statuses,
            rejections[-3:],
        )
        for text in rejections:
            assert "max_series_total" in text and f"'{METRIC}'" in text, text
        assert liveness and all(pair == (200, 200) for pair in liveness), liveness
        # nothing is kept per rejected series: 9.8M of them in, far less than 100 B each
        assert rss_after - rss_at_limit < 200 * 2**20, (rss_at_limit, rss_after)

        metrics = client.get("/metrics").text
        rejected = counter(
            metrics, "signalroom_tsdb_rejected_samples_total", reason="max_series_total"
        )
        assert rejected - before == BOMB_SERIES - (LIMIT - SEEDED)
        assert counter(metrics, "signalroom_tsdb_head_series") == LIMIT

        # existing series, seeded and bomb-made, still take samples
        first_bomb = Labels({"__name__": METRIC, "id": "0" * DIGITS, "job": "bomb"})
        later = encode_write_request(
            [
                (Labels({"__name__": "pre_bomb", "i": "0"}), [(now + 1000, 5.0)]),
                (first_bomb, [(now + 1000, 2.0)]),
            ]
        )
        response = client.post(write, content=later, headers=HEADERS)
        assert response.status_code == 204, response.text
        result = client.get(
            "/api/v1/query", params={"query": "sum(pre_bomb)", "time": (now + 2000) / 1000}
        ).json()
        assert float(result["data"]["result"][0]["value"][1]) == 5.0 + sum(range(1, SEEDED))
        print(
            f"\n{BOMB_SERIES:,} series in {elapsed:.1f}s ({BOMB_SERIES / elapsed:,.0f} series/s), "
            f"RSS at limit {rss_at_limit / 2**20:.0f} MiB, after {rss_after / 2**20:.0f} MiB"
        )
