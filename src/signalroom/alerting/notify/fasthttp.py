"""A lean HTTP/1.1 client for the notification hot path: JSON POSTs to plain-http URLs.

httpx (with httpcore, anyio and h11 beneath it) costs about a millisecond of CPU per request,
and one flush of 100 new groups sends 100 webhooks. This client keeps idle keep-alive
connections per origin on asyncio streams and speaks just enough HTTP/1.1: a request with a
``Content-Length`` body; a response whose body is length-delimited, chunked or ends with the
connection. Whatever needs more (TLS, proxies, auth schemes, redirects) stays with httpx: the
integrations use this only for ``http://`` URLs without an ``http_config``, and hand a
redirect answer back to httpx.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = ["LeanHTTP", "LeanResponse"]

_NO_BODY = frozenset({204, 304})
_MAX_IDLE = 100  # idle connections kept per origin


@dataclass(frozen=True, slots=True)
class LeanResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


@dataclass(frozen=True, slots=True)
class _Target:
    origin: tuple[str, int]
    host_header: str
    path: str


_Conn = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class LeanHTTP:
    """Keep-alive connections per origin; ``post`` sends one request on one of them."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self._idle: dict[tuple[str, int], list[_Conn]] = {}
        self._targets: dict[str, _Target] = {}

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    def _target(self, url: str) -> _Target:
        target = self._targets.get(url)
        if target is None:
            parts = urlsplit(url)
            if parts.scheme != "http" or not parts.hostname or parts.username:
                raise ValueError(f"not a plain http URL: {url!r}")
            port = parts.port or 80
            path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            target = _Target((parts.hostname, port), parts.netloc, path)
            if len(self._targets) < 1000:
                self._targets[url] = target
        return target

    async def post(self, url: str, body: bytes, content_type: str) -> LeanResponse:
        target = self._target(url)
        head = (
            f"POST {target.path} HTTP/1.1\r\nHost: {target.host_header}\r\n"
            f"User-Agent: {self.user_agent}\r\nAccept: */*\r\n"
            f"Content-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode("latin-1")
        idle = self._idle.get(target.origin)
        while idle:
            conn = idle.pop()
            if conn[0].at_eof() or conn[1].is_closing():
                conn[1].close()
                continue
            try:
                return await self._exchange(target, conn, head, body)
            except (ConnectionError, asyncio.IncompleteReadError):
                # The server closed the idle connection meanwhile: once more on a new one.
                break
        conn = await asyncio.open_connection(*target.origin)
        return await self._exchange(target, conn, head, body)

    async def _exchange(
        self, target: _Target, conn: _Conn, head: bytes, body: bytes
    ) -> LeanResponse:
        reader, writer = conn
        reusable = False  # set only once the whole answer is read
        try:
            writer.write(head + body)
            status, headers, version = await _read_head(reader)
            while 100 <= status < 200:  # an interim answer: the real one follows
                status, headers, version = await _read_head(reader)
            connection = headers.get("connection", "").lower()
            keep = (
                "close" not in connection if version == "HTTP/1.1" else "keep-alive" in connection
            )
            if status in _NO_BODY:
                content = b""
            elif "chunked" in headers.get("transfer-encoding", "").lower():
                content = await _read_chunked(reader)
            elif "content-length" in headers:
                content = await reader.readexactly(int(headers["content-length"]))
            else:
                content = await reader.read()
                keep = False
            reusable = keep
            return LeanResponse(status, content)
        finally:
            # Only a connection whose exchange completed goes back (not one cut by a
            # timeout or an error midway).
            if reusable and not writer.is_closing():
                idle = self._idle.setdefault(target.origin, [])
                if len(idle) < _MAX_IDLE:
                    idle.append(conn)
                else:
                    writer.close()
            else:
                writer.close()

    async def aclose(self) -> None:
        idle, self._idle = self._idle, {}
        for conns in idle.values():
            for _, writer in conns:
                writer.close()
                with contextlib.suppress(Exception):
                    await writer.wait_closed()


async def _read_head(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], str]:
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    version, _, rest = lines[0].partition(" ")
    if not version.startswith("HTTP/1."):
        raise ConnectionError(f"malformed HTTP response: {lines[0][:100]!r}")
    status = int(rest[:3])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep:
            headers[name.strip().lower()] = value.strip()
    return status, headers, version


async def _read_chunked(reader: asyncio.StreamReader) -> bytes:
    parts: list[bytes] = []
    while True:
        size = int((await reader.readuntil(b"\r\n")).split(b";", 1)[0], 16)
        if size == 0:
            while (await reader.readuntil(b"\r\n")) != b"\r\n":  # trailers
                pass
            return b"".join(parts)
        parts.append((await reader.readexactly(size + 2))[:-2])
