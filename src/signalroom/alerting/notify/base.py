"""What every integration (webhook, Slack, e-mail, PagerDuty, MS Teams) provides."""

from __future__ import annotations

import abc
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import aiohttp
import httpx
import orjson

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import HTTPClientConfig
from signalroom.alerting.notify.fasthttp import LeanHTTP

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext
    from signalroom.alerting.notify.templates import TemplateData

__all__ = [
    "Integration",
    "NotifyError",
    "check_response",
    "http_client",
    "lean_http",
    "post_json",
    "read_secret",
]

USER_AGENT = "Alertmanager/0.25.0 (signalroom)"


class NotifyError(Exception):
    """A failed delivery; ``retry`` says whether trying again may help."""

    def __init__(self, message: str, *, retry: bool, reason: str = "other") -> None:
        super().__init__(message)
        self.retry = retry
        self.reason = reason


class Integration(abc.ABC):
    """One configured delivery target of a receiver (``webhook_configs[0]`` ...)."""

    name: str = ""

    def __init__(self, receiver: str, idx: int, send_resolved: bool, external_url: str) -> None:
        self.receiver = receiver
        self.idx = idx
        self.send_resolved = send_resolved
        self.external_url = external_url
        self.timeout: float | None = None  # per attempt, seconds

    @abc.abstractmethod
    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        """Deliver; raise :class:`NotifyError` on failure."""

    async def close(self) -> None:  # noqa: B027 - optional hook, a no-op by default
        """Release connections."""

    def data(self, ctx: FlushContext, alerts: list[Alert]) -> TemplateData:
        from signalroom.alerting.notify.templates import template_data

        return template_data(ctx.receiver, ctx.group_labels, alerts, ctx.now, self.external_url)


def read_secret(inline: str | None, file: str | None) -> str:
    if inline:
        return inline
    if file:
        return Path(file).read_text(encoding="utf-8").strip()
    return ""


def http_client(config: HTTPClientConfig | None) -> httpx.AsyncClient:
    """An ``httpx`` client honouring the common ``http_config`` (auth, TLS, proxy)."""
    kwargs: dict[str, Any] = {"timeout": httpx.Timeout(None)}
    headers: dict[str, str] = {"User-Agent": USER_AGENT}
    if config is not None:
        kwargs["follow_redirects"] = config.follow_redirects
        if config.basic_auth:
            user = str(config.basic_auth.get("username", ""))
            password = read_secret(
                config.basic_auth.get("password"), config.basic_auth.get("password_file")
            )
            kwargs["auth"] = httpx.BasicAuth(user, password)
        token = read_secret(config.bearer_token, config.bearer_token_file)
        if config.authorization:
            kind = str(config.authorization.get("type", "Bearer"))
            token = read_secret(
                config.authorization.get("credentials"),
                config.authorization.get("credentials_file"),
            )
            headers["Authorization"] = f"{kind} {token}"
        elif token:
            headers["Authorization"] = f"Bearer {token}"
        tls = config.tls_config or {}
        if tls.get("insecure_skip_verify"):
            kwargs["verify"] = False
        elif tls.get("ca_file"):
            kwargs["verify"] = str(tls["ca_file"])
        if tls.get("cert_file") and tls.get("key_file"):
            kwargs["cert"] = (str(tls["cert_file"]), str(tls["key_file"]))
        if config.proxy_url:
            kwargs["proxy"] = config.proxy_url
    return httpx.AsyncClient(headers=headers, **kwargs)


class _Answer(Protocol):
    @property
    def status_code(self) -> int: ...

    @property
    def text(self) -> str: ...


def check_response(integration: str, response: _Answer) -> None:
    """Alertmanager's default retrier: 2xx ok, 5xx (and 429) retry, other codes fail."""
    code = response.status_code
    if 200 <= code < 300:
        return
    body = response.text[:1024]
    retry = code >= 500 or code == 429
    reason = "serverError" if code >= 500 else "clientError"
    raise NotifyError(
        f"unexpected status code {code}" + (f": {body}" if body else ""), retry=retry, reason=reason
    )


def lean_http(config: HTTPClientConfig | None) -> LeanHTTP | None:
    """The lean client for an integration whose ``http_config`` asks for nothing httpx must
    do (auth, TLS settings, a proxy; nor a proxy from the environment, which httpx honours);
    None otherwise."""
    if config is not None and (
        config.basic_auth
        or config.authorization
        or config.oauth2
        or config.bearer_token
        or config.bearer_token_file
        or config.proxy_url
        or config.tls_config
    ):
        return None
    proxies = urllib.request.getproxies()
    if proxies.get("http") or proxies.get("all"):
        return None
    return LeanHTTP(USER_AGENT)


_JSON_HEADERS = {"Content-Type": "application/json"}
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


async def post_json(
    client: httpx.AsyncClient,
    integration: str,
    url: str,
    payload: Any,
    lean: LeanHTTP | None = None,
) -> None:
    """POST ``payload`` as JSON; with ``lean``, plain-http URLs go through it (a redirect
    answer is followed by httpx, as configured)."""
    # orjson writes what httpx's json= would (compact UTF-8), at a fraction of the cost.
    body = orjson.dumps(payload)
    response: _Answer | None = None
    if lean is not None and lean.handles(url):
        try:
            response = await lean.post(url, body, "application/json")
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}", retry=True, reason="other") from None
        if response.status_code in _REDIRECTS:
            response = None
    if response is None:
        try:
            response = await client.post(url, content=body, headers=_JSON_HEADERS)
        except httpx.HTTPError as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}", retry=True, reason="other") from None
    check_response(integration, response)
