"""The body limit and request-context middleware on a tiny app that reads its body."""

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from signalroom.web.middleware import BodyLimitMiddleware, RequestContextMiddleware
from signalroom.web.server import error_response

pytestmark = pytest.mark.unit


async def echo_length(request: Request) -> JSONResponse:
    body = await request.body()
    return JSONResponse({"length": len(body)})


def make_client(limit: int) -> httpx.AsyncClient:
    app = FastAPI()
    app.add_api_route("/items/{id}", echo_length, methods=["POST"])

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        return error_response(exc.status_code, str(exc.detail))

    wrapped = RequestContextMiddleware(BodyLimitMiddleware(app, limit=lambda: limit))
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=wrapped), base_url="http://test")


async def chunks(count: int, size: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"z" * size


async def test_streamed_body_over_limit_is_413() -> None:
    async with make_client(1000) as client:
        response = await client.post("/items/1", content=chunks(4, 400))
    assert response.status_code == 413
    assert response.json()["errorType"] == "payload_too_large"
    assert "limits.max_request_body (1000 bytes)" in response.json()["error"]


async def test_streamed_body_within_limit_passes() -> None:
    async with make_client(1000) as client:
        response = await client.post("/items/1", content=chunks(2, 400))
    assert response.json() == {"length": 800}


async def test_declared_length_over_limit_is_refused_before_reading() -> None:
    async with make_client(10) as client:
        response = await client.post("/items/1", content=b"x" * 11)
    assert response.status_code == 413
    assert "request body of 11 bytes" in response.json()["error"]


async def test_invalid_content_length_is_400() -> None:
    async with make_client(10) as client:
        response = await client.post("/items/1", content=b"x", headers={"Content-Length": "ten"})
    assert response.status_code == 400


async def test_request_id_is_echoed_or_generated() -> None:
    async with make_client(100) as client:
        given = await client.post("/items/1", content=b"", headers={"X-Request-ID": "abc-1"})
        generated = await client.post("/items/2", content=b"")
    assert given.headers["x-request-id"] == "abc-1"
    assert len(generated.headers["x-request-id"]) == 16
