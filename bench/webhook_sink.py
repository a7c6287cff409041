"""A webhook receiver for the alerting benchmark, in a process of its own.

The latency goal is about when a notification *reaches* its webhook, so the receiver must not
add its own queueing: a thread-per-request Python server sharing the benchmark's GIL takes
~1 ms a request and turns a burst of 100 notifications into a 100 ms queue for either server.
This one is a bare asyncio protocol: it notes ``time.monotonic()`` (CLOCK_MONOTONIC, the same
clock in every process) when a request's first bytes arrive, answers 200 with keep-alive, and
keeps the bodies unparsed until ``GET /_arrivals`` asks for them.

    python bench/webhook_sink.py PORT
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
arrivals: list[tuple[str, float, bytes]] = []


class SinkProtocol(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buffer = b""
        self.started = 0.0

    def data_received(self, data: bytes) -> None:
        if not self.buffer:
            self.started = time.monotonic()
        self.buffer += data
        while True:
            head_end = self.buffer.find(b"\r\n\r\n")
            if head_end < 0:
                return
            head = self.buffer[:head_end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            end = head_end + 4 + length
            if len(self.buffer) < end:
                return
            method, path = head[0].split(" ")[:2]
            body, self.buffer = self.buffer[head_end + 4 : end], self.buffer[end:]
            if method == "GET" and path == "/_arrivals":
                payload = json.dumps(
                    [[p, t, json.loads(b) if b else None] for p, t, b in arrivals]
                ).encode()
                self.transport.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(payload), payload)
                )
            else:
                arrivals.append((path, self.started, body))
                self.transport.write(OK)
            self.started = time.monotonic()


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(SinkProtocol, "127.0.0.1", port, backlog=1024)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(serve(int(sys.argv[1])))
