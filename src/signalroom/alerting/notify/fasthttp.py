"""The notification hot path's HTTP client: JSON POSTs to plain-http URLs through aiohttp.

httpx (with httpcore, anyio and h11 beneath it) costs about a millisecond of CPU per request,
and one flush of 100 new groups sends 100 webhooks. aiohttp parses responses in C and keeps
keep-alive connections per origin, at a fraction of that. Whatever needs more (TLS settings,
proxies, auth schemes, redirects) stays with httpx: the integrations use this only for
``http://`` URLs without an ``http_config``, and hand a redirect answer back to httpx.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp

__all__ = ["LeanHTTP", "LeanResponse"]

_MAX_PER_HOST = 100  # concurrent connections per origin, like one burst of group flushes


@dataclass(frozen=True, slots=True)
class LeanResponse:
    status_code: int
    content: bytes

    @property
    def text(self) -> str:
        return self.content.decode("utf-8", "replace")


class LeanHTTP:
    """One aiohttp session (made on first use, inside the running loop); ``post`` sends one
    request and reads the whole answer, so its connection can serve the next."""

    def __init__(self, user_agent: str) -> None:
        self.user_agent = user_agent
        self._session: aiohttp.ClientSession | None = None

    @staticmethod
    def handles(url: str) -> bool:
        return url.startswith("http://")

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=0, limit_per_host=_MAX_PER_HOST),
                headers={"User-Agent": self.user_agent, "Accept": "*/*"},
                timeout=aiohttp.ClientTimeout(total=None),  # the pipeline bounds each attempt
                trust_env=False,  # lean_http() already refused URLs an env proxy would take
                auto_decompress=True,
            )
        return self._session

    async def post(self, url: str, body: bytes, content_type: str) -> LeanResponse:
        try:
            return await self._post(url, body, content_type)
        except (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError):
            # Most often an idle keep-alive connection the server closed meanwhile: once more,
            # on a new one (notifications are delivered at least once anyway).
            return await self._post(url, body, content_type)

    async def _post(self, url: str, body: bytes, content_type: str) -> LeanResponse:
        async with self._client().post(
            url, data=body, headers={"Content-Type": content_type}, allow_redirects=False
        ) as response:
            return LeanResponse(response.status, await response.read())

    async def aclose(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()
