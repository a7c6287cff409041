"""PagerDuty receiver: Events API v2 (trigger / resolve), dedup key = sha256 of the group key."""

from __future__ import annotations

import hashlib
import json
from typing import TYPE_CHECKING, Any

import httpx

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import PagerdutyConfig
from signalroom.alerting.notify.base import Integration, NotifyError, http_client, read_secret
from signalroom.alerting.notify.templates import expand

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext

MAX_SUMMARY = 1024
MAX_EVENT_BYTES = 512 * 1024


def group_key_hash(group_key: str) -> str:
    """``notify.Key.Hash()``: the dedup key PagerDuty sees for a group."""
    return hashlib.sha256(group_key.encode("utf-8")).hexdigest()


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


class PagerDutyIntegration(Integration):
    name = "pagerduty"

    def __init__(self, config: PagerdutyConfig, receiver: str, idx: int, external_url: str) -> None:
        super().__init__(receiver, idx, config.send_resolved, external_url)
        self.config = config
        self.client = http_client(config.http_config)

    def payload(self, ctx: FlushContext, alerts: list[Alert]) -> dict[str, Any]:
        c = self.config
        data = self.data(ctx, alerts)

        def t(text: str) -> str:
            return expand(text, data)

        action = "resolve" if data.status == "resolved" else "trigger"
        details = {k: t(v) for k, v in (c.details or {}).items()}
        msg: dict[str, Any] = {
            "routing_key": t(read_secret(c.routing_key, c.routing_key_file)),
            "event_action": action,
            "dedup_key": group_key_hash(ctx.group_key),
            "client": t(c.client),
            "client_url": t(c.client_url),
            "images": [
                {k: t(str(v)) for k, v in img.items() if k in ("src", "alt", "href")}
                for img in c.images
            ],
            "links": [
                {k: t(str(v)) for k, v in ln.items() if k in ("href", "text")} for ln in c.links
            ],
            "payload": {
                "summary": _truncate(t(c.description), MAX_SUMMARY),
                "source": t(c.source),
                "severity": t(c.severity),
                "custom_details": details,
                "class": t(c.class_),
                "component": t(c.component),
                "group": t(c.group),
            },
        }
        for key in ("class", "component", "group"):
            if not msg["payload"][key]:
                del msg["payload"][key]
        return msg

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        body = json.dumps(self.payload(ctx, alerts)).encode()
        if len(body) > MAX_EVENT_BYTES:
            raise NotifyError(
                f"PagerDuty event is {len(body)} bytes, over the 512 KB limit",
                retry=False,
                reason="clientError",
            )
        try:
            response = await self.client.post(
                str(self.config.url), content=body, headers={"Content-Type": "application/json"}
            )
        except httpx.HTTPError as exc:
            raise NotifyError(f"{type(exc).__name__}: {exc}", retry=True) from None
        code = response.status_code
        if 200 <= code < 300:
            return
        retry = code == 429 or code >= 500
        raise NotifyError(
            f"unexpected status code {code}: {response.text[:512]}",
            retry=retry,
            reason="serverError" if code >= 500 else "clientError",
        )

    async def close(self) -> None:
        await self.client.aclose()
