"""Helpers for testing alerting: a movable clock and a webhook sink on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from signalroom.alerting.alerts import Clock

__all__ = ["FakeClock", "WebhookSink", "free_port"]


class FakeClock(Clock):
    """A clock that only moves when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2024, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.current

    def advance(self, delta: timedelta | float) -> datetime:
        self.current += delta if isinstance(delta, timedelta) else timedelta(seconds=delta)
        return self.current


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class WebhookSink:
    """An HTTP server on 127.0.0.1 that records every JSON body POSTed to it.

    ``status`` is the code it answers with (set ``fail_next`` to answer 500 that many times
    first). Bodies are kept per path in arrival order with their arrival time.
    """

    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.fail_next = 0
        self.received: list[tuple[str, float, Any]] = []
        self._cond = threading.Condition()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                raw = self.rfile.read(length)
                with sink._cond:
                    failing = sink.fail_next > 0
                    if failing:
                        sink.fail_next -= 1
                    else:
                        try:
                            body: Any = json.loads(raw)
                        except ValueError:
                            body = raw.decode("utf-8", "replace")
                        sink.received.append((self.path, time.monotonic(), body))
                        sink._cond.notify_all()
                self.send_response(500 if failing else sink.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            request_queue_size = 512  # a burst of group notifications must not be refused

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> WebhookSink:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def bodies(self, path: str | None = None) -> list[Any]:
        with self._cond:
            return [b for p, _, b in self.received if path is None or p == path]

    def wait_for(self, count: int, path: str | None = None, timeout: float = 30.0) -> list[Any]:
        """Block until ``count`` bodies arrived (at ``path``); returns them."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                got = [b for p, _, b in self.received if path is None or p == path]
                if len(got) >= count:
                    return got
                left = deadline - time.monotonic()
                if left <= 0:
                    return got
                self._cond.wait(left)

    async def await_for(
        self, count: int, path: str | None = None, timeout: float = 30.0
    ) -> list[Any]:
        return await asyncio.to_thread(self.wait_for, count, path, timeout)


@contextlib.contextmanager
def webhook_sink(status: int = 200) -> Any:
    with WebhookSink(status) as sink:
        yield sink
