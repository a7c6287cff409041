"""A webhook receiver on loopback that records every JSON body posted to it."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass
class WebhookSink:
    """What a running sink has received, in arrival order, with the path each came to."""

    url: str
    received: list[dict[str, Any]] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)
    arrivals: list[float] = field(default_factory=list)
    """``time.monotonic()`` at which each body arrived."""
    status: int = 200
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def bodies(self, path: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            if path is None:
                return list(self.received)
            return [b for b, p in zip(self.received, self.paths, strict=True) if p == path]

    def timed(self) -> list[tuple[float, dict[str, Any]]]:
        """``(arrival, body)`` pairs."""
        with self._lock:
            return list(zip(self.arrivals, self.received, strict=True))

    def wait_for(
        self, predicate: Callable[[list[dict[str, Any]]], bool], timeout: float = 30.0
    ) -> list[dict[str, Any]]:
        """Wait until ``predicate(bodies)`` holds; fail with what arrived if it never does."""
        deadline = time.monotonic() + timeout
        while True:
            bodies = self.bodies()
            if predicate(bodies):
                return bodies
            if time.monotonic() > deadline:
                raise AssertionError(f"webhook condition not met in {timeout} s; got {bodies!r}")
            time.sleep(0.05)


@contextmanager
def webhook_sink(path: str = "/hook") -> Iterator[WebhookSink]:
    """Serve a sink on 127.0.0.1 at a free port; ``sink.url`` ends with ``path``."""
    sink: WebhookSink

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            with sink._lock:
                sink.received.append(json.loads(body) if body else {})
                sink.paths.append(self.path)
                sink.arrivals.append(time.monotonic())
            self.send_response(sink.status)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    sink = WebhookSink(url=f"http://127.0.0.1:{server.server_port}{path}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield sink
    finally:
        server.shutdown()
        server.server_close()
