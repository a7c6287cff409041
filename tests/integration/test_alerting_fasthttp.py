"""The aiohttp-based client of webhook notifications against real servers on loopback:
keep-alive reuse, chunked and close-delimited bodies, a stale idle connection, redirects
handed to httpx, failures as retryable notify errors."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import httpx
import pytest

from signalroom.alerting.notify.base import NotifyError, lean_http, post_json
from signalroom.alerting.notify.fasthttp import LeanHTTP
from signalroom.alerting.testing import WebhookSink, free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(60)]

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def server(handler: Handler) -> AsyncIterator[str]:
    srv = await asyncio.start_server(handler, "127.0.0.1", 0)
    port = srv.sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.close()


async def read_request(reader: asyncio.StreamReader) -> tuple[str, bytes]:
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    length = next(
        int(line.split(":", 1)[1])
        for line in head.split("\r\n")
        if line.lower().startswith("content-length")
    )
    return head, await reader.readexactly(length)


async def test_posts_reach_a_webhook_sink_with_the_json_body() -> None:
    with WebhookSink() as sink:  # http.server: HTTP/1.0 answers, connection closed
        lean = LeanHTTP("test-agent")
        for i in range(3):
            await post_json(
                httpx.AsyncClient(), "webhook", f"{sink.url}/x?a=b", {"i": i, "ü": "é"}, lean
            )
        await lean.aclose()
        assert await sink.await_for(3, "/x?a=b") == [{"i": i, "ü": "é"} for i in range(3)]


async def test_keep_alive_connection_is_reused_and_chunked_bodies_read() -> None:
    connections = 0
    heads: list[str] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        while True:
            try:
                head, body = await read_request(reader)
            except asyncio.IncompleteReadError:
                break
            heads.append(head)
            if body == b'{"n":1}':
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
                )
            else:
                writer.write(b"HTTP/1.1 503 Unavailable\r\nContent-Length: 4\r\n\r\nbusy")
            await writer.drain()
        writer.close()

    async with server(handle) as url:
        lean = LeanHTTP("test-agent")
        ok = await lean.post(f"{url}/hook", b'{"n":1}', "application/json")
        assert (ok.status_code, ok.content) == (200, b"abc")
        with pytest.raises(NotifyError) as failed:
            await post_json(httpx.AsyncClient(), "webhook", f"{url}/hook", {"n": 2}, lean)
        assert failed.value.retry and str(failed.value) == "unexpected status code 503: busy"
        await lean.aclose()
    assert connections == 1
    assert heads[0].startswith("POST /hook HTTP/1.1\r\n")
    assert "User-Agent: test-agent" in heads[0] and "Content-Type: application/json" in heads[0]


async def test_an_idle_connection_the_server_closed_is_replaced() -> None:
    served = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal served
        await read_request(reader)
        served += 1
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()  # without saying so: the client keeps the connection idle

    async with server(handle) as url:
        lean = LeanHTTP("t")
        for _ in range(3):
            assert (await lean.post(url, b"{}", "application/json")).status_code == 200
        await lean.aclose()
    assert served == 3


async def test_a_connection_cut_by_a_timeout_is_not_reused() -> None:
    connections = 0

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal connections
        connections += 1
        first = connections == 1
        while True:
            try:
                await read_request(reader)
            except (asyncio.IncompleteReadError, ConnectionError):
                break
            if first:  # a partial answer, then a stall
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
                await writer.drain()
                await asyncio.sleep(5)
                break
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()
        writer.close()

    async with server(handle) as url:
        lean = LeanHTTP("t")
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await lean.post(url, b"{}", "application/json")
        answer = await lean.post(url, b"{}", "application/json")
        assert (answer.status_code, answer.content) == (200, b"ok")
        assert connections == 2  # the half-read connection was dropped, not reused
        await lean.aclose()


async def test_a_redirect_is_followed_by_httpx() -> None:
    with WebhookSink() as sink:

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await read_request(reader)
            location = f"Location: {sink.url}/there\r\n"
            writer.write(f"HTTP/1.1 307 Moved\r\n{location}Content-Length: 0\r\n\r\n".encode())
            await writer.drain()
            writer.close()

        async with server(handle) as url, httpx.AsyncClient(follow_redirects=True) as client:
            await post_json(client, "webhook", f"{url}/here", {"a": 1}, LeanHTTP("t"))
        assert await sink.await_for(1, "/there") == [{"a": 1}]


async def test_a_refused_connection_is_a_retryable_error() -> None:
    lean = LeanHTTP("t")
    with pytest.raises(NotifyError) as failed:
        await post_json(
            httpx.AsyncClient(), "webhook", f"http://127.0.0.1:{free_port()}/", {}, lean
        )
    assert failed.value.retry


def test_lean_client_only_without_http_settings() -> None:
    from signalroom.alerting.config import HTTPClientConfig

    assert lean_http(None) is not None
    assert lean_http(HTTPClientConfig()) is not None
    assert lean_http(HTTPClientConfig(bearer_token="x")) is None
    assert lean_http(HTTPClientConfig(tls_config={"insecure_skip_verify": True})) is None
    assert not LeanHTTP.handles("https://example.com/")
