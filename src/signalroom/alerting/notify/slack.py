"""Slack receiver: an incoming-webhook message with one attachment."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from signalroom.alerting.alerts import Alert
from signalroom.alerting.config import SlackConfig
from signalroom.alerting.notify.base import Integration, http_client, post_json, read_secret
from signalroom.alerting.notify.templates import expand

if TYPE_CHECKING:
    from signalroom.alerting.notify.context import FlushContext


class SlackIntegration(Integration):
    name = "slack"

    def __init__(self, config: SlackConfig, receiver: str, idx: int, external_url: str) -> None:
        super().__init__(receiver, idx, config.send_resolved, external_url)
        self.config = config
        self.client = http_client(config.http_config)

    def payload(self, ctx: FlushContext, alerts: list[Alert]) -> dict[str, Any]:
        c = self.config
        data = self.data(ctx, alerts)

        def t(text: str | None) -> str:
            return expand(text or "", data)

        attachment: dict[str, Any] = {
            "title": t(c.title),
            "title_link": t(c.title_link),
            "pretext": t(c.pretext),
            "text": t(c.text),
            "fallback": t(c.fallback),
            "callback_id": t(c.callback_id),
            "image_url": t(c.image_url),
            "thumb_url": t(c.thumb_url),
            "footer": t(c.footer),
            "color": t(c.color),
            "mrkdwn_in": list(c.mrkdwn_in),
        }
        if c.fields:
            attachment["fields"] = [
                {
                    "title": t(str(f.get("title", ""))),
                    "value": t(str(f.get("value", ""))),
                    "short": bool(f.get("short", c.short_fields)),
                }
                for f in c.fields
            ]
        if c.actions:
            attachment["actions"] = [
                {k: t(v) if isinstance(v, str) else v for k, v in a.items()} for a in c.actions
            ]
        body: dict[str, Any] = {
            "channel": t(c.channel),
            "username": t(c.username),
            "icon_emoji": t(c.icon_emoji),
            "icon_url": t(c.icon_url),
            "link_names": c.link_names,
            "attachments": [{k: v for k, v in attachment.items() if v not in ("", None)}],
        }
        return {k: v for k, v in body.items() if v not in ("", None)}

    async def notify(self, ctx: FlushContext, alerts: list[Alert]) -> None:
        url = self.config.api_url or read_secret(None, self.config.api_url_file)
        await post_json(self.client, self.name, str(url), self.payload(ctx, alerts))

    async def close(self) -> None:
        await self.client.aclose()
